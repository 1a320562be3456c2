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

from keras_synapse.evaluation.intervals import MIN_CROSS_SECTION, METRIC_NAMES, TimestampSums, bootstrap_metrics


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


# The statistics a run's verdict may read, and the rule that picks one before any prediction exists.
PRIMARY_STATISTICS = ("per_date_rank_ic", "within_fold_rank_ic")
PRIMARY_LABELS = {"per_date_rank_ic": "per-date rank IC", "within_fold_rank_ic": "within-fold rank IC"}


def choose_primary_statistic(requested, test_frame, ranks_symbols=False):
    """The statistic the verdict reads, and why: decided from the run's shape and strategy, never its numbers.

    A run that ranks symbols against each other (a long-short book of the
    top and bottom scores, or a label normalized across each date's symbols)
    on a panel (at least `MIN_CROSS_SECTION` symbols on the median test date)
    is judged by the per-date rank IC, as Qlib and alphalens report it: each
    date's symbols ranked against each other, which a date's common level
    cannot move. Otherwise (the default strategy holds each symbol by the
    sign of its own score, a time-series strategy; or a single symbol) it is
    judged by the within-fold rank IC: scores and outcomes ranked within each
    test fold, so a fold's own prediction level cannot pass for skill, and
    timing counts as the strategy's returns do. Both are rank-based: a crash
    or a split cannot decide them. An experiment may name either instead.

    Args:
        requested: the config's `primary_statistic`: `"auto"` or one of
            `PRIMARY_STATISTICS`.
        test_frame: the test windows (`timestamp` column); only their
            count per date is read.
        ranks_symbols: whether the strategy or the label ranks symbols
            against each other (`top_k`, `label_cross_section`). Defaults
            to `False`.

    Returns:
        `(statistic, reason)`.
    """
    symbols_per_date = float(test_frame.groupby("timestamp").size().median())
    if requested != "auto":
        return requested, f"set by the experiment (primary_statistic={requested})"
    if ranks_symbols and symbols_per_date >= MIN_CROSS_SECTION:
        return "per_date_rank_ic", (f"a cross-sectional run on a panel: {symbols_per_date:.0f} symbols on the median "
                                    "test date, ranked against each other each date")
    if ranks_symbols:
        return "within_fold_rank_ic", (f"{symbols_per_date:.0f} symbol(s) on the median test date, fewer than "
                                       f"{MIN_CROSS_SECTION} to rank each date, so scores are ranked within each fold")
    return "within_fold_rank_ic", ("a time-series strategy, each symbol held by the sign of its own score: scores "
                                   "and outcomes ranked within each test fold")


def summarize(fold_metrics, pooled_frame, prediction_column, bootstrap, primary=("per_date_rank_ic", "")):
    """Fold-averaged metrics with pooled values and bootstrap intervals, and the primary statistic's verdict.

    Args:
        fold_metrics: one metrics dict per fold (`keras_synapse.evaluation.run_metrics.fold_metrics`).
        pooled_frame: all folds' test predictions (see `metric_intervals`).
        prediction_column: the column holding the predictions.
        bootstrap: a `keras_synapse.evaluation.intervals.BootstrapResult` holding
            `prediction_column`'s resamples.
        primary: `(statistic, reason)` from `choose_primary_statistic`.
            Defaults to the per-date rank IC.

    Returns:
        A dict metric -> `{"mean", "pooled", "ci_low", "ci_high"}`, plus
        `primary` (the statistic, why it was chosen, its value, interval,
        minimum detectable value and, per date, the ICIR), `edge_significant`
        (true only when the primary statistic's interval lies entirely above
        zero) and `minimum_detectable_ic` (the smallest true value of the
        primary statistic whose interval would lie above zero with 80%
        probability).
    """
    pooled = bootstrap.point[prediction_column]
    # Only the metrics the folds report (a classifier's folds carry no MSE).
    names = [name for name in METRIC_NAMES if name in fold_metrics[0]]
    summary = {}
    for name in names:
        values = [fold[name] for fold in fold_metrics]
        low, high = bootstrap.interval(prediction_column, name)
        summary[name] = {"mean": float(np.nanmean(values)) if np.isfinite(values).any() else np.nan,
                         "pooled": pooled[name], "ci_low": low, "ci_high": high}
    statistic, reason = primary
    item = summary[statistic]
    summary["primary"] = {"statistic": statistic, "label": PRIMARY_LABELS[statistic], "reason": reason,
                          "value": item["pooled"], "ci_low": item["ci_low"], "ci_high": item["ci_high"],
                          "minimum_detectable": bootstrap.minimum_detectable(prediction_column, statistic,
                                                                             power=DETECTION_POWER)}
    if statistic == "per_date_rank_ic":
        summary["primary"].update(per_date_information_ratio(pooled_frame, prediction_column))
    # The primary statistic alone decides: for a weak Gaussian edge, the sign
    # agreement carries only 2/pi of the IC's information, so also demanding
    # its interval above zero would need an edge ~1.6 times larger to be seen.
    summary["edge_significant"] = bool(item["ci_low"] > 0)
    summary["minimum_detectable_ic"] = summary["primary"]["minimum_detectable"]
    return summary


