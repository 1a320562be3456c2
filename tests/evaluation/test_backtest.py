"""The backtest on small hand-computed books: equity, costs, risk controls, sizing, filters, no look-ahead."""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.errors import BacktestError, SynapseError
from keras_synapse.evaluation.backtest import backtest, simulate_book
from keras_synapse.evaluation.trading_rules import BacktestRules, kelly_position_size

CALENDAR = pd.date_range("2024-01-01", periods=80, freq="B", tz="UTC", name="timestamp")


def make_frame(simple_returns, positions=None, **columns):
    """Test predictions from per-symbol simple returns over the horizon.

    `simple_returns` maps symbol -> list (None: no row); row j sits at
    `CALENDAR[positions[j]]` (default: bar j). `columns` map a column name to
    a per-symbol dict of lists, or to one list shared by every symbol.
    `prediction` defaults to the log return itself: perfect foresight.
    """
    rows = []
    for symbol, returns in simple_returns.items():
        for index, simple_return in enumerate(returns):
            if simple_return is None:
                continue
            row = {"symbol": symbol, "timestamp": CALENDAR[positions[index] if positions else index],
                   "forward_return": np.log1p(simple_return), "past_return": 0.0, "target": 0.0}
            row["prediction"] = row["forward_return"]
            for name, values in columns.items():
                row[name] = (values[symbol] if isinstance(values, dict) else values)[index]
            rows.append(row)
    return pd.DataFrame(rows)


def test_perfect_foresight_gives_the_known_equity():
    frame = make_frame({"A": [0.10, -0.05, 0.02, -0.01], "B": [-0.04, 0.03, 0.0, 0.06]})
    results, equity = backtest(frame, "prediction", 1, 0, CALENDAR)
    # Each period earns the mean absolute return of its two slots (B's zero return is flat).
    np.testing.assert_allclose(equity["strategy"], [1.07, 1.07 * 1.04, 1.07 * 1.04 * 1.01, 1.07 * 1.04 * 1.01 * 1.035])
    assert list(equity.index) == list(CALENDAR[:4])
    assert results["strategy"]["total_return"] == pytest.approx(1.16326548 - 1)
    assert results["strategy"]["max_drawdown"] == 0 and results["strategy"]["win_rate"] == 1
    assert results["strategy"]["num_trades"] == 7 and results["strategy"]["trade_win_rate"] == 1
    assert results["strategy"]["exposure"] == 1 and results["strategy"]["periods_halted"] == 0


def test_costs_reduce_returns_by_exactly_turnover_times_bps():
    frame = make_frame({"A": [0.10, -0.05, 0.02, -0.01], "B": [-0.04, 0.03, 0.0, 0.06]})
    results, equity = backtest(frame, "prediction", 1, 10, CALENDAR, slippage_bps=5)
    # Weights A [.5, -.5, .5, -.5], B [-.5, .5, 0, .5]; the last period also closes the book.
    turnover = np.array([1.0, 2.0, 1.5, 1.5 + 1.0])
    np.testing.assert_allclose(equity["turnover"], turnover)
    np.testing.assert_allclose(equity["net_return"], np.array([0.07, 0.04, 0.01, 0.035]) - turnover * 15e-4)
    assert results["strategy"]["turnover"] == pytest.approx(turnover.mean())
    assert results["strategy"]["total_costs"] == pytest.approx(turnover.sum() * 15e-4)


def test_buy_and_hold_earns_the_average_simple_return_of_the_symbols_present():
    frame = make_frame({"A": [0.10, -0.05, 0.02], "B": [-0.04, 0.03, 0.01], "C": [0.01, None, -0.07]})
    results, equity = backtest(frame, "prediction", 1, 0, CALENDAR)
    period_returns = np.array([(0.10 - 0.04 + 0.01) / 3, (-0.05 + 0.03) / 2, (0.02 + 0.01 - 0.07) / 3])
    np.testing.assert_allclose(equity["buy_and_hold"], np.cumprod(1 + period_returns))
    assert results["buy_and_hold"]["win_rate"] == pytest.approx(1 / 3)


