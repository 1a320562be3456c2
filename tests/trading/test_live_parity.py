"""Live-backtest parity: test bars replayed through the runner trade exactly as the backtest of the same strategy.

The runner sees one bar at a time (streaming features, outcomes only once
realized); the backtest sees the whole period at once (batch predictions,
every forward return). If the backtest's weights at a rebalance read anything
the runner could not know then, the two books part: this is the test that
would catch it.
"""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data import load_panel
from keras_synapse.data.panel import Panel
from keras_synapse.evaluation.backtest import simulate_book
from keras_synapse.evaluation.trading_rules import BacktestRules
from keras_synapse.serving.inference import Predictor
from keras_synapse.trading.bar_sources import ReplayBars
from keras_synapse.trading.brokers import SimulatedBroker
from keras_synapse.trading.runner import LiveRunner, LiveSettings

SYMBOLS = ("SYN-00", "SYN-01", "SYN-02", "SYN-03")
TRADED_BARS = 90
CAPITAL = 100000.0
# Kelly sizing and two breakers that fire on a no-edge model, so the parity covers the path-dependent rules.
RULES = BacktestRules(sizing="kelly", min_history=20, max_loss_streak=2, cooldown_periods=2, drawdown_limit=0.05)
RAMP, RAMP_PERIODS = (0.5, 1.0), 3


@pytest.fixture(scope="module")
def replay(trained_registry):
    predictor = Predictor.from_registry(trained_registry)
    warmup = predictor.inputs.default_buffer_length()
    sample = load_panel("sample", quick=True)
    panel = Panel({symbol: sample[symbol].iloc[-(TRADED_BARS + warmup):] for symbol in SYMBOLS})
    return predictor, panel, warmup


def expected_orders(predictor, panel, warmup, horizon, cost_bps):
    """The backtest's book on the whole period, as orders: (bar, symbol) -> signed shares."""
    scored = predictor.predict_panel(panel).reset_index()
    calendar = next(iter(panel.values())).index
    traded = calendar[warmup:]
    rows = []
    for symbol, frame in panel.items():
        log_close = np.log(frame["close"])
        own = scored[(scored["symbol"] == symbol) & scored["timestamp"].isin(traded)]
        at = pd.DatetimeIndex(own["timestamp"])
        rows.append(own.assign(prediction=own["score"],
                               forward_return=(log_close.shift(-horizon) - log_close).reindex(at).to_numpy(),
                               past_return=(log_close - log_close.shift(horizon)).reindex(at).to_numpy()))
    book = simulate_book(pd.concat(rows, ignore_index=True), "prediction", horizon, cost_bps, calendar, RULES)
    orders, held, clean = {}, dict.fromkeys(book.symbols, 0.0), 0
    for period, timestamp in enumerate(book.timestamps):
        ramp = RAMP[min(len(RAMP) - 1, clean // RAMP_PERIODS)]
        clean = 0 if (book.halted[period] or book.stopped[period] or book.flattened[period]) else clean + 1
        for column, symbol in enumerate(book.symbols):
            target = float(np.round(book.weights[period, column] * ramp * CAPITAL / panel[symbol]["close"][timestamp]))
            if target != held[symbol]:
                orders[(timestamp, symbol)] = target - held[symbol]
                held[symbol] = target
    return orders, book


def test_a_replay_through_the_runner_trades_exactly_as_the_backtest(replay, tmp_path):
    predictor, panel, warmup = replay
    horizon = int(predictor.metadata["label"]["horizon"])
    settings = LiveSettings(strategy_id="parity", horizon=horizon, rules=RULES, cost_bps=5.0, capital=CAPITAL,
                            ramp=RAMP, ramp_periods=RAMP_PERIODS)
    broker = SimulatedBroker(cash=CAPITAL)
    runner = LiveRunner(predictor, broker, ReplayBars(panel, warmup), tmp_path / "live", settings, sleep=lambda s: None)
    runner.start()
    assert runner.run(poll_interval=0) == TRADED_BARS
    runner.close()

    expected, book = expected_orders(predictor, panel, warmup, horizon, settings.cost_bps)
    # The backtest has no outcome for the last horizon's bars, so it has no rebalance there; the runner does.
    last_period = book.timestamps[-1]
    live = {(pd.Timestamp(order["timestamp"]), order["symbol"]): order["quantity"]
            for order in runner.orders.values() if pd.Timestamp(order["timestamp"]) <= last_period}
    assert live == expected
    # Not a vacuous parity: the book bought, sold, sized by Kelly, and its breakers fired and reset the ramp.
    assert len(expected) >= 20
    assert {np.sign(quantity) for quantity in expected.values()} == {-1.0, 1.0}
    assert (book.halted | book.stopped).any()
    assert len({round(abs(weight), 6) for weight in book.weights.ravel() if weight}) > 3
    assert broker.positions() == runner.positions()
