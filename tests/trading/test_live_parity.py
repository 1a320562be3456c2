"""Live-backtest parity: test bars replayed through the runner trade exactly as the backtest of the same strategy.

The replay runs the whole live path: alpaca-py's data client polls a fake
Alpaca on 127.0.0.1 (one more bar each poll) and alpaca-py's trading client
sends the orders to it; the orders the fake received are compared with the
backtest's.

The runner sees one bar at a time (streaming features, outcomes only once
realized); the backtest sees the whole period at once (batch predictions,
every forward return). If the backtest's weights at a rebalance read anything
the runner could not know then, the two books part: this is the test that
would catch it.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from fake_alpaca import FakeAlpaca

from keras_synapse.data import load_panel
from keras_synapse.data.panel import Panel
from keras_synapse.evaluation.backtest import simulate_book
from keras_synapse.evaluation.trading_rules import BacktestRules
from keras_synapse.serving.inference import Predictor
from keras_synapse.trading.alpaca_broker import AlpacaBroker
from keras_synapse.trading.bar_sources import AlpacaBars
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


def expected_orders(predictor, panel, warmup, horizon, cost_bps, rules=RULES):
    """The backtest's book on the whole period, as orders: (bar, symbol) -> signed shares.

    With an execution lag L the trade enters at the open L bars after the
    signal and leaves at the open one horizon later, as the labels define it.
    """
    lag = rules.execution_lag
    scored = predictor.predict_panel(panel).reset_index()
    calendar = next(iter(panel.values())).index
    traded = calendar[warmup:]
    rows = []
    for symbol, frame in panel.items():
        entry = np.log(frame["close"] if lag == 0 else frame["open"]).shift(-lag)
        forward = entry.shift(-horizon) - entry
        own = scored[(scored["symbol"] == symbol) & scored["timestamp"].isin(traded)]
        at = pd.DatetimeIndex(own["timestamp"])
        rows.append(own.assign(prediction=own["score"], forward_return=forward.reindex(at).to_numpy(),
                               past_return=forward.shift(horizon + lag).reindex(at).to_numpy()))
    book = simulate_book(pd.concat(rows, ignore_index=True), "prediction", horizon, cost_bps, calendar, rules)
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


@pytest.fixture
def alpaca_keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", "PKFAKEKEYID7Q3Z9X2M4")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "fakeSecretKey9w8V7u6T5s4R3q2P1o0N")


@pytest.mark.parametrize("execution_lag", [0, 1])
def test_a_replay_through_the_runner_into_alpaca_trades_exactly_as_the_backtest(replay, alpaca_keys, tmp_path,
                                                                                  execution_lag):
    predictor, panel, warmup = replay
    horizon = int(predictor.metadata["label"]["horizon"])
    rules = dataclasses.replace(RULES, execution_lag=execution_lag)
    settings = LiveSettings(strategy_id="parity", horizon=horizon, rules=rules, cost_bps=5.0, capital=CAPITAL,
                            ramp=RAMP, ramp_periods=RAMP_PERIODS)
    fake = FakeAlpaca(dict(panel), revealed=warmup, cash=CAPITAL)
    try:
        source = AlpacaBars(list(SYMBOLS), warmup, url_override=fake.url, history_start=panel["SYN-00"].index[0])
        runner = LiveRunner(predictor, AlpacaBroker(url_override=fake.url), source, tmp_path / "live", settings,
                            sleep=lambda seconds: None)
        runner.start()
        assert runner.run(poll_interval=0, max_idle_polls=2) == TRADED_BARS
        runner.close()
    finally:
        fake.stop()

    expected, book = expected_orders(predictor, panel, warmup, horizon, settings.cost_bps, rules)
    # The backtest has no outcome for the last horizon's bars, so it has no rebalance there; the runner does.
    last_period = book.timestamps[-1]
    sent = {(pd.Timestamp(order["bar_timestamp"]), order["symbol"]): order["qty"] for order in fake.orders}
    assert len(sent) == len(fake.orders)  # one order per bar and symbol at most
    assert {key: quantity for key, quantity in sent.items() if key[0] <= last_period} == expected
    # Not a vacuous parity: the book bought, sold, sized by Kelly, and its breakers fired and reset the ramp.
    assert len(expected) >= 20
    assert {np.sign(quantity) for quantity in expected.values()} == {-1.0, 1.0}
    assert (book.halted | book.stopped).any()
    assert len({round(abs(weight), 6) for weight in book.weights.ravel() if weight}) > 3
    assert fake.positions() == runner.positions()
    assert fake.duplicate_attempts == []