def per_date_information_ratio(frame, prediction_column):
    """The per-date rank IC's ICIR (mean over its standard deviation) and the number of dates it counts."""
    values = TimestampSums(frame, [prediction_column]).per_date_rank_ic(prediction_column)
    values = values[np.isfinite(values)]
    deviation = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
    return {"icir": float(np.mean(values) / deviation) if deviation and np.isfinite(deviation) else np.nan,
            "num_dates": int(len(values))}


# The power at which `minimum_detectable_ic` is quoted.
DETECTION_POWER = 0.8
# The family-wise level of every scan over several comparisons (Bonferroni: each at 1 - 0.05 / k).
FAMILY_LEVEL = 0.95


def corrected_level(num_comparisons, family_level=FAMILY_LEVEL):
    """Each interval's coverage so that `num_comparisons` of them hold together at `family_level` (Bonferroni)."""
    return 1 - (1 - family_level) / max(int(num_comparisons), 1)


def versus_baselines(bootstrap, prediction_column, baseline_columns, statistic="per_date_rank_ic"):
    """The model's primary statistic minus each baseline's on the same windows, with paired intervals.

    Both are computed on the same bootstrap draws, so what the two share
    (the market's path, the test period) cancels in the difference. The
    comparisons are a scan, so each interval is at the Bonferroni level
    that holds 95% over all of them.

    Returns:
        A dict baseline name -> `{"statistic", "difference", "ic_difference"
        (the same number, kept for older readers), "ci_low", "ci_high",
        "level", "beats"}`; `beats` is true when the whole interval lies
        above zero. Baselines whose statistic is undefined (a constant) are
        left out.
    """
    compared = [column for column in baseline_columns if np.isfinite(bootstrap.point[column][statistic])]
    level = corrected_level(len(compared))
    comparisons = {}
    for column in compared:
        difference = bootstrap.difference(prediction_column, column, statistic, level=level)
        comparisons[column.removeprefix("baseline_")] = {
            "statistic": statistic, "difference": difference["difference"],
            "ic_difference": difference["difference"], "ci_low": difference["ci_low"],
            "ci_high": difference["ci_high"], "level": level, "beats": bool(difference["ci_low"] > 0)}
    return comparisons


def baselines_with_an_edge(bootstrap, baseline_columns, statistic="per_date_rank_ic"):
    """The baselines whose primary statistic's interval lies above zero, each at the scan's Bonferroni level.

    Returns:
        A dict baseline name -> `{"value", "ci_low", "ci_high", "level"}`
        for the baselines with an edge.
    """
    compared = [column for column in baseline_columns if np.isfinite(bootstrap.point[column][statistic])]
    level = corrected_level(len(compared))
    found = {}
    for column in compared:
        low, high = bootstrap.interval(column, statistic, level=level)
        if low > 0:
            found[column.removeprefix("baseline_")] = {"value": bootstrap.point[column][statistic], "ci_low": low,
                                                       "ci_high": high, "level": level}
    return found


