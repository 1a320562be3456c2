"""What the dashboard shows of a running strategy: `status.json`, replaced atomically after every bar.

The equity is the strategy's own book marked at each bar's close: its
allocation, less what its fills cost, plus its positions at the close. The
rolling IC and accuracy cover the predictions whose outcome is realized
(`monitor_window` bars), the rank correlation of score and forward return
pooled over symbols, and the share of signs right; the book counts as
degraded when, over at least `min_realized` of them, the IC is below
`min_ic`. Drift compares the feature rows of the latest `drift_window`
bars with the training rows the model card summarized
(`keras_synapse.serving.drift`).
"""

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from keras_synapse.errors import SynapseError
from keras_synapse.serving.drift import drift_report
from keras_synapse.evaluation.trading_rules import BacktestRules
from keras_synapse.trading.decisions import SCORE_COLUMN, prediction_frame, ramp_fraction
from keras_synapse.trading.journal import JOURNAL_FILE, bars_frame, read_records

STATUS_FILE = "status.json"
RECENT_ORDERS = 50
CHART_POINTS = 500
MIN_DRIFTED_SHARE = 0.25


def write_status(runner):
    """Replaces `<live_dir>/status.json` with the runner's state (a temporary file renamed into place)."""
    status = runner_status(runner)
    path = Path(runner.live_dir) / STATUS_FILE
    temporary = path.with_name(f".{STATUS_FILE}-{uuid.uuid4().hex}")
    temporary.write_text(json.dumps(status, indent=1, allow_nan=False, default=str))
    os.replace(temporary, path)
    return status


def runner_status(runner):
    """The status dict (the dashboard's schema) of a `LiveRunner`."""
    settings, predictor = runner.settings, runner.predictor
    panel = runner._panel()
    summary = predictor.metadata.get("metrics", {}).get("summary", {})
    realized = _realized(runner, panel)
    decision = runner.decisions[-1] if runner.decisions else None
    fallback = runner.stopped_reason or next(iter(runner.blocked.values()), None)
    return {
        "updated": pd.Timestamp.now(tz="UTC").isoformat(),
        "experiment": predictor.experiment, "version": predictor.version,
        "verdict": summary.get("verdict"), "edge_significant": bool(summary.get("edge_significant", False)),
        "broker": runner.broker.name, "symbols": sorted(panel),
        "last_bar": runner.last_processed, "bars_processed": len({row["timestamp"] for row in runner.predictions}),
        "capital": settings.capital,
        **in_sample(predictor, runner.predictions),
        "equity": equity_curve(runner, panel)[-CHART_POINTS:],
        "positions": _positions(runner, panel),
        "orders": _orders(runner)[-RECENT_ORDERS:],
        "monitor": monitor(realized, settings.monitor_window, settings.min_ic, settings.min_realized,
                           runner.monitor_cache),
        "drift": _drift_at_rebalances(runner, panel),
        "breakers": {**(decision.breakers if decision else dict.fromkeys(("halted", "stopped", "flattened", "cut"),
                                                                          False)),
                     "ramp": ramp_fraction(runner.decisions, settings.ramp, settings.ramp_periods)
                     if runner.decisions else float(settings.ramp[0]),
                     "fallback": fallback},
        "fallbacks": runner.fallbacks[-RECENT_ORDERS:],
    }


def in_sample(predictor, predictions):
    """How many traded bars the model was trained on (its card's `data.end` or before): their trades prove nothing."""
    end = predictor.metadata.get("data", {}).get("end")
    if end is None:
        return {"trained_until": None, "in_sample_bars": 0}
    end = pd.Timestamp(end)
    traded = {row["timestamp"] for row in predictions}
    return {"trained_until": end.isoformat(), "in_sample_bars": sum(timestamp <= end for timestamp in traded)}


