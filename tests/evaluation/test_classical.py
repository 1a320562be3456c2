"""The classical strategies: TA-Lib's indicator values read by the textbook rules, from past bars only."""

import numpy as np
import pandas as pd
import talib
from conftest import make_bars

from keras_synapse.evaluation.classical import CLASSICAL_STRATEGIES, classical_columns, classical_sides


def test_sides_follow_talibs_values_and_the_rules():
    bars = make_bars(400, seed=3)
    sides = classical_sides(bars)
    close = bars["close"].to_numpy()
    rsi = talib.RSI(close, 14)
    known = np.isfinite(rsi)
    np.testing.assert_array_equal(sides["rsi_reversion"][known], np.select([rsi[known] < 30, rsi[known] > 70],
                                                                           [1.0, -1.0], 0.0))
    macd, signal, histogram = talib.MACD(close, 12, 26, 9)
    known = np.isfinite(histogram)
    np.testing.assert_array_equal(sides["macd_trend"][known], np.sign(histogram[known]))
    upper, _, lower = talib.BBANDS(close, 20, 2.0, 2.0)
    known = np.isfinite(upper)
    np.testing.assert_array_equal(sides["bollinger_reversion"][known],
                                  np.select([close[known] < lower[known], close[known] > upper[known]], [1.0, -1.0], 0.0))
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3
    vwap = (typical * bars["volume"]).rolling(20).sum() / bars["volume"].rolling(20).sum()
    known = vwap.notna().to_numpy()
    np.testing.assert_array_equal(sides["vwap_reversion"][known], -np.sign(close[known] - vwap[known]))
    np.testing.assert_array_equal(sides["momentum"].iloc[20:], np.sign(close[20:] - close[:-20]))
    assert set(np.unique(sides.to_numpy())) <= {-1.0, 0.0, 1.0} and (sides.iloc[:10] == 0).all().all()
    assert all(sides[name].abs().sum() > 20 for name in CLASSICAL_STRATEGIES)  # every rule trades


def test_no_later_bar_changes_a_side():
    bars = make_bars(300, seed=5)
    full = classical_sides(bars)
    for cut in (120, 250):
        pd.testing.assert_frame_equal(classical_sides(bars.iloc[:cut]), full.iloc[:cut])


def test_columns_are_read_at_each_rows_symbol_and_time():
    panel = {"AAA": make_bars(200, seed=1), "BBB": make_bars(200, seed=2)}
    frame = pd.DataFrame({"symbol": ["BBB", "AAA", "BBB"],
                          "timestamp": [panel["BBB"].index[150], panel["AAA"].index[120], panel["BBB"].index[199]]})
    columns = classical_columns(frame, panel)
    assert columns["classical_macd_trend"][0] == classical_sides(panel["BBB"])["macd_trend"].iloc[150]
    assert columns["classical_momentum"][1] == classical_sides(panel["AAA"])["momentum"].iloc[120]
    assert len(columns) == len(CLASSICAL_STRATEGIES)


def _predictions(strength, seed=0):
    from keras_synapse.labels.common import forward_log_return

    rng = np.random.default_rng(seed)
    panel = {f"S{index}": make_bars(700, seed=index) for index in range(6)}
    rows = []
    for symbol, bars in panel.items():
        forward = forward_log_return(np.log(bars["close"]), 5)
        frame = pd.DataFrame({"symbol": symbol, "timestamp": bars.index, "forward_return": forward.to_numpy()})
        noise = rng.normal(size=len(frame))
        frame["prediction"] = strength * np.nan_to_num(forward.to_numpy()) / np.nanstd(forward) + noise
        rows.append(frame.iloc[200:-5])
    return panel, pd.concat(rows, ignore_index=True)


def test_the_ab_says_a_filter_that_knows_helps_and_one_that_does_not_does_not():
    from keras_synapse.evaluation.strategy_ab import classical_ab, format_ab

    panel, frame = _predictions(strength=1.0)  # a model that knows the next five bars (IC about 0.7)
    calendar = pd.DatetimeIndex(sorted(set(frame["timestamp"])))
    ab = classical_ab(frame, panel, 5, 5, calendar, 252, num_resamples=300)
    differences = ab["sharpe_differences"]
    assert sum(differences[f"{name}_filtered - {name}"]["better"] for name in CLASSICAL_STRATEGIES) >= 4
    assert set(ab["books"]) == {"model", "buy_and_hold", *CLASSICAL_STRATEGIES,
                                *(f"{name}_filtered" for name in CLASSICAL_STRATEGIES)}
    assert "95% over the 6 comparisons" in format_ab(ab)
    panel, frame = _predictions(strength=0.0)  # a coin flip
    ab = classical_ab(frame, panel, 5, 5, calendar, 252, num_resamples=300)
    assert not any(item["better"] for item in ab["sharpe_differences"].values())


def test_an_event_models_filter_is_calibrated_on_the_side_winning_and_has_no_book_of_its_own():
    from keras_synapse.evaluation.strategy_ab import classical_ab, format_ab

    panel, frame = _predictions(strength=0.0, seed=1)
    momentum_side = classical_columns(frame, panel)["classical_momentum"]
    # An event score: high where the momentum side pays over the next five bars, whatever the direction.
    winning = np.nan_to_num(momentum_side * frame["forward_return"].to_numpy())
    calendar = pd.DatetimeIndex(sorted(set(frame["timestamp"])))
    knows = frame.assign(prediction=winning / winning.std() + frame["prediction"])
    ab = classical_ab(knows, panel, 5, 5, calendar, 252, num_resamples=300, directional=False)
    assert "model" not in ab["books"] and ab["confidence_target"] == "event"
    assert len(ab["sharpe_differences"]) == len(CLASSICAL_STRATEGIES)
    assert ab["sharpe_differences"]["momentum_filtered - momentum"]["better"]
    assert "95% over the 5 comparisons" in format_ab(ab) and "model alone" not in format_ab(ab)
    # The same score read as a direction (P(up)) says little about the momentum side winning.
    as_direction = classical_ab(knows, panel, 5, 5, calendar, 252, num_resamples=300)
    assert (as_direction["books"]["momentum_filtered"]["sharpe"]
            < ab["books"]["momentum_filtered"]["sharpe"])
    noise = classical_ab(frame, panel, 5, 5, calendar, 252, num_resamples=300, directional=False)
    assert not any(item["better"] for item in noise["sharpe_differences"].values())
