"""A vectorized backtest of test-fold predictions, after costs and risk controls.

Conventions, chosen so that a skeptic can check every number by hand:

- **Periods.** The book is rebalanced at test timestamps at least `horizon`
  bars apart on the panel calendar (`non_overlapping_timestamps`), and each
  position is held for one label horizon, so no return is counted twice. A
  period earns each symbol's simple return `expm1(forward_return)`.
- **Slots.** Every symbol with a known forward return at a rebalance gets an
  equal slot, `1 / num_symbols` of capital. A position is a number of slots
  (`+1` long one slot, `-0.5` short half a slot); the portfolio weight is
  position / num_symbols.
- **Costs.** `cost_bps + slippage_bps` are paid on every unit of one-way
  turnover, the sum of absolute weight changes. Rebalances exactly `horizon`
  bars apart roll the book over, so a position held on costs nothing; after a
  longer gap the book was closed in between (its returns are not counted) and
  is reopened, and the book is closed after the last period. Both are paid.
- **Timing.** Positions for period k read only the scores (and probability,
  primary-side columns) at its rebalance, and estimates fitted on rows whose
  outcome was realized by then (label end at or before the rebalance). The
  path-dependent risk controls read only the net returns of earlier periods.
- **Risk controls** (seed 002), each on its own: `max_position` slots per
  symbol, `max_gross_exposure` (the book is scaled down to it), a per-period
  loss limit and a circuit breaker. Only period returns are observed, so a
  breach can act on the *next* period, never inside the one that breached (a
  stop inside the period would assume fills that gaps deny).

Signal rules: `"sign"` holds `sign(score)`; `"meta_label"` (seed 004) holds a
primary side (by default the sign of the past return, i.e. momentum) only
when the probability that this side wins exceeds `confidence_threshold`.
Sizing: `"fixed"` (one slot) or `"kelly"` (seed 003), a fraction of the Kelly
bet `p - (1 - p) / b` with `p` the win probability and `b` the payoff ratio
of past trades.

Example:

```python
results, equity = backtest(test_predictions, "prediction", horizon=5, cost_bps=5, calendar=calendar,
                           sizing="kelly", max_loss_streak=3, cooldown_periods=5)
results["strategy"]["sharpe"], equity["strategy"].iloc[-1]
```
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.errors import BacktestError

SIGNALS = ("sign", "meta_label")
SIZINGS = ("fixed", "kelly")
PROBABILITY_SOURCES = ("calibrated", "column", "score")
CONFIDENCE_TARGETS = ("direction", "event")
DEFAULT_PAYOFF_RATIO = 1.0


@dataclasses.dataclass(frozen=True)
class BacktestRules:
    """How scores become positions, and the risk controls on the book.

    Win probabilities (needed by `signal="meta_label"` and `sizing="kelly"`)
    come from `probability_source`:

    - `"calibrated"`: a logistic map of the score, refitted at every
      rebalance on all test rows whose outcome was realized by then
      (expanding, walk-forward; never the outcomes of the period it sizes).
      Its two coefficients come in closed form from the class-conditional
      means and pooled variance of the score (a linear discriminant), so a
      refit costs O(1) from running sums. Until `min_history` outcomes with
      both classes are realized, p = 0.5: no evidence, no bet.
    - `"column"`: the model's own probability in `probability_column`,
      taken as calibrated (test probabilities are out of sample already).
    - `"score"`: the score read as a probability, `(clip(score, -1, 1) + 1) / 2`;
      right for a tanh output or a multiclass score P(UP) - P(DOWN). A binary
      head's score is P - 0.5: use its probability column instead.

    With `confidence_target="direction"` the probability is P(forward return
    > 0), and the win probability of a short is 1 - P. With `"event"` (a
    meta-label model, scored on whether the primary trade pays) it is the win
    probability of the primary side itself.

    The payoff ratio `b` of `sizing="kelly"` is the average win over the
    average loss of the rule's past unit trades: every test row whose outcome
    was realized by the rebalance, traded on the rule's side (the sign of the
    score, or the primary side) at one slot, before costs, so that it depends
    on neither the sizing nor the halts. It is 1 until `min_history` such
    trades, a win and a loss among them, are realized.

    Args:
        signal: `"sign"` (long when the score is positive, short when
            negative) or `"meta_label"` (the primary side, only when its win
            probability exceeds `confidence_threshold`). Defaults to `"sign"`.
        primary_side_column: column whose sign is the primary side (long,
            short, flat) for `"meta_label"`, known at the window's end;
            `None` uses `sign(past_return)`, time-series momentum over the
            label horizon. Defaults to `None`.
        confidence_threshold: win probability a meta-labelled trade must
            exceed (strictly), in [0, 1]. Defaults to `0.6`.
        confidence_target: what the probability is of, `"direction"` or
            `"event"` (see above). Defaults to `"direction"`.
        probability_source: `"calibrated"`, `"column"` or `"score"` (see
            above). Defaults to `"calibrated"`.
        probability_column: the probability column for
            `probability_source="column"`, e.g. `"probability_UP"`.
            Defaults to `None`.
        sizing: `"fixed"` (one slot, capped at `max_position`) or `"kelly"`.
            Defaults to `"fixed"`.
        kelly_fraction: fraction of the full Kelly bet, in (0, 1]; a quarter
            Kelly gives up little growth for much less variance. Defaults to
            `0.25`.
        max_position: the most slots one symbol may hold, > 0. Defaults to
            `1.0`.
        max_gross_exposure: the most gross weight (sum of absolute weights)
            the book may hold; a larger book is scaled down, > 0. Defaults to
            `1.0`.
        min_history: realized outcomes needed before the calibration and the
            payoff ratio are used instead of p = 0.5 and b = 1, >= 2.
            Defaults to `50`.
        slippage_bps: slippage per unit of turnover, in basis points, on top
            of the commission `cost_bps`, >= 0. Defaults to `0.0`.
        drawdown_limit: a period whose net return is below `-drawdown_limit`
            flattens the book for the next period, in (0, 1); `None` turns
            it off. Defaults to `None`.
        max_loss_streak: after this many consecutive losing periods (periods
            with positions and a negative net return) trading halts for
            `cooldown_periods` periods, >= 1; `None` turns the circuit
            breaker off. Defaults to `None`.
        cooldown_periods: periods the circuit breaker keeps the book flat,
            after which the loss streak starts again from zero, >= 1.
            Defaults to `5`.

    Raises:
        ValueError: for an option outside its range or enum.
    """

    signal: str = "sign"
    primary_side_column: str | None = None
    confidence_threshold: float = 0.6
    confidence_target: str = "direction"
    probability_source: str = "calibrated"
    probability_column: str | None = None
    sizing: str = "fixed"
    kelly_fraction: float = 0.25
    max_position: float = 1.0
    max_gross_exposure: float = 1.0
    min_history: int = 50
    slippage_bps: float = 0.0
    drawdown_limit: float | None = None
    max_loss_streak: int | None = None
    cooldown_periods: int = 5

    def __post_init__(self):
        for name, choices in (("signal", SIGNALS), ("sizing", SIZINGS), ("probability_source", PROBABILITY_SOURCES),
                              ("confidence_target", CONFIDENCE_TARGETS)):
            if getattr(self, name) not in choices:
                raise BacktestError(f"`{name}` must be one of {choices}. Received: {name}={getattr(self, name)!r}")
        _check_range("confidence_threshold", self.confidence_threshold, 0, 1, "[0, 1]")
        _check_range("kelly_fraction", self.kelly_fraction, 0, 1, "(0, 1]", low_open=True)
        _check_range("max_position", self.max_position, 0, np.inf, "> 0", low_open=True)
        _check_range("max_gross_exposure", self.max_gross_exposure, 0, np.inf, "> 0", low_open=True)
        _check_range("slippage_bps", self.slippage_bps, 0, np.inf, ">= 0")
        if self.drawdown_limit is not None:
            _check_range("drawdown_limit", self.drawdown_limit, 0, 1, "(0, 1) or None", low_open=True, high_open=True)
        _check_integer("min_history", self.min_history, 2)
        _check_integer("cooldown_periods", self.cooldown_periods, 1)
        if self.max_loss_streak is not None:
            _check_integer("max_loss_streak", self.max_loss_streak, 1, " or None")
        if self.probability_source == "column" and self.needs_probability and self.probability_column is None:
            raise BacktestError("`probability_source='column'` needs `probability_column`, e.g. 'probability_UP'. "
                             "Received: probability_column=None")
        if self.signal == "sign" and self.confidence_target == "event":
            raise BacktestError("`confidence_target='event'` is the win probability of a primary side, so it needs "
                             "`signal='meta_label'`. Received: signal='sign'")

    @property
    def needs_probability(self):
        return self.signal == "meta_label" or self.sizing == "kelly"


def _check_range(name, value, low, high, description, low_open=False, high_open=False):
    valid = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if valid:
        valid = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not valid:
        raise BacktestError(f"`{name}` must be in {description}. Received: {name}={value!r}")


def _check_integer(name, value, minimum, suffix=""):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BacktestError(f"`{name}` must be an integer >= {minimum}{suffix}. Received: {name}={value!r}")


def kelly_position_size(probability, payoff_ratio, kelly_fraction=0.25, max_position=1.0):
    """The fractional Kelly bet, `kelly_fraction * (p - (1 - p) / b)`, clipped to `[0, max_position]`.

    Args:
        probability: win probability `p`, scalar or array in [0, 1].
        payoff_ratio: average win over average loss `b`, scalar or array > 0.
        kelly_fraction: fraction of the full Kelly bet. Defaults to `0.25`.
        max_position: the cap on the bet. Defaults to `1.0`.

    Returns:
        The bet size, same shape as the broadcast inputs; zero where the
        edge is not positive (a losing bet is never flipped into its
        opposite here).

    Example:

    >>> round(float(kelly_position_size(0.6, 1.5)), 6)  # 0.25 * (0.6 - 0.4 / 1.5)
    0.083333
    """
    probability = np.asarray(probability, dtype=np.float64)
    payoff_ratio = np.asarray(payoff_ratio, dtype=np.float64)
    return np.clip(kelly_fraction * (probability - (1 - probability) / payoff_ratio), 0.0, max_position)


def non_overlapping_timestamps(timestamps, calendar, horizon):
    """Thins sorted timestamps so consecutive ones are at least `horizon` bars apart on `calendar`.

    Args:
        timestamps: sorted `DatetimeIndex`-like.
        calendar: sorted unique `DatetimeIndex`-like, in the same time zone.
        horizon: the least number of bars between kept timestamps.

    Returns:
        The kept timestamps, a `DatetimeIndex`; the first is always kept.
    """
    positions = pd.DatetimeIndex(calendar).searchsorted(timestamps)
    kept, last = [], None
    for timestamp, position in zip(timestamps, positions):
        if last is None or position - last >= horizon:
            kept.append(timestamp)
            last = position
    return pd.DatetimeIndex(kept)


def _naive_utc(values):
    index = pd.DatetimeIndex(values)
    return index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index


@dataclasses.dataclass(frozen=True, eq=False)
class _Panel:
    """The test rows laid out for the backtest."""

    frame: pd.DataFrame  # all usable rows, with `position` and `end_position` on the calendar
    timestamps: pd.DatetimeIndex  # rebalance timestamps, in the frame's time zone
    period_ends: pd.DatetimeIndex  # when each period's positions are closed or rolled
    positions: np.ndarray  # calendar positions of the rebalances
    contiguous: np.ndarray  # True where a rebalance rolls the previous period's book
    symbols: pd.Index
    row_index: np.ndarray  # `[periods, symbols]` row of `frame`, -1 where none
    simple_returns: np.ndarray  # `[periods, symbols]`, NaN where unknown

    def gather(self, values):
        """`[periods, symbols]` of per-row `values` at the rebalances, NaN where no row."""
        values = np.asarray(values, dtype=np.float64)
        return np.where(self.row_index >= 0, values[np.maximum(self.row_index, 0)], np.nan)

    def column(self, name):
        """`[periods, symbols]` values of a frame column at the rebalances, NaN where no row."""
        return self.gather(self.frame[name].to_numpy(dtype=np.float64))


def _build_panel(frame, horizon, calendar):
    time_zone = pd.DatetimeIndex(frame["timestamp"]).tz
    calendar = _naive_utc(calendar)
    timestamps = _naive_utc(frame["timestamp"])
    positions = calendar.searchsorted(timestamps)
    off_calendar = (positions >= len(calendar)) | (calendar[np.minimum(positions, len(calendar) - 1)] != timestamps)
    if off_calendar.any():
        first = np.flatnonzero(off_calendar)[0]
        raise BacktestError(f"Every timestamp must be on `calendar`. Received: symbol={frame['symbol'].iloc[first]!r} "
                         f"at timestamp={frame['timestamp'].iloc[first]} (not on the calendar)")
    frame = frame.assign(timestamp=timestamps, position=positions, end_position=positions + horizon)
    duplicated = frame.duplicated(["symbol", "timestamp"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise BacktestError(f"`frame` must hold one row per symbol and timestamp. Received: a second row for "
                         f"symbol={row['symbol']!r} at timestamp={row['timestamp']}")
    # Rows whose outcome is unknown can neither be traded nor scored.
    frame = frame[np.isfinite(frame["forward_return"].to_numpy(dtype=np.float64))].reset_index(drop=True)
    if frame.empty:
        raise BacktestError("`frame` must hold at least one row with a known `forward_return`. Received: none")
    kept = non_overlapping_timestamps(pd.DatetimeIndex(np.sort(frame["timestamp"].unique())), calendar, horizon)
    kept_positions = calendar.searchsorted(kept)
    symbols = pd.Index(np.sort(frame["symbol"].unique()))
    period_of_row = kept.get_indexer(frame["timestamp"])
    on_period = period_of_row >= 0
    row_index = np.full((len(kept), len(symbols)), -1)
    row_index[period_of_row[on_period], symbols.get_indexer(frame["symbol"][on_period])] = np.flatnonzero(on_period)
    returns = frame["forward_return"].to_numpy(dtype=np.float64)
    simple_returns = np.where(row_index >= 0, np.expm1(returns[np.maximum(row_index, 0)]), np.nan)
    end_positions = kept_positions + horizon
    period_ends = pd.DatetimeIndex([calendar[end] if end < len(calendar) else pd.NaT for end in end_positions])
    contiguous = np.diff(kept_positions, prepend=-horizon - 1) == horizon
    localize = (lambda index: index.tz_localize("UTC").tz_convert(time_zone)) if time_zone else (lambda index: index)
    return _Panel(frame=frame, timestamps=localize(kept).rename("timestamp"), period_ends=localize(period_ends),
                  positions=kept_positions, contiguous=contiguous, symbols=symbols, row_index=row_index,
                  simple_returns=simple_returns)


def _realized_sums(panel, included, values):
    """Per rebalance, sums of `values` over `included` rows whose outcome was realized by then."""
    end_positions = panel.frame["end_position"].to_numpy()[included]
    order = np.argsort(end_positions, kind="stable")
    # `side="right"`: a label ending exactly at the rebalance bar is known when it trades.
    counts = np.searchsorted(end_positions[order], panel.positions, side="right")
    return [np.concatenate([[0.0], np.cumsum(np.asarray(value, dtype=np.float64)[included][order])])[counts]
            for value in values]


def _calibration(panel, scores, outcomes, included, min_history):
    """Per rebalance, the logistic map `P(outcome) = sigmoid(intercept + slope * score)` from realized rows.

    The linear-discriminant coefficients (class means, pooled variance) need
    only running sums; `valid` is False until `min_history` rows, with both
    classes among them, are realized.
    """
    positive = included & (outcomes > 0)
    negative = included & (outcomes <= 0)
    count_1, sum_1, square_1 = _realized_sums(panel, positive, [np.ones_like(scores), scores, scores**2])
    count_0, sum_0, square_0 = _realized_sums(panel, negative, [np.ones_like(scores), scores, scores**2])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_1, mean_0 = sum_1 / count_1, sum_0 / count_0
        variance = (square_1 - count_1 * mean_1**2 + square_0 - count_0 * mean_0**2) / (count_1 + count_0 - 2)
        # A score that never varied says nothing: the map is then the base rate
        # (relative test, since the running sums leave rounding residue).
        varied = variance > 1e-12 * (square_1 + square_0) / (count_1 + count_0)
        slope = np.where(varied, (mean_1 - mean_0) / variance, 0.0)
        intercept = np.log(count_1 / count_0) - np.where(varied, (mean_1**2 - mean_0**2) / (2 * variance), 0.0)
    valid = (count_1 >= 1) & (count_0 >= 1) & (count_1 + count_0 >= min_history)
    return np.where(valid, intercept, 0.0), np.where(valid, slope, 0.0), valid


def _payoff_ratios(panel, sides, min_history):
    """Per rebalance, average win over average loss of the rule's past unit trades (default 1)."""
    trade_returns = sides * np.expm1(panel.frame["forward_return"].to_numpy(dtype=np.float64))
    traded = sides != 0
    num_wins, total_wins = _realized_sums(panel, traded & (trade_returns > 0), [np.ones_like(trade_returns),
                                                                                 trade_returns])
    num_losses, total_losses = _realized_sums(panel, traded & (trade_returns < 0), [np.ones_like(trade_returns),
                                                                                     -trade_returns])
    enough = (num_wins >= 1) & (num_losses >= 1) & (num_wins + num_losses >= min_history)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(enough, (total_wins / num_wins) / (total_losses / num_losses), DEFAULT_PAYOFF_RATIO)


