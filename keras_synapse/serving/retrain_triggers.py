"""When is a retrain due? A schedule, feature drift, or live predictions that stopped working.

Each check returns a `Trigger`: whether it fired and its numbers in one line.

- **schedule**: the incumbent was registered longer ago than `every` (seed
  000 retrains weekly: `"7d"`);
- **drift**: at least `min_drifted_features` of the incumbent's features are
  flagged by `keras_synapse.serving.drift.drift_report` on the recent bars'
  feature rows (PSI above 0.25, or a KS test with p below 0.01 *and* an
  effect size of at least 0.1, so that thousands of autocorrelated rows do
  not flag noise);
- **degradation**: the IC of the most recent realized live predictions
  (`symbol`, `timestamp`, `score`, `forward_return`, e.g. the live runner's
  journal) is below `min_ic` over at least `min_trades` of them.

    trigger = degradation_check(read_realized("realized.csv"), min_trades=100)
    trigger.fired, trigger.summary
"""

import dataclasses
import datetime
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError, DataError

REALIZED_COLUMNS = ("symbol", "timestamp", "score", "forward_return")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhm])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


@dataclasses.dataclass(frozen=True)
class Trigger:
    """One retrain check's outcome.

    Attributes:
        name: `"schedule"`, `"drift"`, `"degradation"` or `"forced"`.
        fired: whether it calls for a retrain.
        summary: what was measured and against what, in one line.
        numbers: the measured values, JSON-ready.
    """

    name: str
    fired: bool
    summary: str
    numbers: dict = dataclasses.field(default_factory=dict)

    def to_dict(self):
        return dataclasses.asdict(self)


def parse_duration(text):
    """`"7d"`, `"12h"`, `"2w"`, `"90m"` (or a sum, `"1d12h"`) as a `datetime.timedelta`.

    Raises:
        ConfigError: for anything else, or a duration of zero.
    """
    compact = str(text).strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(f"{number}{unit}" for number, unit in parts) != compact:
        raise ConfigError(f"`every` must be a duration such as 7d, 12h, 2w or 1d12h. Received: every={text!r}")
    duration = sum((datetime.timedelta(**{_UNITS[unit]: float(number)}) for number, unit in parts),
                   datetime.timedelta())
    if duration <= datetime.timedelta():
        raise ConfigError(f"`every` must be longer than zero. Received: every={text!r}")
    return duration


def schedule_check(registered_at, every="7d", now=None):
    """Fires when the incumbent was registered at least `every` ago.

    Args:
        registered_at: when the incumbent was registered, an ISO 8601 string
            with its UTC offset (the model card's `registered_at`) or a
            timezone-aware `datetime`.
        every: the retrain period, see `parse_duration`. Defaults to `"7d"`.
        now: the current time (timezone-aware). Defaults to `None` (now).

    Returns:
        A `Trigger` named `"schedule"`.

    Raises:
        ConfigError: for a malformed `every`, or a `registered_at` without a
            timezone.
    """
    period = parse_duration(every)
    registered = pd.Timestamp(registered_at)
    if registered.tzinfo is None:
        raise ConfigError(f"`registered_at` must carry its UTC offset. Received: registered_at={registered_at!r}")
    now = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    age = now - registered
    fired = age >= pd.Timedelta(period)
    summary = (f"schedule: the incumbent was registered {_format_age(age)} ago ({registered.isoformat()}), "
               f"{'at least' if fired else 'less than'} the period of {every}")
    return Trigger("schedule", bool(fired), summary, {"age_hours": age.total_seconds() / 3600,
                                                      "period_hours": period.total_seconds() / 3600})


def _format_age(age):
    hours = age.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if abs(hours) >= 48 else f"{hours:.1f} hours"


def min_drifted_count(min_drifted_features, num_features):
    """The number of features that must drift: an int as given, `"25%"` as a share of `num_features` (at least 1).

    Raises:
        ConfigError: for a count below 1 or a share outside (0, 100].
    """
    text = str(min_drifted_features).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError(text)
            return max(1, math.ceil(share / 100 * num_features))
        count = int(text)
        if count < 1:
            raise ValueError(text)
        return count
    except ValueError:
        raise ConfigError("`min_drifted_features` must be a count >= 1 or a share such as 25%. Received: "
                          f"min_drifted_features={min_drifted_features!r}") from None


