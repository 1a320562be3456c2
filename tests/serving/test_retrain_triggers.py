"""Retrain triggers: the schedule, feature drift and live degradation, each with its numbers."""

import datetime

import numpy as np
import pandas as pd
import pytest

from keras_synapse.errors import ConfigError, DataError
from keras_synapse.serving.drift import training_distributions
from keras_synapse.serving.retrain_triggers import (
    degradation_check,
    drift_check,
    min_drifted_count,
    parse_duration,
    read_realized,
    schedule_check,
)


def test_durations_parse_and_bad_ones_are_refused_by_value():
    assert parse_duration("7d") == datetime.timedelta(days=7)
    assert parse_duration("1d12h") == datetime.timedelta(hours=36)
    assert parse_duration("2w") == datetime.timedelta(days=14) and parse_duration("90m").total_seconds() == 5400
    for text in ("7", "7 days", "d", "0d", "-1d"):
        with pytest.raises(ConfigError, match=f"Received: every={text!r}"):
            parse_duration(text)


def test_the_schedule_fires_once_the_incumbent_is_older_than_the_period():
    now = pd.Timestamp("2024-03-08 12:00", tz="UTC")
    due = schedule_check("2024-03-01T12:00:00+00:00", "7d", now=now)
    assert due.fired and due.numbers["age_hours"] == 168 and "registered 7.0 days ago" in due.summary
    fresh = schedule_check("2024-03-08T00:00:00+00:00", "7d", now=now)
    assert not fresh.fired and "12.0 hours ago" in fresh.summary and "less than the period of 7d" in fresh.summary
    with pytest.raises(ConfigError, match="must carry its UTC offset"):
        schedule_check("2024-03-01T12:00:00", "7d", now=now)


def test_the_drift_threshold_is_a_count_or_a_share():
    assert min_drifted_count("3", 11) == 3 and min_drifted_count("25%", 11) == 3 and min_drifted_count("1%", 11) == 1
    for bad in ("0", "0%", "150%", "many"):
        with pytest.raises(ConfigError, match="min_drifted_features"):
            min_drifted_count(bad, 11)


def test_drift_fires_when_enough_features_moved():
    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "d"]
    reference = training_distributions(rng.normal(size=(4000, 4)), names)
    recent = pd.DataFrame(rng.normal(size=(1000, 4)), columns=names)
    quiet = drift_check(reference, recent, "2")
    assert not quiet.fired and quiet.numbers["num_drifted"] == 0 and "0 of 4 features drifted" in quiet.summary
    recent[["a", "b"]] += 1.0  # two features shifted by a standard deviation
    drifted = drift_check(reference, recent, "2")
    assert drifted.fired and sorted(drifted.numbers["drifted"]) == ["a", "b"]
    assert "2 of 4 features drifted on 1000 recent rows (fires at 2): a (PSI" in drifted.summary
    assert not drift_check(reference, recent, "75%").fired  # 3 of 4 needed


def realized(num_rows, edge, seed=0):
    rng = np.random.default_rng(seed)
    outcome = rng.normal(0, 0.01, num_rows)
    return pd.DataFrame({"symbol": "AAA", "timestamp": pd.date_range("2024-01-01", periods=num_rows, tz="UTC"),
                         "score": edge * outcome / 0.01 + rng.normal(size=num_rows), "forward_return": outcome})


def test_degradation_fires_on_a_live_ic_below_the_threshold_over_enough_predictions():
    working = degradation_check(realized(300, edge=1.0), min_trades=100)
    assert not working.fired and working.numbers["ic"] > 0.5 and working.numbers["num_realized"] == 250
    broken = realized(300, edge=-0.5)
    check = degradation_check(broken, min_trades=100)
    direct = np.corrcoef(broken["score"].iloc[-250:], broken["forward_return"].iloc[-250:])[0, 1]
    assert check.fired and check.numbers["ic"] == pytest.approx(direct)
    assert f"live IC {direct:+.4f}" in check.summary and "over the last 250 realized predictions" in check.summary
    few = degradation_check(broken.iloc[:50], min_trades=100)
    assert not few.fired and "fewer than min_trades=100, not judged" in few.summary
    pending = broken.assign(forward_return=broken["forward_return"].where(broken.index < 280))
    assert degradation_check(pending, min_trades=100, window=1000).numbers["num_realized"] == 280
    with pytest.raises(DataError, match=r"lack the column\(s\) \['score'\]"):
        degradation_check(broken.drop(columns="score"))


def test_realized_predictions_are_read_with_utc_timestamps_or_refused_by_name(tmp_path):
    path = tmp_path / "realized.csv"
    realized(20, edge=1.0).to_csv(path, index=False)
    frame = read_realized(path)
    assert str(frame["timestamp"].dt.tz) == "UTC" and len(frame) == 20
    with pytest.raises(DataError, match="no such file"):
        read_realized(tmp_path / "missing.csv")
    realized(20, edge=1.0).drop(columns="forward_return").to_csv(path, index=False)
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['forward_return'\]"):
        read_realized(path)
