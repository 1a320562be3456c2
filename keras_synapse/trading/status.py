"""What the dashboard shows of a running strategy: `status.json`, replaced atomically after every bar.

The equity is the strategy's own book marked at each bar's close: its
allocation, less what its fills cost, plus its positions at the close. The
rolling IC and accuracy cover the predictions whose outcome is realized
(`monitor_window` bars), the rank correlation of score and forward return
pooled over symbols, and the share of signs right; the book counts as
degraded when, over at least `min_realized` of them, the IC is below
`min_ic`. Each rolling point carries the 95% band a model without an edge
stays in, and the whole session's IC its 95% interval, both allowing for
overlapping labels, persistent scores and symbols moving together
(`no_edge_design_effects`, `session_ic`). Drift compares the feature rows of
the latest `drift_window` bars with the training rows the model card
summarized (`keras_synapse.serving.drift`), each flag naming the test that
raised it.
"""

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from keras_synapse.errors import SynapseError
from keras_synapse.evaluation.intervals import bootstrap_metrics
from keras_synapse.evaluation.trading_rules import BacktestRules
from keras_synapse.serving.drift import drift_report
from keras_synapse.trading.decisions import SCORE_COLUMN, prediction_frame, ramp_fraction
from keras_synapse.trading.journal import JOURNAL_FILE, bars_frame, read_records

STATUS_FILE = "status.json"
RECENT_ORDERS = 50
CHART_POINTS = 500
MIN_DRIFTED_SHARE = 0.25
# 1.96 standard errors: where a statistic lands 95% of the time under no edge.
Z_95 = 1.96
# The session's IC gets an interval once it spans this many dates (and two label horizons).
SESSION_MIN_DATES = 10
SESSION_RESAMPLES = 1000
BAND_METHOD = ("95% no-edge band: 1.96 standard errors from the long-run variance of the per-date series "
               "(flat-top lag window, plateau at the label horizon) over the session")


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
                           runner.monitor_cache, horizon=settings.horizon),
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


def monitor(realized, window, min_ic, min_realized, cache=None, horizon=1):
    """Rolling rank IC and sign accuracy of realized predictions over the latest `window` bar times, with bands.

    Args:
        realized: rows with `symbol`, `timestamp`, `prediction`, `forward_return`.
        window: bar times each point covers.
        min_ic: the IC under which the model counts as degraded.
        min_realized: realized rows needed before it can count as degraded.
        cache: a dict kept between calls: a point, once all of its rows are
            realized, never changes, so each is computed once. Defaults to
            `None`.
        horizon: the label horizon in bars: labels of neighbouring bars
            overlap over `horizon - 1` bars. Defaults to `1`.

    Returns:
        A dict: `window`, `realized` (rows in the latest window),
        `rolling_ic` and `rolling_accuracy` (points `{timestamp, ic, band}`
        and `{timestamp, accuracy, band}`, `band` the half-width of the 95%
        band around 0 and 0.5 a model without an edge stays in), `ic`,
        `accuracy`, `ic_band`, `accuracy_band` and `design_effect` (the
        latest window's), `band_method`, `session` (`session_ic`) and
        `degraded`.
    """
    cache = {} if cache is None else cache
    realized = realized.sort_values("timestamp", kind="stable")
    stamps = realized["timestamp"].to_numpy()
    scores, outcomes = (realized[name].to_numpy(np.float64) for name in (SCORE_COLUMN, "forward_return"))
    times, codes = np.unique(stamps, return_inverse=True)
    points = []
    for end in range(max(0, len(times) - CHART_POINTS), len(times)):
        stamp = pd.Timestamp(times[end]).isoformat()
        if stamp not in cache:
            first = max(0, end - window + 1)
            rows = slice(np.searchsorted(stamps, times[first]), np.searchsorted(stamps, times[end], side="right"))
            traded = int(np.count_nonzero(scores[rows]))
            cache[stamp] = (*_ic_and_accuracy(scores[rows], outcomes[rows]), rows.stop - rows.start, traded,
                            end - first + 1)
        points.append((stamp, *cache[stamp]))
    ic_effects, accuracy_effects = no_edge_design_effects(scores, outcomes, codes, horizon,
                                                          [point[-1] for point in points])
    ics, accuracies = [], []
    for (stamp, ic, accuracy, count, traded, _), ic_effect, accuracy_effect in zip(points, ic_effects,
                                                                                  accuracy_effects):
        ics.append({"timestamp": stamp, "ic": ic, "band": _band(ic_effect, count, 1.0)})
        accuracies.append({"timestamp": stamp, "accuracy": accuracy, "band": _band(accuracy_effect, traded, 0.5)})
    ic, accuracy, count = points[-1][1:4] if points else (None, None, 0)
    degraded = bool(count >= min_realized and ic is not None and ic < min_ic)
    return {"window": window, "realized": int(count), "ic": ic, "accuracy": accuracy,
            "ic_band": ics[-1]["band"] if ics else None,
            "accuracy_band": accuracies[-1]["band"] if accuracies else None,
            "design_effect": float(ic_effects[-1]) if points else None, "band_method": BAND_METHOD,
            "rolling_ic": ics, "rolling_accuracy": accuracies, "degraded": degraded, "min_ic": min_ic,
            "min_realized": min_realized, "session": _cached_session_ic(realized, horizon, cache)}


