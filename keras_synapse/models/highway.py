"""A linear highway beside the network: a ridge first, the network on what it leaves, one graph.

A regression head with a highway computes

    prediction = activation(ridge(last bars) + share * network(window))

- `ridge` is a `Dense(1)` over the last `highway_bars` bars' normalized
  features, fitted in closed form on the fold's training windows before any
  epoch runs (penalty chosen on the early-stopping carve-out, as the ridge
  baseline's) and then frozen (`fit_highways`);
- `network` is the recurrent path's score, its last layer initialized at
  zero, so training starts from the ridge and the network learns the
  residual (LSTNet's autoregressive component; Wide & Deep);
- `share` is chosen after the fit on the carve-out (`choose_network_share`)
  from `NETWORK_SHARES`, 0 included, by the one-standard-error rule (the
  smallest share whose carve-out rank IC is within one standard error of
  the best; Breiman et al. 1984, glmnet's `lambda.1se`): the same carve-out
  chose the network's epoch, so its figure there flatters it, and a network
  that learned only noise is switched off rather than allowed to drown the
  ridge. The run says which share it kept. Then the ridge is refitted on
  the fit and carve-out windows with its chosen penalty, as the `ridge`
  baseline is, so a head whose share is 0 is that baseline's equal.

Why: on weak edges a recurrent network trained by gradient descent recovers
a small part of what a closed-form linear fit on the same bars recovers (see
`experiments/original_backbone.py`); with the highway it starts where the
ridge ends. Everything is built-in Keras layers (`Cropping1D`, `Flatten`,
`Dense`, `Add`, `Activation`), so the `.keras` file loads without
keras_synapse and the export stays one ONNX graph.

The shared backbone, its GRU variant, the attention LSTM and the Transformer
take `highway_bars`. Classification heads (sigmoid, softmax) and the
multi-task model's heads (sigmoid, softmax, softplus for non-negative
targets) have none: a least-squares fit is neither a logit nor the inverse
of a softplus, and the config refuses `highway_bars` there.
"""

import numpy as np

# What the network's score may add to the ridge's, chosen on the carve-out.
NETWORK_SHARES = (0.0, 0.25, 0.5, 1.0)
_HIGHWAY, _NETWORK = "_highway", "_network"


def highway_window(sequence, bars):
    """The last `bars` bars of the normalized `[batch, L, F]` sequence, flattened to `[batch, bars * F]`."""
    import keras

    steps = sequence.shape[1]
    last = keras.layers.Cropping1D((steps - bars, 0), name="highway_last_bars")(sequence)
    return keras.layers.Flatten(name="highway_window")(last)


def regression_output(x, window, activation, name):
    """`activation(highway(window) + network(x))`, the output layer named `name`."""
    import keras

    network = keras.layers.Dense(1, kernel_initializer="zeros", name=name + _NETWORK)(x)
    highway = keras.layers.Dense(1, kernel_initializer="zeros", trainable=False, name=name + _HIGHWAY)(window)
    logit = keras.layers.Add(name=f"{name}_logit")([highway, network])
    return keras.layers.Activation(activation, name=name)(logit)


def is_highway_layer(name):
    """Whether `name` names a layer that only a model with a highway has (its network score)."""
    return name.endswith(_NETWORK)


def highway_heads(model):
    """Names of the heads of `model` that have a highway (empty for a model without)."""
    names = {layer.name for layer in model.layers}
    return [name[: -len(_HIGHWAY)] for name in sorted(names)
            if name.endswith(_HIGHWAY) and name[: -len(_HIGHWAY)] + _NETWORK in names]


def head_targets(windowed, head):
    """The training targets of `head`: its own label for a multi-task head, the label otherwise."""
    return (windowed.head_targets or {}).get(head, windowed.targets)


def fit_highways(model, windowed, split, with_validation=False):
    """Sets every highway of `model` to a ridge fitted on the split's training windows, in closed form.

    Call it after the input normalization is adapted (`fit_normalization`):
    the ridge is fitted on raw features and rewritten for the normalized
    inputs the layer sees. The penalty is the one whose validation
    predictions correlate best with the targets (the ridge baseline's grid).

    Args:
        model: a model built with `highway_bars` > 0.
        windowed: the `WindowedPanel`.
        split: the fold's windows: `baseline_fit` (every training bar, before
            the carve-out) and `validation`.
        with_validation: refit on the fit and carve-out windows with the
            chosen penalty (once nothing more is chosen on the carve-out).
            Defaults to `False`.

    Returns:
        Head name -> the chosen penalty (a multiple of the fit windows).
    """
    from keras_synapse.models.ridge import tuned_ridge_solver

    heads = highway_heads(model)
    if not heads:
        return {}
    normalization = model.get_layer("feature_normalization")
    bars = model.get_layer(heads[0] + _HIGHWAY).kernel.shape[0] // windowed.features.shape[1]
    mean = np.tile(np.ravel(np.asarray(normalization.mean)), bars)
    deviation = np.maximum(np.sqrt(np.tile(np.ravel(np.asarray(normalization.variance)), bars)), 1e-7)
    penalties = {}
    for head in heads:
        solver, alpha = tuned_ridge_solver(windowed, split["baseline_fit"], split["validation"], bars,
                                           head_targets(windowed, head), with_validation)
        coefficients = solver.coefficients([alpha * solver.count])[:, 0] / solver.scale
        # ridge(x) = (x - m) . c + t and the layer sees z = (x - mean) / deviation.
        kernel = deviation * coefficients
        bias = solver.target_mean + (mean - solver.mean) @ coefficients
        model.get_layer(head + _HIGHWAY).set_weights([kernel[:, None].astype("float32"),
                                                      np.array([bias], dtype="float32")])
        penalties[head] = alpha
    return penalties


def choose_network_share(model, windowed, split, batch_size, horizon, refit_highway=True):
    """Scales each head's network score by the share in `NETWORK_SHARES` the carve-out supports, then refits the ridge.

    The highway's and the network's scores of the validation windows are
    combined at every share; the smallest share whose rank correlation with
    the targets is within one standard error (`sqrt(horizon / windows)`,
    overlapping labels counted once per horizon) of the best is kept by
    scaling the network's last layer (share 0: the head is the ridge alone).
    The highway is then refitted with the carve-out (`fit_highways`) unless
    `refit_highway` is false (a fine-tuned head keeps the ridge fitted on
    every symbol).

    Returns:
        Head name -> `{"share", "ridge_rank_ic", "rank_ic", "best_rank_ic"}`
        (the carve-out's rank IC of the ridge alone, of the kept share and
        of the best share).
    """
    import keras

    from keras_synapse.windows.dataset import make_dataset

    heads = highway_heads(model)
    if not heads:
        return {}
    validation_ends = split["validation"]
    probe = keras.Model(model.inputs, [model.get_layer(head + suffix).output
                                       for head in heads for suffix in (_HIGHWAY, _NETWORK)])
    outputs = probe.predict(make_dataset(windowed, validation_ends, batch_size, with_targets=False), verbose=0)
    standard_error = np.sqrt(horizon / max(len(validation_ends), 1))
    chosen = {}
    for index, head in enumerate(heads):
        highway, network = (np.ravel(outputs[2 * index + offset]) for offset in (0, 1))
        target_ranks = _ranks(head_targets(windowed, head)[validation_ends])
        scores = np.array([_correlation(_ranks(highway + share * network), target_ranks)
                           for share in NETWORK_SHARES])
        scores = np.where(np.isfinite(scores), scores, -np.inf)
        kept = int(np.flatnonzero(scores >= scores.max() - standard_error)[0])
        layer = model.get_layer(head + _NETWORK)
        layer.set_weights([weight * NETWORK_SHARES[kept] for weight in layer.get_weights()])
        chosen[head] = {"share": NETWORK_SHARES[kept], "ridge_rank_ic": float(scores[0]),
                        "rank_ic": float(scores[kept]), "best_rank_ic": float(scores.max())}
    if refit_highway:
        fit_highways(model, windowed, split, with_validation=True)
    return chosen


def _ranks(values):
    return np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(np.float64)


def _correlation(first, second):
    if np.std(first) == 0 or np.std(second) == 0:
        return np.nan
    return float(np.corrcoef(first, second)[0, 1])
