"""The live monitoring dashboard: a page and its JSON, read from the runner's `status.json`.

The live runner (`keras_synapse.trading.runner`) rewrites `LIVE_DIR/status.json`
atomically (`os.replace`) after every bar. `add_dashboard(app, live_dir)` adds
to the service's FastAPI app:

- `GET /dashboard`: a self-contained page (vanilla JS and hand-written SVG,
  no external assets) polling the endpoints below every few seconds: the
  equity line with its drawdown shaded below it, the rolling IC against zero
  and its no-edge band, the rolling accuracy against 50% and its band, the
  session's IC with its 95% interval, positions by weight, recent orders,
  drift flags (each naming the test that raised it), badges for the
  breakers, the fallback and drift, and the model's version and recorded
  verdict in the header;
- `GET /dashboard/api/status`: the header, the latest equity, breakers,
  fallbacks and summaries of the monitor and drift;
- `GET /dashboard/api/equity`: the equity and drawdown series;
- `GET /dashboard/api/positions`: positions, largest weight first;
- `GET /dashboard/api/orders?limit=50`: the newest orders first;
- `GET /dashboard/api/monitor`: the rolling IC and accuracy, their bands and the session's IC;
- `GET /dashboard/api/drift`: the drift check, drifted features first.

Before the runner's first bar there is no `status.json`: every endpoint answers
404 `{"state": "waiting", "detail": ...}` and the page says it is waiting for
the runner. A file that is not a JSON object of the expected shape gets 503
`{"state": "unreadable", "detail": ...}`, never a 500; the page keeps showing
its last data and retries. Numbers JSON cannot carry (NaN, infinity) are sent
as `null`.

    python -m keras_synapse.serve saved_models/shared_backbone/latest --live-dir live/shared_backbone
    # then open http://127.0.0.1:8000/dashboard
"""

import datetime
import json
import math
import os
from importlib import resources
from pathlib import Path

from keras_synapse.errors import SynapseError
from keras_synapse.serving.app import NO_EDGE_WARNING
from keras_synapse.serving.drift import KS_MIN_STATISTIC, KS_P_VALUE, PSI_DRIFT, PSI_MODERATE

STATUS_FILE = "status.json"
DEFAULT_REFRESH_SECONDS = 3.0
DRIFT_THRESHOLDS = {"psi_moderate": PSI_MODERATE, "psi_drift": PSI_DRIFT, "ks_p_value": KS_P_VALUE,
                    "ks_min_statistic": KS_MIN_STATISTIC}


class StatusMissing(SynapseError):
    """The live directory holds no `status.json` yet: the runner has not finished its first bar."""


class StatusUnreadable(SynapseError):
    """`status.json` is not a JSON object of the runner's status schema."""


def read_status(live_dir):
    """Reads the runner's `status.json` from `live_dir`.

    The runner replaces the file atomically, so a read sees either the old or
    the new file whole; no locking is needed.

    Args:
        live_dir: the runner's live directory (`--live-dir`).

    Returns:
        The status as a dict, non-finite numbers replaced by `None`.

    Raises:
        StatusMissing: when there is no `status.json` in `live_dir`.
        StatusUnreadable: when the file is not valid JSON, not an object, or
            its `equity`, `positions`, `orders`, `monitor`, `drift` or
            `breakers` have the wrong types.
    """
    path = Path(live_dir) / STATUS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StatusMissing(f"No {STATUS_FILE} in {Path(live_dir)} yet: waiting for the runner "
                            "(it writes one after its first bar).") from None
    except (OSError, UnicodeDecodeError) as error:
        raise StatusUnreadable(f"{path} could not be read: {error}") from None
    try:
        status = json.loads(text)
    except ValueError as error:
        raise StatusUnreadable(f"{path} is not valid JSON ({error}); retrying on the next poll.") from None
    if not isinstance(status, dict):
        raise StatusUnreadable(f"{path} must hold a JSON object. Received: {type(status).__name__}")
    expected = {"equity": list, "orders": list, "fallbacks": list, "symbols": list, "positions": dict,
                "monitor": dict, "breakers": dict, "drift": dict}
    for key, kind in expected.items():
        value = status.get(key)
        if value is not None and not isinstance(value, kind):
            raise StatusUnreadable(f"{path}: `{key}` must be a JSON {'array' if kind is list else 'object'}. "
                                   f"Received: {type(value).__name__}")
    return _finite(status)


