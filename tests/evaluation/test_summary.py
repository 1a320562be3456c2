"""Metrics by hand; intervals that cover the truth; an edge only when there is one."""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.evaluation.summary import (
    classification_metrics,
    edge_verdict,
    metric_intervals,
    regression_metrics,
    summarize,
    versus_baselines,
)
from keras_synapse.evaluation.intervals import bootstrap_metrics


def test_regression_metrics_by_hand():
    prediction = np.array([0.5, -0.2, 0.1, 0.3])
    realized = np.array([0.1, -0.1, -0.2, 0.0])
    metrics = regression_metrics(prediction, realized * 2, realized)
    # Zero returns are excluded: 2 of 3 signs right.
    assert metrics["directional_accuracy"] == pytest.approx(2 / 3)
    # Chance with 2/3 predicted up and 1/3 realized up: 2/3*1/3 + 1/3*2/3 = 4/9.
    assert metrics["excess_directional_accuracy"] == pytest.approx(2 / 3 - 4 / 9)
    assert metrics["ic"] == pytest.approx(np.corrcoef(prediction, realized)[0, 1])
    assert metrics["mse"] == pytest.approx(np.mean((prediction - realized * 2) ** 2))


def test_always_up_has_no_excess_accuracy_and_no_ic():
    realized = np.random.default_rng(0).normal(0.001, 0.01, 500)
    metrics = regression_metrics(np.ones(500), realized, realized)
    assert metrics["excess_directional_accuracy"] == pytest.approx(0.0)
    assert np.isnan(metrics["ic"])


def test_classification_report_by_hand():
    labels = np.array([0, 0, 1, 2, 2, 2])
    probabilities = np.eye(3)[[0, 2, 2, 2, 2, 0]]
    metrics = classification_metrics(probabilities, labels, ["DOWN", "FLAT", "UP"])
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["confusion_matrix"] == [[1, 0, 1], [0, 0, 1], [1, 0, 2]]
    assert metrics["per_class"]["UP"]["precision"] == pytest.approx(2 / 4)
    assert metrics["per_class"]["FLAT"]["predicted_share"] == 0.0  # seed 001's never-predicted class shows


def prediction_frame(signal_strength, seed, num_dates=400, num_symbols=10):
    rng = np.random.default_rng(seed)
    dates = np.repeat(pd.date_range("2020-01-01", periods=num_dates, freq="B", tz="UTC"), num_symbols)
    prediction = rng.standard_normal(len(dates))
    realized = signal_strength * prediction + rng.standard_normal(len(dates))
    return pd.DataFrame({"timestamp": dates, "prediction": prediction, "target": realized, "reference": realized})


def _fold_metrics(frame, bounds=(1300, 2700)):
    import types

    from keras_synapse.evaluation.run_metrics import fold_metrics

    parts = (frame.iloc[:bounds[0]], frame.iloc[bounds[0]:bounds[1]], frame.iloc[bounds[1]:])
    return [fold_metrics(part, types.SimpleNamespace(kind="regression")) for part in parts]


def test_edge_is_significant_with_a_real_signal_and_not_with_noise():
    strong = prediction_frame(0.3, seed=1)
    noise = prediction_frame(0.0, seed=2)
    for frame, expected in ((strong, True), (noise, False)):
        bootstrap = bootstrap_metrics(frame, ["prediction"], min_block_length=5)
        assert summarize(_fold_metrics(frame), frame, "prediction", bootstrap)["edge_significant"] is expected


def test_intervals_cover_the_true_ic_about_95_percent_of_the_time():
    true_ic = 0.1 / np.sqrt(1 + 0.1**2)
    covered = []
    for seed in range(40):
        frame = prediction_frame(0.1, seed=seed, num_dates=150, num_symbols=8)
        low, high = metric_intervals(frame, "prediction", min_block_length=5, num_resamples=200, seed=seed)["ic"]
        covered.append(low <= true_ic <= high)
    assert 0.85 <= np.mean(covered) <= 1.0