def _sides(frame, score_column, rules):
    if rules.signal == "sign":
        return np.sign(np.nan_to_num(frame[score_column].to_numpy(dtype=np.float64)))
    if rules.primary_side_column is None:
        return np.sign(np.nan_to_num(frame["past_return"].to_numpy(dtype=np.float64)))
    return np.sign(np.nan_to_num(frame[rules.primary_side_column].to_numpy(dtype=np.float64)))


def _win_probabilities(panel, score_column, sides, rules, probability_source):
    """`[periods, symbols]` probability that the rule's side wins, from information known at the rebalance."""
    frame = panel.frame
    if probability_source == "column":
        probability = panel.column(rules.probability_column)
    elif probability_source == "score":
        probability = (np.clip(panel.column(score_column), -1, 1) + 1) / 2
    else:
        scores = frame[score_column].to_numpy(dtype=np.float64)
        returns = frame["forward_return"].to_numpy(dtype=np.float64)
        # A zero return is neither a win nor a loss: left out, as in the directional accuracy.
        included = np.isfinite(scores) & (returns != 0)
        if rules.confidence_target == "direction":
            outcomes = returns
        else:
            outcomes = sides * returns
            included &= sides != 0
        intercept, slope, valid = _calibration(panel, scores, outcomes, included, rules.min_history)
        logits = intercept[:, None] + slope[:, None] * panel.column(score_column)
        probability = np.where(valid[:, None], 1 / (1 + np.exp(-np.clip(logits, -500, 500))), 0.5)
    if rules.confidence_target == "direction":
        probability = np.where(panel.gather(sides) < 0, 1 - probability, probability)
    return np.nan_to_num(probability, nan=0.5)