def test_circuit_breaker_halts_after_the_loss_streak_and_resumes_after_the_cooldown():
    returns = [-0.01, 0.01, -0.01, -0.01, 0.05, 0.05, 0.02, -0.02]
    frame = make_frame({"A": returns}, prediction=[1.0] * 8)
    results, equity = backtest(frame, "prediction", 1, 0, CALENDAR, max_loss_streak=2, cooldown_periods=2)
    # The win at 1 resets the streak; losses at 2 and 3 halt 4 and 5; trading resumes at 6.
    assert equity["halted"].tolist() == [False, False, False, False, True, True, False, False]
    np.testing.assert_allclose(equity["gross_exposure"], [1, 1, 1, 1, 0, 0, 1, 1])
    expected = np.cumprod(1 + np.array([-0.01, 0.01, -0.01, -0.01, 0, 0, 0.02, -0.02]))
    np.testing.assert_allclose(equity["strategy"], expected)
    assert results["strategy"]["periods_halted"] == 2 and results["strategy"]["exposure"] == 0.75


def test_with_an_execution_lag_a_breach_acts_only_once_its_period_has_closed():
    # Horizon 1, lag 1: period k exits at the open of bar k + 2, after the rebalance at bar k + 1. The losses of
    # periods 2 and 3 are known at bars 4 and 5, so the halt falls on 5 and 6, not 4 and 5 (that would read the
    # loss of period 3 before it was realized). The drawdown limit waits the same way.
    returns = [-0.01, 0.01, -0.01, -0.01, 0.05, 0.05, 0.02, -0.02]
    frame = make_frame({"A": returns}, prediction=[1.0] * 8)
    _, equity = backtest(frame, "prediction", 1, 0, CALENDAR, max_loss_streak=2, cooldown_periods=2,
                         execution_lag=1)
    assert equity["halted"].tolist() == [False] * 5 + [True, True, False]
    _, equity = backtest(make_frame({"A": [-0.10, 0.01, 0.01, 0.01]}, prediction=[1.0] * 4), "prediction", 1, 0,
                         CALENDAR, drawdown_limit=0.05, cooldown_periods=1, execution_lag=1)
    assert equity["stopped"].tolist() == [False, False, True, False]


def test_the_accuracy_shutdown_halts_when_too_few_recent_periods_won():
    # Windows of 4 trading periods, at least 50% won: periods 0-3 win 2 of 4 (fine), periods 1-4 win 1 of 4
    # (25% < 50%): periods 5 and 6 are flat, and the count starts afresh at 7.
    returns = [0.01, -0.01, 0.02, -0.01, -0.01, 0.03, 0.03, 0.01, -0.02, 0.01]
    frame = make_frame({"A": returns}, prediction=[1.0] * len(returns))
    results, equity = backtest(frame, "prediction", 1, 0, CALENDAR, min_win_rate=0.5, win_rate_window=4,
                               cooldown_periods=2)
    assert equity["halted"].tolist() == [False] * 5 + [True, True] + [False] * 3
    np.testing.assert_allclose(equity["strategy"], np.cumprod(1 + np.array(returns[:5] + [0, 0] + returns[7:])))
    assert results["strategy"]["periods_halted"] == 2


def test_a_volatility_spike_halves_the_next_book():
    # Six calm periods (+-0.1%), then three of +-5%: the last three are 53x as volatile as the six before, so
    # period 9 trades half size; with it the last three are still 2.7x the seven before, so period 10 does too.
    returns = [0.001, -0.001] * 3 + [0.05, -0.05, 0.05] + [0.02, 0.02]
    frame = make_frame({"A": returns}, prediction=[1.0] * len(returns))
    results, equity = backtest(frame, "prediction", 1, 0, CALENDAR, volatility_spike=2.0, spike_window=3)
    assert equity["cut"].tolist() == [False] * 9 + [True, True]
    np.testing.assert_allclose(equity["gross_exposure"], [1.0] * 9 + [0.5, 0.5])
    np.testing.assert_allclose(equity["strategy"], np.cumprod(1 + np.array(returns[:9] + [0.01, 0.01])))
    assert results["strategy"]["periods_cut"] == 2


