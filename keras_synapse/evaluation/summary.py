"""Honest evaluation: test-fold metrics, baselines, and block-bootstrap intervals.

Every metric is computed on test-fold predictions only, next to the same metric
for simple baselines on the same windows, with a 95% confidence interval from a
stationary bootstrap over time (blocks of whole timestamps, of a length chosen
from the data and at least one label horizon, so overlapping labels and
volatility clustering are resampled together instead of being treated as
independent draws; see `keras_synapse.evaluation.intervals`). The verdict compares the
model with chance and, on the same bootstrap draws, with the best baseline, and
says how large an edge the run could have seen.
"""

import numpy as np
from scipy import stats

from keras_synapse.evaluation.intervals import METRIC_NAMES, bootstrap_metrics


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


def metric_intervals(frame, prediction_column, min_block_length=1, num_resamples=1000, seed=0, level=0.95):
    """Confidence intervals of `regression_metrics` by a stationary bootstrap over timestamps.

    Whole timestamps are resampled (all symbols of a date stay together), in
    blocks of consecutive timestamps whose mean length is chosen from the
    data (Politis-White; see `keras_synapse.evaluation.intervals`) and is at least
    `min_block_length`.

    Args:
        frame: test predictions with columns `timestamp`, `target`,
            `reference` (what the prediction should agree with: the forward
            return, or a centred event outcome) and `prediction_column`.
        prediction_column: the column holding the predictions.
        min_block_length: the shortest mean block, in timestamps (one label
            horizon). Defaults to `1`.
        num_resamples: bootstrap resamples. Defaults to `1000`.
        seed: the resampling seed. Defaults to `0`.
        level: the interval's coverage. Defaults to `0.95`.

    Returns:
        A dict metric -> `(low, high)`.
    """
    result = bootstrap_metrics(frame, [prediction_column], min_block_length=min_block_length,
                               num_resamples=num_resamples, seed=seed, level=level)
    return {name: result.interval(prediction_column, name) for name in METRIC_NAMES}


def summarize(fold_metrics, pooled_frame, prediction_column, bootstrap):
    """Fold-averaged metrics with pooled values and bootstrap intervals.

    Args:
        fold_metrics: one `regression_metrics` dict per fold.
        pooled_frame: all folds' test predictions (see `metric_intervals`).
        prediction_column: the column holding the predictions.
        bootstrap: a `keras_synapse.evaluation.intervals.BootstrapResult` holding
            `prediction_column`'s resamples.

    Returns:
        A dict metric -> `{"mean", "pooled", "ci_low", "ci_high"}`, plus
        `edge_significant` (true only when the IC's interval lies entirely
        above zero) and `minimum_detectable_ic` (the smallest true IC whose
        interval would lie above zero with 80% probability).
    """
    pooled = regression_metrics(pooled_frame[prediction_column], pooled_frame["target"], pooled_frame["reference"])
    # Only the metrics the folds report (a classifier's folds carry no MSE).
    names = [name for name in METRIC_NAMES if name in fold_metrics[0]]
    summary = {}
    for name in names:
        values = [fold[name] for fold in fold_metrics]
        low, high = bootstrap.interval(prediction_column, name)
        summary[name] = {"mean": float(np.nanmean(values)) if np.isfinite(values).any() else np.nan,
                         "pooled": pooled[name], "ci_low": low, "ci_high": high}
    # The IC alone decides: for a weak Gaussian edge, the sign agreement
    # carries only 2/pi of the IC's information, so also demanding its
    # interval above zero would need an edge ~1.6 times larger to be seen.
    summary["edge_significant"] = bool(summary["ic"]["ci_low"] > 0)
    summary["minimum_detectable_ic"] = bootstrap.minimum_detectable(prediction_column, "ic", power=DETECTION_POWER)
    return summary


# The power at which `minimum_detectable_ic` is quoted.
DETECTION_POWER = 0.8


def versus_baselines(bootstrap, prediction_column, baseline_columns):
    """The model's IC minus each baseline's on the same windows, with paired intervals.

    Both are computed on the same bootstrap draws, so what the two share
    (the market's path, the test period) cancels in the difference.

    Returns:
        A dict baseline name -> `{"ic_difference", "ci_low", "ci_high",
        "beats"}`; `beats` is true when the whole interval lies above zero.
        Baselines whose IC is undefined (a constant) are left out.
    """
    comparisons = {}
    for column in baseline_columns:
        if not np.isfinite(bootstrap.point[column]["ic"]):
            continue
        difference = bootstrap.difference(prediction_column, column, "ic")
        comparisons[column.removeprefix("baseline_")] = {
            "ic_difference": difference["difference"], "ci_low": difference["ci_low"],
            "ci_high": difference["ci_high"], "beats": bool(difference["ci_low"] > 0)}
    return comparisons


def best_baseline(baselines):
    """The name of the baseline with the highest pooled IC, or `None` (baselines: name -> `{"summary"}`)."""
    scored = {name: result["summary"]["ic"]["pooled"] for name, result in baselines.items()
              if "summary" in result and np.isfinite(result["summary"]["ic"]["pooled"])}
    return max(scored, key=scored.get) if scored else None


def edge_verdict(summary, versus=None, baselines=None):
    """A sentence saying whether the model has a detectable edge, against chance and the best baseline.

    Args:
        summary: the model's `summarize` output.
        versus: `versus_baselines` output. Defaults to `None`.
        baselines: baseline name -> `{"summary": ...}` (to name the best one
            and any that has an edge of its own). Defaults to `None`.
    """
    ic = summary["ic"]
    excess = summary["excess_directional_accuracy"]
    interval = (f"IC {ic['pooled']:+.4f} [95% CI {ic['ci_low']:+.4f}, {ic['ci_high']:+.4f}], "
                f"directional accuracy above chance {excess['pooled']:+.4f} "
                f"[{excess['ci_low']:+.4f}, {excess['ci_high']:+.4f}]")
    detectable = f"an IC of {summary['minimum_detectable_ic']:.4f} or more would be detected with 80% power"
    best = best_baseline(baselines or {})
    if not summary["edge_significant"]:
        sentence = f"No detectable edge: the IC's interval includes zero or less ({interval}); {detectable}."
        with_edge = [name for name, result in (baselines or {}).items()
                     if "summary" in result and result["summary"].get("edge_significant")]
        if with_edge:
            sentence += f" But the {', '.join(with_edge)} baseline{'s' if len(with_edge) > 1 else ''} " \
                        f"{'have' if len(with_edge) > 1 else 'has'} one: the data hold an edge this model missed."
        return sentence
    sentence = f"Detectable edge: the IC's interval lies above zero ({interval})"
    if best is None or not versus or best not in versus:
        return sentence + "."
    comparison = versus[best]
    difference = (f"IC difference {comparison['ic_difference']:+.4f} [95% CI {comparison['ci_low']:+.4f}, "
                  f"{comparison['ci_high']:+.4f}]")
    if comparison["beats"]:
        return sentence + f", and better than the best baseline, {best} ({difference})."
    return sentence + f", but no better than {best} ({difference})."


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