def _target_weights(panel, score_column, rules, probability_source):
    """`[periods, symbols]` weights the rules ask for, before the path-dependent controls."""
    frame_sides = _sides(panel.frame, score_column, rules)
    sides = np.nan_to_num(panel.gather(frame_sides))
    size = np.full(sides.shape, min(1.0, rules.max_position))
    if rules.needs_probability:
        probability = _win_probabilities(panel, score_column, frame_sides, rules, probability_source)
        if rules.signal == "meta_label":
            sides = np.where(probability > rules.confidence_threshold, sides, 0.0)
        if rules.sizing == "kelly":
            payoff_ratio = _payoff_ratios(panel, frame_sides, rules.min_history)[:, None]
            size = kelly_position_size(probability, payoff_ratio, rules.kelly_fraction, rules.max_position)
    available = np.isfinite(panel.simple_returns)
    num_available = np.maximum(available.sum(axis=1, keepdims=True), 1)
    weights = np.where(available, sides * size, 0.0) / num_available
    gross = np.abs(weights).sum(axis=1, keepdims=True)
    scale = np.where(gross > rules.max_gross_exposure, rules.max_gross_exposure / np.maximum(gross, 1e-300), 1.0)
    return weights * scale


@dataclasses.dataclass(frozen=True, eq=False)
class Book:
    """One simulated book, period by period.

    Attributes:
        timestamps: rebalance timestamps (`DatetimeIndex`).
        period_ends: when each period's positions are closed or rolled.
        symbols: the columns of the weight arrays.
        target_weights: `[periods, symbols]` weights the rules asked for.
        weights: `[periods, symbols]` weights held, after the risk controls.
        symbol_returns: `[periods, symbols]` simple returns (0 where unknown).
        gross_returns, costs, net_returns, turnover: `[periods]`.
        halted: `[periods]` True where the circuit breaker kept the book flat.
        flattened: `[periods]` True where the loss limit kept the book flat.
        probability_source: where win probabilities came from (`None`
            when the rules need none).
    """

    timestamps: pd.DatetimeIndex
    period_ends: pd.DatetimeIndex
    symbols: pd.Index
    target_weights: np.ndarray
    weights: np.ndarray
    symbol_returns: np.ndarray
    gross_returns: np.ndarray
    costs: np.ndarray
    net_returns: np.ndarray
    turnover: np.ndarray
    halted: np.ndarray
    flattened: np.ndarray
    probability_source: str | None

    def weights_frame(self):
        """The weights held, a frame by rebalance timestamp and symbol."""
        return pd.DataFrame(self.weights, index=self.timestamps, columns=self.symbols)


