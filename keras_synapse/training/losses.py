"""Training losses: seed 004's correlation-aware loss, focal loss, and the config names.

`get_loss(name, task_kind)` turns an experiment's `loss` string into a Keras
loss: built-in ones wherever Keras has them (a `.keras` file compiled with a
built-in loss loads anywhere), `CorrelationAwareLoss` and the sparse
multiclass `FocalLoss` where it does not.

A model compiled with a custom loss (or metric) keeps it in the `.keras`
file's compile config, and plain `keras.models.load_model(path)` then fails
with "Could not locate class 'CorrelationAwareLoss'" in any process that has
not imported `keras_synapse` (Keras only imports `keras.*` modules while
loading). Save inference copies uncompiled:
`keras.Model(model.input, model.output, name=model.name).save(path)` shares
the trained layers and has the same config (`model.input`, unlike
`model.inputs`, keeps the dict structure), but no compile config.
"""

import keras
import numpy as np
from keras import ops

from keras_synapse.errors import ConfigError
from keras_synapse.training.choices import LOSS_NAMES, TASK_KINDS


def _flat(values, dtype):
    return ops.reshape(ops.convert_to_tensor(values, dtype=dtype), (-1,))


@keras.saving.register_keras_serializable(package="keras_synapse")
class CorrelationAwareLoss(keras.losses.Loss):
    """Mean squared error blended with the negative Pearson correlation over the batch.

    `loss = (1 - correlation_weight) * MSE - correlation_weight * corr(y_pred, y_true)`
    (seed 004): the MSE term keeps predictions on the target's scale, the
    correlation term rewards ranking windows correctly even where the level
    is off. The loss can be negative.

    The correlation is a batch statistic, so the loss is one value per batch
    rather than one per sample: with sample weights, the MSE term is Keras'
    weighted MSE (`sum(w * error**2) / batch_size`, as `"mse"` reports) and
    the correlation is the weighted Pearson correlation. Each variance is
    floored at `epsilon`, so a batch of constant predictions (or targets)
    has correlation 0 and a finite gradient instead of NaN, and
    `|corr| <= 1` still holds.

    Args:
        correlation_weight: weight of the correlation term, in [0, 1]; 0 is
            plain MSE. Defaults to `0.5`.
        epsilon: floor on the prediction and target variances. Keep it well
            below the predictions' variance (scaled labels have variance
            near 1). Defaults to `1e-8`.
        name: the loss name. Defaults to `"correlation_aware"`.

    Example:

    >>> loss = CorrelationAwareLoss(correlation_weight=0.5)
    >>> round(float(loss([[1.0], [2.0], [3.0]], [[1.0], [2.0], [3.0]])), 4)
    -0.5
    """

    def __init__(self, correlation_weight=0.5, epsilon=1e-8, name="correlation_aware"):
        if not 0 <= correlation_weight <= 1:
            raise ConfigError(
                f"`correlation_weight` must be in [0, 1]. Received: correlation_weight={correlation_weight}"
            )
        if not epsilon > 0:
            raise ConfigError(f"`epsilon` must be > 0. Received: epsilon={epsilon}")
        super().__init__(name=name)
        self.correlation_weight = float(correlation_weight)
        self.epsilon = float(epsilon)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # Overrides `Loss.__call__` because the correlation is not a per-sample
        # value that the base class could weight and reduce.
        with keras.name_scope(self.name):
            y_true = _flat(y_true, self.dtype)
            y_pred = _flat(y_pred, self.dtype)
            weights = ops.ones_like(y_pred) if sample_weight is None else _flat(sample_weight, self.dtype)
            batch_size = ops.cast(ops.shape(y_pred)[0], self.dtype)
            mse = ops.sum(weights * ops.square(y_pred - y_true)) / ops.maximum(batch_size, 1.0)
            total_weight = ops.maximum(ops.sum(weights), self.epsilon)
            mean_pred = ops.sum(weights * y_pred) / total_weight
            mean_true = ops.sum(weights * y_true) / total_weight
            centred_pred, centred_true = y_pred - mean_pred, y_true - mean_true
            covariance = ops.sum(weights * centred_pred * centred_true) / total_weight
            variance_pred = ops.sum(weights * ops.square(centred_pred)) / total_weight
            variance_true = ops.sum(weights * ops.square(centred_true)) / total_weight
            correlation = covariance / ops.sqrt(
                ops.maximum(variance_pred, self.epsilon) * ops.maximum(variance_true, self.epsilon)
            )
            return (1 - self.correlation_weight) * mse - self.correlation_weight * correlation

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def get_config(self):
        return {"correlation_weight": self.correlation_weight, "epsilon": self.epsilon, "name": self.name}


