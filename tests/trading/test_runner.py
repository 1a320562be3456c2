"""The runner's safe states: each failure of data, model or broker, what it falls back to, and why it says so."""

import json

import numpy as np
import pandas as pd
import pytest
from fake_alpaca import FakeAlpaca

from keras_synapse.data import load_panel
from keras_synapse.data.panel import Panel
from keras_synapse.serving.inference import Predictor
from keras_synapse.trading.alpaca_broker import AlpacaBroker
from keras_synapse.trading.bar_sources import AlpacaBars, ReplayBars
from keras_synapse.trading.brokers import SimulatedBroker
from keras_synapse.trading.runner import LiveRunner, LiveSettings

SYMBOLS = ("SYN-00", "SYN-01")
TRADED_BARS = 12
HORIZON = 5


@pytest.fixture(scope="module")
def setup(trained_registry):
    predictor = Predictor.from_registry(trained_registry)
    warmup = predictor.inputs.default_buffer_length()
    sample = load_panel("sample", quick=True)
    panel = {symbol: sample[symbol].iloc[-(TRADED_BARS + warmup):] for symbol in SYMBOLS}
    return predictor, panel, warmup


@pytest.fixture
def alpaca_keys(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", "PKFAKEKEYID7Q3Z9X2M4")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "fakeSecretKey9w8V7u6T5s4R3q2P1o0N")


def settings(**changes):
    return LiveSettings(**{"strategy_id": "test", "horizon": HORIZON, "ramp": (1.0,), "retry_wait": 0.0, **changes})


def alpaca_runner(predictor, panel, warmup, fake, live_dir):
    source = AlpacaBars(list(panel), warmup, url_override=fake.url, history_start=next(iter(panel.values())).index[0])
    return LiveRunner(predictor, AlpacaBroker(url_override=fake.url), source, live_dir, settings(),
                      sleep=lambda seconds: None)


def run_with_one_failure(setup, tmp_path, status, path_prefix):
    """A session against the fake Alpaca whose next request under `path_prefix` fails with `status`."""
    predictor, panel, warmup = setup
    fake = FakeAlpaca(panel, revealed=warmup)
    try:
        runner = alpaca_runner(predictor, panel, warmup, fake, tmp_path)
        runner.start()
        fake.fail_next(status, path_prefix, times=1)
        traded = runner.run(poll_interval=0, max_idle_polls=2)
        runner.close()
    finally:
        fake.stop()
    return runner, fake, traded


def records(runner, kind):
    return [record for record in runner.journal.records if record["type"] == kind]


def test_a_transient_broker_failure_is_retried_and_an_order_left_unanswered_is_sent_once_at_the_next_bar(
        setup, alpaca_keys, tmp_path):
    predictor, panel, warmup = setup
    fake = FakeAlpaca(panel, revealed=warmup)
    try:
        runner = alpaca_runner(predictor, panel, warmup, fake, tmp_path)
        runner.start()
        fake.fail_next(429, "/v2/orders", times=1)  # retried within the bar
        runner.run(poll_interval=0, max_bars=1)
        assert len(fake.orders) == len(SYMBOLS) and records(runner, "fallback") == []
        fake.fail_next(503, "/v2/orders", times=3)  # every attempt of the next rebalance's first order fails
        runner.run(poll_interval=0, max_idle_polls=2)
        runner.close()
    finally:
        fake.stop()
    fallbacks = records(runner, "fallback")
    assert len(fallbacks) == 1 and "HTTP 503" in fallbacks[0]["reason"] and fallbacks[0]["action"] == "hold"
    sent = [order["client_order_id"] for order in fake.orders]
    assert len(sent) == len(set(sent))
    # The order that failed at its bar went out at the next one, under its own id.
    assert set(runner.orders) == set(sent)
    assert fake.positions() == runner.positions()


def test_refused_keys_stop_the_runner_with_the_reason_and_nothing_after(setup, alpaca_keys, tmp_path):
    runner, fake, traded = run_with_one_failure(setup, tmp_path, 403, "/v2/orders")
    assert traded == 1 and fake.orders == []
    assert "refused the keys" in runner.stopped_reason and "APCA_API_KEY_ID" in runner.stopped_reason
    assert records(runner, "fallback")[-1]["action"] == "stop"
    assert "fakeSecretKey" not in (tmp_path / "journal.jsonl").read_text()


def test_a_data_failure_holds_the_book_and_the_next_poll_carries_on(setup, alpaca_keys, tmp_path):
    runner, _, traded = run_with_one_failure(setup, tmp_path, 500, "/v2/stocks/bars")
    fallbacks = records(runner, "fallback")
    assert [fallback["action"] for fallback in fallbacks] == ["hold"] and fallbacks[0]["reason"].startswith("data:")
    assert traded == TRADED_BARS


def test_a_symbol_whose_bar_fails_validation_gets_the_neutral_score_and_is_closed(setup, tmp_path):
    predictor, panel, warmup = setup
    broken = {symbol: frame.copy() for symbol, frame in panel.items()}
    # The second rebalance's bar of SYN-01 has its high below its low: the model must not see it.
    rebalance = broken["SYN-01"].index[warmup + HORIZON]
    broken["SYN-01"].loc[rebalance, "high"] = broken["SYN-01"].loc[rebalance, "low"] * 0.5
    runner = LiveRunner(predictor, SimulatedBroker(), ReplayBars(broken, warmup), tmp_path, settings(),
                        sleep=lambda seconds: None)
    runner.start()
    runner.run(poll_interval=0, max_bars=HORIZON + 1)
    runner.close()
    bar = [record for record in records(runner, "bar") if record["timestamp"] == rebalance.isoformat()][0]
    assert bar["predictions"]["SYN-01"]["fallback"] and "invalid bars" in bar["predictions"]["SYN-01"]["reason"]
    assert bar["predictions"]["SYN-01"]["prediction"] == 0.0
    assert records(runner, "decision")[-1]["weights"]["SYN-01"] == 0.0
    assert "SYN-01" not in runner.positions()


def test_a_restart_whose_broker_disagrees_with_the_journal_blocks_that_symbol(setup, tmp_path):
    predictor, panel, warmup = setup
    account = tmp_path / "simulated_account.json"
    runner = LiveRunner(predictor, SimulatedBroker(account_path=account), ReplayBars(Panel(panel), warmup), tmp_path,
                        settings(), sleep=lambda seconds: None)
    runner.start()
    runner.run(poll_interval=0, max_bars=1)
    runner.close()
    held = runner.positions()
    assert set(held) == set(SYMBOLS)
    # Someone closed SYN-00 by hand at the broker while the runner was down.
    stored = json.loads(account.read_text())
    stored["positions"]["SYN-00"] = 0.0
    account.write_text(json.dumps(stored))
    restarted = LiveRunner(predictor, SimulatedBroker(account_path=account), ReplayBars(Panel(panel), warmup),
                           tmp_path, settings(), sleep=lambda seconds: None)
    restarted.start()
    restarted.run(poll_interval=0)
    restarted.close()
    assert list(restarted.blocked) == ["SYN-00"] and "the broker 0" in restarted.blocked["SYN-00"]
    reconcile = records(restarted, "reconcile")[-1]
    assert list(reconcile["mismatches"]) == ["SYN-00"]
    later = [order for order in restarted.orders.values() if order["timestamp"] > records(runner, "processed")[-1][
        "timestamp"]]
    assert later and {order["symbol"] for order in later} == {"SYN-01"}
    status = json.loads((tmp_path / "status.json").read_text())
    assert "SYN-00" in status["breakers"]["fallback"]
    assert np.isclose(status["equity"][0]["equity"], 100000.0, rtol=0.05)


def test_the_dashboard_answers_a_real_sessions_status(setup, tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from keras_synapse.trading.dashboard import add_dashboard

    predictor, panel, warmup = setup
    runner = LiveRunner(predictor, SimulatedBroker(), ReplayBars(panel, warmup), tmp_path, settings(),
                        sleep=lambda seconds: None)
    runner.start()
    runner.run(poll_interval=0)
    runner.close()
    app = FastAPI()
    add_dashboard(app, tmp_path)
    client = TestClient(app)
    equity = client.get("/dashboard/api/equity").json()
    assert equity["count"] == TRADED_BARS and equity["capital"] == 100000.0
    orders = client.get("/dashboard/api/orders").json()
    assert orders["count"] == len(runner.orders) > 0
    positions = client.get("/dashboard/api/positions").json()
    assert {row["symbol"]: row["quantity"] for row in positions["positions"]} == runner.positions()
    status = client.get("/dashboard/api/status").json()
    assert status["experiment"] == predictor.experiment and status["bars_processed"] == TRADED_BARS
    # The quick sample's last bars are in the model's training data: the dashboard says these trades prove nothing.
    assert status["in_sample_bars"] == TRADED_BARS and pd.Timestamp(status["trained_until"]) == pd.Timestamp(
        predictor.metadata["data"]["end"])
    drift = client.get("/dashboard/api/drift").json()
    assert drift["num_features"] == len(predictor.inputs.feature_names)
    assert all(feature["flag"] in ("drift", "moderate", "stable") and (feature["flag"] == "stable") ==
               (feature["reason"] == "") for feature in drift["features"])
    # Every realized point has its own no-edge band; a dozen bars are too few dates for the session's interval.
    monitor = client.get("/dashboard/api/monitor").json()
    assert monitor["rolling_ic"] and all(point["band"] > 0 for point in monitor["rolling_ic"] if point["ic"] is not None)
    assert monitor["ic_band"] == monitor["rolling_ic"][-1]["band"] and monitor["session"] is None
    assert client.get("/dashboard").status_code == 200


def test_a_journal_resumed_with_other_decision_settings_is_refused_by_name(setup, tmp_path):
    from keras_synapse.errors import SynapseError

    predictor, panel, warmup = setup
    first = LiveRunner(predictor, SimulatedBroker(), ReplayBars(panel, warmup), tmp_path, settings(),
                       sleep=lambda seconds: None)
    first.start()
    first.run(poll_interval=0, max_bars=2)
    first.close()
    changed = LiveRunner(predictor, SimulatedBroker(), ReplayBars(panel, warmup), tmp_path,
                         settings(capital=50000.0, retry_wait=3.0), sleep=lambda seconds: None)
    with pytest.raises(SynapseError, match=r"capital=100000.0 \(now 50000.0\)") as raised:
        changed.start()
    assert "retry_wait" not in str(raised.value)  # not a decision setting: resuming with it changed is fine