def _summary(low, value=0.03):
    interval = {"pooled": value, "ci_low": low, "ci_high": value + 0.02, "mean": value}
    return {"per_date_rank_ic": interval, "ic": interval,
            "excess_directional_accuracy": {"pooled": 0.01, "ci_low": -0.01, "ci_high": 0.03},
            "primary": {"statistic": "per_date_rank_ic", "label": "per-date rank IC", "reason": "a panel",
                        "value": value, "ci_low": low, "ci_high": value + 0.02},
            "edge_significant": low > 0, "minimum_detectable_ic": 0.025}


def test_the_verdict_names_the_best_baseline_and_whether_the_model_beat_it():
    baselines = {"ridge": {"summary": _summary(0.01, 0.04)}, "momentum": {"summary": _summary(-0.02, 0.0)}}
    beaten = {"ridge": {"difference": 0.02, "ci_low": 0.005, "ci_high": 0.035, "level": 0.99, "beats": True}}
    not_beaten = {"ridge": {"difference": -0.01, "ci_low": -0.03, "ci_high": 0.01, "level": 0.99, "beats": False}}
    assert "and better than the best baseline, ridge (difference +0.0200 [99.0% CI +0.0050, +0.0350])" in \
        edge_verdict(_summary(0.01), beaten, baselines)
    assert "but no better than ridge (difference -0.0100" in edge_verdict(_summary(0.01), not_beaten, baselines)
    verdict = edge_verdict(_summary(0.01), not_beaten, baselines)
    assert verdict.startswith("Detectable edge: the per-date rank IC's interval lies above zero")
    assert "the primary statistic (a panel)" in verdict and "Secondary, not the verdict: pooled IC" in verdict
    with_edge = {"ridge": {"value": 0.04, "ci_low": 0.002, "ci_high": 0.07, "level": 0.99}}
    missed = edge_verdict(_summary(-0.01), not_beaten, baselines, with_edge, model="shared_backbone")
    assert missed.startswith("No detectable edge") and "a per-date rank IC of 0.0250 or more would be detected" in missed
    assert "But this baseline has one (ridge +0.0400 [+0.0020, +0.0700]; 99.0% intervals: 95% over the scan" in missed
    assert "the data hold an edge this model missed." in missed


def test_a_baseline_of_the_models_own_family_is_named_so_not_as_an_edge_it_missed():
    with_edge = {"lightgbm": {"value": 0.04, "ci_low": 0.002, "ci_high": 0.07, "level": 0.99}}
    verdict = edge_verdict(_summary(-0.01), {}, {}, with_edge, model="lightgbm")
    assert "lightgbm (the same family as this model)" in verdict and "this model missed" not in verdict
    assert "missed" in edge_verdict(_summary(-0.01), {}, {}, with_edge, model="shared_backbone")


def test_a_baseline_claims_an_edge_only_past_the_scans_corrected_level():
    from keras_synapse.evaluation.summary import baselines_with_an_edge, corrected_level

    assert corrected_level(5) == pytest.approx(0.99)
    frame = prediction_frame(0.0, seed=8)
    rng = np.random.default_rng(9)
    for number in range(5):
        frame[f"baseline_{number}"] = rng.standard_normal(len(frame))
    columns = [f"baseline_{number}" for number in range(5)]
    bootstrap = bootstrap_metrics(frame, columns, min_block_length=5, num_resamples=300)
    found = baselines_with_an_edge(bootstrap, columns)
    for name, item in found.items():  # each claim at 99%, so five looks hold 95% together
        assert item["level"] == pytest.approx(0.99)
        assert item["ci_low"] > 0 and bootstrap.interval(f"baseline_{name}", "per_date_rank_ic")[0] > 0


