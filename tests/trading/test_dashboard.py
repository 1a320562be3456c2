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

from test_status import no_edge_session

from keras_synapse.serving.app import NO_EDGE_WARNING
from keras_synapse.serving.drift import feature_flag
from keras_synapse.trading.dashboard import (DRIFT_THRESHOLDS, StatusMissing, StatusUnreadable, add_dashboard,
                                            read_status)
from keras_synapse.trading.status import monitor

CHROMIUM = "/usr/bin/chromium"
SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
FEATURES = ["log_return_1", "log_return_5", "log_return_20", "volatility_20", "log_range", "volume_zscore_20",
            "rsi_14", "macd", "macd_signal", "bollinger_position", "atr_14", "momentum_10", "stochastic_k",
            "obv_zscore", "close_to_sma_50", "day_of_week", "gap"]


def session_status(num_bars=120, window=60, horizon=5, seed=2, capital=100_000.0):
    """A realistic `status.json` of a runner `num_bars` daily bars into a session, the last bar yesterday.

    Equity is a random walk with a dip (so the drawdown is visible), five
    positions (one short), an order per symbol every few bars (one rejected,
    the newest still pending), the monitor of realized predictions of a
    model without an edge (overlapping labels, persistent scores, symbols
    moving together) as the runner's `keras_synapse.trading.status.monitor`
    computes it: rolling IC and accuracy over `window` bars with their
    no-edge bands, and the session's IC with its interval; two drifted
    features (one by PSI and KS, one by KS alone while its PSI is moderate)
    and one fallback.
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
    realized = no_edge_session(rng, num_dates=realized_bars, num_symbols=len(SYMBOLS), horizon=horizon)
    realized["timestamp"] = np.repeat(times[20:20 + realized_bars], len(SYMBOLS))
    features = {}
    for index, name in enumerate(FEATURES):
        psi = float(abs(rng.normal(0.04, 0.03)))
        features[name] = {"psi": psi, "ks_statistic": float(abs(rng.normal(0.05, 0.02))),
                          "ks_p_value": float(rng.uniform(0.05, 0.9))}
    features["rsi_14"] = {"psi": 0.31, "ks_statistic": 0.12, "ks_p_value": 0.001}
    features["volume_zscore_20"] = {"psi": 0.14, "ks_statistic": 0.16, "ks_p_value": 0.0004}
    for values in features.values():
        flag = feature_flag(values, DRIFT_THRESHOLDS)
        values.update(drifted=flag["flag"] == "drift", flag=flag["flag"], flagged_by=flag["flagged_by"],
                      reason=flag["reason"])
    return {
        "updated": pd.Timestamp.now(tz="UTC").isoformat(), "experiment": "shared_backbone", "version": 3,
        "verdict": "no detectable edge: IC -0.004 [-0.03, +0.02]", "edge_significant": False,
        "broker": "simulated", "symbols": SYMBOLS, "last_bar": stamp[-1], "bars_processed": num_bars,
        "capital": capital,
        "equity": [{"timestamp": stamp[bar], "equity": float(equity[bar]), "drawdown": float(drawdown[bar])}
                   for bar in range(num_bars)],
        "positions": positions, "orders": orders,
        "monitor": monitor(realized, window, -0.02, 40, horizon=horizon),
        "drift": {"checked_at": stamp[-1], "num_drifted": 2, "num_features": len(FEATURES), "drifted": False,
                  "thresholds": DRIFT_THRESHOLDS, "features": features},
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
                               "by_test": {"psi": 1, "ks": 2}, "checked_at": status["last_bar"]}
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
    assert monitor["rolling_accuracy"] == status["monitor"]["rolling_accuracy"] and monitor["min_ic"] == -0.02
    # The runner's bands, one per point: the 300 rows of the latest window (all symbols pooled) are worth
    # 300 / design_effect independent ones, so the band is wider than the iid 1.96/sqrt(300).
    assert monitor["realized"] == 300 and monitor["design_effect"] > 1.5
    assert monitor["ic_band"] == status["monitor"]["ic_band"] == monitor["rolling_ic"][-1]["band"]
    assert monitor["ic_band"] == pytest.approx(1.96 * math.sqrt(monitor["design_effect"] / 300))
    assert monitor["accuracy_band"] == monitor["rolling_accuracy"][-1]["band"] > 0.98 / math.sqrt(300)
    assert monitor["latest_accuracy"] == status["monitor"]["rolling_accuracy"][-1]["accuracy"]
    # The session-wide IC with the verdict's interval, in the monitor and in the header.
    session = status["monitor"]["session"]
    assert monitor["session"] == header["monitor"]["session"] == session
    assert session["ci_low"] < session["ic"] < session["ci_high"] and session["realized"] == 95 * 5
    assert header["monitor"]["ic_band"] == monitor["ic_band"]

    drift = client.get("/dashboard/api/drift").json()
    assert [feature["name"] for feature in drift["features"][:2]] == ["rsi_14", "volume_zscore_20"]
    assert drift["features"][0] == {"name": "rsi_14", **status["drift"]["features"]["rsi_14"]}
    assert len(drift["features"]) == 17 and drift["thresholds"] == {"psi_moderate": 0.1, "psi_drift": 0.25,
                                                                    "ks_p_value": 0.01, "ks_min_statistic": 0.1}
    # Each flag names the test that raised it: volume_zscore_20's PSI (0.14) is only moderate, KS flagged it.
    volume = drift["features"][1]
    assert volume["flag"] == "drift" and volume["flagged_by"] == ["ks"]
    assert volume["reason"] == "KS 0.160 >= 0.1 with p 4.0e-04 < 0.01"
    assert drift["features"][0]["flagged_by"] == ["psi", "ks"] and drift["features"][0]["reason"].startswith(
        "PSI 0.310 > 0.25; KS 0.120")
    assert drift["by_test"] == {"psi": 1, "ks": 2} and drift["num_moderate"] == 0

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


def test_an_older_runners_status_gets_no_band_and_flags_from_its_numbers(client, live_dir):
    """A status without bands or flags (a runner before them): no iid band, which a model without edge leaves."""
    status = session_status()
    for point in status["monitor"]["rolling_ic"] + status["monitor"]["rolling_accuracy"]:
        del point["band"]
    for key in ("ic_band", "accuracy_band", "design_effect", "session", "band_method"):
        del status["monitor"][key]
    for values in status["drift"]["features"].values():
        del values["flag"], values["flagged_by"], values["reason"]
    write_status(live_dir, status)
    monitor = client.get("/dashboard/api/monitor").json()
    assert monitor["ic_band"] is None and monitor["accuracy_band"] is None and monitor["session"] is None
    assert {point["band"] for point in monitor["rolling_ic"]} == {None}
    drift = client.get("/dashboard/api/drift").json()
    assert [feature["flag"] for feature in drift["features"][:3]] == ["drift", "drift", "stable"]
    assert drift["features"][0]["flagged_by"] == [] and drift["features"][0]["reason"] == ""


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


def signed(value):
    """`value` as the page writes it: three decimals, a plus sign when positive."""
    return ("+" if value > 0 else "") + f"{value:.3f}"


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
        # Each point's own no-edge band: an upper and a lower edge through every point that has one.
        banded = [point for point in status["monitor"]["rolling_ic"] if point["band"] is not None]
        assert num_points(element(dom, "ic-line-band")) == 2 * len(banded) > 0
        assert int(attribute(element(dom, "ic-line-band"), "data-points")) == len(banded)
        assert int(attribute(element(dom, "accuracy-line-band"), "data-points")) == len(
            [point for point in status["monitor"]["rolling_accuracy"] if point["band"] is not None])
        monitor = status["monitor"]
        note = re.search(r'id="kpi-ic-note"[^>]*>([^<]*)<', dom).group(1)
        assert note == (f"300 realized (worth {round(300 / monitor['design_effect'])}) · no-edge band "
                        f"±{monitor['ic_band']:.3f}")
        # The session's IC with its interval.
        session = monitor["session"]
        value = re.search(r'id="kpi-session-ic"[^>]*>([^<]*)<', dom).group(1)
        assert value == signed(session["ic"])
        note = re.search(r'id="kpi-session-ic-note"[^>]*>([^<]*)<', dom).group(1)
        assert note == f"95% CI [{signed(session['ci_low'])}, {signed(session['ci_high'])}] · 475 on 95 dates"
        bars = re.findall(r'class="position-bar" data-symbol="([A-Z]+)"', dom)
        assert sorted(bars) == sorted(status["positions"])
        # The newest orders, the drift flags and the badges.
        assert status["orders"][-1]["client_order_id"] in dom and ">submitted<" in dom and ">rejected<" in dom
        assert 'class="drift-row drifted" data-feature="rsi_14" data-flagged-by="psi,ks"' in dom
        assert 'data-feature="volume_zscore_20" data-flagged-by="ks"' in dom and "2 features flagged" in dom
        # The bar is PSI; the row says which test flagged the feature.
        assert re.search(r'id="drift-by-volume_zscore_20"[^>]*>KS 0.16<', dom)
        assert re.search(r'id="drift-by-rsi_14"[^>]*>PSI\+KS<', dom)
        assert "2 of 17 drifted (PSI 1 · KS 2)" in dom
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
