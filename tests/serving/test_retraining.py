"""Retraining's holdout: held out by timestamp, out of sample for both models, scored on known forward returns."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data import Panel
from keras_synapse.errors import DataError, SynapseError
from keras_synapse.serving.retraining import check_out_of_sample, holdout_rows, split_holdout, training_end


def panel():
    return Panel({"AAA": make_bars(100, seed=0), "BBB": make_bars(80, seed=1)})


def test_the_newest_timestamps_are_held_out_and_the_rest_trains():
    bars = panel()
    training, start = split_holdout(bars, 30)
    assert start == bars["AAA"].index[70]
    assert all(frame.index[-1] < start for frame in training.values())
    assert len(training["AAA"]) == len(training["BBB"]) == 70  # BBB ends 20 bars early: 10 of its bars held out
    with pytest.raises(DataError, match=r"`holdout_bars` must be in \[1, 99\] for data of 100 timestamps"):
        split_holdout(bars, 100)


def test_a_model_trained_into_the_holdout_is_refused_naming_how_many_bars_could_be_held_out():
    bars = panel()
    _, start = split_holdout(bars, 30)
    check_out_of_sample(bars, start, bars["AAA"].index[69], "the incumbent")  # ends the bar before: fine
    with pytest.raises(DataError, match=r"trained on data up to .* overlaps the holdout .* The data hold 20 bar\(s\) "
                                        r"after its training end; hold out at most that many \(--holdout-bars 20\)"):
        check_out_of_sample(bars, start, bars["AAA"].index[79], "the incumbent")
    with pytest.raises(SynapseError, match="records no training data end"):
        training_end({"data": {}}, "saved_models/x/1")
    assert training_end({"data": {"end": "2024-01-02 00:00:00+00:00"}}, "v") == pd.Timestamp("2024-01-02", tz="UTC")


def test_holdout_rows_pair_both_scores_with_the_forward_return_over_the_horizon():
    bars = panel()
    _, start = split_holdout(bars, 30)
    index = pd.MultiIndex.from_tuples([(symbol, timestamp) for symbol, frame in bars.items()
                                       for timestamp in frame.index[19:]], names=["symbol", "timestamp"])
    scores = pd.DataFrame({"score": np.arange(len(index), dtype=float)}, index=index)
    rows = holdout_rows(bars, scores, scores.iloc[5:] * 2, start, horizon=5)
    assert list(rows.columns) == ["symbol", "timestamp", "forward_return", "incumbent", "challenger"]
    assert rows["timestamp"].min() == start and len(rows) == 30 + 10  # AAA's last 30 bars, BBB's 10 in the holdout
    row = rows.iloc[0]
    close = bars[row["symbol"]]["close"]
    position = close.index.get_loc(row["timestamp"])
    assert row["forward_return"] == pytest.approx(np.log(close.iloc[position + 5] / close.iloc[position]))
    assert row["challenger"] == 2 * row["incumbent"]
    assert rows.groupby("symbol")["forward_return"].apply(lambda values: values.isna().sum()).to_dict() == {
        "AAA": 5, "BBB": 5}  # the last horizon bars of each symbol have no outcome yet
