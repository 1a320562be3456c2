"""`kill -9` of the live runner mid-session, then a restart: no order twice, the same book as without the kill.

The runner is the real command (`python -m keras_synapse.live --broker
alpaca-paper`) in its own process, trading the fake Alpaca on 127.0.0.1
through alpaca-py. One kill lands while an order is at the broker but its
answer has not come back (the fake holds the reply): the journal has the
intent and no answer, the broker has the order. Another lands wherever the
runner happens to be.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_alpaca import FakeAlpaca

from keras_synapse.data import load_panel
from keras_synapse.serving.inference import Predictor
from keras_synapse.trading.journal import read_records

SYMBOLS = ("SYN-00", "SYN-01", "SYN-02")
TRADED_BARS = 60
REPOSITORY = Path(__file__).resolve().parents[2]
KEYS = {"APCA_API_KEY_ID": "PKFAKEKEYID7Q3Z9X2M4", "APCA_API_SECRET_KEY": "fakeSecretKey9w8V7u6T5s4R3q2P1o0N"}


@pytest.fixture(scope="module")
def session_bars(trained_registry):
    warmup = Predictor.from_registry(trained_registry).inputs.default_buffer_length()
    sample = load_panel("sample", quick=True)
    return {symbol: sample[symbol].iloc[-(TRADED_BARS + warmup):] for symbol in SYMBOLS}, warmup


def start_runner(model, fake, live_dir, warmup, first_bar, log):
    command = [sys.executable, "-m", "keras_synapse.live", str(model), "--broker", "alpaca-paper",
               "--symbols", ",".join(SYMBOLS), "--trading-url", fake.url, "--data-url", fake.url,
               "--history-start", first_bar.isoformat(), "--warmup-bars", str(warmup), "--live-dir", str(live_dir),
               "--poll-interval", "0.02", "--max-idle-polls", "3", "--ramp", "0.5,1.0", "--ramp-periods", "2"]
    return subprocess.Popen(command, cwd=REPOSITORY, env={**os.environ, **KEYS}, stdout=log,
                            stderr=subprocess.STDOUT)


def wait_for(condition, process, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, "the runner exited before the kill"
        assert time.time() < deadline, "timed out waiting for the runner"
        time.sleep(0.01)


def finish(process, log_path):
    assert process.wait(timeout=300) == 0, Path(log_path).read_text()[-3000:]


def test_kill_9_mid_session_then_restart_sends_no_order_twice_and_ends_in_the_same_book(
        trained_registry, session_bars, tmp_path):
    bars, warmup = session_bars
    first_bar = bars[SYMBOLS[0]].index[0]

    uninterrupted = FakeAlpaca(bars, revealed=warmup)
    try:
        with open(tmp_path / "a.log", "w") as log:
            finish(start_runner(trained_registry, uninterrupted, tmp_path / "a", warmup, first_bar, log),
                   tmp_path / "a.log")
        reference_orders = {order["client_order_id"]: order["qty"] for order in uninterrupted.orders}
        reference_positions = uninterrupted.positions()
    finally:
        uninterrupted.stop()
    assert len(reference_orders) >= 15 and reference_positions

    interrupted = FakeAlpaca(bars, revealed=warmup)
    live_dir = tmp_path / "b"
    try:
        with open(tmp_path / "b.log", "w") as log:
            # Kill 1: an order reached the broker, its answer never reached the runner.
            process = start_runner(trained_registry, interrupted, live_dir, warmup, first_bar, log)
            wait_for(lambda: len(interrupted.orders) >= 5, process)
            interrupted.hold_order_replies(60)
            held = len(interrupted.orders) + 1
            wait_for(lambda: len(interrupted.orders) >= held, process)
            process.send_signal(signal.SIGKILL)
            process.wait()
            interrupted.hold_order_replies(0)
            journal = read_records(live_dir / "journal.jsonl")
            answered = {record["client_order_id"] for record in journal if record["type"] == "order"}
            assert interrupted.orders[-1]["client_order_id"] not in answered  # the kill landed mid-request

            # Kill 2: wherever the restarted runner is, a few bars on.
            process = start_runner(trained_registry, interrupted, live_dir, warmup, first_bar, log)
            bars_before = sum(record["type"] == "processed" for record in journal)
            wait_for(lambda: sum(record["type"] == "processed"
                                 for record in read_records(live_dir / "journal.jsonl")) >= bars_before + 10, process)
            process.send_signal(signal.SIGKILL)
            process.wait()

            finish(start_runner(trained_registry, interrupted, live_dir, warmup, first_bar, log), tmp_path / "b.log")
        sent = [order["client_order_id"] for order in interrupted.orders]
        assert len(sent) == len(set(sent))  # no order twice
        assert interrupted.duplicate_attempts == []  # the restart looked the held order up instead of resending
        assert {order["client_order_id"]: order["qty"] for order in interrupted.orders} == reference_orders
        assert interrupted.positions() == reference_positions
    finally:
        interrupted.stop()
    journal = read_records(live_dir / "journal.jsonl")
    assert sum(record["type"] == "session" and record.get("resumed", False) for record in journal) == 2
    # The keys went to the broker in headers and nowhere else.
    for path in (live_dir / "journal.jsonl", live_dir / "status.json", tmp_path / "a.log", tmp_path / "b.log"):
        assert not any(key in path.read_text() for key in KEYS.values()), path
    assert sum(record["type"] == "processed" for record in journal) == TRADED_BARS