def _finite(value):
    """`value` with NaN and infinities (which JSON answers cannot carry) replaced by `None`, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _records(rows, *fields):
    """The rows that are objects, each with `fields` (missing ones `None`)."""
    return [{field: row.get(field) for field in fields} for row in rows or () if isinstance(row, dict)]


def _age_seconds(updated, now):
    try:
        moment = datetime.datetime.fromisoformat(str(updated))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return round((now - moment).total_seconds(), 1)


def equity_json(status):
    """The equity and drawdown series with the latest values and the deepest drawdown."""
    points = _records(status.get("equity"), "timestamp", "equity", "drawdown")
    drawdowns = [point["drawdown"] for point in points if _number(point["drawdown"]) is not None]
    latest = points[-1] if points else {}
    capital = _number(status.get("capital"))
    equity = _number(latest.get("equity"))
    return {"capital": capital, "count": len(points), "latest_equity": equity,
            "return": equity / capital - 1 if equity is not None and capital else None,
            "drawdown": _number(latest.get("drawdown")), "max_drawdown": min(drawdowns) if drawdowns else None,
            "points": points}


def positions_json(status):
    """Positions as a list, largest weight first, with the gross and net weights."""
    positions = [{"symbol": str(symbol), **_records([fields], "quantity", "price", "value", "weight")[0]}
                 for symbol, fields in (status.get("positions") or {}).items() if isinstance(fields, dict)]
    positions.sort(key=lambda position: -(_number(position["weight"]) or 0.0))
    weights = [_number(position["weight"]) or 0.0 for position in positions]
    return {"count": len(positions), "gross_weight": sum(abs(weight) for weight in weights),
            "net_weight": sum(weights), "positions": positions}


def orders_json(status, limit=50):
    """The newest `limit` orders, newest first, and the count of all orders by state."""
    orders = _records(status.get("orders"), "timestamp", "client_order_id", "symbol", "quantity", "state",
                      "filled_price")
    states = {}
    for order in orders:
        states[str(order["state"])] = states.get(str(order["state"]), 0) + 1
    return {"count": len(orders), "states": states, "orders": orders[::-1][:limit]}


def monitor_json(status):
    """The rolling IC and accuracy, their latest values, the bands a model without edge stays in, the session's IC.

    The bands are the runner's (`keras_synapse.trading.status.monitor`):
    95% bands under no edge that allow for overlapping labels, persistent
    scores and symbols moving together, one per point (`band`), the latest
    as `ic_band` and `accuracy_band`; `design_effect` is how many times the
    latest window's variance exceeds that of as many independent rows. A
    status without them (an older runner's) gets no band (`None`) rather
    than the iid one, which a model without an edge leaves about half the
    time. `session` is the whole session's rank IC with its 95% interval
    (`keras_synapse.trading.status.session_ic`), `None` before enough dates.
    """
    monitor = status.get("monitor") or {}
    rolling_ic = _records(monitor.get("rolling_ic"), "timestamp", "ic", "band")
    rolling_accuracy = _records(monitor.get("rolling_accuracy"), "timestamp", "accuracy", "band")
    latest_ic = _number(monitor.get("ic"))
    latest_accuracy = _number(monitor.get("accuracy"))
    if latest_ic is None and rolling_ic:
        latest_ic = _number(rolling_ic[-1]["ic"])
    if latest_accuracy is None and rolling_accuracy:
        latest_accuracy = _number(rolling_accuracy[-1]["accuracy"])
    session = monitor.get("session")
    session = _records([session], "ic", "ci_low", "ci_high", "level", "realized", "dates", "block_length",
                       "minimum_detectable", "method")[0] if isinstance(session, dict) else None
    return {"window": monitor.get("window"), "realized": monitor.get("realized"),
            "degraded": bool(monitor.get("degraded")), "min_ic": _number(monitor.get("min_ic")),
            "ic_band": _number(monitor.get("ic_band")), "accuracy_band": _number(monitor.get("accuracy_band")),
            "design_effect": _number(monitor.get("design_effect")), "band_method": monitor.get("band_method"),
            "latest_ic": latest_ic, "latest_accuracy": latest_accuracy, "session": session,
            "rolling_ic": rolling_ic, "rolling_accuracy": rolling_accuracy}


def drift_json(status):
    """The latest drift check, drifted features first, then moderate ones, then by PSI.

    Each feature carries its `flag` (`drift`, `moderate`, `stable`),
    `flagged_by` (the tests that raised it: `psi`, `ks`) and `reason` (their
    values against their thresholds); `by_test` counts the drifted features
    each test flagged. `available` is False before any check.
    """
    drift = status.get("drift")
    if not drift:
        return {"available": False, "drifted": False, "num_drifted": 0, "num_moderate": 0, "num_features": 0,
                "by_test": {"psi": 0, "ks": 0}, "checked_at": None, "thresholds": dict(DRIFT_THRESHOLDS),
                "features": []}
    thresholds = {**DRIFT_THRESHOLDS, **{key: value for key, value in (drift.get("thresholds") or {}).items()
                                         if _number(value) is not None}}
    features = []
    for name, fields in (drift.get("features") or {}).items():
        if not isinstance(fields, dict):
            continue
        feature = {"name": str(name), **_records([fields], "psi", "ks_statistic", "ks_p_value", "drifted", "flag",
                                                 "flagged_by", "reason")[0]}
        if feature["flag"] is None:  # an older runner's status: the flag from the numbers
            feature["flag"] = ("drift" if feature["drifted"] else "moderate"
                               if (_number(feature["psi"]) or 0.0) > thresholds["psi_moderate"] else "stable")
        feature["flagged_by"] = [str(test) for test in feature["flagged_by"] or ()]
        feature["reason"] = feature["reason"] or ""
        features.append(feature)
    rank = {"drift": 0, "moderate": 1}
    features.sort(key=lambda feature: (rank.get(feature["flag"], 2), -(_number(feature["psi"]) or 0.0)))
    drifted = [feature for feature in features if feature["flag"] == "drift"]
    return {"available": True, "drifted": bool(drift.get("drifted")),
            "num_drifted": drift.get("num_drifted", len(drifted)),
            "num_moderate": sum(feature["flag"] == "moderate" for feature in features),
            "num_features": drift.get("num_features", len(features)),
            "by_test": {test: sum(test in feature["flagged_by"] for feature in drifted) for test in ("psi", "ks")},
            "checked_at": drift.get("checked_at"), "thresholds": thresholds, "features": features}


def status_json(status, now=None):
    """The header's and the badges' fields: model, verdict, latest equity, breakers, fallbacks, summaries.

    Args:
        status: the dict `read_status` returned.
        now: the time `age_seconds` is measured to. Defaults to `None`: now.

    Returns:
        A dict: `state` ("live"), the model (`experiment`, `version`,
        `verdict`, `edge_significant`, and `warning` when the model showed
        no detectable edge), the runner (`broker`, `symbols`, `last_bar`,
        `bars_processed`, `updated`, `age_seconds`), the account (`capital`,
        `equity`, `return`, `drawdown`, `max_drawdown`), `breakers`,
        `fallback` (the safe state's reason, or `None`), the ten newest
        `fallbacks`, and summaries of the monitor (with the session's IC
        and its interval) and the drift check.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    equity, monitor, drift = equity_json(status), monitor_json(status), drift_json(status)
    breakers = status.get("breakers") or {}
    edge = bool(status.get("edge_significant"))
    fallbacks = _records(status.get("fallbacks"), "timestamp", "reason", "action")
    return {"state": "live", "updated": status.get("updated"), "age_seconds": _age_seconds(status.get("updated"), now),
            "experiment": status.get("experiment"), "version": status.get("version"),
            "verdict": status.get("verdict"), "edge_significant": edge, "warning": None if edge else NO_EDGE_WARNING,
            "trained_until": status.get("trained_until"), "in_sample_bars": status.get("in_sample_bars", 0),
            "broker": status.get("broker"), "symbols": status.get("symbols") or [],
            "last_bar": status.get("last_bar"), "bars_processed": status.get("bars_processed"),
            "capital": equity["capital"], "equity": equity["latest_equity"], "return": equity["return"],
            "drawdown": equity["drawdown"], "max_drawdown": equity["max_drawdown"],
            "breakers": {key: breakers.get(key) for key in ("halted", "stopped", "flattened", "cut", "ramp")},
            "fallback": breakers.get("fallback"), "fallbacks": fallbacks[::-1][:10],
            "num_fallbacks": len(fallbacks),
            "monitor": {key: monitor[key] for key in ("window", "realized", "degraded", "latest_ic",
                                                      "latest_accuracy", "ic_band", "accuracy_band",
                                                      "design_effect", "min_ic", "session")},
            "drift": {key: drift[key] for key in ("available", "drifted", "num_drifted", "num_features",
                                                  "by_test", "checked_at")}}


def dashboard_page(refresh_seconds=DEFAULT_REFRESH_SECONDS):
    """The dashboard's HTML (`dashboard.html`, shipped with the package), polling every `refresh_seconds`."""
    page = resources.files("keras_synapse.trading").joinpath("dashboard.html").read_text(encoding="utf-8")
    return page.replace("__REFRESH_MS__", str(int(refresh_seconds * 1000)))


def add_dashboard(app, live_dir, refresh_seconds=DEFAULT_REFRESH_SECONDS):
    """Adds `GET /dashboard` and its JSON endpoints (`/dashboard/api/...`) to a FastAPI app.

    Args:
        app: the service's app (`keras_synapse.serving.app.create_app`).
        live_dir: the live runner's directory, where it writes `status.json`
            (it need not exist yet).
        refresh_seconds: how often the page polls. Defaults to `3.0`.

    Returns:
        `app`, with the routes added.

    Raises:
        ValueError: when `refresh_seconds` is not positive.

    Example:

    >>> from fastapi import FastAPI
    >>> from fastapi.testclient import TestClient
    >>> client = TestClient(add_dashboard(FastAPI(), "/nonexistent/live"))
    >>> answer = client.get("/dashboard/api/status")
    >>> answer.status_code, answer.json()["state"]
    (404, 'waiting')
    """
    from fastapi import Query
    from fastapi.responses import HTMLResponse, JSONResponse

    if not refresh_seconds > 0:
        raise ValueError(f"`refresh_seconds` must be > 0. Received: refresh_seconds={refresh_seconds}")
    live_dir = Path(live_dir)
    page = dashboard_page(refresh_seconds)
    cache = {}

    def answer(shape):
        try:
            status = _cached_status(live_dir, cache)
            return _finite(shape(status))
        except StatusMissing as error:
            return JSONResponse(status_code=404, content={"state": "waiting", "detail": str(error),
                                                          "live_dir": str(live_dir)})
        except StatusUnreadable as error:
            return JSONResponse(status_code=503, content={"state": "unreadable", "detail": str(error),
                                                          "live_dir": str(live_dir)})
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            # A field of an unexpected type deep inside (a string where a number belongs): say so, never a 500.
            return JSONResponse(status_code=503, content={
                "state": "unreadable", "live_dir": str(live_dir),
                "detail": f"{live_dir / STATUS_FILE} does not match the runner's status schema: "
                          f"{type(error).__name__}: {error}"})

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def dashboard():
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/dashboard/api/status")
    def status():
        return answer(status_json)

    @app.get("/dashboard/api/equity")
    def equity():
        return answer(equity_json)

    @app.get("/dashboard/api/positions")
    def positions():
        return answer(positions_json)

    @app.get("/dashboard/api/orders")
    def orders(limit: int = Query(50, ge=1, le=1000)):
        return answer(lambda status: orders_json(status, limit))

    @app.get("/dashboard/api/monitor")
    def monitor():
        return answer(monitor_json)

    @app.get("/dashboard/api/drift")
    def drift():
        return answer(drift_json)

    return app


def _cached_status(live_dir, cache):
    """`read_status`, parsed again only when the file was replaced (a new inode, size or mtime)."""
    try:
        stat = os.stat(live_dir / STATUS_FILE)
    except FileNotFoundError:
        return read_status(live_dir)  # raises StatusMissing
    key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if cache.get("key") != key:
        cache["status"], cache["key"] = read_status(live_dir), key
    return cache["status"]