@keras.saving.register_keras_serializable(package="keras_synapse")
class FocalLoss(keras.losses.Loss):
    """Focal loss for integer class targets (Lin et al., 2017), binary or multiclass.

    `-(1 - p_t) ** gamma * log(p_t)`, where `p_t` is the predicted
    probability of the true class: confidently right windows (most of the
    majority class) contribute little, so the rare classes drive the
    gradient. `gamma=0` is plain cross-entropy.

    Targets are class indices `[batch, 1]` (or `[batch]`). Predictions are
    `[batch, classes]` softmax probabilities (sparse multiclass, the case
    Keras has no built-in for) or `[batch, 1]` sigmoid probabilities of
    class 1 (binary, equal to `keras.losses.BinaryFocalCrossentropy`, which
    `get_loss` prefers for binary tasks).

    Args:
        gamma: focusing parameter, >= 0. Defaults to `2.0`.
        from_logits: whether predictions are logits rather than
            probabilities. Defaults to `False`.
        name: the loss name. Defaults to `"focal"`.
        reduction: how per-sample losses are reduced (see
            `keras.losses.Loss`). Defaults to `"sum_over_batch_size"`.
    """

    def __init__(self, gamma=2.0, from_logits=False, name="focal", reduction="sum_over_batch_size"):
        if not gamma >= 0:
            raise ConfigError(f"`gamma` must be >= 0. Received: gamma={gamma}")
        super().__init__(name=name, reduction=reduction)
        self.gamma = float(gamma)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        num_classes = y_pred.shape[-1]
        if num_classes == 1:
            scores = ops.reshape(y_pred, (-1,))
            if self.from_logits:
                scores = ops.sigmoid(scores)
            probabilities = ops.stack([1 - scores, scores], axis=-1)
            num_classes = 2
        elif self.from_logits:
            probabilities = ops.softmax(y_pred, axis=-1)
        else:
            probabilities = y_pred
        # The same clipping as Keras' cross-entropies, so gamma=0 matches them.
        epsilon = keras.config.epsilon()
        probabilities = ops.clip(probabilities, epsilon, 1 - epsilon)
        true_probability = ops.sum(probabilities * ops.one_hot(labels, num_classes, dtype=self.dtype), axis=-1)
        return -ops.power(1 - true_probability, self.gamma) * ops.log(true_probability)

    def get_config(self):
        return {"gamma": self.gamma, "from_logits": self.from_logits, "name": self.name,
                "reduction": self.reduction}


def _parameter(name, text, requirement, check, choices):
    try:
        value = float(text)
    except ValueError:
        value = np.nan
    if not (np.isfinite(value) and check(value)):
        raise ConfigError(f"Loss {name!r}: the value after ':' must be {requirement}. Valid for this task: {choices}")
    return value


