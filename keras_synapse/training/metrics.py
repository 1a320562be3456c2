"""Streaming Keras metrics for the training logs.

`DirectionalAccuracy` and `PearsonCorrelation` go in `compile(metrics=[...])`
of a one-unit (regression) head and accumulate over the whole epoch, so
`val_pearson_correlation` is the correlation over every validation window,
not a mean of batch correlations (Keras' own
`keras.metrics.PearsonCorrelation` averages per-batch values along the last
axis, which is NaN for a `[batch, 1]` output).

The NumPy metrics of test predictions are in `keras_synapse.evaluation`.
"""

import keras
from keras import ops


def _flat(values, dtype):
    return ops.reshape(ops.cast(values, dtype), (-1,))


@keras.saving.register_keras_serializable(package="keras_synapse")
class DirectionalAccuracy(keras.metrics.Metric):
    """Share of windows whose prediction has the sign of the target, zero targets excluded.

    The same rule as `evaluation.regression_metrics`: a prediction `> 0`
    says "up", anything else "down"; windows whose target is exactly 0 say
    nothing about direction and are skipped. Sample weights weigh windows.
    The value is 0 until a window with a nonzero target is seen.

    Args:
        name: the metric name. Defaults to `"directional_accuracy"`.
        dtype: the dtype of the accumulators. Defaults to `None`
            (`keras.config.floatx()`).

    Example:

    >>> metric = DirectionalAccuracy()
    >>> metric.update_state([[0.5], [-0.2], [0.0]], [[0.1], [0.3], [0.9]])
    >>> float(metric.result())
    0.5
    """

    def __init__(self, name="directional_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.agreeing = self.add_variable(shape=(), initializer="zeros", name="agreeing")
        self.counted = self.add_variable(shape=(), initializer="zeros", name="counted")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _flat(y_true, self.dtype), _flat(y_pred, self.dtype)
        weights = ops.ones_like(y_true) if sample_weight is None else _flat(sample_weight, self.dtype)
        weights = ops.where(ops.not_equal(y_true, 0), weights, ops.zeros_like(weights))
        agree = ops.cast(ops.equal(y_pred > 0, y_true > 0), self.dtype)
        self.agreeing.assign_add(ops.sum(weights * agree))
        self.counted.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.agreeing, self.counted)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_synapse")
class PearsonCorrelation(keras.metrics.Metric):
    """Pearson correlation of predictions and targets over every sample seen.

    Keeps the weighted count, the means, and the centred sums of squares
    and cross-products, merged batch by batch (Chan et al.'s parallel
    update). The epoch value equals `np.corrcoef` over all the epoch's
    samples, and unlike raw sums of `x`, `x**2` it does not lose precision
    in float32 when the predictions sit far from zero (e.g. sigmoid outputs
    near 0.5). Constant predictions or targets give 0 rather than NaN, so
    callbacks monitoring it keep working.

    Args:
        name: the metric name. Defaults to `"pearson_correlation"`.
        dtype: the dtype of the accumulators. Defaults to `None`
            (`keras.config.floatx()`).

    Example:

    >>> metric = PearsonCorrelation()
    >>> metric.update_state([[1.0], [2.0]], [[1.0], [3.0]])
    >>> metric.update_state([[3.0], [4.0]], [[2.0], [4.0]])
    >>> round(float(metric.result()), 4)
    0.8
    """

    def __init__(self, name="pearson_correlation", dtype=None):
        super().__init__(name=name, dtype=dtype)
        names = ("count", "mean_pred", "mean_true", "squares_pred", "squares_true", "products")
        for variable_name in names:
            setattr(self, variable_name, self.add_variable(shape=(), initializer="zeros", name=variable_name))

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = _flat(y_true, self.dtype), _flat(y_pred, self.dtype)
        weights = ops.ones_like(y_true) if sample_weight is None else _flat(sample_weight, self.dtype)
        batch_count = ops.sum(weights)
        batch_mean_pred = ops.divide_no_nan(ops.sum(weights * y_pred), batch_count)
        batch_mean_true = ops.divide_no_nan(ops.sum(weights * y_true), batch_count)
        centred_pred, centred_true = y_pred - batch_mean_pred, y_true - batch_mean_true
        count = self.count + batch_count
        # Shares of the merged count; both 0 while nothing has been seen.
        share_old = ops.divide_no_nan(self.count, count)
        share_new = ops.divide_no_nan(batch_count, count)
        delta_pred = batch_mean_pred - self.mean_pred
        delta_true = batch_mean_true - self.mean_true
        cross = self.count * share_new  # n_old * n_new / n
        self.squares_pred.assign_add(ops.sum(weights * ops.square(centred_pred)) + cross * ops.square(delta_pred))
        self.squares_true.assign_add(ops.sum(weights * ops.square(centred_true)) + cross * ops.square(delta_true))
        self.products.assign_add(ops.sum(weights * centred_pred * centred_true) + cross * delta_pred * delta_true)
        self.mean_pred.assign(share_old * self.mean_pred + share_new * batch_mean_pred)
        self.mean_true.assign(share_old * self.mean_true + share_new * batch_mean_true)
        self.count.assign(count)

    def result(self):
        return ops.divide_no_nan(self.products, ops.sqrt(self.squares_pred) * ops.sqrt(self.squares_true))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