def no_edge_design_effects(scores, outcomes, date_codes, horizon, window_dates):
    """How much overlapping labels, persistent scores and co-moving symbols inflate a window's variance.

    A window's pooled rank IC is, to first order, the mean of each row's
    influence `a b - rho (a^2 + b^2) / 2` (`a`, `b` the standardized ranks
    of score and outcome), and its hit rate the mean of each traded row's
    hit. Rows are not independent: a `horizon`-bar label shares
    `horizon - 1` bars with the next bar's, a persistent score meets it
    again, and all symbols of a date move together. The design effect is the
    variance of the sum over `T` consecutive dates of the per-date sums,
    `sum_{|k| < T} (T - |k|) w_k gamma_k`, over what it would be with
    independent rows, `T` times the mean per-date sum of squares: a window
    of `n` rows is then worth `n / design_effect` independent ones, and its
    95% no-edge band is `1.96 sqrt(design_effect / n)` standard deviations
    of one row.

    The autocovariances `gamma_k` are estimated once on the whole session's
    per-date series and summed with Politis' flat-top lag window
    `min(1, 2 (1 - k / (2 horizon)))`: weight 1 up to the horizon (the lags
    overlapping labels reach exactly when outcomes are otherwise
    unpredictable), tapering to 0 at twice the horizon for persistence
    beyond. This long-run (HAC) variance is used instead of the run
    verdict's stationary bootstrap (`keras_synapse.evaluation.intervals`)
    because a band is needed for each of up to 500 points after every bar,
    and one window of 60 dates holds too few blocks for a bootstrap or a
    HAC estimate of its own (both understate the spread there), whereas the
    session's dependence, estimated on all its dates, applies to every
    window; within-window demeaning makes the band slightly conservative for
    very persistent scores. On 24 simulated no-edge sessions of 200 dates
    (horizon 5, AR(0.9) scores, 8 co-moving symbols) the rolling IC leaves
    it 5.4% of the time and the hit rate 4.1%, the iid bands `1.96 /
    sqrt(n)` and `0.98 / sqrt(n)` 43.5% and 33.6% of the time
    (`tests/trading/test_status.py`). The autocovariances are taken about
    the no-edge means (0 for the IC's influence, a coin flip's 0.5 for the
    hits), and design effects are floored at 1.

    Args:
        scores: each realized row's score.
        outcomes: each row's realized forward return.
        date_codes: each row's date, as an index into the sorted dates.
        horizon: the label horizon in bars (dates), >= 1.
        window_dates: the number of dates `T` each wanted design effect covers.

    Returns:
        `(ic_effects, accuracy_effects)`: float arrays, one value per entry of
        `window_dates`.
    """
    window_dates = np.asarray(window_dates, dtype=np.int64)
    scores, outcomes = np.asarray(scores, dtype=np.float64), np.asarray(outcomes, dtype=np.float64)
    date_codes = np.asarray(date_codes)
    ranked_scores, ranked_outcomes = (_standardized(rankdata(values)) for values in (scores, outcomes))
    rho = np.mean(ranked_scores * ranked_outcomes) if len(scores) else 0.0
    ic_influence = ranked_scores * ranked_outcomes - rho * (ranked_scores**2 + ranked_outcomes**2) / 2
    traded = scores != 0
    hits = (np.sign(scores[traded]) == np.sign(outcomes[traded])).astype(np.float64)
    hit_influence = hits - 0.5  # a coin flip's: the no-edge centre the band is drawn around
    return (_design_effects(ic_influence, date_codes, horizon, window_dates),
            _design_effects(hit_influence, date_codes[traded], horizon, window_dates))


def _standardized(values):
    spread = values.std() if len(values) else 0.0
    return (values - values.mean()) / spread if spread > 0 else np.zeros_like(values)