def equity_curve(runner, panel):
    """The book's equity and drawdown at each bar close since trading began."""
    fills = sorted((order["answered_at"], order["symbol"], order["filled_quantity"], order["filled_price"])
                   for order in runner.orders.values() if order.get("filled_quantity") and order.get("filled_price"))
    traded = sorted({row["timestamp"] for row in runner.predictions})
    closes = pd.DataFrame({symbol: frame["close"] for symbol, frame in panel.items()}).ffill()
    cash, held, position, curve, peak = runner.settings.capital, {}, 0, [], runner.settings.capital
    for timestamp in traded:
        while position < len(fills) and pd.Timestamp(fills[position][0]) <= timestamp:
            _, symbol, quantity, price = fills[position]
            cash -= quantity * price
            held[symbol] = held.get(symbol, 0.0) + quantity
            position += 1
        row = closes.loc[timestamp]
        equity = cash + sum(quantity * float(row[symbol]) for symbol, quantity in held.items())
        peak = max(peak, equity)
        curve.append({"timestamp": timestamp.isoformat(), "equity": float(equity), "drawdown": float(equity / peak - 1)})
    return curve


def _positions(runner, panel):
    capital = runner.settings.capital
    positions = {}
    for symbol, quantity in runner.positions().items():
        price = float(panel[symbol]["close"].iloc[-1])
        positions[symbol] = {"quantity": quantity, "price": price, "value": quantity * price,
                             "weight": quantity * price / capital}
    return positions


def _orders(runner):
    return [{"timestamp": order.get("timestamp"), "client_order_id": order_id, "symbol": order["symbol"],
             "quantity": order.get("quantity"), "state": order.get("state") or "unanswered",
             "filled_price": order.get("filled_price")} for order_id, order in runner.orders.items()]


def _realized(runner, panel):
    return realized_rows(panel, runner.predictions, runner.settings.horizon, runner.settings.rules.execution_lag)


def realized_rows(panel, predictions, horizon, execution_lag):
    """The predictions (dicts with `symbol`, `timestamp`, `prediction`) whose forward return is realized."""
    if not predictions:
        return pd.DataFrame(columns=["symbol", "timestamp", SCORE_COLUMN, "forward_return"])
    frame = prediction_frame(panel, pd.DataFrame(predictions), horizon, execution_lag, BacktestRules())
    return frame[np.isfinite(frame["forward_return"].to_numpy(dtype=np.float64))]


def realized_from_journal(live_dir):
    """A live session's realized predictions, from its journal: `symbol, timestamp, score, forward_return`.

    What `python -m keras_synapse.retrain --live-dir DIR` judges live
    degradation on.

    Raises:
        SynapseError: when `live_dir` holds no journal.
    """
    path = Path(live_dir) / JOURNAL_FILE
    records = read_records(path)
    sessions = [record for record in records if record["type"] == "session"]
    if not sessions:
        raise SynapseError(f"{path}: no live session journaled there; is it a `--live-dir` of the live runner?")
    settings = sessions[-1]["settings"]
    bars, predictions = {}, []
    for record in records:
        if record["type"] == "history":
            for symbol, rows in record["bars"].items():
                bars.setdefault(symbol, []).extend(rows)
        elif record["type"] == "bar":
            for symbol, row in record["bars"].items():
                bars.setdefault(symbol, []).append(row)
            predictions.extend({"symbol": symbol, "timestamp": pd.Timestamp(record["timestamp"]),
                                SCORE_COLUMN: values[SCORE_COLUMN]}
                               for symbol, values in record["predictions"].items() if not values.get("fallback"))
    panel = {symbol: bars_frame(rows) for symbol, rows in bars.items()}
    realized = realized_rows(panel, predictions, int(settings["horizon"]), int(settings["rules"]["execution_lag"]))
    return realized.rename(columns={SCORE_COLUMN: "score"})[["symbol", "timestamp", "score", "forward_return"]]


