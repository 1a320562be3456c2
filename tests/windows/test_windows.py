"""Windows gathered by index: never across symbols, last bar before the label, purged by label end."""

import numpy as np
import pandas as pd
from conftest import make_bars

from keras_synapse.data.panel import Panel
from keras_synapse.features import compute_features
from keras_synapse.labels import compute_labels
from keras_synapse.windows.dataset import build_windowed_panel, make_dataset, select_ends

SEQUENCE_LENGTH, HORIZON = 10, 5


def windowed_panel():
    # Unequal histories and different start dates.
    panel = Panel({"AAA": make_bars(120, seed=1), "BBB": make_bars(90, seed=2, start="2024-02-01")})
    features = compute_features(panel, "core")
    labels = compute_labels(panel, horizon=HORIZON, scaling="none")
    return panel, features, build_windowed_panel(features, labels, SEQUENCE_LENGTH, HORIZON)


def test_dataset_windows_equal_windows_cut_by_hand():
    panel, features, windowed = windowed_panel()
    ends = windowed.labelled_ends()
    (inputs, targets), = make_dataset(windowed, ends, batch_size=len(ends)).take(1)
    sequences = inputs["sequence"].numpy()
    frame = windowed.window_frame(ends)
    for position in (0, 7, len(ends) // 2, len(ends) - 1):
        symbol, end_time = frame["symbol"][position], frame["timestamp"][position]
        by_hand = features[symbol].loc[:end_time].iloc[-SEQUENCE_LENGTH:]
        np.testing.assert_allclose(sequences[position], by_hand.to_numpy(), rtol=1e-6)
        close = panel[symbol]["close"]
        later = close.index.get_loc(end_time) + HORIZON
        expected = np.log(close.iloc[later] / close.loc[end_time])
        np.testing.assert_allclose(targets.numpy()[position, 0], expected, rtol=1e-5)


def test_windows_never_cross_symbols_and_end_before_their_label():
    _, _, windowed = windowed_panel()
    ends = windowed.labelled_ends()
    starts = ends - SEQUENCE_LENGTH + 1
    assert (windowed.symbol_codes[starts] == windowed.symbol_codes[ends]).all()
    rows = starts[:, None] + np.arange(SEQUENCE_LENGTH)
    assert (windowed.symbol_codes[rows] == windowed.symbol_codes[ends][:, None]).all()
    assert (np.diff(windowed.timestamps[rows], axis=1) > np.timedelta64(0)).all()
    assert (windowed.timestamps[ends] < windowed.label_end_times[ends]).all()
    # The first row of each symbol can never end a window.
    first_rows = np.flatnonzero(np.diff(windowed.symbol_codes, prepend=-1) != 0)
    for first in first_rows:
        assert not windowed.window_ok[first : first + SEQUENCE_LENGTH - 1].any()


def test_purging_drops_windows_whose_label_reaches_the_boundary():
    _, _, windowed = windowed_panel()
    ends = windowed.labelled_ends()
    boundary = windowed.calendar[60]
    kept = select_ends(windowed, ends, label_before=boundary)
    assert (windowed.label_end_times[kept] < boundary).all()
    dropped = np.setdiff1d(ends[windowed.timestamps[ends] < boundary], kept)
    assert len(dropped) > 0 and (windowed.label_end_times[dropped] >= boundary).all()


def test_stride_aligns_end_dates_across_symbols():
    _, _, windowed = windowed_panel()
    kept = select_ends(windowed, windowed.labelled_ends(), stride=5)
    frame = windowed.window_frame(kept)
    dates_by_symbol = frame.groupby("symbol")["timestamp"].apply(set)
    # BBB's history lies inside AAA's, so every BBB end date is an AAA end date too.
    assert dates_by_symbol["BBB"] <= dates_by_symbol["AAA"]
    positions = np.searchsorted(windowed.calendar, windowed.timestamps[kept])
    assert (np.diff(np.unique(positions)) % 5 == 0).all()


def test_window_frame_maps_predictions_back_to_symbol_and_time():
    _, _, windowed = windowed_panel()
    frame = windowed.window_frame(windowed.labelled_ends()[:3])
    assert list(frame.columns) == ["symbol", "timestamp", "target", "forward_return", "past_return"]
    assert isinstance(frame["timestamp"].dtype, pd.DatetimeTZDtype)


def test_windows_do_not_cross_a_data_outage(caplog):
    bars = make_bars(150, seed=4)
    outage = bars.drop(bars.index[70:90])  # four weeks missing
    panel = Panel({"AAA": outage})
    windowed = build_windowed_panel(compute_features(panel, "core"), compute_labels(panel, horizon=HORIZON),
                                    SEQUENCE_LENGTH, HORIZON)
    # Said once, with the count: the 9 windows that would span the outage.
    assert "9 of 101 windows (8.9%) span a data outage (a spacing over 5 x their symbol's median bar spacing" in caplog.text
    assert "most in AAA: 9" in caplog.text
    rows = windowed.labelled_ends()[:, None] + np.arange(-SEQUENCE_LENGTH + 1, 1)
    spans = windowed.timestamps[rows[:, -1]] - windowed.timestamps[rows[:, 0]]
    assert spans.max() < np.timedelta64(20, "D")  # no window spans the outage
    # After the outage a full window of fresh rows is needed again.
    after = np.flatnonzero(windowed.timestamps >= np.datetime64(bars.index[90].tz_localize(None)))
    assert not windowed.window_ok[after[: SEQUENCE_LENGTH - 1]].any()
    assert windowed.window_ok[after[SEQUENCE_LENGTH - 1]]


def test_hybrid_inputs_gather_static_features_at_the_last_bar():
    panel, features, _ = windowed_panel()
    labels = compute_labels(panel, horizon=HORIZON, scaling="none")
    static = {symbol: frame[["log_range"]] * 10 for symbol, frame in features.items()}
    windowed = build_windowed_panel(features, labels, SEQUENCE_LENGTH, HORIZON, static_frames=static)
    ends = windowed.labelled_ends()[:50]
    (inputs, _), = make_dataset(windowed, ends, batch_size=50).take(1)
    assert set(inputs) == {"sequence", "static"}
    frame = windowed.window_frame(ends)
    expected = [static[symbol].loc[time, "log_range"] for symbol, time in zip(frame["symbol"], frame["timestamp"])]
    np.testing.assert_allclose(inputs["static"].numpy()[:, 0], expected, rtol=1e-6)


def test_sample_weights_ride_along_with_their_windows():
    _, _, windowed = windowed_panel()
    ends = windowed.labelled_ends()[:40]
    weights = np.arange(40, dtype=np.float32)
    # A shuffled dataset is an endless stream of epochs: take one epoch's 3 batches.
    batches = list(make_dataset(windowed, ends, batch_size=16, shuffle=True, seed=1, sample_weights=weights).take(3))
    seen_targets = np.concatenate([targets.numpy()[:, 0] for _, targets, _ in batches])
    seen_weights = np.concatenate([batch_weights.numpy() for _, _, batch_weights in batches])
    assert sorted(seen_weights) == sorted(weights)  # one epoch: every window exactly once
    expected = dict(zip(np.nan_to_num(windowed.targets[ends]), weights))
    assert all(expected[target] == weight for target, weight in zip(seen_targets, seen_weights))


def test_symbols_without_a_window_are_named(caplog):
    panel = Panel({"AAA": make_bars(120, seed=1), "NEW": make_bars(30, seed=2, start="2024-03-01")})
    features = compute_features(panel, "core")
    build_windowed_panel(features, compute_labels(panel, horizon=HORIZON), 20, HORIZON)
    assert "1 symbol(s) give no complete window of 20 bars and are not used: NEW (10 feature rows)" in caplog.text
    assert "AAA" not in caplog.text


def test_the_past_return_of_a_lagged_label_uses_no_later_bar():
    """With an execution lag the label at t starts at t + 1; the momentum baseline's past return must still end at t."""
    panel = Panel({"AAA": make_bars(120, seed=1)})
    features = compute_features(panel, "core")
    labels = compute_labels(panel, horizon=HORIZON, scaling="none", execution_lag=1)
    windowed = build_windowed_panel(features, labels, SEQUENCE_LENGTH, HORIZON)
    # The trade labelled HORIZON + 1 bars back ran from the open of bar t - HORIZON to the open of bar t.
    opens = panel["AAA"]["open"]
    expected = np.log(opens / opens.shift(HORIZON)).reindex(features["AAA"].index).to_numpy()
    np.testing.assert_allclose(windowed.past_returns, expected, atol=1e-12, equal_nan=True)