def test_the_drawdown_limit_is_measured_peak_to_trough():
    # Equity 1.10 (the peak), 1.045 (-5%), 0.9405 (-14.5%, beyond 12%): flat for two periods, then it trades
    # again measured from 0.9405. No single period lost 12%: a per-period limit would never have acted.
    frame = make_frame({"A": [0.10, -0.05, -0.10, 0.05, 0.03, 0.02, -0.05]}, prediction=[1.0] * 7)
    results, equity = backtest(frame, "prediction", 1, 0, CALENDAR, drawdown_limit=0.12, cooldown_periods=2)
    assert equity["stopped"].tolist() == [False, False, False, True, True, False, False]
    np.testing.assert_allclose(equity["strategy"], np.cumprod(1 + np.array([0.10, -0.05, -0.10, 0, 0, 0.02, -0.05])))
    assert results["strategy"]["periods_stopped"] == 2 and results["strategy"]["periods_flattened"] == 0
    # After resuming, -5% from the new peak 0.9593 is within the limit: no second stop.
    assert not equity["stopped"].iloc[6]


def test_period_loss_limit_flattens_the_next_period():
    frame = make_frame({"A": [0.01, -0.04, -0.08, 0.03, 0.02]}, prediction=[1.0] * 5)
    results, equity = backtest(frame, "prediction", 1, 0, CALENDAR, period_loss_limit=0.05)
    assert equity["flattened"].tolist() == [False, False, False, True, False]  # -4% is within the limit
    np.testing.assert_allclose(equity["strategy"], np.cumprod(1 + np.array([0.01, -0.04, -0.08, 0.0, 0.02])))
    assert results["strategy"]["periods_flattened"] == 1
    assert results["strategy"]["max_drawdown"] == pytest.approx(1.01 * 0.96 * 0.92 / 1.01 - 1)


def test_position_and_gross_exposure_caps():
    frame = make_frame({"A": [0.02], "B": [-0.01]}, prediction={"A": [1.0], "B": [-1.0]})
    book = simulate_book(frame, "prediction", 1, 0, CALENDAR, max_position=0.4)
    np.testing.assert_allclose(book.weights[0], [0.2, -0.2])  # 0.4 of each half-capital slot
    book = simulate_book(frame, "prediction", 1, 0, CALENDAR, max_position=0.4, max_gross_exposure=0.3)
    np.testing.assert_allclose(book.weights[0], [0.15, -0.15])  # scaled down to 0.3 gross
    assert book.net_returns[0] == pytest.approx(0.15 * 0.02 + 0.15 * 0.01)


def test_quarter_kelly_has_the_closed_form_and_respects_the_cap():
    assert kelly_position_size(0.6, 1.5) == pytest.approx(0.25 * (0.6 - 0.4 / 1.5))
    assert kelly_position_size(0.9, 3.0, kelly_fraction=1.0, max_position=0.5) == 0.5
    assert kelly_position_size(0.4, 1.0) == 0  # no edge, no bet (never a flipped bet)
    np.testing.assert_allclose(kelly_position_size([0.55, 0.7], [1.0, 2.0]), [0.025, 0.25 * (0.7 - 0.15)])


def test_kelly_payoff_ratio_comes_from_past_trades_only():
    frame = make_frame({"A": [0.02, -0.01, 0.02, -0.01, 0.03]}, prediction=[1.0] * 5, probability_UP=[0.6] * 5)
    options = dict(sizing="kelly", probability_source="column", probability_column="probability_UP", min_history=2)
    book = simulate_book(frame, "prediction", 1, 0, CALENDAR, **options)
    # b = 1 until a win and a loss are realized (period 2), then 0.02 / 0.01 = 2.
    np.testing.assert_allclose(book.weights[:, 0], [0.05, 0.05, 0.1, 0.1, 0.1])
    capped = simulate_book(frame, "prediction", 1, 0, CALENDAR, max_position=0.07, **options)
    np.testing.assert_allclose(capped.weights[:, 0], [0.05, 0.05, 0.07, 0.07, 0.07])
    # A short bets on 1 - P(up), in its own slot (two symbols: half weights).
    frame = make_frame({"A": [0.01], "B": [-0.01]}, prediction={"A": [1.0], "B": [-1.0]},
                       probability_UP={"A": [0.6], "B": [0.3]})
    book = simulate_book(frame, "prediction", 1, 0, CALENDAR, **options)
    np.testing.assert_allclose(book.weights[0], [0.05 / 2, -0.1 / 2])