def _run_book(panel, target_weights, cost_rate, drawdown_limit=None, max_loss_streak=None, cooldown_periods=1):
    """Applies the path-dependent controls period by period; each period's symbols are vectorized."""
    num_periods = len(target_weights)
    weights = np.zeros_like(target_weights)
    returns = np.nan_to_num(panel.simple_returns)
    turnover, gross_returns = np.zeros(num_periods), np.zeros(num_periods)
    halted, flattened = np.zeros(num_periods, bool), np.zeros(num_periods, bool)
    previous = np.zeros(target_weights.shape[1])
    halt_remaining, loss_streak, flatten_next = 0, 0, False
    for period in range(num_periods):
        target = target_weights[period]
        if halt_remaining > 0:
            halted[period], target, halt_remaining = True, np.zeros_like(target), halt_remaining - 1
        elif flatten_next:
            flattened[period], target = True, np.zeros_like(target)
        if panel.contiguous[period]:
            turnover[period] = np.abs(target - previous).sum()
        else:  # the book was closed at the previous period's end, and is reopened
            turnover[period] = np.abs(previous).sum() + np.abs(target).sum()
        if period == num_periods - 1:
            turnover[period] += np.abs(target).sum()
        gross_returns[period] = target @ returns[period]
        net_return = gross_returns[period] - cost_rate * turnover[period]
        weights[period], previous = target, target
        if target.any():
            loss_streak = loss_streak + 1 if net_return < 0 else 0
        flatten_next = False
        if max_loss_streak is not None and loss_streak >= max_loss_streak:
            halt_remaining, loss_streak = cooldown_periods, 0
        elif drawdown_limit is not None and net_return < -drawdown_limit:
            flatten_next = True
    costs = cost_rate * turnover
    return weights, returns, gross_returns, costs, gross_returns - costs, turnover, halted, flattened


