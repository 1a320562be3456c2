"""The HTTP service, tested as a real uvicorn server in its own process with a real HTTP client."""

import collections
import concurrent.futures
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import bar_records, copy_version, damage_onnx_weights, running_server

from keras_synapse.data import load_panel

NUM_CLIENTS = 8
REQUESTS_PER_CLIENT = 250
SERVER_PIDS = {}


@pytest.fixture(scope="module")
def server(trained_registry, tmp_path_factory):
    with running_server(trained_registry, tmp_path_factory.mktemp("serve") / "server.log") as (url, process):
        SERVER_PIDS[url] = process.pid
        yield url


@pytest.fixture(scope="module")
def bars():
    panel = load_panel("sample", quick=True)
    return {symbol: bar_records(panel[symbol].iloc[-60:]) for symbol in ("SP500", "SYN-00", "SYN-01")}


def test_health_and_model(server):
    health = httpx.get(f"{server}/health").json()
    assert {key: health[key] for key in ("status", "experiment", "version", "backend")} == {
        "status": "ok", "experiment": "shared_backbone", "version": 1, "backend": "onnx"}
    assert health["edge_significant"] in (True, False) and "edge" in health["verdict"]
    model = httpx.get(f"{server}/model").json()
    assert model["inputs"]["feature_set"] == "core" and len(model["inputs"]["feature_names"]) == 11
    assert model["inputs"]["required_bars"] == 40 and model["label"]["name"] == "forward_return"
    assert set(model["metrics_summary"]) >= {"directional_accuracy", "ic", "rank_ic"}
    assert "onnx" in model