def _design_effects(influence, date_codes, horizon, window_dates):
    num_dates = int(date_codes.max()) + 1 if len(date_codes) else 0
    if num_dates < 2:
        return np.ones(len(window_dates))
    per_date = np.bincount(date_codes, weights=influence, minlength=num_dates)
    independent = np.bincount(date_codes, weights=influence**2, minlength=num_dates).mean()
    if not independent > 0:
        return np.ones(len(window_dates))
    # About the null's mean (0), not the session's: the session's own drift from it is noise the band must cover.
    centred = per_date
    bandwidth = 2 * max(int(horizon), 1)
    lags = np.arange(min(bandwidth, num_dates - 1) + 1)
    autocovariance = np.array([np.dot(centred[lag:], centred[: num_dates - lag]) / num_dates for lag in lags])
    weights = np.minimum(1.0, 2 * (1 - lags / bandwidth))
    effects = []
    for dates in window_dates:
        within = lags[1:][lags[1:] < dates]
        variance = dates * autocovariance[0] + 2 * np.sum((dates - within) * weights[within] * autocovariance[within])
        effects.append(max(variance / (dates * independent), 1.0))
    return np.array(effects)


def _band(design_effect, count, spread):
    """The half-width of the 95% no-edge band of a mean of `count` rows of per-row spread `spread`."""
    return float(Z_95 * spread * np.sqrt(design_effect / count)) if count > 1 else None


def session_ic(realized, horizon):
    """The whole session's rank IC with its 95% interval, by the run verdict's own method.

    A stationary bootstrap over dates (every symbol of a date together,
    mean block length by Politis-White, at least `horizon` dates so that
    overlapping labels stay together), widened where needed to the long-run
    variance floor (`keras_synapse.evaluation.intervals.bootstrap_metrics`),
    as the training run's verdict is computed.

    Args:
        realized: rows with `timestamp`, `prediction` and `forward_return`.
        horizon: the label horizon in bars.

    Returns:
        A dict: `ic`, `ci_low`, `ci_high`, `level`, `realized` (rows),
        `dates`, `block_length`, `minimum_detectable` (the smallest IC
        this session could show with 80% power), `method`; `None` before the
        session has `SESSION_MIN_DATES` dates (and two horizons) realized.
    """
    num_dates = realized["timestamp"].nunique()
    if num_dates < max(SESSION_MIN_DATES, 2 * horizon):
        return None
    # Dates as integer codes: the bootstrap only groups by them, and tz-aware stamps would become slow objects.
    dates = pd.factorize(realized["timestamp"], sort=True)[0]
    frame = pd.DataFrame({"timestamp": dates, "prediction": realized[SCORE_COLUMN].to_numpy(np.float64),
                          "reference": realized["forward_return"].to_numpy(np.float64)})
    frame["target"] = frame["reference"]
    result = bootstrap_metrics(frame, ["prediction"], min_block_length=horizon, num_resamples=SESSION_RESAMPLES)
    ic = result.point["prediction"]["rank_ic"]
    if not np.isfinite(ic):
        return None
    low, high = result.interval("prediction", "rank_ic")
    return {"ic": float(ic), "ci_low": low, "ci_high": high, "level": result.level, "realized": int(len(frame)),
            "dates": int(num_dates), "block_length": float(result.block_length),
            "minimum_detectable": result.minimum_detectable("prediction", "rank_ic"),
            "method": "stationary bootstrap over dates (Politis-White blocks, at least the horizon) with a "
                      "long-run variance floor, as the run's verdict"}


def _cached_session_ic(realized, horizon, cache):
    # The bootstrap costs tens of milliseconds a bar on a long session and moves little from one realized date to
    # the next: it is redone once a label horizon of new dates has been realized (its `dates` says how many it has).
    num_dates = realized["timestamp"].nunique()
    computed = cache.get("session_ic")
    if computed is None or computed[1] != horizon or not 0 <= num_dates - computed[0] < max(int(horizon), 1):
        cache["session_ic"] = computed = (num_dates, horizon, session_ic(realized, horizon))
    return computed[2]


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
                       "drifted": name in report["drifted"], "flag": entry["flag"], "flagged_by": entry["flagged_by"],
                       "reason": entry["reason"]} for name, entry in report["features"].items()}
    num_drifted = len(report["drifted"])
    return {"checked_at": pd.Timestamp(rows.index.get_level_values(0).max()).isoformat(), "num_rows": report["num_rows"],
            "num_drifted": num_drifted, "num_features": len(features),
            # One feature drifting is common on a short window; a quarter of them is a regime the model has not seen.
            "drifted": num_drifted >= max(1, int(np.ceil(MIN_DRIFTED_SHARE * len(features)))),
            "thresholds": report["thresholds"], "features": features}