def simulate_book(frame, score_column, horizon, cost_bps, calendar, rules=None, **options):
    """Simulates the book of one score column under `rules`, period by period.

    Args:
        frame: test predictions with columns `symbol`, `timestamp`,
            `forward_return` (log return over the horizon), `score_column`,
            and the columns the rules read (`past_return`, a probability
            or primary-side column).
        score_column: the column of scores (> 0 means up).
        horizon: bars each position is held (the label horizon), >= 1.
        cost_bps: commission per unit of turnover, in basis points, >= 0.
        calendar: sorted unique timestamps of the panel, to count bars
            (naive UTC or time-zone aware).
        rules: a `BacktestRules`. Defaults to `None`, the default rules.
        **options: `BacktestRules` fields, overriding those of `rules`.

    Returns:
        A `Book`.

    Raises:
        ValueError: for invalid options, missing columns, timestamps off the
            calendar, or duplicate rows.
    """
    rules = _resolve_rules(rules, options)
    panel = _prepare(frame, [score_column], horizon, cost_bps, calendar, rules)
    return _simulate(panel, score_column, cost_bps, rules, rules.probability_source)


def _resolve_rules(rules, options):
    rules = rules if rules is not None else BacktestRules()
    if not isinstance(rules, BacktestRules):
        raise BacktestError(f"`rules` must be a `BacktestRules` or None. Received: rules={rules!r}")
    unknown = sorted(set(options) - {field.name for field in dataclasses.fields(BacktestRules)})
    if unknown:
        raise BacktestError(f"Unknown backtest options {unknown}; the options are the fields of `BacktestRules`: "
                         f"{[field.name for field in dataclasses.fields(BacktestRules)]}")
    return dataclasses.replace(rules, **options)


def _prepare(frame, score_columns, horizon, cost_bps, calendar, rules):
    _check_integer("horizon", horizon, 1)
    _check_range("cost_bps", cost_bps, 0, np.inf, ">= 0")
    required = ["symbol", "timestamp", "forward_return", *score_columns]
    if rules.signal == "meta_label":
        required.append(rules.primary_side_column or "past_return")
    if rules.needs_probability and rules.probability_source == "column":
        required.append(rules.probability_column)
    missing = [name for name in dict.fromkeys(required) if name not in frame.columns]
    if missing:
        raise BacktestError(f"`frame` must have the columns {list(dict.fromkeys(required))}. "
                         f"Received: a frame without {missing}")
    if rules.needs_probability and rules.probability_source == "column":
        values = frame[rules.probability_column].to_numpy(dtype=np.float64)
        bad = np.isfinite(values) & ((values < 0) | (values > 1))
        if bad.any():
            first = np.flatnonzero(bad)[0]
            raise BacktestError(f"`{rules.probability_column}` must hold probabilities in [0, 1]. Received: "
                             f"{values[first]} for symbol={frame['symbol'].iloc[first]!r} at "
                             f"timestamp={frame['timestamp'].iloc[first]}")
    if len(calendar) == 0:
        raise BacktestError("`calendar` must hold the panel's timestamps. Received: an empty calendar")
    return _build_panel(frame, horizon, calendar)