def best_baseline(baselines, statistic="per_date_rank_ic"):
    """The name of the baseline with the highest pooled primary statistic, or `None`."""
    scored = {name: result["summary"][statistic]["pooled"] for name, result in baselines.items()
              if "summary" in result and statistic in result["summary"]
              and np.isfinite(result["summary"][statistic]["pooled"])}
    return max(scored, key=scored.get) if scored else None


# The models of each baseline's family: a baseline's edge is then the model's own kind of edge, not one
# "this model missed" (the LightGBM baseline is trees on the window's summaries, as `model=lightgbm` is).
BASELINE_FAMILIES = {"lightgbm": ("lightgbm", "xgboost", "catboost", "random_forest")}


def edge_verdict(summary, versus=None, baselines=None, with_edge=None, model=""):
    """A sentence saying whether the model has a detectable edge, against chance and the best baseline.

    Args:
        summary: the model's `summarize` output.
        versus: `versus_baselines` output. Defaults to `None`.
        baselines: baseline name -> `{"summary": ...}` (to name the best
            one). Defaults to `None`.
        with_edge: `baselines_with_an_edge` output. Defaults to `None`.
        model: the config's `model`, to name a baseline of the same family
            as such. Defaults to `""`.
    """
    primary = summary["primary"]
    label = primary["label"]
    excess = summary["excess_directional_accuracy"]
    ic = summary["ic"]
    interval = (f"{label} {primary['value']:+.4f} [95% CI {primary['ci_low']:+.4f}, {primary['ci_high']:+.4f}], "
                f"the primary statistic ({primary['reason']})")
    secondary = (f"Secondary, not the verdict: pooled IC {ic['pooled']:+.4f} [{ic['ci_low']:+.4f}, "
                 f"{ic['ci_high']:+.4f}], directional accuracy above chance {excess['pooled']:+.4f} "
                 f"[{excess['ci_low']:+.4f}, {excess['ci_high']:+.4f}].")
    detectable = (f"a {label} of {summary['minimum_detectable_ic']:.4f} or more would be detected with 80% power")
    if not summary["edge_significant"]:
        sentence = f"No detectable edge: the {label}'s interval includes zero or less ({interval}); {detectable}."
        if with_edge:
            names = []
            for name, item in with_edge.items():
                same = " (the same family as this model)" if model in BASELINE_FAMILIES.get(name, ()) else ""
                names.append(f"{name}{same} {item['value']:+.4f} [{item['ci_low']:+.4f}, {item['ci_high']:+.4f}]")
            level = next(iter(with_edge.values()))["level"]
            missed = [name for name in with_edge if model not in BASELINE_FAMILIES.get(name, ())]
            sentence += (f" But {'these baselines have' if len(names) > 1 else 'this baseline has'} one "
                         f"({'; '.join(names)}; {level:.1%} intervals: 95% over the scan of every baseline)"
                         + (": the data hold an edge this model missed." if missed else
                            ": the same kind of model found it on these windows, so this run's own fit fell short."))
        return sentence + " " + secondary
    sentence = f"Detectable edge: the {label}'s interval lies above zero ({interval})"
    best = best_baseline(baselines or {}, primary["statistic"])
    if best is None or not versus or best not in versus:
        return sentence + ". " + secondary
    comparison = versus[best]
    difference = (f"difference {comparison['difference']:+.4f} [{comparison['level']:.1%} CI "
                  f"{comparison['ci_low']:+.4f}, {comparison['ci_high']:+.4f}]")
    if comparison["beats"]:
        return sentence + f", and better than the best baseline, {best} ({difference}). " + secondary
    return sentence + f", but no better than {best} ({difference}). " + secondary


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