def test_calibrated_probability_is_the_discriminant_fit_on_realized_rows():
    # Realized scores: up {1, 3}, down {-1, -3}: means +-2, pooled variance 2,
    # so P(up | s) = sigmoid(2 s) and P(up | 0.5) = sigmoid(1).
    frame = make_frame({"A": [0.02, -0.01, 0.02, -0.01, 0.02]}, prediction=[1.0, -1.0, 3.0, -3.0, 0.5])
    book = simulate_book(frame, "prediction", 1, 0, CALENDAR, sizing="kelly", min_history=4)
    probability = 1 / (1 + np.exp(-1.0))
    # Every past sign trade won, so b keeps its default of 1; before 4 realized rows p = 0.5 bets nothing.
    np.testing.assert_allclose(book.weights[:, 0], [0, 0, 0, 0, 0.25 * (2 * probability - 1)])
    # A score that never varies calibrates to the base rate: 3 ups in 4 gives p = 0.75.
    frame = make_frame({"A": [0.01, 0.01, 0.01, -0.01, 0.01]}, prediction=[1.0] * 5)
    book = simulate_book(frame, "prediction", 1, 0, CALENDAR, sizing="kelly", min_history=4)
    np.testing.assert_allclose(book.weights[:, 0], [0, 0, 0, 0, 0.25 * (0.75 - 0.25)])


def test_meta_label_filter_trades_the_primary_side_only_above_the_threshold():
    frame = make_frame({"A": [0.01] * 6}, past_return=[0.1, 0.1, -0.1, 0.1, -0.1, 0.0],
                       probability_resolved=[0.7, 0.5, 0.65, 0.6, 0.9, 0.9])
    book = simulate_book(frame, "prediction", 1, 0, CALENDAR, signal="meta_label", confidence_target="event",
                         probability_source="column", probability_column="probability_resolved")
    np.testing.assert_allclose(book.weights[:, 0], [1, 0, -1, 0, -1, 0])  # 0.6 is not above 0.6
    # A directional tanh score as confidence: P(up) = (score + 1) / 2, a short's confidence is 1 - P(up).
    frame = make_frame({"A": [0.01] * 4}, prediction=[0.3, 0.1, -0.5, -0.1], past_return=[0.1, 0.1, -0.1, 0.1])
    book = simulate_book(frame, "prediction", 1, 0, CALENDAR, signal="meta_label", probability_source="score")
    np.testing.assert_allclose(book.weights[:, 0], [1, 0, -1, 0])
    # A primary-side column overrides momentum (confidences 0.35, 0.55, 0.25, 0.45).
    book = simulate_book(frame.assign(side=[-1, 1, 1, 1]), "prediction", 1, 0, CALENDAR, signal="meta_label",
                         probability_source="score", primary_side_column="side", confidence_threshold=0.4)
    np.testing.assert_allclose(book.weights[:, 0], [0, 1, 0, 1])


def test_overlapping_ends_are_thinned_and_gaps_reopen_the_book():
    frame = make_frame({"A": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}, prediction=[1.0] * 6)
    results, equity = backtest(frame, "prediction", 2, 0, CALENDAR)
    assert list(equity.index) == list(CALENDAR[[0, 2, 4]])
    assert list(equity["period_end"]) == list(CALENDAR[[2, 4, 6]])
    np.testing.assert_allclose(equity["strategy"], np.cumprod([1.01, 1.03, 1.05]))
    assert results["periods_per_year"] == 126
    # Ends 0, 1, 3, 4 with horizon 2 keep 0 and 3: a bar apart, so the book is closed and reopened.
    frame = make_frame({"A": [0.01, 0.02, 0.03, 0.04]}, positions=[0, 1, 3, 4], prediction=[1.0] * 4)
    _, equity = backtest(frame, "prediction", 2, 10, CALENDAR)
    assert list(equity.index) == list(CALENDAR[[0, 3]])
    np.testing.assert_allclose(equity["turnover"], [1.0, 1.0 + 1.0 + 1.0])


@pytest.mark.parametrize("rules", [
    # Estimators: the walk-forward calibration and the payoff ratio.
    BacktestRules(signal="meta_label", confidence_threshold=0.55, sizing="kelly", min_history=6,
                  max_gross_exposure=0.5),
    # Path-dependent controls on full-size positions.
    BacktestRules(max_loss_streak=2, cooldown_periods=2, period_loss_limit=0.005),
    BacktestRules(max_loss_streak=2, cooldown_periods=2, period_loss_limit=0.01, drawdown_limit=0.02),
], ids=["estimators", "risk_controls", "drawdown_stop"])
def test_positions_use_no_information_from_after_the_rebalance(rules):
    rng = np.random.default_rng(0)
    horizon, num_bars = 2, 70
    returns = {symbol: list(rng.normal(0.002, 0.02, num_bars)) for symbol in "ABC"}
    frame = make_frame(returns, prediction={s: list(rng.normal(size=num_bars)) for s in "ABC"},
                       past_return={s: list(rng.normal(size=num_bars)) for s in "ABC"})
    frame["prediction"] += 20 * frame["forward_return"]  # an informative score, so the calibration moves
    base = simulate_book(frame, "prediction", horizon, 5, CALENDAR, rules)
    assert (base.weights != 0).any()
    if rules.sizing != "kelly":  # the controls under test did act
        assert base.halted.any() and (base.stopped.any() if rules.drawdown_limit else base.flattened.any())
    bar = CALENDAR.get_indexer(frame["timestamp"])
    changed_later = False
    for period in range(len(base.timestamps) - 1):
        rebalance = CALENDAR.get_loc(base.timestamps[period])
        perturbed = frame.copy()
        # Outcomes not yet realized at the rebalance (label end after it), and later scores.
        unrealized = bar + horizon > rebalance
        perturbed.loc[unrealized, "forward_return"] = rng.normal(0, 0.05, unrealized.sum())
        later = bar > rebalance
        perturbed.loc[later, "prediction"] = rng.normal(size=later.sum())
        perturbed.loc[later, "past_return"] = rng.normal(size=later.sum())
        book = simulate_book(perturbed, "prediction", horizon, 5, CALENDAR, rules)
        np.testing.assert_array_equal(book.weights[:period + 1], base.weights[:period + 1])
        changed_later |= not np.array_equal(book.weights[period + 1:], base.weights[period + 1:])
    assert changed_later  # the check could see a leak


def test_results_and_equity_layout_with_baseline_columns():
    frame = make_frame({"A": [0.01, -0.02, 0.03], "B": [0.02, 0.01, -0.01]})
    frame["baseline_always_up"] = 1.0
    results, equity = backtest(frame, "prediction", 1, 5, CALENDAR.tz_localize(None).to_numpy(), 252,
                               score_columns=["baseline_always_up"])
    assert set(results) == {"strategy", "buy_and_hold", "baseline_always_up", "rules", "periods_per_year"}
    assert {"sharpe", "sortino", "max_drawdown", "calmar", "win_rate", "trade_win_rate", "profit_factor", "turnover",
            "exposure", "num_trades", "periods_halted", "annualized_volatility"} <= set(results["strategy"])
    assert results["rules"]["signal"] == "sign" and results["rules"]["slippage_bps"] == 0
    # Always long on the same periods with the same costs is buy-and-hold.
    np.testing.assert_allclose(equity["baseline_always_up"], equity["buy_and_hold"])
    assert list(equity.columns) == ["strategy", "buy_and_hold", "baseline_always_up", "drawdown", "net_return",
                                    "gross_exposure", "turnover", "halted", "flattened", "stopped", "cut",
                                    "period_end"]


@pytest.mark.parametrize("options, message", [
    ({"confidence_threshold": 1.5}, "`confidence_threshold` must be in [0, 1]. Received: confidence_threshold=1.5"),
    ({"sizing": "half"}, "`sizing` must be one of ('fixed', 'kelly', 'volatility'). Received: sizing='half'"),
    ({"kelly_fraction": 0}, "Received: kelly_fraction=0"),
    ({"max_loss_streak": 0}, "Received: max_loss_streak=0"),
    ({"drawdown_limit": 1.2}, "Received: drawdown_limit=1.2"),
    ({"sizing": "kelly", "probability_source": "column"}, "Received: probability_column=None"),
    ({"confidence_target": "event"}, "needs `signal='meta_label'`"),
    ({"stop_loss": 0.1}, "Unknown backtest options ['stop_loss']"),
])
def test_invalid_options_say_what_was_received(options, message):
    frame = make_frame({"A": [0.01, 0.02]})
    with pytest.raises(BacktestError) as error:
        backtest(frame, "prediction", 1, 0, CALENDAR, **options)
    assert message in str(error.value)
    # The command-line entry points print a SynapseError's message in one line, never its traceback.
    assert isinstance(error.value, SynapseError) and isinstance(error.value, ValueError)


def test_invalid_frames_name_the_problem():
    frame = make_frame({"A": [0.01, 0.02]})
    with pytest.raises(BacktestError, match=r"without \['probability_UP'\]"):
        backtest(frame, "prediction", 1, 0, CALENDAR, sizing="kelly", probability_source="column",
                 probability_column="probability_UP")
    with pytest.raises(BacktestError, match="must hold probabilities in \\[0, 1\\]. Received: 1.2 for symbol='A'"):
        backtest(frame.assign(probability_UP=[0.5, 1.2]), "prediction", 1, 0, CALENDAR, sizing="kelly",
                 probability_source="column", probability_column="probability_UP")
    with pytest.raises(BacktestError, match="not on the calendar"):
        backtest(frame.assign(timestamp=frame["timestamp"] + pd.Timedelta(hours=1)), "prediction", 1, 0, CALENDAR)
    with pytest.raises(BacktestError, match="a second row for symbol='A'"):
        backtest(pd.concat([frame, frame]), "prediction", 1, 0, CALENDAR)
    with pytest.raises(BacktestError, match="Received: horizon=0"):
        backtest(frame, "prediction", 0, 0, CALENDAR)


def test_a_top_k_book_is_dollar_neutral_and_earns_the_spread_an_oracle_ranks():
    from keras_synapse.evaluation.positions import top_k_weights

    scores = np.array([[0.3, -0.1, 0.2, np.nan, -0.5, 0.0]])
    weights = top_k_weights(scores, np.isfinite(scores) | True, k=2)
    np.testing.assert_allclose(weights, [[0.25, -0.25, 0.25, 0.0, -0.25, 0.0]])  # long 0.3, 0.2; short -0.5, -0.1
    assert top_k_weights(scores[:, :2], np.ones((1, 2), bool), k=3).tolist() == [[0.5, -0.5]]  # half of two

    rng = np.random.default_rng(0)
    calendar = pd.date_range("2024-01-01", periods=300, freq="B")
    rows = [{"symbol": f"S{index}", "timestamp": timestamp, "forward_return": rng.normal(0, 0.02)}
            for timestamp in calendar[:-5] for index in range(8)]
    frame = pd.DataFrame(rows)
    frame["prediction"] = frame["forward_return"]  # an oracle ranks perfectly
    results, equity = backtest(frame, "prediction", horizon=5, cost_bps=5, calendar=calendar, signal="top_k",
                               top_k=2)
    gross = equity["gross_exposure"]
    assert np.allclose(gross[gross > 0], 1.0) and results["strategy"]["total_return"] > 1.0
    assert results["strategy"]["win_rate"] == 1.0 and results["rules"]["top_k"] == 2


def _calendar_frame(symbols_and_dates, seed=0):
    rng = np.random.default_rng(seed)
    rows = [{"symbol": symbol, "timestamp": timestamp, "forward_return": rng.normal(0, 0.01), "score": 1.0}
            for symbol, dates in symbols_and_dates.items() for timestamp in dates]
    return pd.DataFrame(rows)