def _simulate(panel, score_column, cost_bps, rules, probability_source):
    target_weights = _target_weights(panel, score_column, rules, probability_source)
    outputs = _run_book(panel, target_weights, (cost_bps + rules.slippage_bps) / 1e4, rules.drawdown_limit,
                        rules.max_loss_streak, rules.cooldown_periods)
    return Book(panel.timestamps, panel.period_ends, panel.symbols, target_weights, *outputs,
                probability_source=probability_source if rules.needs_probability else None)


def _buy_and_hold(panel, cost_bps, rules):
    available = np.isfinite(panel.simple_returns)
    target_weights = available / np.maximum(available.sum(axis=1, keepdims=True), 1)
    outputs = _run_book(panel, target_weights, (cost_bps + rules.slippage_bps) / 1e4)
    return Book(panel.timestamps, panel.period_ends, panel.symbols, target_weights, *outputs, probability_source=None)


def book_metrics(book, periods_per_year):
    """Performance of a simulated book.

    Args:
        book: a `Book`.
        periods_per_year: holding periods in a year (`bars_per_year / horizon`).

    Returns:
        A dict: `total_return`; `annualized_return` (compounded over the
        time invested, num_periods / periods_per_year years); `annualized_volatility`
        (sample standard deviation of period returns); `sharpe` (no risk-free
        rate); `sortino` (mean over the root mean square of the shortfalls
        below zero, all periods counted); `max_drawdown` (<= 0, from the
        starting equity of 1 on); `calmar` (annualized return over the
        absolute max drawdown); `win_rate` (per period: share of periods with
        positions whose net return is positive); `trade_win_rate` (per
        trade: share of symbol-periods with a position whose own return is
        positive, before costs); `profit_factor` (sum of positive over minus
        the sum of negative net period returns); `turnover` (mean one-way
        turnover per period); `exposure` (share of periods with positions);
        `average_gross_exposure`; `num_trades` (symbol-periods with a
        position); `total_costs` (sum of the per-period costs, in returns);
        `periods_halted` (circuit breaker); `periods_flattened` (loss limit);
        `num_periods`. Undefined values are NaN.
    """
    net = book.net_returns
    num_periods = len(net)
    equity = np.cumprod(1 + net)
    drawdown = equity / np.maximum.accumulate(np.maximum(equity, 1.0)) - 1
    years = num_periods / periods_per_year
    if equity[-1] > 0:
        annualized_return = float(equity[-1] ** (1 / years) - 1)
    else:
        annualized_return = -1.0  # the book was wiped out
    deviation = net.std(ddof=1) if num_periods > 1 else np.nan
    downside = np.sqrt(np.mean(np.minimum(net, 0.0) ** 2))
    max_drawdown = float(drawdown.min())
    active = (book.weights != 0).any(axis=1)
    trades = book.weights != 0
    gains, losses = net[net > 0].sum(), -net[net < 0].sum()
    return {
        "total_return": float(equity[-1] - 1),
        "annualized_return": annualized_return,
        "annualized_volatility": float(deviation * np.sqrt(periods_per_year)),
        "sharpe": float(net.mean() / deviation * np.sqrt(periods_per_year)) if deviation > 0 else np.nan,
        "sortino": float(net.mean() / downside * np.sqrt(periods_per_year)) if downside > 0 else np.nan,
        "max_drawdown": max_drawdown,
        "calmar": annualized_return / -max_drawdown if max_drawdown < 0 else np.nan,
        "win_rate": float(np.mean(net[active] > 0)) if active.any() else np.nan,
        "trade_win_rate": float(np.mean((book.weights * book.symbol_returns)[trades] > 0)) if trades.any() else np.nan,
        "profit_factor": float(gains / losses) if losses > 0 else np.nan,
        "turnover": float(book.turnover.mean()),
        "exposure": float(active.mean()),
        "average_gross_exposure": float(np.abs(book.weights).sum(axis=1).mean()),
        "num_trades": int(trades.sum()),
        "total_costs": float(book.costs.sum()),
        "periods_halted": int(book.halted.sum()),
        "periods_flattened": int(book.flattened.sum()),
        "num_periods": int(num_periods),
    }


