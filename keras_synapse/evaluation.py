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
            `reference` (what the prediction should agree with: the forward
            return, or a centred event outcome) and `prediction_column`.
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
    columns = [frame[name].to_numpy(dtype=np.float64) for name in (prediction_column, "target", "reference")]
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


def summarize(fold_metrics, pooled_frame, prediction_column, block_length, seed=0, num_resamples=1000):
    """Fold-averaged metrics with pooled values and bootstrap intervals.

    Args:
        fold_metrics: one `regression_metrics` dict per fold.
        pooled_frame: all folds' test predictions (see
            `block_bootstrap_intervals`).
        prediction_column: the column holding the predictions.
        block_length: bootstrap block length in timestamps.
        seed: the bootstrap seed. Defaults to `0`.
        num_resamples: bootstrap resamples. Defaults to `1000`.

    Returns:
        A dict metric -> `{"mean", "pooled", "ci_low", "ci_high"}` plus
        `edge_significant`: true only when both the excess directional
        accuracy and the IC have 95% intervals entirely above zero.
    """
    pooled = regression_metrics(pooled_frame[prediction_column], pooled_frame["target"], pooled_frame["reference"])
    intervals = block_bootstrap_intervals(pooled_frame, prediction_column, block_length, num_resamples, seed)
    # Only the metrics the folds report (a classifier's folds carry no MSE).
    names = [name for name in METRIC_NAMES if name in fold_metrics[0]]
    summary = {
        name: {
            "mean": float(np.nanmean([fold[name] for fold in fold_metrics]))
            if np.isfinite([fold[name] for fold in fold_metrics]).any()
            else np.nan,
            "pooled": pooled[name],
            "ci_low": intervals[name][0],
            "ci_high": intervals[name][1],
        }
        for name in names
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


def classification_metrics(probabilities, labels, class_names):
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (seed 001's report).

    Args:
        probabilities: `[samples, classes]` predicted class probabilities
            (for a binary sigmoid head, `[samples, 1]` or `[samples]` of P(1)).
        labels: `[samples]` integer class labels.
        class_names: names of the classes, in label order.

    Returns:
        A dict with `accuracy`, `f1` (macro), `balanced_accuracy`,
        `per_class` (name -> precision, recall, f1, support, predicted share)
        and `confusion_matrix` (rows: true class, columns: predicted).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 1 or probabilities.shape[1] == 1:
        positive = probabilities.reshape(-1)
        probabilities = np.stack([1 - positive, positive], axis=1)
    labels = np.asarray(labels).astype(int)
    predicted = probabilities.argmax(axis=1)
    num_classes = len(class_names)
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = {}
    for index, name in enumerate(class_names):
        true_positive = confusion[index, index]
        precision = true_positive / confusion[:, index].sum() if confusion[:, index].sum() else 0.0
        recall = true_positive / confusion[index].sum() if confusion[index].sum() else np.nan
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                           "support": int(confusion[index].sum()),
                           "predicted_share": float(confusion[:, index].sum() / max(len(labels), 1))}
    recalls = [item["recall"] for item in per_class.values() if np.isfinite(item["recall"])]
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "f1": float(np.mean([item["f1"] for item in per_class.values()])),
        "balanced_accuracy": float(np.mean(recalls)),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }
