"""The live dashboard: its JSON endpoints on a runner's status.json, and the page in a real headless Chromium.

The Chromium test also makes the README's screenshot; to regenerate it:

    DASHBOARD_SCREENSHOT=docs/dashboard.png .venv/bin/python -m pytest tests/trading/test_dashboard.py \\
        -k chromium -p no:cacheprovider -n 0
"""

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import running_server
from fastapi import FastAPI
from fastapi.testclient import TestClient

from keras_synapse.serving.app import NO_EDGE_WARNING
from keras_synapse.trading.dashboard import StatusMissing, StatusUnreadable, add_dashboard, read_status

CHROMIUM = "/usr/bin/chromium"
SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
FEATURES = ["log_return_1", "log_return_5", "log_return_20", "volatility_20", "log_range", "volume_zscore_20",
            "rsi_14", "macd", "macd_signal", "bollinger_position", "atr_14", "momentum_10", "stochastic_k",
            "obv_zscore", "close_to_sma_50", "day_of_week", "gap"]


def session_status(num_bars=120, window=60, horizon=5, seed=2, capital=100_000.0):
    """A realistic `status.json` of a runner `num_bars` daily bars into a session, the last bar yesterday.

    Equity is a random walk with a dip (so the drawdown is visible), five
    positions (one short), an order per symbol every few bars (one rejected,
    the newest still pending), a rolling IC and accuracy over `window`
    bars of realized predictions (rank IC pooled over symbols, as the
    runner's `keras_synapse.trading.status` computes it), two drifted
    features and one fallback.
    """
    rng = np.random.default_rng(seed)
    today = pd.Timestamp.now(tz="UTC").normalize()
    times = pd.bdate_range(end=today - pd.Timedelta(days=1), periods=num_bars, tz="UTC")
    stamp = [time.isoformat() for time in times]
    returns = rng.normal(0.0006, 0.006, num_bars)
    returns[55:70] -= 0.004  # a losing stretch
    equity = capital * np.exp(np.cumsum(returns))
    drawdown = equity / np.maximum.accumulate(equity) - 1
    weights = {"AAA": 0.18, "BBB": 0.12, "CCC": 0.07, "DDD": -0.05, "EEE": 0.03}
    prices = {symbol: float(100 + 20 * index + rng.normal(0, 2)) for index, symbol in enumerate(SYMBOLS)}
    positions = {}
    for symbol, weight in weights.items():
        quantity = round(weight * equity[-1] / prices[symbol])
        positions[symbol] = {"quantity": float(quantity), "price": prices[symbol],
                             "value": quantity * prices[symbol], "weight": quantity * prices[symbol] / equity[-1]}
    orders = []
    for bar in range(10, num_bars, 6):
        symbol = SYMBOLS[(bar // 6) % len(SYMBOLS)]
        quantity = float(rng.choice([-1, 1]) * rng.integers(5, 60))
        orders.append({"timestamp": stamp[bar], "client_order_id": f"ks-{bar:04d}-{symbol.lower()}-{seed}",
                       "symbol": symbol, "quantity": quantity, "state": "filled",
                       "filled_price": round(prices[symbol] * (1 + rng.normal(0, 0.01)), 2)})
    orders[7]["state"], orders[7]["filled_price"] = "rejected", None
    orders[-1]["state"], orders[-1]["filled_price"] = "submitted", None
    realized_bars = num_bars - horizon - 20  # bars whose predictions' horizon has passed, after the warm-up
    rolling = range(num_bars - realized_bars + window - 1 - horizon, num_bars - horizon)
    realized = min(window, realized_bars) * len(SYMBOLS)  # the rows of the latest window, all symbols pooled
    ic = np.clip(0.01 + np.cumsum(rng.normal(0, 0.012, len(rolling))), -0.3, 0.3)
    accuracy = np.clip(0.51 + np.cumsum(rng.normal(0, 0.006, len(rolling))), 0.3, 0.7)
    features = {}
    for index, name in enumerate(FEATURES):
        psi = float(abs(rng.normal(0.04, 0.03)))
        features[name] = {"psi": psi, "ks_statistic": float(abs(rng.normal(0.05, 0.02))),
                          "ks_p_value": float(rng.uniform(0.05, 0.9)), "drifted": False}
    features["rsi_14"] = {"psi": 0.31, "ks_statistic": 0.12, "ks_p_value": 0.001, "drifted": True}
    features["volume_zscore_20"] = {"psi": 0.14, "ks_statistic": 0.16, "ks_p_value": 0.0004, "drifted": True}
    return {
        "updated": pd.Timestamp.now(tz="UTC").isoformat(), "experiment": "shared_backbone", "version": 3,
        "verdict": "no detectable edge: IC -0.004 [-0.03, +0.02]", "edge_significant": False,
        "broker": "simulated", "symbols": SYMBOLS, "last_bar": stamp[-1], "bars_processed": num_bars,
        "capital": capital,
        "equity": [{"timestamp": stamp[bar], "equity": float(equity[bar]), "drawdown": float(drawdown[bar])}
                   for bar in range(num_bars)],
        "positions": positions, "orders": orders,
        "monitor": {"window": window, "realized": realized,
                    "rolling_ic": [{"timestamp": stamp[bar], "ic": float(value)} for bar, value in zip(rolling, ic)],
                    "rolling_accuracy": [{"timestamp": stamp[bar], "accuracy": float(value)}
                                         for bar, value in zip(rolling, accuracy)],
                    "ic": float(ic[-1]), "accuracy": float(accuracy[-1]), "degraded": False,
                    "min_ic": -0.02, "min_realized": 40},
        "drift": {"checked_at": stamp[-1], "num_drifted": 2, "num_features": len(FEATURES), "drifted": False,
                  "features": features},
        "breakers": {"halted": False, "stopped": False, "flattened": False, "cut": False, "ramp": 0.5,
                     "fallback": None},
        "fallbacks": [{"timestamp": stamp[num_bars * 3 // 4], "reason": "broker: HTTP 429", "action": "hold"}],
    }


def write_status(live_dir, status):
    """Writes `status` as the runner does: to a temporary file, then `os.replace`."""
    live_dir = Path(live_dir)
    live_dir.mkdir(parents=True, exist_ok=True)
    temporary = live_dir / "status.json.tmp"
    temporary.write_text(json.dumps(status))
    os.replace(temporary, live_dir / "status.json")


@pytest.fixture
def live_dir(tmp_path):
    return tmp_path / "live"


@pytest.fixture
def client(live_dir):
    return TestClient(add_dashboard(FastAPI(), live_dir), raise_server_exceptions=False)


API = ["status", "equity", "positions", "orders", "monitor", "drift"]


def test_endpoints_answer_the_session(client, live_dir):
    status = session_status()
    write_status(live_dir, status)

    header = client.get("/dashboard/api/status").json()
    assert header["state"] == "live" and header["experiment"] == "shared_backbone" and header["version"] == 3
    assert header["edge_significant"] is False and header["warning"] == NO_EDGE_WARNING
    assert header["verdict"].startswith("no detectable edge")
    assert header["equity"] == status["equity"][-1]["equity"]
    assert header["return"] == pytest.approx(status["equity"][-1]["equity"] / 100_000 - 1)
    assert header["max_drawdown"] == min(point["drawdown"] for point in status["equity"]) < -0.01
    assert header["breakers"]["ramp"] == 0.5 and header["fallback"] is None
    assert header["fallbacks"] == status["fallbacks"] and header["num_fallbacks"] == 1
    assert header["drift"] == {"available": True, "drifted": False, "num_drifted": 2, "num_features": 17,
                               "checked_at": status["last_bar"]}
    assert header["bars_processed"] == 120 and 0 <= header["age_seconds"] < 600

    equity = client.get("/dashboard/api/equity").json()
    assert equity["count"] == 120 and equity["points"] == status["equity"] and equity["capital"] == 100_000

    positions = client.get("/dashboard/api/positions").json()
    assert [row["symbol"] for row in positions["positions"]] == ["AAA", "BBB", "CCC", "EEE", "DDD"]
    assert positions["net_weight"] == pytest.approx(sum(p["weight"] for p in status["positions"].values()))
    assert positions["gross_weight"] == pytest.approx(sum(abs(p["weight"]) for p in status["positions"].values()))

    orders = client.get("/dashboard/api/orders", params={"limit": 5}).json()
    assert orders["count"] == len(status["orders"]) and len(orders["orders"]) == 5
    assert orders["orders"][0] == status["orders"][-1] and orders["orders"][0]["state"] == "submitted"
    assert orders["states"] == {"filled": len(status["orders"]) - 2, "rejected": 1, "submitted": 1}
    assert client.get("/dashboard/api/orders", params={"limit": 0}).status_code == 422

    monitor = client.get("/dashboard/api/monitor").json()
    assert monitor["rolling_ic"] == status["monitor"]["rolling_ic"] and monitor["window"] == 60
    # The bands count the realized predictions of the latest window (all symbols pooled).
    assert monitor["ic_band"] == pytest.approx(1.96 / math.sqrt(300)) and monitor["min_ic"] == -0.02
    assert monitor["accuracy_band"] == pytest.approx(0.98 / math.sqrt(300))
    assert monitor["latest_accuracy"] == status["monitor"]["rolling_accuracy"][-1]["accuracy"]

    drift = client.get("/dashboard/api/drift").json()
    assert [feature["name"] for feature in drift["features"][:2]] == ["rsi_14", "volume_zscore_20"]
    assert drift["features"][0] == {"name": "rsi_14", **status["drift"]["features"]["rsi_14"]}
    assert len(drift["features"]) == 17 and drift["thresholds"] == {"psi_moderate": 0.1, "psi_drift": 0.25}

    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "__REFRESH_MS__" not in page.text and "const REFRESH_MS = 3000;" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), "the page must load nothing external"


def test_missing_status_says_waiting_for_the_runner(client, live_dir):
    for name in API:
        answer = client.get(f"/dashboard/api/{name}")
        assert answer.status_code == 404, name
        assert answer.json()["state"] == "waiting" and "waiting for the runner" in answer.json()["detail"]
    assert client.get("/dashboard").status_code == 200  # the page itself shows the waiting card
    with pytest.raises(StatusMissing, match="waiting for the runner"):
        read_status(live_dir)


@pytest.mark.parametrize("text, message", [
    ('{"updated": "2024-03-01", "equity": [{"timest', "not valid JSON"),
    ("", "not valid JSON"),
    ("[1, 2, 3]", "must hold a JSON object. Received: list"),
    ('{"equity": {"a": 1}}', "`equity` must be a JSON array. Received: dict"),
    ('{"positions": [1, 2]}', "`positions` must be a JSON object. Received: list"),
    ('{"drift": {"features": ["rsi_14"]}}', "does not match the runner's status schema: AttributeError"),
])
def test_corrupt_status_is_a_503_with_a_message_never_a_500(client, live_dir, text, message):
    live_dir.mkdir()
    (live_dir / "status.json").write_text(text)
    answers = {name: client.get(f"/dashboard/api/{name}") for name in API}
    codes = {name: answer.status_code for name, answer in answers.items()}
    assert set(codes.values()) <= {200, 503}, codes  # a field only some endpoints read fails only those
    assert 503 in codes.values()
    for answer in answers.values():
        if answer.status_code == 503:
            assert answer.json()["state"] == "unreadable" and message in answer.json()["detail"]


def test_a_replaced_file_is_read_again_and_nan_becomes_null(client, live_dir):
    status = session_status(num_bars=100)
    write_status(live_dir, status)
    assert client.get("/dashboard/api/equity").json()["count"] == 100
    status["monitor"]["rolling_ic"][-1]["ic"] = status["monitor"]["ic"] = float("nan")  # json.dumps writes NaN
    status["equity"].append({"timestamp": "2024-06-01T00:00:00+00:00", "equity": float("inf"), "drawdown": 0.0})
    write_status(live_dir, status)
    assert client.get("/dashboard/api/equity").json()["count"] == 101
    monitor = client.get("/dashboard/api/monitor")
    assert monitor.status_code == 200 and monitor.json()["latest_ic"] is None  # JSON answers cannot carry NaN
    assert monitor.json()["rolling_ic"][-1]["ic"] is None
    assert client.get("/dashboard/api/equity").json()["points"][-1]["equity"] is None


def test_an_empty_session_and_no_drift_check(client, live_dir):
    write_status(live_dir, {"updated": "2024-03-01T00:00:00+00:00", "experiment": "gru", "version": 1,
                            "verdict": "edge: IC 0.04 [0.01, 0.07]", "edge_significant": True, "equity": [],
                            "positions": {}, "orders": [], "monitor": {"window": 60, "realized": 0},
                            "drift": None, "breakers": {"halted": True, "fallback": "broker unreachable"},
                            "fallbacks": []})
    header = client.get("/dashboard/api/status").json()
    assert header["warning"] is None and header["equity"] is None and header["max_drawdown"] is None
    assert header["breakers"]["halted"] is True and header["fallback"] == "broker unreachable"
    assert client.get("/dashboard/api/drift").json()["available"] is False
    assert client.get("/dashboard/api/positions").json() == {"count": 0, "gross_weight": 0, "net_weight": 0,
                                                              "positions": []}
    assert client.get("/dashboard/api/monitor").json()["rolling_ic"] == []


def test_read_status_names_the_file(live_dir):
    (live_dir / "status.json").mkdir(parents=True)  # something in its place that cannot be read as a file
    with pytest.raises(StatusUnreadable, match=r"status\.json could not be read"):
        read_status(live_dir)


def chromium(url, *flags, profile):
    """Runs headless Chromium on `url` with `flags`; returns its stdout (the DOM with --dump-dom)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
               "--no-first-run", f"--user-data-dir={profile}",
               # Nothing beyond 127.0.0.1: no component updates, safe-browsing lists, sync or metrics.
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--no-default-browser-check", "--metrics-recording-only", "--window-size=1400,1000",
               "--virtual-time-budget=8000", *flags, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def element(dom, element_id):
    """The opening tag of the element with `element_id` in `dom`."""
    match = re.search(rf"<[a-z]+[^>]*\bid=\"{element_id}\"[^>]*>", dom)
    assert match, f"no #{element_id} in the page"
    return match.group(0)


def attribute(tag, name):
    match = re.search(rf'\b{name}="([^"]*)"', tag)
    assert match, f"no {name} in {tag[:200]}"
    return match.group(1)


def num_points(path_tag):
    return len(re.findall(r"[ML]-?\d", attribute(path_tag, "d")))


@pytest.mark.slow
def test_dashboard_in_headless_chromium(trained_registry, tmp_path):
    assert Path(CHROMIUM).exists(), "this test needs headless Chromium: apt install chromium (Debian's package)"
    live = tmp_path / "live"
    with running_server(trained_registry, tmp_path / "server.log", ["--live-dir", live]) as (url, _):
        # Before the runner's first bar: the waiting card.
        waiting = chromium(f"{url}/dashboard", "--dump-dom", profile=tmp_path / "profile")
        assert 'data-state="waiting"' in waiting and "Waiting for the runner" in waiting

        status = session_status()
        write_status(live, status)
        dom = chromium(f"{url}/dashboard", "--dump-dom", profile=tmp_path / "profile")
        assert '<body data-state="live">' in dom

        # The header: model version, verdict and the no-edge warning.
        assert ">v3<" in dom and status["verdict"] in dom and "No detectable edge." in dom
        assert "show" in attribute(element(dom, "edge-warning"), "class")
        # The equity KPI shows the last equity; the charts received every point of their series.
        last = status["equity"][-1]["equity"]
        kpi = re.search(r'id="kpi-equity"[^>]*>([^<]*)<', dom)
        assert kpi.group(1) == f"${last:,.2f}" and float(attribute(element(dom, "kpi-equity"), "data-value")) == last
        assert num_points(element(dom, "equity-line")) == len(status["equity"]) == 120
        assert attribute(element(dom, "drawdown-area"), "d").count("Z") >= 1
        assert num_points(element(dom, "ic-line")) == len(status["monitor"]["rolling_ic"])
        assert num_points(element(dom, "accuracy-line")) == len(status["monitor"]["rolling_accuracy"])
        bars = re.findall(r'class="position-bar" data-symbol="([A-Z]+)"', dom)
        assert sorted(bars) == sorted(status["positions"])
        # The newest orders, the drift flags and the badges.
        assert status["orders"][-1]["client_order_id"] in dom and ">submitted<" in dom and ">rejected<" in dom
        assert 'class="drift-row drifted" data-feature="rsi_14"' in dom
        assert 'data-feature="volume_zscore_20"' in dom and "2 features flagged" in dom
        assert "breakers clear" in dom and "no fallback" in dom and "broker: HTTP 429" in dom

        # A runner in its safe state: the badges turn red.
        status["breakers"].update(halted=True, fallback="broker: HTTP 503 three times")
        write_status(live, status)
        dom = chromium(f"{url}/dashboard", "--dump-dom", profile=tmp_path / "profile")
        assert "breakers: halted" in dom and "fallback: broker: HTTP 503 three times" in dom
        assert "bad" in attribute(element(dom, "badge-fallback"), "class")

        # The screenshot of the session as it ran.
        write_status(live, session_status())
        screenshot = tmp_path / "dashboard.png"
        chromium(f"{url}/dashboard", f"--screenshot={screenshot}", profile=tmp_path / "profile")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["DASHBOARD_SCREENSHOT"])