def get_loss(name, task_kind):
    """The Keras loss for an experiment's `loss` setting and the label's task.

    | name                         | task kinds         | loss                                  |
    | ---------------------------- | ------------------ | ------------------------------------- |
    | `mse`                        | regression         | `keras.losses.MeanSquaredError`       |
    | `huber`, `huber:DELTA`       | regression         | `keras.losses.Huber(delta)` (1.0)     |
    | `correlation_aware[:WEIGHT]` | regression         | `CorrelationAwareLoss(WEIGHT)` (0.5)  |
    | `crossentropy`               | binary, multiclass | (sparse) cross-entropy                |
    | `focal`, `focal:GAMMA`       | binary, multiclass | focal loss (gamma 2.0)                |

    Binary focal is Keras' `BinaryFocalCrossentropy`; multiclass focal is
    `FocalLoss`, because the targets are class indices and Keras' focal
    loss wants one-hot targets. Keras 3.15's `Huber.get_config()` omits
    `delta`: a compiled `.keras` file reloads with delta 1.0 (training in
    the same process, and uncompiled inference copies, are unaffected).

    Args:
        name: the loss setting, e.g. `"correlation_aware:0.3"`.
        task_kind: `"regression"`, `"binary"` or `"multiclass"`.

    Returns:
        A `keras.losses.Loss`.

    Raises:
        ConfigError: for an unknown name, a name that does not fit the task
            (e.g. `"mse"` for a classifier) or a bad parameter; the message
            lists the names valid for the task.

    Example:

    >>> get_loss("correlation_aware:0.3", "regression").correlation_weight
    0.3
    """
    if task_kind not in TASK_KINDS:
        raise ConfigError(f"`task_kind` must be one of {', '.join(TASK_KINDS)}. Received: task_kind={task_kind!r}")
    choices = ", ".join(LOSS_NAMES[task_kind])
    base, colon, text = str(name).strip().partition(":")
    bases = {kind: {item.partition(":")[0] for item in names} for kind, names in LOSS_NAMES.items()}
    if base not in bases[task_kind]:
        fits = [kind for kind in TASK_KINDS if base in bases[kind]]
        if fits:
            raise ConfigError(f"Loss {name!r} is for {' and '.join(fits)} labels, not {task_kind}. "
                              f"Valid for {task_kind}: {choices}")
        raise ConfigError(f"Unknown loss {name!r}. Valid for {task_kind}: {choices}")
    if colon and f"{base}:" not in choices:
        raise ConfigError(f"Loss {base!r} takes no value after ':'. Received: {name!r}. "
                          f"Valid for {task_kind}: {choices}")

    if base == "mse":
        return keras.losses.MeanSquaredError()
    if base == "huber":
        return keras.losses.Huber(delta=_parameter(name, text, "> 0", lambda value: value > 0, choices)
                                  if colon else 1.0)
    if base == "correlation_aware":
        return CorrelationAwareLoss(correlation_weight=_parameter(
            name, text, "in [0, 1]", lambda value: 0 <= value <= 1, choices) if colon else 0.5)
    if base == "crossentropy":
        if task_kind == "binary":
            return keras.losses.BinaryCrossentropy()
        return keras.losses.SparseCategoricalCrossentropy()
    gamma = _parameter(name, text, ">= 0", lambda value: value >= 0, choices) if colon else 2.0
    return keras.losses.BinaryFocalCrossentropy(gamma=gamma) if task_kind == "binary" else FocalLoss(gamma=gamma)


def class_weights(targets, num_classes):
    """Balanced class weights for Keras' `fit(class_weight=...)`.

    Each class present gets `num_samples / (num_classes_present *
    count)`, so every class carries the same total weight (scikit-learn's
    "balanced"). Do not combine with `sample_weighting="class_balance"`,
    which applies the same correction through sample weights.

    Args:
        targets: class indices of the training windows; NaN (unlabelled)
            entries are ignored.
        num_classes: the number of classes: 2 for a binary task (not the
            number of output units, which is 1 there).

    Returns:
        A dict class index -> float weight with an entry for every class;
        classes absent from `targets` get 1.0 (they have no samples to
        weigh, but Keras wants every class index to have an entry).

    Raises:
        ConfigError: for `num_classes < 2`, non-integer targets or targets
            outside `[0, num_classes)`.
    """
    if int(num_classes) != num_classes or num_classes < 2:
        raise ConfigError(
            f"`num_classes` must be an integer >= 2 (2 for a binary task). Received: num_classes={num_classes}"
        )
    targets = np.asarray(targets, dtype=np.float64).ravel()
    targets = targets[np.isfinite(targets)]
    invalid = (targets != np.round(targets)) | (targets < 0) | (targets >= num_classes)
    if invalid.any():
        raise ConfigError(
            f"Class targets must be integers in [0, {num_classes}). Received: {float(targets[invalid][0])!r} "
            f"({int(invalid.sum())} invalid)"
        )
    counts = np.bincount(targets.astype(np.int64), minlength=int(num_classes))
    present = counts > 0
    weights = np.ones(int(num_classes))
    weights[present] = len(targets) / (present.sum() * counts[present])
    return {index: float(weight) for index, weight in enumerate(weights)}


def task_loss(name, task_kind):
    """`get_loss`, where `"auto"` is MSE for regression and cross-entropy for class labels."""
    if name == "auto":
        name = "mse" if task_kind == "regression" else "crossentropy"
    return get_loss(name, task_kind)