def drift_check(reference, feature_rows, min_drifted_features="25%"):
    """Fires when at least `min_drifted_features` features drift from the incumbent's training rows.

    Args:
        reference: the incumbent model card's `drift_reference`.
        feature_rows: a frame of the recent bars' feature rows (e.g.
            `Predictor.feature_rows` of the newest bars).
        min_drifted_features: a count, or a share of the reference's
            features such as `"25%"`. Defaults to `"25%"`.

    Returns:
        A `Trigger` named `"drift"`; its numbers hold the drifted features
        with their PSI and KS statistic.
    """
    from keras_synapse.serving.drift import drift_report

    report = drift_report(reference, feature_rows)
    needed = min_drifted_count(min_drifted_features, len(reference["features"]))
    drifted = report["drifted"]
    fired = len(drifted) >= needed
    shown = ", ".join(f"{name} (PSI {report['features'][name]['psi']:.2f}, KS "
                      f"{report['features'][name]['ks_statistic']:.2f})" for name in drifted[:5])
    summary = (f"drift: {len(drifted)} of {len(report['features'])} features drifted on {report['num_rows']} recent "
               f"rows (fires at {needed})" + (f": {shown}" + (", ..." if len(drifted) > 5 else "") if drifted else ""))
    return Trigger("drift", bool(fired), summary, {
        "num_rows": report["num_rows"], "num_drifted": len(drifted), "needed": needed,
        "drifted": {name: {key: report["features"][name][key] for key in ("psi", "ks_statistic", "ks_p_value")}
                    for name in drifted}, "missing": report["missing"]})


def degradation_check(realized_frame, min_trades=100, min_ic=0.0, window=250):
    """Fires when the most recent realized live predictions have an IC below `min_ic`.

    Args:
        realized_frame: realized predictions with columns `symbol`,
            `timestamp`, `score` (what the model said) and `forward_return`
            (what the market then did over the label horizon); rows whose
            return is not yet known (NaN) are skipped.
        min_trades: the fewest realized predictions to judge on; with fewer
            the check does not fire. Defaults to `100`.
        min_ic: the IC below which the model counts as degraded. Defaults to
            `0.0`.
        window: judge the most recent this many realized predictions (by
            timestamp). Defaults to `250`.

    Returns:
        A `Trigger` named `"degradation"`, with the IC and the directional
        accuracy of the rows judged.

    Raises:
        DataError: for missing columns.
        ConfigError: for `min_trades` or `window` below 2.
    """
    if min_trades < 2 or window < 2:
        raise ConfigError(f"`min_trades` and `window` must be >= 2. Received: min_trades={min_trades}, "
                          f"window={window}")
    missing = [name for name in REALIZED_COLUMNS if name not in realized_frame.columns]
    if missing:
        raise DataError(f"The realized predictions lack the column(s) {missing}; they need {list(REALIZED_COLUMNS)}. "
                        f"Received columns: {list(realized_frame.columns)}")
    frame = realized_frame.loc[np.isfinite(realized_frame[["score", "forward_return"]].to_numpy(dtype=np.float64))
                               .all(axis=1)]
    frame = frame.sort_values("timestamp", kind="stable").tail(window)
    count = len(frame)
    score, outcome = frame["score"].to_numpy(dtype=np.float64), frame["forward_return"].to_numpy(dtype=np.float64)
    defined = count >= 2 and score.std() > 0 and outcome.std() > 0
    ic = float(np.corrcoef(score, outcome)[0, 1]) if defined else float("nan")
    moved = outcome != 0
    accuracy = float(np.mean((score[moved] > 0) == (outcome[moved] > 0))) if moved.any() else float("nan")
    enough = count >= min_trades
    fired = bool(enough and (ic < min_ic if np.isfinite(ic) else True))
    shown = f"{ic:+.4f}" if np.isfinite(ic) else "undefined (constant scores)"
    summary = (f"degradation: live IC {shown}, directional accuracy {accuracy:.3f} over the last {count} realized "
               f"predictions" + (f" (fires below IC {min_ic:+.4f})" if enough else
                                 f"; fewer than min_trades={min_trades}, not judged"))
    return Trigger("degradation", fired, summary, {"num_realized": count, "ic": ic, "directional_accuracy": accuracy,
                                                   "min_ic": min_ic, "min_trades": min_trades})


def read_realized(path):
    """Reads realized live predictions (CSV or Parquet with `REALIZED_COLUMNS`), timestamps as UTC.

    Raises:
        DataError: when the file is missing, unreadable or lacks a column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--realized {path}: no such file.")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as error:  # pandas raises many parser errors
        raise DataError(f"--realized {path}: cannot be read ({type(error).__name__}: {error}).") from None
    missing = [name for name in REALIZED_COLUMNS if name not in frame.columns]
    if missing:
        raise DataError(f"--realized {path} lacks the column(s) {missing}; it needs {list(REALIZED_COLUMNS)}. "
                        f"Received columns: {list(frame.columns)}")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame
