"""Metrics: streaming Keras metrics for training logs, NumPy ones for evaluation.

`DirectionalAccuracy` and `PearsonCorrelation` go in `compile(metrics=[...])`
of a one-unit (regression) head and accumulate over the whole epoch, so
`val_pearson_correlation` is the correlation over every validation window,
not a mean of batch correlations (Keras' own
`keras.metrics.PearsonCorrelation` averages per-batch values along the last
axis, which is NaN for a `[batch, 1]` output).

`information_coefficients` and `per_symbol_metrics` score test predictions
the way a cross-sectional strategy sees them: the IC across symbols at each
timestamp, and seed 004's per-ticker table.
"""

import keras
import numpy as np
import pandas as pd
from keras import ops

from keras_synapse.errors import DataError
from keras_synapse.evaluation.summary import regression_metrics


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


def _require_columns(frame, columns):
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(f"Prediction frame lacks column(s) {missing}. Received columns: {list(frame.columns)}")


def per_timestamp_ic(frame, prediction_column="prediction", reference_column="reference",
                     timestamp_column="timestamp", min_symbols=3):
    """The cross-sectional IC at each timestamp: how well the predictions rank the symbols that day.

    Rows with a NaN prediction or reference are dropped first. Timestamps
    with fewer than `min_symbols` symbols, or with constant predictions or
    references across symbols (no ranking to judge), are skipped.

    Args:
        frame: one row per (symbol, timestamp) window.
        prediction_column: the predictions. Defaults to `"prediction"`.
        reference_column: what they should rank like, e.g. the forward
            return. Defaults to `"reference"`.
        timestamp_column: the window time. Defaults to `"timestamp"`.
        min_symbols: fewest symbols for a timestamp to count. Defaults to `3`.

    Returns:
        A DataFrame indexed by timestamp with `ic` (Pearson), `rank_ic`
        (Spearman: Pearson of within-timestamp ranks, ties averaged) and
        `num_symbols`.
    """
    _require_columns(frame, [prediction_column, reference_column, timestamp_column])
    data = pd.DataFrame({
        "timestamp": frame[timestamp_column].reset_index(drop=True),
        "prediction": frame[prediction_column].reset_index(drop=True).astype(np.float64),
        "reference": frame[reference_column].reset_index(drop=True).astype(np.float64),
    })
    data = data[np.isfinite(data["prediction"]) & np.isfinite(data["reference"])]
    grouped = data.groupby("timestamp", sort=True)
    # max > min rather than std > 0: centring a constant column can leave round-off.
    usable = (grouped["prediction"].transform("size") >= min_symbols) & np.logical_and(
        grouped["prediction"].transform("max") > grouped["prediction"].transform("min"),
        grouped["reference"].transform("max") > grouped["reference"].transform("min"),
    )
    data = data[usable]
    grouped = data.groupby("timestamp", sort=True)
    data = data.assign(rank_prediction=grouped["prediction"].rank(), rank_reference=grouped["reference"].rank())

    def correlation(left, right):
        centred_left = data[left] - grouped[left].transform("mean")
        centred_right = data[right] - grouped[right].transform("mean")
        sums = pd.DataFrame({"products": centred_left * centred_right, "left": centred_left**2,
                             "right": centred_right**2}).groupby(data["timestamp"], sort=True).sum()
        return sums["products"] / np.sqrt(sums["left"] * sums["right"])

    grouped = data.groupby("timestamp", sort=True)
    return pd.DataFrame({
        "ic": correlation("prediction", "reference"),
        "rank_ic": correlation("rank_prediction", "rank_reference"),
        "num_symbols": grouped.size(),
    })


def information_coefficients(frame, prediction_column="prediction", reference_column="reference",
                             timestamp_column="timestamp", min_symbols=3):
    """Mean cross-sectional IC, its spread over time, and the ICIR.

    The IC of each timestamp (see `per_timestamp_ic`), summarized over
    timestamps. The ICIR is the plain ratio `mean / std` of the
    per-timestamp ICs (std with ddof=1), not annualized. It is not a
    t-statistic either: with overlapping multi-bar labels neighbouring
    timestamps' ICs are correlated, so `icir * sqrt(num_timestamps)`
    overstates significance (use the block bootstrap in `evaluation`).

    Args:
        frame: one row per (symbol, timestamp) window.
        prediction_column: the predictions. Defaults to `"prediction"`.
        reference_column: what they should rank like, e.g. the forward
            return. Defaults to `"reference"`.
        timestamp_column: the window time. Defaults to `"timestamp"`.
        min_symbols: fewest symbols for a timestamp to count. Defaults to `3`.

    Returns:
        A dict with `ic_mean`, `ic_std`, `icir`, `rank_ic_mean`,
        `rank_ic_std`, `rank_icir` and `num_timestamps` (the timestamps
        used). Values are NaN when no timestamp qualifies (e.g. a
        single-symbol panel) and the std and ICIR need two timestamps.
    """
    series = per_timestamp_ic(frame, prediction_column, reference_column, timestamp_column, min_symbols)
    summary = {}
    for name, ratio_name in (("ic", "icir"), ("rank_ic", "rank_icir")):
        values = series[name].to_numpy()
        mean = float(np.mean(values)) if len(values) else np.nan
        std = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
        summary.update({f"{name}_mean": mean, f"{name}_std": std,
                        ratio_name: mean / std if np.isfinite(std) and std > 0 else np.nan})
    summary["num_timestamps"] = int(len(series))
    return summary


def per_symbol_metrics(frame, prediction_column="prediction", reference_column="reference",
                       symbol_column="symbol", target_column=None):
    """Seed 004's cross-ticker table: the headline metrics of each symbol's predictions over time.

    Each symbol's rows are scored with `evaluation.regression_metrics`, so
    the columns mean exactly what the run's headline metrics mean.

    Args:
        frame: one row per (symbol, timestamp) window.
        prediction_column: the predictions. Defaults to `"prediction"`.
        reference_column: what they should agree with, e.g. the forward
            return. Defaults to `"reference"`.
        symbol_column: the symbol. Defaults to `"symbol"`.
        target_column: the training target, for an `mse` column; `None`
            leaves it out. Defaults to `None`.

    Returns:
        A DataFrame indexed by symbol (sorted) with `n`,
        `directional_accuracy`, `excess_directional_accuracy`, `ic`,
        `rank_ic` (time-series correlations within the symbol; NaN for
        fewer than 3 windows or constant predictions) and, with
        `target_column`, `mse`.
    """
    _require_columns(frame, [prediction_column, reference_column, symbol_column]
                     + ([target_column] if target_column else []))
    rows = {}
    for symbol, part in frame.groupby(symbol_column, sort=True):
        target = part[target_column] if target_column else part[reference_column]
        metrics = regression_metrics(part[prediction_column], target, part[reference_column])
        if not target_column:
            del metrics["mse"]
        rows[symbol] = {"n": len(part), **metrics}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = symbol_column
    return table