def test_symbols_on_different_calendars_are_held_on_their_own_dates():
    """Stocks beside a seven-day coin: no weekend churn, and each sleeve annualized by its own year."""
    stock_days = pd.bdate_range("2024-01-01", periods=260, tz="UTC")
    coin_days = pd.date_range(stock_days[0], stock_days[-1], freq="D")
    own = {"GOOG": stock_days, "MSFT": stock_days, "BTC": coin_days}
    frame = _calendar_frame(own)
    union = coin_days

    def entries(result):
        return result["buy_and_hold"]["turnover"] * result["buy_and_hold"]["num_periods"]

    for horizon in (1, 5):
        mixed, equity = backtest(frame, "score", horizon, 10, union, 365, symbol_calendars=own)
        assert entries(mixed) == pytest.approx(2.0)  # one entry and one exit, as each symbol alone
        for symbol, dates in own.items():
            alone, _ = backtest(frame[frame["symbol"] == symbol], "score", horizon, 10, dates, symbol_calendars=own)
            assert entries(alone) == pytest.approx(2.0)
        assert mixed["buy_and_hold"]["total_costs"] == pytest.approx(2.0 * 10 / 1e4)
        sleeves = {tuple(sleeve["symbols"]): sleeve for sleeve in mixed["sleeves"]}
        assert set(sleeves) == {("GOOG", "MSFT"), ("BTC",)}
        assert sleeves[("GOOG", "MSFT")]["share"] == pytest.approx(2 / 3)
        assert sleeves[("GOOG", "MSFT")]["periods_per_year"] == pytest.approx(365 * 5 / 7 / horizon, rel=0.01)
        assert sleeves[("BTC",)]["periods_per_year"] == pytest.approx(365 / horizon)
        # The stock sleeve holds each position `horizon` of its own bars: five trading days span a weekend.
        stock_rebalances = pd.DatetimeIndex(equity.index).intersection(stock_days[::horizon])
        assert len(stock_rebalances) == len(stock_days[::horizon])
        # Each sleeve's returns are booked at its own rebalances, scaled by its share of capital.
        coin = frame[(frame["symbol"] == "BTC") & frame["timestamp"].isin(coin_days[::horizon])]
        on_weekends = equity.index.dayofweek >= 5
        np.testing.assert_allclose(equity["net_return"][on_weekends].to_numpy(),
                                   np.expm1(coin.set_index("timestamp")["forward_return"])[
                                       equity.index[on_weekends]].to_numpy() / 3, atol=1e-12)

    # On one union calendar, as before: the stocks are dropped every weekend and bought back.
    blind, _ = backtest(frame, "score", 1, 10, union, 365)
    assert entries(blind) > 40


def test_an_experiments_strategy_text_becomes_typed_rules():
    from keras_synapse.evaluation.trading_rules import rules_from_text

    rules = rules_from_text({"signal": "meta_label", "primary_side_column": "rsi_reversion", "sizing": "kelly",
                             "kelly_fraction": "0.25", "drawdown_limit": "0.2", "max_loss_streak": "3",
                             "period_loss_limit": "none"}, execution_lag=1)
    assert rules == BacktestRules(signal="meta_label", primary_side_column="classical_rsi_reversion", sizing="kelly",
                                  kelly_fraction=0.25, drawdown_limit=0.2, max_loss_streak=3, execution_lag=1)
    for pairs, message in (({"sizing": "martingale"}, "`sizing` must be one of"),
                           ({"max_loss_streak": "2.5"}, "max_loss_streak must be a whole number"),
                           ({"drawdown_limit": "a lot"}, "drawdown_limit must be a number"),
                           ({"leverage": "3"}, "`strategy` has no setting 'leverage'"),
                           ({"execution_lag": "2"}, r"the run itself sets \['execution_lag'\]")):
        with pytest.raises(SynapseError, match=message):
            rules_from_text(pairs, execution_lag=0)


def test_volatility_sizing_aims_each_position_at_the_target_from_realized_returns_only():
    returns = [0.01, -0.03, 0.02, 0.04, -0.02, 0.01, 0.03, -0.01]
    frame = make_frame({"A": returns}, prediction=[1.0] * len(returns))
    book = simulate_book(frame, "prediction", 1, 0, CALENDAR, sizing="volatility", volatility_target=0.01,
                         min_history=3, max_position=2.0)
    # Period k sees the returns of periods before k (a one-bar label is realized at the next rebalance).
    expected = [1.0, 1.0, 1.0] + [min(0.01 / np.std(returns[:k], ddof=1), 2.0) for k in range(3, len(returns))]
    np.testing.assert_allclose(book.weights[:, 0], expected, rtol=1e-9)