def _offset_folds(seed, num_dates=600, num_symbols=10):
    """Three folds whose predictions and outcomes each have their own level, and no skill within any fold."""
    rng = np.random.default_rng(seed)
    dates = np.repeat(pd.date_range("2015-01-01", periods=num_dates, freq="B", tz="UTC"), num_symbols)
    fold = np.repeat(np.arange(3), num_dates * num_symbols // 3)
    level = np.array([-1.0, 0.0, 1.0])[fold]
    prediction = 0.2 * level + rng.standard_normal(len(dates)) * 0.05
    outcome = 0.2 * level + rng.standard_normal(len(dates))
    return pd.DataFrame({"timestamp": dates, "fold": fold, "prediction": prediction, "target": outcome,
                         "reference": outcome})


def test_fold_offsets_alone_fool_the_pooled_ic_but_not_the_primary_statistics():
    from keras_synapse.evaluation.summary import choose_primary_statistic

    frame = _offset_folds(seed=0)
    bootstrap = bootstrap_metrics(frame, ["prediction"], min_block_length=5, num_resamples=300)
    point = bootstrap.point["prediction"]
    assert point["ic"] > 0.1 and bootstrap.interval("prediction", "ic")[0] > 0  # a spurious pooled IC
    for statistic in ("per_date_rank_ic", "within_fold_rank_ic"):
        low, high = bootstrap.interval("prediction", statistic)
        assert abs(point[statistic]) < 0.03 and low < 0 < high, statistic
    for ranks_symbols, statistic in ((True, "per_date_rank_ic"), (False, "within_fold_rank_ic")):
        primary = choose_primary_statistic("auto", frame, ranks_symbols=ranks_symbols)
        summary = summarize(_fold_metrics(frame, (2000, 4000)), frame, "prediction", bootstrap, primary)
        assert summary["primary"]["statistic"] == statistic and not summary["edge_significant"]
    single = frame[frame.groupby("timestamp").cumcount() == 0]  # one symbol: a time series, whatever the strategy
    assert choose_primary_statistic("auto", single, ranks_symbols=True)[0] == "within_fold_rank_ic"
    assert choose_primary_statistic("per_date_rank_ic", single)[0] == "per_date_rank_ic"  # the experiment decides
    bootstrap = bootstrap_metrics(single, ["prediction"], min_block_length=5, num_resamples=300)
    assert bootstrap.point["prediction"]["ic"] > 0.1
    low, high = bootstrap.interval("prediction", "within_fold_rank_ic")
    assert low < 0 < high


def _heavy_tailed_panel(seed, oracle_strength, num_dates=1500, num_symbols=20, num_splits=8):
    """A panel with Student-t(3) returns, a market crash, a few unadjusted 4:1 splits, and a planted score.

    The market's own moves (t(3), and 20 crash days at five times the usual
    size) are shared by every symbol of a date, as in 2020; the score adds a
    persistent level shared by a date's symbols, as a model's scores do.
    """
    rng = np.random.default_rng(seed)
    dates = np.repeat(pd.date_range("2012-01-02", periods=num_dates, freq="B", tz="UTC"), num_symbols)
    score = rng.standard_normal(len(dates))
    market = rng.standard_t(3, num_dates) * 0.012
    crash = rng.integers(0, num_dates - 20)
    market[crash:crash + 20] *= 5
    noise = rng.standard_t(3, len(dates)) * 0.02 + np.repeat(market, num_symbols)
    outcome = oracle_strength * 0.02 * score + noise
    # What a model's scores also carry: a slowly moving level shared by the date's symbols, no skill in it.
    level = np.zeros(num_dates)
    for day in range(1, num_dates):
        level[day] = 0.95 * level[day - 1] + rng.standard_normal() * np.sqrt(1 - 0.95**2)
    score = score + np.repeat(level, num_symbols)
    splits = rng.choice(len(dates), num_splits, replace=False)
    outcome[splits] = np.log(0.25)  # an unadjusted 4:1 split reads as a -139% log return
    fold = np.minimum(np.arange(len(dates)) * 3 // len(dates), 2)
    return pd.DataFrame({"timestamp": dates, "fold": fold, "prediction": score, "target": outcome,
                         "reference": outcome})


def test_a_realistic_edge_under_heavy_tails_and_splits_is_found_by_the_primary_statistic():
    # A per-date rank IC of ~0.05, what the field publishes, under t(3) returns, a crash, 30 unadjusted splits
    # and a persistent common level in the scores. The pooled Pearson IC, which those decide, misses it in
    # most of these panels; the per-date rank IC finds it in every one (measured: 6 of 6 against 2 of 6).
    found, pooled_found, values = 0, 0, []
    for seed in range(6):
        frame = _heavy_tailed_panel(seed=seed, oracle_strength=0.07, num_splits=30)
        bootstrap = bootstrap_metrics(frame, ["prediction"], min_block_length=5, num_resamples=300, seed=seed)
        values.append(bootstrap.point["prediction"]["per_date_rank_ic"])
        found += bootstrap.interval("prediction", "per_date_rank_ic")[0] > 0
        pooled_found += bootstrap.interval("prediction", "ic")[0] > 0
    assert 0.04 < np.mean(values) < 0.07
    assert found >= 5 and pooled_found <= 3, (found, pooled_found)


@pytest.mark.slow
def test_on_null_panels_with_the_same_tails_the_primary_statistic_rarely_claims_an_edge():
    false_edges = 0
    for seed in range(60):
        frame = _heavy_tailed_panel(seed=100 + seed, oracle_strength=0.0, num_dates=800)
        bootstrap = bootstrap_metrics(frame, ["prediction"], min_block_length=5, num_resamples=300, seed=seed)
        false_edges += bootstrap.interval("prediction", "per_date_rank_ic")[0] > 0
    assert false_edges <= 6, false_edges  # nominal 2.5% one-sided: 1.5 expected; 6 of 60 allows Monte Carlo error


def test_the_same_baseline_has_the_same_interval_whatever_the_model():
    frame = prediction_frame(0.05, seed=12)
    frame["baseline_ridge"] = frame["prediction"] + np.random.default_rng(13).standard_normal(len(frame))
    first = bootstrap_metrics(frame, ["prediction", "baseline_ridge"], min_block_length=5, num_resamples=300)
    other_model = frame.assign(prediction=np.random.default_rng(14).standard_normal(len(frame)).cumsum())
    second = bootstrap_metrics(other_model, ["prediction", "baseline_ridge"], min_block_length=5,
                               num_resamples=300)
    assert first.block_length == second.block_length
    for statistic in ("per_date_rank_ic", "ic", "rank_ic"):
        assert first.interval("baseline_ridge", statistic) == second.interval("baseline_ridge", statistic)


def test_versus_baselines_pairs_each_baseline_on_the_same_draws_and_skips_constants():
    frame = prediction_frame(0.2, seed=3)
    frame["baseline_noise"] = np.random.default_rng(4).standard_normal(len(frame))
    frame["baseline_always_up"] = 1.0
    bootstrap = bootstrap_metrics(frame, ["prediction", "baseline_noise", "baseline_always_up"], min_block_length=5,
                                  num_resamples=300)
    comparisons = versus_baselines(bootstrap, "prediction", ["baseline_noise", "baseline_always_up"])
    assert set(comparisons) == {"noise"}
    assert comparisons["noise"]["beats"] and comparisons["noise"]["ci_low"] > 0


def test_the_symbol_table_shows_intervals_and_the_ends_of_a_long_list():
    from keras_synapse.evaluation.report import format_symbol_table

    table = {f"S{index:03d}": {"n": 100, "ic": index / 1000, "directional_accuracy": 0.5,
                               "intervals": {"ic": [index / 1000 - 0.1, index / 1000 + 0.1]}} for index in range(30)}
    text = format_symbol_table(table)
    lines = text.splitlines()
    assert lines[1].startswith("S029") and lines[-1].startswith("S000") and "... 10 more symbols ..." in text
    assert "[-0.0710, +0.1290]" in lines[1]


def test_report_times_read_as_dates_for_daily_bars_and_as_times_otherwise():
    from keras_synapse.evaluation.report import _when

    assert _when("1999-02-02T00:00:00+00:00") == "1999-02-02"
    assert _when("2024-01-02T14:30:00+00:00") == "2024-01-02 14:30 UTC"


def test_the_kept_epoch_is_the_best_by_the_monitor():
    from keras_synapse.evaluation.report import kept_epoch

    history = {"val_ic": [0.01, 0.05, 0.02], "val_loss": [1.0, 0.9, 0.95]}
    assert kept_epoch(history, "val_ic") == 1 and kept_epoch(history, "val_loss") == 1
    assert kept_epoch({"val_loss": [1.0, 0.8, 0.7]}, "val_loss") == 2 and kept_epoch({}, "val_ic") is None