def backtest(frame, prediction_column, horizon, cost_bps, calendar, bars_per_year=252, rules=None, score_columns=(),
             **options):
    """Backtests the positions `rules` take on a score column, against buy-and-hold.

    Args:
        frame: test predictions with columns `symbol`, `timestamp`,
            `forward_return` (log return over the horizon),
            `prediction_column`, and the columns the rules read
            (`past_return` for the default primary side, a probability
            column, any `score_columns`).
        prediction_column: the column of the model's scores (> 0 means up).
        horizon: bars each position is held (the label horizon), >= 1.
        cost_bps: commission per unit of turnover, in basis points; the
            rules' `slippage_bps` is added. >= 0.
        calendar: sorted unique timestamps of the panel, to count bars
            (naive UTC or time-zone aware).
        bars_per_year: bars in a year, for annualizing. Defaults to `252`.
        rules: a `BacktestRules`. Defaults to `None`, the default rules
            (sign of the score, one slot per symbol, no risk controls).
        score_columns: more score columns (e.g. baselines) traded under the
            same rules, for comparison; with `probability_source="column"`
            they are calibrated instead, having no probabilities of their
            own. Defaults to `()`.
        **options: `BacktestRules` fields, overriding those of `rules`, e.g.
            `sizing="kelly", max_loss_streak=3`.

    Returns:
        A tuple `(results, equity)`. `results` has one `book_metrics` dict
        per book, `strategy` (the prediction column), `buy_and_hold` (equal
        weight long every symbol on the same periods, same costs, no risk
        controls) and one per score column (books that needed win
        probabilities also say their `probability_source`), plus `rules` (the
        resolved `BacktestRules` as a dict) and `periods_per_year`.
        `equity` is indexed by rebalance timestamp, each row the state at
        the end of that period: `strategy`, `buy_and_hold` and one column
        per score column (equity from 1, after costs), `drawdown` (of the
        strategy), and the strategy's `net_return`, `gross_exposure`,
        `turnover`, `halted`, `flattened`, and `period_end`.

    Raises:
        ValueError: for invalid options, missing columns, timestamps off the
            calendar, or duplicate rows.
    """
    rules = _resolve_rules(rules, options)
    _check_range("bars_per_year", bars_per_year, 0, np.inf, "> 0", low_open=True)
    score_columns = list(score_columns)
    taken = {"strategy", "buy_and_hold", "rules", "periods_per_year", "drawdown", "net_return", "gross_exposure",
             "turnover", "halted", "flattened", "period_end", prediction_column}
    for column in score_columns:
        if column in taken or score_columns.count(column) > 1:
            raise BacktestError(f"`score_columns` must be distinct from each other, `prediction_column` and the result "
                             f"names {sorted(taken - {prediction_column})}. Received: score_columns={score_columns}")
    panel = _prepare(frame, [prediction_column, *score_columns], horizon, cost_bps, calendar, rules)
    periods_per_year = bars_per_year / horizon
    books = {"strategy": _simulate(panel, prediction_column, cost_bps, rules, rules.probability_source),
             "buy_and_hold": _buy_and_hold(panel, cost_bps, rules)}
    # A baseline has no probability column of its own: it is calibrated the same leak-free way.
    baseline_source = "calibrated" if rules.probability_source == "column" else rules.probability_source
    for column in score_columns:
        books[column] = _simulate(panel, column, cost_bps, rules, baseline_source)
    results = {name: book_metrics(book, periods_per_year) for name, book in books.items()}
    for name, book in books.items():
        if book.probability_source is not None:
            results[name]["probability_source"] = book.probability_source
    results["rules"] = dataclasses.asdict(rules)
    results["periods_per_year"] = float(periods_per_year)
    strategy = books["strategy"]
    equity = pd.DataFrame({name: np.cumprod(1 + book.net_returns) for name, book in books.items()},
                          index=panel.timestamps)
    equity["drawdown"] = equity["strategy"] / np.maximum.accumulate(np.maximum(equity["strategy"], 1.0)) - 1
    equity["net_return"] = strategy.net_returns
    equity["gross_exposure"] = np.abs(strategy.weights).sum(axis=1)
    equity["turnover"] = strategy.turnover
    equity["halted"] = strategy.halted
    equity["flattened"] = strategy.flattened
    equity["period_end"] = panel.period_ends
    return results, equity
