"""Honest evaluation: test-fold metrics, baselines, and block-bootstrap intervals.

Every metric is computed on test-fold predictions only, next to the same metric
for simple baselines on the same windows, with a 95% confidence interval from a
block bootstrap over time (blocks of whole timestamps, at least one label
horizon long, so overlapping labels and volatility clustering are resampled
together instead of being treated as independent draws).
"""

import numpy as np
from scipy import stats

METRIC_NAMES = ("directional_accuracy", "excess_directional_accuracy", "ic", "rank_ic", "mse")


def _correlation(x, y):
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return np.nan
    return float(np.corrcoef(x, y)[0, 1])


def regression_metrics(prediction, target, forward_return):
    """Metrics of one set of predictions.

    Args:
        prediction: model outputs, one per window.
        target: the training target of each window (for `mse`).
        forward_return: the realized forward log return of each window.

    Returns:
        A dict with `directional_accuracy` (sign of prediction vs sign of the
        realized return, zero returns excluded), `excess_directional_accuracy`
        (minus the accuracy a random guesser with the same up/down rates would
        get: a model that always says "up" in a rising market gains nothing),
        `ic` (Pearson) and `rank_ic` (Spearman) against the realized return,
        and `mse` against the target. Undefined values (e.g. the IC of a
        constant prediction) are NaN.
    """
    prediction = np.asarray(prediction, dtype=np.float64)
    forward_return = np.asarray(forward_return, dtype=np.float64)
    moved = forward_return != 0
    predicted_up = prediction[moved] > 0
    realized_up = forward_return[moved] > 0
    accuracy = float(np.mean(predicted_up == realized_up)) if moved.any() else np.nan
    rate_predicted, rate_realized = np.mean(predicted_up), np.mean(realized_up)
    chance = rate_predicted * rate_realized + (1 - rate_predicted) * (1 - rate_realized)
    return {
        "directional_accuracy": accuracy,
        "excess_directional_accuracy": accuracy - chance,
        "ic": _correlation(prediction, forward_return),
        "rank_ic": _correlation(stats.rankdata(prediction), stats.rankdata(forward_return)),
        "mse": float(np.mean((prediction - np.asarray(target, dtype=np.float64)) ** 2)),
    }


def block_bootstrap_intervals(frame, prediction_column, block_length, num_resamples=1000, seed=0, level=0.95):
    """Confidence intervals of `regression_metrics` by a moving-block bootstrap over time.

    Whole timestamps are resampled (all symbols of a date stay together, which
    keeps the cross-sectional correlation), in runs of `block_length`
    consecutive timestamps drawn with replacement.

    Args:
        frame: test predictions with columns `timestamp`, `target`,
            `forward_return` and `prediction_column`.
        prediction_column: the column holding the predictions.
        block_length: consecutive timestamps per block (at least the number
            of window ends one label horizon spans).
        num_resamples: bootstrap resamples. Defaults to `1000`.
        seed: the resampling seed. Defaults to `0`.
        level: the interval's coverage. Defaults to `0.95`.

    Returns:
        A dict metric -> `(low, high)`.
    """
    timestamps, codes = np.unique(frame["timestamp"].to_numpy(), return_inverse=True)
    order = np.argsort(codes, kind="stable")
    boundaries = np.searchsorted(codes[order], np.arange(len(timestamps) + 1))
    columns = [frame[name].to_numpy(dtype=np.float64) for name in (prediction_column, "target", "forward_return")]
    num_timestamps = len(timestamps)
    block_length = max(1, min(block_length, num_timestamps))
    num_blocks = int(np.ceil(num_timestamps / block_length))
    rng = np.random.default_rng(seed)
    samples = {name: [] for name in METRIC_NAMES}
    for _ in range(num_resamples):
        starts = rng.integers(0, num_timestamps - block_length + 1, size=num_blocks)
        chosen = (starts[:, None] + np.arange(block_length)).ravel()[:num_timestamps]
        rows = np.concatenate([order[boundaries[index] : boundaries[index + 1]] for index in chosen])
        metrics = regression_metrics(*(column[rows] for column in columns))
        for name in METRIC_NAMES:
            samples[name].append(metrics[name])
    tail = (1 - level) / 2 * 100
    return {
        name: tuple(float(bound) for bound in np.nanpercentile(values, [tail, 100 - tail]))
        if np.isfinite(values).any()
        else (np.nan, np.nan)
        for name, values in samples.items()
    }


def summarize(fold_metrics, pooled_frame, prediction_column, block_length, seed=0):
    """Fold-averaged metrics with pooled values and bootstrap intervals.

    Args:
        fold_metrics: one `regression_metrics` dict per fold.
        pooled_frame: all folds' test predictions (see
            `block_bootstrap_intervals`).
        prediction_column: the column holding the predictions.
        block_length: bootstrap block length in timestamps.
        seed: the bootstrap seed. Defaults to `0`.

    Returns:
        A dict metric -> `{"mean", "pooled", "ci_low", "ci_high"}` plus
        `edge_significant`: true only when both the excess directional
        accuracy and the IC have 95% intervals entirely above zero.
    """
    pooled = regression_metrics(
        pooled_frame[prediction_column], pooled_frame["target"], pooled_frame["forward_return"]
    )
    intervals = block_bootstrap_intervals(pooled_frame, prediction_column, block_length, seed=seed)
    summary = {
        name: {
            "mean": float(np.nanmean([fold[name] for fold in fold_metrics]))
            if np.isfinite([fold[name] for fold in fold_metrics]).any()
            else np.nan,
            "pooled": pooled[name],
            "ci_low": intervals[name][0],
            "ci_high": intervals[name][1],
        }
        for name in METRIC_NAMES
    }
    summary["edge_significant"] = bool(
        summary["excess_directional_accuracy"]["ci_low"] > 0 and summary["ic"]["ci_low"] > 0
    )
    return summary


def edge_verdict(summary):
    """A sentence saying whether the model has a detectable edge, and why."""
    excess = summary["excess_directional_accuracy"]
    ic = summary["ic"]
    interval = (
        f"IC {ic['pooled']:+.4f} [95% CI {ic['ci_low']:+.4f}, {ic['ci_high']:+.4f}], "
        f"directional accuracy above chance {excess['pooled']:+.4f} "
        f"[{excess['ci_low']:+.4f}, {excess['ci_high']:+.4f}]"
    )
    if summary["edge_significant"]:
        return f"Detectable edge: both intervals lie above zero ({interval})."
    return f"No detectable edge: the intervals include zero or less ({interval})."
