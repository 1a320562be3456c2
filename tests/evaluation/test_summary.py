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


def test_edge_is_significant_with_a_real_signal_and_not_with_noise():
    strong = prediction_frame(0.3, seed=1)
    noise = prediction_frame(0.0, seed=2)
    for frame, expected in ((strong, True), (noise, False)):
        folds = [regression_metrics(part["prediction"], part["target"], part["reference"])
                 for part in (frame.iloc[:1300], frame.iloc[1300:2700], frame.iloc[2700:])]
        bootstrap = bootstrap_metrics(frame, ["prediction"], min_block_length=5)
        assert summarize(folds, frame, "prediction", bootstrap)["edge_significant"] is expected


def test_intervals_cover_the_true_ic_about_95_percent_of_the_time():
    true_ic = 0.1 / np.sqrt(1 + 0.1**2)
    covered = []
    for seed in range(40):
        frame = prediction_frame(0.1, seed=seed, num_dates=150, num_symbols=8)
        low, high = metric_intervals(frame, "prediction", min_block_length=5, num_resamples=200, seed=seed)["ic"]
        covered.append(low <= true_ic <= high)
    assert 0.85 <= np.mean(covered) <= 1.0


def _summary(ic_low, pooled=0.03, edge=None):
    interval = {"pooled": pooled, "ci_low": ic_low, "ci_high": pooled + 0.02, "mean": pooled}
    return {"ic": interval, "excess_directional_accuracy": {"pooled": 0.01, "ci_low": -0.01, "ci_high": 0.03},
            "edge_significant": ic_low > 0 if edge is None else edge, "minimum_detectable_ic": 0.025}


def test_the_verdict_names_the_best_baseline_and_whether_the_model_beat_it():
    baselines = {"ridge": {"summary": _summary(0.01, pooled=0.04)}, "momentum": {"summary": _summary(-0.02, 0.0)},
                 "always_up": {"summary": {**_summary(np.nan, np.nan), "edge_significant": False}}}
    beaten = {"ridge": {"ic_difference": 0.02, "ci_low": 0.005, "ci_high": 0.035, "beats": True}}
    not_beaten = {"ridge": {"ic_difference": -0.01, "ci_low": -0.03, "ci_high": 0.01, "beats": False}}
    assert "and better than the best baseline, ridge (IC difference +0.0200 [95% CI +0.0050, +0.0350])" in \
        edge_verdict(_summary(0.01), beaten, baselines)
    assert "Detectable edge" in edge_verdict(_summary(0.01), not_beaten, baselines)
    assert "but no better than ridge (IC difference -0.0100" in edge_verdict(_summary(0.01), not_beaten, baselines)
    missed = edge_verdict(_summary(-0.01), not_beaten, baselines)
    assert missed.startswith("No detectable edge") and "an IC of 0.0250 or more would be detected" in missed
    assert "But the ridge baseline has one: the data hold an edge this model missed." in missed


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
