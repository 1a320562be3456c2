"""Permutation feature importance on the test folds, with paired intervals.

For each input feature, its whole window (all `sequence_length` bars of it)
is swapped between test windows by one random permutation, the fold's model
scores the permuted windows, and the importance is the drop in pooled IC:
`IC(model) - IC(model with that feature permuted)`. A feature the model
does not use drops nothing; one it relies on drops the IC towards zero.

The interval is the paired stationary-bootstrap interval of that difference
(the same draws for both columns, as for the baselines), so a drop whose
interval clears zero is a feature the model measurably uses on data it never
saw. It says what the model uses, not what is predictive: a model with no
edge can rely on a feature and lose nothing by its permutation.
"""

import numpy as np

PERMUTED_PREFIX = "permuted:"


def permuted_scores(score, inputs, input_names, seed=0):
    """The model's scores with each feature permuted across windows, one feature at a time.

    Args:
        score: a callable dict of input arrays -> scores `[windows]`.
        inputs: the test windows' inputs, `{"sequence": [N, L, F][, "static": [N, S]]}`.
        input_names: dict input name -> its feature names (the last axis).
        seed: the permutation's seed. Defaults to `0`.

    Returns:
        A dict `"permuted:<feature>"` -> scores (static features are named
        `"static:<feature>"`).
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(inputs["sequence"]))
    scores = {}
    for input_name, names in input_names.items():
        for index, feature in enumerate(names):
            permuted = dict(inputs)
            values = inputs[input_name].copy()
            values[..., index] = values[order][..., index]
            permuted[input_name] = values
            label = feature if input_name == "sequence" else f"{input_name}:{feature}"
            scores[f"{PERMUTED_PREFIX}{label}"] = np.asarray(score(permuted), dtype=np.float64)
    return scores


def importance_of_run(test_predictions, permuted, horizon, num_resamples, seed, statistic="ic"):
    """`feature_importance` of a run's pooled test predictions and their permuted scores (aligned rows).

    One bootstrap for the model's column and every permuted one, with blocks of at least one label horizon.
    `statistic` is the one whose drop is measured: the run's primary statistic. Defaults to `"ic"`.
    """
    from keras_synapse.evaluation.intervals import bootstrap_metrics

    frame = test_predictions.assign(**permuted)
    bootstrap = bootstrap_metrics(frame, ["prediction", *permuted], min_block_length=horizon,
                                  num_resamples=num_resamples, seed=seed)
    return feature_importance(bootstrap, "prediction", list(permuted), statistic)


def feature_importance(bootstrap, prediction_column, permuted_columns, statistic="ic"):
    """Each feature's drop in `statistic` with its paired interval, from a `bootstrap_metrics` result holding both.

    The features are a scan: each interval is at the Bonferroni level that
    holds 95% over all of them, so "used" is not one feature in twenty
    clearing 95% by chance.

    Returns:
        A dict feature -> `{"ic_drop" (the drop, in `statistic`), "ci_low",
        "ci_high", "level", "statistic", "used", "hurts"}`, largest drop
        first; `used` is true when the interval lies above zero, `hurts`
        when it lies below (the model relies on the feature in a way that
        loses on data it never saw: the statistic rises when it is
        scrambled).
    """
    from keras_synapse.evaluation.summary import corrected_level

    level = corrected_level(len(permuted_columns))
    importance = {}
    for column in permuted_columns:
        difference = bootstrap.difference(prediction_column, column, statistic, level=level)
        importance[column.removeprefix(PERMUTED_PREFIX)] = {
            "ic_drop": float(difference["difference"]), "ci_low": float(difference["ci_low"]),
            "ci_high": float(difference["ci_high"]), "level": level, "statistic": statistic,
            "used": bool(difference["ci_low"] > 0), "hurts": bool(difference["ci_high"] < 0)}
    return dict(sorted(importance.items(), key=lambda item: -item[1]["ic_drop"]))


def format_importance(importance):
    """A plain-text table of `feature_importance`."""
    first = next(iter(importance.values()))
    from keras_synapse.evaluation.summary import PRIMARY_LABELS

    label = PRIMARY_LABELS.get(first.get("statistic", "ic"), "IC")
    level = first.get("level", 0.95)
    lines = [f"{f'feature importance (test {label} drop when permuted)':<56}{'drop':>9}   "
             f"{level:.1%} CI (95% over the {len(importance)} features)"]
    for name, item in importance.items():
        note = "  used" if item["used"] else "  hurts (rises when scrambled)" if item.get("hurts") else ""
        lines.append(f"{name:<56}{item['ic_drop']:>+9.4f}   [{item['ci_low']:+.4f}, {item['ci_high']:+.4f}]{note}")
    used = sum(item["used"] for item in importance.values())
    hurts = sum(bool(item.get("hurts")) for item in importance.values())
    lines.append(f"{used} of {len(importance)} features measurably used (interval above zero), {hurts} hurt "
                 "(interval below zero), each interval corrected for the scan over every feature")
    return "\n".join(lines)