def monitor(realized, window, min_ic, min_realized, cache=None):
    """Rolling rank IC and sign accuracy of realized predictions over the latest `window` bar times.

    Args:
        realized: rows with `symbol`, `timestamp`, `prediction`, `forward_return`.
        window: bar times each point covers.
        min_ic: the IC under which the model counts as degraded.
        min_realized: realized rows needed before it can count as degraded.
        cache: a dict kept between calls: a point, once all of its rows are
            realized, never changes, so each is computed once. Defaults to
            `None`.

    Returns:
        A dict: `window`, `realized` (rows in the latest window),
        `rolling_ic` and `rolling_accuracy` (points `{timestamp, ic}` and
        `{timestamp, accuracy}`), `ic`, `accuracy` (the latest window's) and
        `degraded`.
    """
    cache = {} if cache is None else cache
    realized = realized.sort_values("timestamp", kind="stable")
    stamps = realized["timestamp"].to_numpy()
    scores, outcomes = (realized[name].to_numpy(np.float64) for name in (SCORE_COLUMN, "forward_return"))
    times = np.unique(stamps)
    ics, accuracies = [], []
    for end in range(max(0, len(times) - CHART_POINTS), len(times)):
        stamp = pd.Timestamp(times[end]).isoformat()
        if stamp not in cache:
            rows = slice(np.searchsorted(stamps, times[max(0, end - window + 1)]),
                         np.searchsorted(stamps, times[end], side="right"))
            cache[stamp] = (*_ic_and_accuracy(scores[rows], outcomes[rows]), rows.stop - rows.start)
        ic, accuracy, count = cache[stamp]
        ics.append({"timestamp": stamp, "ic": ic})
        accuracies.append({"timestamp": stamp, "accuracy": accuracy})
    ic, accuracy, count = cache[ics[-1]["timestamp"]] if ics else (None, None, 0)
    degraded = bool(count >= min_realized and ic is not None and ic < min_ic)
    return {"window": window, "realized": int(count), "ic": ic, "accuracy": accuracy,
            "rolling_ic": ics, "rolling_accuracy": accuracies, "degraded": degraded, "min_ic": min_ic,
            "min_realized": min_realized}


def _ic_and_accuracy(scores, outcomes):
    if len(scores) < 3:
        return None, None
    ic = np.corrcoef(rankdata(scores), rankdata(outcomes))[0, 1] if scores.std() > 0 and outcomes.std() > 0 else np.nan
    traded = scores != 0
    accuracy = float(np.mean(np.sign(scores[traded]) == np.sign(outcomes[traded]))) if traded.any() else None
    return (None if not np.isfinite(ic) else float(ic)), accuracy


def _drift_at_rebalances(runner, panel):
    # Features move little from one bar to the next: a check per holding period is enough.
    if runner.drift is None or (runner.decisions and runner.decisions[-1].timestamp.isoformat() == runner.last_processed):
        runner.drift = _drift(runner.predictor, panel, runner.settings.drift_window)
    return runner.drift


def _drift(predictor, panel, window):
    reference = predictor.metadata.get("drift_reference")
    if not reference:
        return None
    try:
        rows = predictor.feature_rows(panel)
    except SynapseError:
        return None
    if rows.empty:
        return None
    recent = rows.groupby(level="symbol", group_keys=False).tail(window)
    report = drift_report(reference, recent)
    features = {name: {"psi": entry["psi"], "ks_statistic": entry["ks_statistic"], "ks_p_value": entry["ks_p_value"],
                       "drifted": name in report["drifted"]} for name, entry in report["features"].items()}
    num_drifted = len(report["drifted"])
    return {"checked_at": pd.Timestamp(rows.index.get_level_values(0).max()).isoformat(), "num_rows": report["num_rows"],
            "num_drifted": num_drifted, "num_features": len(features),
            # One feature drifting is common on a short window; a quarter of them is a regime the model has not seen.
            "drifted": num_drifted >= max(1, int(np.ceil(MIN_DRIFTED_SHARE * len(features)))),
            "features": features}
