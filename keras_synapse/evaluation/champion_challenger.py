"""Champion/challenger: does a retrained model beat the one in service, on the same held-out rows?

Both models score the same rows (symbol, timestamp) that neither was trained
on; each gets its IC against the realized forward return, and the
challenger's IC minus the incumbent's gets a paired interval from one set of
stationary block-bootstrap draws over timestamps
(`keras_synapse.evaluation.intervals.bootstrap_metrics`, whose difference
interval is widened to the long-run-variance floor where the data are
persistent). The challenger is promoted only when the lower bound of that
interval lies above zero: it must *beat* the incumbent, since on a tie the
model already serving, whose behaviour is known, stays.

    decision = compare_on_holdout(rows, horizon=5)   # rows: symbol, timestamp, forward_return, incumbent, challenger
    decision.promote, decision.reason
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.errors import SynapseError
from keras_synapse.evaluation.intervals import bootstrap_metrics, minimum_detectable_effect

# Fewer rows or dates than this make any interval meaningless; refuse rather than decide.
MIN_ROWS = 30
MIN_TIMESTAMPS = 10


@dataclasses.dataclass(frozen=True)
class ChallengerDecision:
    """What `compare_on_holdout` decided and the numbers it decided on.

    Attributes:
        promote: whether the challenger replaces the incumbent.
        incumbent_ic: the incumbent's IC on the rows (NaN for constant scores).
        challenger_ic: the challenger's IC on the rows.
        incumbent_interval: the incumbent IC's interval, `(low, high)`.
        challenger_interval: the challenger IC's interval, `(low, high)`.
        difference: `challenger_ic - incumbent_ic`.
        difference_interval: its paired interval, `(low, high)`.
        level: the intervals' two-sided coverage.
        num_rows: rows compared (finite scores and forward returns).
        num_timestamps: distinct timestamps among them.
        num_dropped: rows dropped for a missing score or forward return.
        block_length: the bootstrap's mean block length, in timestamps.
        minimum_detectable_difference: the smallest true IC gain these rows
            would show above zero with 80% power: a better challenger by less
            is kept out by chance more often than not.
        reason: the decision in one line, with its numbers.
    """

    promote: bool
    incumbent_ic: float
    challenger_ic: float
    incumbent_interval: tuple
    challenger_interval: tuple
    difference: float
    difference_interval: tuple
    level: float
    num_rows: int
    num_timestamps: int
    num_dropped: int
    block_length: float
    minimum_detectable_difference: float
    reason: str

    def to_dict(self):
        """The decision as a JSON-ready dict (NaN as `None`)."""
        def plain(value):
            if isinstance(value, tuple):
                return [plain(item) for item in value]
            if isinstance(value, float) and not np.isfinite(value):
                return None
            return value

        return {field.name: plain(getattr(self, field.name)) for field in dataclasses.fields(self)}


def compare_on_holdout(rows, incumbent="incumbent", challenger="challenger", horizon=1, level=0.95,
                       num_resamples=1000, seed=0):
    """Compares two models' scores on the same held-out rows and decides whether the challenger is promoted.

    Args:
        rows: a frame with columns `symbol`, `timestamp`, `forward_return`
            and the two score columns; one row per (symbol, timestamp).
            Rows with a non-finite score or forward return are dropped
            (counted in `num_dropped`).
        incumbent: the incumbent's score column. Defaults to `"incumbent"`.
        challenger: the challenger's score column. Defaults to
            `"challenger"`.
        horizon: the label horizon in bars: the bootstrap's shortest mean
            block, so that overlapping forward returns stay together.
            Defaults to `1`.
        level: the intervals' two-sided coverage. Defaults to `0.95`.
        num_resamples: bootstrap resamples. Defaults to `1000`.
        seed: the resampling seed. Defaults to `0`.

    Returns:
        A `ChallengerDecision`. `promote` is true only when the lower bound
        of the paired IC difference's interval is above zero. Where the
        incumbent's scores are constant (no IC, e.g. a neutral fallback), the
        challenger must instead have an IC interval above zero.

    Raises:
        SynapseError: for missing columns, repeated (symbol, timestamp) rows,
            or fewer than 30 usable rows or 10 timestamps.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> rows = pd.DataFrame({"symbol": np.repeat(["A", "B", "C", "D"], 500),
    ...                      "timestamp": np.tile(np.arange(500), 4), "forward_return": rng.normal(size=2000)})
    >>> rows["incumbent"] = rng.normal(size=2000)
    >>> rows["challenger"] = 0.3 * rows["forward_return"] + rng.normal(size=2000)
    >>> compare_on_holdout(rows).promote
    True
    """
    frame = _usable_rows(rows, incumbent, challenger)
    num_dropped = len(rows) - len(frame)
    bootstrap_frame = pd.DataFrame({
        "timestamp": frame["timestamp"].to_numpy(), "reference": frame["forward_return"].to_numpy(dtype=np.float64),
        "target": frame["forward_return"].to_numpy(dtype=np.float64),
        "challenger": frame[challenger].to_numpy(dtype=np.float64),
        "incumbent": frame[incumbent].to_numpy(dtype=np.float64)})
    result = bootstrap_metrics(bootstrap_frame, ["challenger", "incumbent"], min_block_length=max(int(horizon), 1),
                               num_resamples=num_resamples, seed=seed, level=level)
    challenger_ic, incumbent_ic = result.point["challenger"]["ic"], result.point["incumbent"]["ic"]
    challenger_interval = result.interval("challenger", "ic")
    incumbent_interval = result.interval("incumbent", "ic") if np.isfinite(incumbent_ic) else (np.nan, np.nan)
    percent = f"{level:.0%}"
    if not np.isfinite(challenger_ic):
        difference, interval = np.nan, (np.nan, np.nan)
        promote, reason = False, "incumbent kept: the challenger's scores are constant (no IC)"
    elif not np.isfinite(incumbent_ic):
        # Nothing to pair with: the challenger must show an edge of its own.
        difference, interval = np.nan, challenger_interval
        promote = bool(challenger_interval[0] > 0)
        reason = (f"{'challenger promoted' if promote else 'incumbent kept'}: the incumbent's scores are constant "
                  f"(no IC); the challenger's IC {challenger_ic:+.4f} [{percent} CI {challenger_interval[0]:+.4f}, "
                  f"{challenger_interval[1]:+.4f}] {'lies above' if promote else 'does not lie above'} zero")
    else:
        paired = result.difference("challenger", "incumbent", "ic")
        difference, interval = paired["difference"], (paired["ci_low"], paired["ci_high"])
        promote = bool(np.isfinite(interval[0]) and interval[0] > 0)
        verdict = ("challenger promoted: it beats the incumbent" if promote else
                   "incumbent kept: the challenger does not beat it" if interval[1] >= 0 else
                   "incumbent kept: the challenger is worse")
        reason = (f"{verdict} (IC {challenger_ic:+.4f} vs {incumbent_ic:+.4f}, difference {difference:+.4f} "
                  f"[{percent} CI {interval[0]:+.4f}, {interval[1]:+.4f}])")
    num_timestamps = int(result.num_timestamps)
    detectable = (minimum_detectable_effect(result.difference_standard_error("challenger", "incumbent", "ic"), level)
                  if np.isfinite(incumbent_ic) else result.minimum_detectable("challenger", "ic"))
    reason += (f" on {len(frame)} held-out rows, {num_timestamps} timestamps; the smallest IC gain these rows would "
               f"show with 80% power is {detectable:.4f}")
    return ChallengerDecision(
        promote=promote, incumbent_ic=float(incumbent_ic), challenger_ic=float(challenger_ic),
        incumbent_interval=tuple(map(float, incumbent_interval)),
        challenger_interval=tuple(map(float, challenger_interval)), difference=float(difference),
        difference_interval=tuple(map(float, interval)), level=float(level), num_rows=int(len(frame)),
        num_timestamps=num_timestamps, num_dropped=int(num_dropped), block_length=float(result.block_length),
        minimum_detectable_difference=float(detectable), reason=reason)


def _usable_rows(rows, incumbent, challenger):
    needed = ["symbol", "timestamp", "forward_return", incumbent, challenger]
    missing = [name for name in needed if name not in rows.columns]
    if missing:
        raise SynapseError(f"The held-out rows lack the column(s) {missing}. Received columns: {list(rows.columns)}")
    repeated = rows.duplicated(["symbol", "timestamp"])
    if repeated.any():
        first = rows.loc[repeated, ["symbol", "timestamp"]].iloc[0]
        raise SynapseError(f"The held-out rows repeat (symbol, timestamp) pairs ({int(repeated.sum())} repeats, the "
                           f"first: {first['symbol']} at {first['timestamp']}); each row must be one prediction.")
    values = rows[["forward_return", incumbent, challenger]].to_numpy(dtype=np.float64)
    frame = rows.loc[np.isfinite(values).all(axis=1)]
    if len(frame) < MIN_ROWS or frame["timestamp"].nunique() < MIN_TIMESTAMPS:
        raise SynapseError(f"Too few held-out rows to compare two models: {len(frame)} usable rows on "
                           f"{frame['timestamp'].nunique()} timestamps (of {len(rows)} rows); at least {MIN_ROWS} "
                           f"rows on {MIN_TIMESTAMPS} timestamps are needed. Hold out more bars.")
    return frame
