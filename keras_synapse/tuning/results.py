"""The tuning table: every trial's score, interval and validation windows, the selection bias of the best,
and the search-versus-test comparison.
"""

import csv
import json
from pathlib import Path

import numpy as np

from keras_synapse.errors import ConfigError
from keras_synapse.tuning.scoring import OBJECTIVES, SCORE_INTERVALS

# Each trial writes its scores here, in its own trial directory.
TRIAL_REPORT = "synapse_trial.json"


def search_versus_test_line(best, objective, num_trials, run_dir):
    """One line: the best trial's validation score beside the tuned run's test IC and verdict.

    Args:
        best: the best trial's row (see `trial_rows`).
        objective: the objective's name.
        num_trials: the completed trials it was the best of.
        run_dir: the tuned experiment's training run (its `metrics.json`).
    """
    summary = json.loads((Path(run_dir) / "metrics.json").read_text())["summary"]
    ic = summary["ic"]
    return (f"search vs test: best of {num_trials} trials, mean validation {objective} {best['objective']:+.4f} "
            f"(selected, so optimistic); test IC of the tuned run {ic['pooled']:+.4f} "
            f"[95% CI {ic['ci_low']:+.4f}, {ic['ci_high']:+.4f}] on folds the search never saw, "
            f"edge_significant {summary['edge_significant']}")


def trial_rows(oracle, hypermodel, objective):
    """One dict per trial of the oracle, in trial order.

    Args:
        oracle: the search's oracle (its trials' stored metrics).
        hypermodel: the `ExperimentHyperModel`, to show the config values.
        objective: the objective's name.

    Returns:
        A list of dicts with `trial`, `tuner`, `status`, `objective` (the
        mean score, `None` if absent), `folds` (fold scores), `ci` (`(low,
        high)` or `None`), `standard_error` (`None` if absent),
        `n_validation` (`None` if absent), `values` and `message`.
    """
    rows = []
    tuners = getattr(oracle, "trial_tuners", {})
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        metrics = trial.metrics

        def stored(name):
            return metrics.get_last_value(name) if metrics.exists(name) else None

        folds = []
        while metrics.exists(f"fold_{len(folds)}_{objective}"):
            folds.append(metrics.get_last_value(f"fold_{len(folds)}_{objective}"))
        try:
            values = hypermodel.values(trial.hyperparameters.copy())
        except Exception:  # noqa: BLE001  (a trial whose values no longer build still gets its row)
            values = dict(trial.hyperparameters.values)
        low, high, n_validation = stored("score_ci_low"), stored("score_ci_high"), stored("n_validation")
        rows.append({"trial": trial_id, "tuner": tuners.get(trial_id, ""), "status": trial.status,
                     "objective": stored(objective), "folds": folds,
                     "ci": None if low is None or high is None else (low, high),
                     "standard_error": stored("score_standard_error"),
                     "n_validation": None if n_validation is None else int(n_validation), "values": values,
                     "message": (trial.message or "").strip().splitlines()[-1:] or [""]})
    return rows


def best_row(rows, objective):
    """The completed trial with the best finite mean objective, or `None`."""
    completed = completed_rows(rows)
    if not completed:
        return None
    sign = 1 if OBJECTIVES[objective] == "max" else -1
    return max(completed, key=lambda row: sign * row["objective"])


def completed_rows(rows):
    return [row for row in rows if row["status"] == "COMPLETED" and row["objective"] is not None
            and np.isfinite(row["objective"])]


def format_value(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def format_interval(interval, objective):
    """`95% CI [low, high]` of a `score_interval` dict (naming what it is of, if not the score), or `n/a (why)`."""
    if not np.isfinite(interval["standard_error"]):
        return f"95% CI n/a ({interval['note'] or 'no standard error'})"
    label = "95% CI" if interval["of"] == f"mean {objective}" else f"95% CI of {interval['of']}"
    return f"{label} [{interval['low']:+.4f}, {interval['high']:+.4f}]"


def interval_header(objective):
    """The header of the interval column, naming what the interval is of.

    Args:
        objective: the objective's name.

    Returns:
        E.g. `"95% CI of mean val_ic"`; for `val_loss`, `"95% CI of mean val
        MSE"` (see `SCORE_INTERVALS`).
    """
    return f"95% CI of {SCORE_INTERVALS.get(objective, (None, 'mean ' + objective))[1]}"


def format_results(rows, objective):
    """The results table: one line per trial, the best marked with `*`.

    Each line shows the trial's mean score, the 95% interval from its
    folds' bootstrap standard errors (`n/a` where there is none, e.g. a
    classifier's `val_loss`; the trial's `synapse_trial.json` says why), the
    validation windows it was scored on (summed over folds), the fold
    scores and the hyperparameters.

    Args:
        rows: from `trial_rows`.
        objective: the objective's name.

    Returns:
        The table as one string, a header line first.
    """
    best = best_row(rows, objective)
    num_folds = max((len(row["folds"]) for row in rows), default=0)
    ci_header = interval_header(objective)
    ci_width = max(len(ci_header), 20) + 2
    header = (f"  {'trial':<6}{'tuner':<8}{'status':<10}{'mean ' + objective:>16}{ci_header:>{ci_width}}"
              f"{'n_val':>8}" + "".join(f"{'fold ' + str(index):>10}" for index in range(num_folds))
              + "  hyperparameters")
    lines = [header]
    for row in rows:
        mark = "*" if best is not None and row["trial"] == best["trial"] else " "
        score = "n/a" if row["objective"] is None else f"{row['objective']:+.4f}"
        ci = "n/a" if row["ci"] is None else f"[{row['ci'][0]:+.4f}, {row['ci'][1]:+.4f}]"
        n_validation = "n/a" if row["n_validation"] is None else str(row["n_validation"])
        folds = "".join(f"{value:>+10.4f}" for value in row["folds"]) + " " * 10 * (num_folds - len(row["folds"]))
        values = " ".join(f"{key}={format_value(value)}" for key, value in row["values"].items())
        if row["status"] != "COMPLETED" and row["message"][0]:
            values += f"  [{row['message'][0][:120]}]"
        lines.append(f"{mark} {row['trial']:<6}{row['tuner']:<8}{row['status']:<10}{score:>16}{ci:>{ci_width}}"
                     f"{n_validation:>8}{folds}  {values}")
    return "\n".join(lines)


def expected_maximum(num_draws):
    """The expected maximum of `num_draws` independent standard normals (0 for one; ~1.87 for 20).

    Args:
        num_draws: how many draws, >= 1.

    Returns:
        `E[max(Z_1, ..., Z_n)]`, by quadrature of `n x phi(x) Phi(x)^(n-1)`.

    Raises:
        ConfigError: for `num_draws` < 1.
    """
    from scipy import stats

    if num_draws < 1:
        raise ConfigError(f"`num_draws` must be >= 1. Received: {num_draws}")
    grid = np.linspace(-12.0, 12.0, 24001)
    density = num_draws * stats.norm.pdf(grid) * stats.norm.cdf(grid) ** (num_draws - 1)
    return float(np.sum(grid * density) * (grid[1] - grid[0]))


def selection_bias_line(rows, objective):
    """One line: how far the best of the trials is expected to beat the truth by selection alone.

    If every trial were equally good, their mean scores would differ only by
    noise, and the best would lie about `E[max of N normals]` standard
    errors beyond the common truth: an upper bound, since trials scored on
    the same windows have correlated errors (for equicorrelated errors the
    factor shrinks by `sqrt(1 - correlation)`). The typical standard error
    is the median over the completed trials.

    Args:
        rows: from `trial_rows`.
        objective: the objective's name.

    Returns:
        The line, ending with why the tuned run's test verdict is not
        inflated by the selection.
    """
    completed = completed_rows(rows)
    errors = [row["standard_error"] for row in completed
              if row["standard_error"] is not None and np.isfinite(row["standard_error"])]
    untouched = ("The test folds keras_synapse.train reports were never seen by the search, so the tuned run's "
                 "test verdict is not inflated by it.")
    if len(completed) < 2:
        return f"Selection: {len(completed)} completed trial(s), nothing selected. {untouched}"
    if not errors:
        return (f"Selection: the best of {len(completed)} trials looks better than the truth by chance, by an amount "
                f"not sized here (no standard errors; see the trials' {TRIAL_REPORT}). {untouched}")
    factor, typical = expected_maximum(len(completed)), float(np.median(errors))
    of = " of the val MSE" if objective == "val_loss" else ""
    return (f"Selection: if all {len(completed)} trials were equally good, the best mean {objective} would still "
            f"look better than the truth by about {factor:.2f} x {typical:.4f} = {factor * typical:.4f} by chance "
            f"(E[max of {len(completed)} normals] x the median trial SE{of}; less when the trials' errors are "
            f"correlated). {untouched}")


def write_results_csv(path, rows):
    """Writes the table as CSV.

    Args:
        path: the file to write.
        rows: from `trial_rows`. Columns: trial, tuner, status, mean,
            ci_low, ci_high, standard_error (of the mean), n_validation,
            fold_<i>, then one column per searched field; empty where a
            trial has no value.
    """
    num_folds = max((len(row["folds"]) for row in rows), default=0)
    fields = list(dict.fromkeys(key for row in rows for key in row["values"]))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "tuner", "status", "mean", "ci_low", "ci_high", "standard_error", "n_validation"]
                        + [f"fold_{index}" for index in range(num_folds)] + fields)
        for row in rows:
            ci = row["ci"] or (None, None)
            writer.writerow([row["trial"], row["tuner"], row["status"], row["objective"], *ci, row["standard_error"],
                             row["n_validation"]]
                            + (row["folds"] + [None] * num_folds)[:num_folds]
                            + [format_value(row["values"].get(field, "")) for field in fields])


# CSCV's blocks of validation dates: C(16, 8) = 12,870 in-sample choices, each block at least this many dates.
PBO_BLOCKS, MIN_DATES_PER_BLOCK = 16, 5


def overfitting(project_dir, rows, objective):
    """The probability of backtest overfitting of the search's pick, from each completed trial's per-date scores.

    Args:
        project_dir: the keras-tuner project (each trial's `TRIAL_REPORT`
            holds its folds' `date_scores`).
        rows: from `trial_rows`.
        objective: the objective's name.

    Returns:
        `(line, result)`: the printed line, and the
        `probability_of_backtest_overfitting` dict (without its logits) or
        `None` when it cannot be computed (the line says why).
    """
    import pandas as pd

    from keras_synapse.evaluation.overfitting import probability_of_backtest_overfitting, trial_matrix

    scores = {}
    for row in completed_rows(rows):
        report = Path(project_dir) / f"trial_{row['trial']}" / TRIAL_REPORT
        if not report.is_file():
            continue
        dated = {}
        for fold in json.loads(report.read_text()).get("folds", []):
            dated.update(fold.get("date_scores") or {})
        if dated:
            scores[row["trial"]] = pd.Series(dated, dtype=np.float64).rename(index=pd.Timestamp)
    if len(scores) < 2:
        return (f"Probability of backtest overfitting: not computed ({len(scores)} trial(s) with per-date "
                f"{objective} scores; it needs two)."), None
    matrix, dates, trials = trial_matrix(scores)
    blocks = min(PBO_BLOCKS, 2 * (len(dates) // (2 * MIN_DATES_PER_BLOCK)))
    if blocks < 2:
        return f"Probability of backtest overfitting: not computed ({len(dates)} shared validation dates).", None
    result = probability_of_backtest_overfitting(matrix, blocks)
    del result["logits"]
    line = (f"Probability of backtest overfitting (CSCV, Bailey et al. 2014): {result['pbo']:.0%} of "
            f"{result['num_combinations']} half-splits of {len(dates)} validation dates into {blocks} blocks rank the "
            f"in-sample best of {len(trials)} trials at or below the median out of sample (about 50% when no trial "
            "is better than another; near 0% when the search found a real difference).")
    return line, result