def test_prediction_endpoints(server, bars):
    answer = httpx.post(f"{server}/predict/pattern_confidence", json={"symbol": "SYN-00", "bars": bars["SYN-00"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["symbol"] == "SYN-00" and body["timestamp"] == bars["SYN-00"][-1]["timestamp"]
    assert np.isfinite(body["score"]) and body["fallback"] is False
    assert body["recommendation"] in ("buy", "sell", "hold") and body["model"]["version"] == 1

    signals = httpx.post(f"{server}/predict/signals", json={"symbol": "SYN-00", "bars": bars["SYN-00"]}).json()
    assert signals["count"] == 60 - 40 + 1 == len(signals["signals"])
    assert signals["signals"][-1]["score"] == pytest.approx(body["score"], abs=1e-4)

    multi = httpx.post(f"{server}/predict/multi_ticker",
                       json={"bars": {"SP500": bars["SP500"], "SYN-01": bars["SYN-01"], "NEW": bars["SYN-01"][:25]}})
    assert multi.status_code == 200
    predictions = {row["symbol"]: row for row in multi.json()["predictions"]}
    assert not predictions["SP500"]["fallback"] and not predictions["SYN-01"]["fallback"]
    assert predictions["NEW"]["fallback"] and predictions["NEW"]["score"] == 0
    assert predictions["NEW"]["recommendation"] == "hold" and "needs 40 bars" in predictions["NEW"]["reason"]


def test_seed_004_ensemble_endpoints(server, bars, trained_registry):
    """Technical signals at the newest bar, the model's calibrated confidence, the signals it keeps, the verdict."""
    from keras_synapse.evaluation.classical import classical_sides

    card = json.loads((trained_registry / "metadata.json").read_text())
    answer = httpx.post(f"{server}/predict/ensemble_signals", json={"symbol": "SYN-00", "bars": bars["SYN-00"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    frame = pd.DataFrame(bars["SYN-00"]).assign(timestamp=lambda f: pd.to_datetime(f["timestamp"], utc=True))
    expected = classical_sides(frame.set_index("timestamp")).iloc[-1].to_dict()
    assert body["technical_signals"] == expected and body["confidence_threshold"] == 0.6
    calibration = card["calibration"]
    assert body["probability_up"] == pytest.approx(
        1 / (1 + np.exp(-(calibration["intercept"] + calibration["slope"] * body["score"]))))
    for name, side in body["filtered_signals"].items():  # a kept signal is a technical one the model backs
        wins = body["probability_up"] if expected[name] > 0 else 1 - body["probability_up"]
        assert side == (expected[name] if expected[name] != 0 and wins > 0.6 else 0.0)
    assert body["model"]["edge_significant"] == card["metrics"]["summary"]["edge_significant"]
    assert ("warning" in body) == (any(body["filtered_signals"].values()) and not body["model"]["edge_significant"])
    confidence = httpx.post(f"{server}/predict/pattern_confidence", json={"symbol": "SYN-00",
                                                                          "bars": bars["SYN-00"]}).json()
    assert confidence["confidence"] == pytest.approx(max(body["probability_up"], 1 - body["probability_up"]))
    if confidence["recommendation"] != "hold" and not confidence["model"]["edge_significant"]:
        assert "no detectable edge" in confidence["warning"]

    multi = httpx.post(f"{server}/predict/multi_ticker_ensemble",
                       json={"bars": {"SP500": bars["SP500"], "NEW": bars["SYN-01"][:25]}})
    assert multi.status_code == 200, multi.text
    rows = {row["symbol"]: row for row in multi.json()["predictions"]}
    assert not rows["SP500"]["fallback"] and rows["NEW"]["fallback"]
    assert not any(rows["NEW"]["filtered_signals"].values())  # no model, nothing kept
    for path in ("/predict/ensemble_signals", "/predict/multi_ticker_ensemble"):
        assert httpx.post(f"{server}{path}", json={"symbol": "SYN-00"}).status_code == 422


def test_bad_input_gets_4xx_with_a_message(server, bars):
    url = f"{server}/predict/pattern_confidence"
    assert httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    missing_field = httpx.post(url, json={"symbol": "X", "bars": [{"timestamp": "2024-01-02", "open": 1.0}]})
    assert missing_field.status_code == 422 and "high" in missing_field.text
    assert httpx.post(url, json={"symbol": "X", "bars": []}).status_code == 422
    wrong_type = [dict(bar, close="abc") for bar in bars["SYN-00"]]
    assert httpx.post(url, json={"symbol": "X", "bars": wrong_type}).status_code == 422

    broken = [dict(bar) for bar in bars["SYN-00"]]
    broken[45]["low"] = broken[45]["high"] * 2
    invalid = httpx.post(url, json={"symbol": "X", "bars": broken})
    assert invalid.status_code == 422
    assert invalid.json()["detail"].startswith("Symbol 'X', column 'high': high below low at")

    absurd = [dict(bar) for bar in bars["SYN-00"]]
    absurd[50].update(open=1e300, high=1e300, low=1e300, close=1e300)
    refused = httpx.post(url, json={"symbol": "X", "bars": absurd})
    assert refused.status_code == 422 and "column 'open': absurd value 1e+300" in refused.json()["detail"]

    unsorted = bars["SYN-00"][::-1]
    assert "not sorted" in httpx.post(url, json={"symbol": "X", "bars": unsorted}).json()["detail"]
    short = httpx.post(url, json={"symbol": "X", "bars": bars["SYN-00"][:10]})
    assert short.status_code == 422 and "needs at least 40" in short.json()["detail"]
    assert httpx.get(f"{server}/predict/signals").status_code == 405
    assert httpx.post(f"{server}/predict/unknown", json={}).status_code == 404


def _rss_bytes(pid):
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024


def test_requests_that_pass_the_schema_never_get_a_5xx_and_the_connection_survives(server, bars):
    good = {"symbol": "SYN-00", "bars": bars["SYN-00"]}
    bad_time = [dict(bar, timestamp="0001-01-02T00:00:00") for bar in bars["SYN-00"]]
    late_time = [dict(bar, timestamp="2300-01-02T00:00:00") for bar in bars["SYN-00"]]
    with httpx.Client(base_url=server) as session:  # one keep-alive connection for every request
        for body, endpoint in [({"symbol": "X", "bars": bad_time}, "/predict/pattern_confidence"),
                               ({"symbol": "X", "bars": late_time}, "/predict/signals"),
                               ({"bars": {"SYN-00": bars["SYN-00"], "SYN-01": []}}, "/predict/multi_ticker"),
                               ({"symbol": "", "bars": bars["SYN-00"]}, "/predict/pattern_confidence"),
                               ({"symbol": "A\u0000B", "bars": bars["SYN-00"]}, "/predict/pattern_confidence"),
                               ({"symbol": "A" * 5000, "bars": bars["SYN-00"]}, "/predict/pattern_confidence"),
                               ({"symbol": "  ", "bars": bars["SYN-00"]}, "/predict/pattern_confidence")]:
            answer = session.post(endpoint, json=body)
            assert answer.status_code == 422, (endpoint, answer.status_code, answer.text[:300])
            # The same connection still serves the next request.
            assert session.post("/predict/pattern_confidence", json=good).status_code == 200
        assert "bar times must lie in 1900-2199" in session.post("/predict/signals",
                                                                 json={"symbol": "X", "bars": bad_time}).text


def test_too_large_requests_are_refused_before_any_work(server, bars):
    pid = SERVER_PIDS[server]
    before = _rss_bytes(pid)
    bar = bars["SYN-00"][0]
    many_bars = {"symbol": "SYN-00", "bars": [bar] * 200_000}  # ~35 MB of JSON
    body = json.dumps(many_bars).encode()
    assert len(body) > 32 * 1024 * 1024
    started = time.perf_counter()
    answer = httpx.post(f"{server}/predict/signals", content=body, headers={"content-type": "application/json"},
                        timeout=60)
    assert answer.status_code == 413 and "Request body over" in answer.json()["detail"]
    assert time.perf_counter() - started < 10
    # A body without a declared length is cut off once it passes the limit.
    chunks = (body[start:start + 1 << 20] for start in range(0, len(body), 1 << 20))
    assert httpx.post(f"{server}/predict/signals", content=chunks, headers={"content-type": "application/json"},
                      timeout=60).status_code == 413
    assert _rss_bytes(pid) - before < 50 * 1024 * 1024
    # Within the size limit, too many bars or symbols are refused by the schema.
    too_many = {"symbol": "SYN-00", "bars": [bar] * 20_001}
    assert httpx.post(f"{server}/predict/signals", json=too_many, timeout=60).status_code == 422
    symbols = {f"S{index}": bars["SYN-00"][:1] for index in range(1_001)}
    assert httpx.post(f"{server}/predict/multi_ticker", json={"bars": symbols}, timeout=60).status_code == 422
    assert httpx.get(f"{server}/health").status_code == 200


FUZZ_REQUESTS = 2_400


def _json_or_none(answer):
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def test_fuzzed_requests_never_get_a_5xx(server, bars):
    """2,400 requests generated from the schema, valid and broken, on one keep-alive connection; prints figures."""
    from request_fuzz import RequestFuzzer

    pid = SERVER_PIDS[server]
    rss_before = _rss_bytes(pid)
    statuses, latencies, failures = collections.Counter(), [], []
    with httpx.Client(base_url=server, timeout=30) as session:
        for endpoint, body, mutations in RequestFuzzer(bars, seed=0).requests(FUZZ_REQUESTS):
            started = time.perf_counter()
            answer = session.post(endpoint, content=body, headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - started)
            statuses[answer.status_code] += 1
            expected = 200 if not mutations else None
            has_detail = answer.status_code < 400 or isinstance(_json_or_none(answer).get("detail"), (str, list))
            if answer.status_code >= 500 or (expected and answer.status_code != expected) or not has_detail:
                failures.append((endpoint, mutations, answer.status_code, answer.text[:200]))
    assert not failures, failures[:5]
    assert all(status == 200 or 400 <= status < 500 for status in statuses), statuses
    assert statuses[200] > 300 and statuses[422] > 1_000, statuses  # both kinds were exercised
    assert httpx.get(f"{server}/health").status_code == 200
    rss_after = _rss_bytes(pid)
    assert rss_after - rss_before < 100 * 1024 * 1024
    latencies = np.array(latencies) * 1e3
    print(f"\nfuzz: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}; latency p50 "
          f"{np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms; server RSS "
          f"{rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB")


def test_concurrent_load(server, bars):
    """8 clients x 250 requests, one in five of them bad, against the real server; prints the figures.

    Good requests must all get 200 with a model score, bad ones 422; speed is benchmarked, not asserted.
    """
    # Encoded once, so the clients (in this process) spend their time waiting on the server, not on JSON.
    good = [json.dumps({"symbol": symbol, "bars": records[-50:]}).encode() for symbol, records in bars.items()]
    inverted = [dict(bar) for bar in bars["SYN-00"][-50:]]
    inverted[20]["high"] = inverted[20]["low"] / 2
    bad = [json.dumps({"symbol": "SYN-00", "bars": inverted}).encode(),
           json.dumps({"symbol": "SYN-00", "bars": bars["SYN-00"][-10:]}).encode(),  # too short
           json.dumps({"symbol": "A B", "bars": bars["SYN-00"][-50:]}).encode(),
           b'{"symbol": "SYN-00", "bars": [{"timestamp": "2024-01-02"']
    pid = SERVER_PIDS[server]
    rss_before = _rss_bytes(pid)

    def client(index):
        latencies, statuses = [], collections.Counter()
        with httpx.Client(base_url=server, timeout=30) as session:
            for request in range(REQUESTS_PER_CLIENT):
                is_bad = (index + request) % 5 == 0
                payload = bad[request % len(bad)] if is_bad else good[(index + request) % len(good)]
                started = time.perf_counter()
                answer = session.post("/predict/pattern_confidence", content=payload,
                                      headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - started)
                statuses[answer.status_code] += 1
                if is_bad:
                    assert answer.status_code == 422 and answer.json()["detail"], answer.text
                else:
                    assert answer.status_code == 200 and answer.json()["fallback"] is False, answer.text
        return latencies, statuses

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(NUM_CLIENTS) as pool:
        results = list(pool.map(client, range(NUM_CLIENTS)))
    elapsed = time.perf_counter() - started
    latencies = np.concatenate([latency for latency, _ in results]) * 1e3
    statuses = sum((counts for _, counts in results), collections.Counter())
    assert len(latencies) == NUM_CLIENTS * REQUESTS_PER_CLIENT and statuses[422] == len(latencies) // 5
    rss_after = _rss_bytes(pid)
    print(f"\nload: {len(latencies)} requests ({dict(sorted(statuses.items()))}), {NUM_CLIENTS} concurrent clients, "
          f"{elapsed:.1f} s, {len(latencies) / elapsed:.0f} requests/s; latency p50 {np.percentile(latencies, 50):.1f} "
          f"ms, p99 {np.percentile(latencies, 99):.1f} ms; server RSS {rss_before / 2**20:.0f} -> "
          f"{rss_after / 2**20:.0f} MiB")


def test_a_damaged_model_is_served_only_from_a_verified_backend(trained_registry, tmp_path, bars):
    version = copy_version(trained_registry, tmp_path / "saved_models")
    damage_onnx_weights(version / "model.onnx")
    body = {"symbol": "SYN-00", "bars": bars["SYN-00"]}
    with running_server(trained_registry, tmp_path / "good.log") as (url, _):
        expected = httpx.post(f"{url}/predict/pattern_confidence", json=body).json()
    with running_server(version, tmp_path / "damaged.log") as (url, _):
        assert httpx.get(f"{url}/health").json()["backend"] == "keras"
        answer = httpx.post(f"{url}/predict/pattern_confidence", json=body).json()
        assert answer["score"] == pytest.approx(expected["score"], abs=1e-4)
    assert "not the file registered" in (tmp_path / "damaged.log").read_text()
    # A card whose feature list was reordered by hand never serves.
    card = json.loads((version / "metadata.json").read_text())
    names = card["inputs"]["sequence"]["feature_names"]
    names[0], names[1] = names[1], names[0]
    card["feature_names"] = list(names)
    (version / "metadata.json").write_text(json.dumps(card))
    result = subprocess.run([sys.executable, "-m", "keras_synapse.serve", str(version), "--port", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "was changed after keras_synapse wrote it" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_fastapi_is_a_clear_error(monkeypatch):
    from keras_synapse.errors import ConfigError
    from keras_synapse.serving.app import create_app

    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[serve\]'"):
        create_app(predictor=None)
