"""From scores to target positions: the trading dates, walk-forward calibrated win probabilities and payoffs,
and each symbol's weight on each date.
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.errors import BacktestError
from keras_synapse.evaluation.isotonic import fit_isotonic, predict_isotonic
from keras_synapse.evaluation.trading_rules import DEFAULT_PAYOFF_RATIO, kelly_position_size


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


def naive_utc(values):
    """Timestamps as a naive UTC `DatetimeIndex` (time-zone aware ones converted first)."""
    index = pd.DatetimeIndex(values)
    return index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index


@dataclasses.dataclass(frozen=True, eq=False)
class _Panel:
    """The test rows laid out for the backtest."""

    frame: pd.DataFrame  # all usable rows, with `position` and `end_position` on the calendar
    timestamps: pd.DatetimeIndex  # rebalance timestamps, in the frame's time zone
    period_ends: pd.DatetimeIndex  # when each period's positions are closed or rolled
    positions: np.ndarray  # calendar positions of the rebalances
    end_positions: np.ndarray  # calendar positions where each period's outcome is known
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


def build_trading_panel(frame, horizon, calendar, execution_lag=0):
    time_zone = pd.DatetimeIndex(frame["timestamp"]).tz
    calendar = naive_utc(calendar)
    timestamps = naive_utc(frame["timestamp"])
    positions = calendar.searchsorted(timestamps)
    off_calendar = (positions >= len(calendar)) | (calendar[np.minimum(positions, len(calendar) - 1)] != timestamps)
    if off_calendar.any():
        first = np.flatnonzero(off_calendar)[0]
        raise BacktestError(f"Every timestamp must be on `calendar`. Received: symbol={frame['symbol'].iloc[first]!r} "
                         f"at timestamp={frame['timestamp'].iloc[first]} (not on the calendar)")
    # A row's outcome is known `horizon + execution_lag` bars after its signal bar.
    frame = frame.assign(timestamp=timestamps, position=positions, end_position=positions + horizon + execution_lag)
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
    end_positions = kept_positions + horizon + execution_lag
    period_ends = pd.DatetimeIndex([calendar[end] if end < len(calendar) else pd.NaT for end in end_positions])
    contiguous = np.diff(kept_positions, prepend=-horizon - 1) == horizon
    localize = (lambda index: index.tz_localize("UTC").tz_convert(time_zone)) if time_zone else (lambda index: index)
    return _Panel(frame=frame, timestamps=localize(kept).rename("timestamp"), period_ends=localize(period_ends),
                  positions=kept_positions, end_positions=end_positions, contiguous=contiguous, symbols=symbols, row_index=row_index,
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
    intercept, slope = _discriminant(count_1, sum_1, square_1, count_0, sum_0, square_0)
    valid = (count_1 >= 1) & (count_0 >= 1) & (count_1 + count_0 >= min_history)
    return np.where(valid, intercept, 0.0), np.where(valid, slope, 0.0), valid


def _discriminant(count_1, sum_1, square_1, count_0, sum_0, square_0):
    """The logistic map's `(intercept, slope)` from each class's count, sum and sum of squares of the score.

    Linear-discriminant coefficients: class means, pooled variance. Arrays
    (one entry per rebalance) or scalars.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_1, mean_0 = sum_1 / count_1, sum_0 / count_0
        variance = (square_1 - count_1 * mean_1**2 + square_0 - count_0 * mean_0**2) / (count_1 + count_0 - 2)
        # A score that never varied says nothing: the map is then the base rate
        # (relative test, since the running sums leave rounding residue).
        varied = variance > 1e-12 * (square_1 + square_0) / (count_1 + count_0)
        slope = np.where(varied, (mean_1 - mean_0) / variance, 0.0)
        intercept = np.log(count_1 / count_0) - np.where(varied, (mean_1**2 - mean_0**2) / (2 * variance), 0.0)
    return intercept, slope


def logistic(values):
    """`1 / (1 + exp(-values))`, clipped so that no value overflows."""
    return 1 / (1 + np.exp(-np.clip(values, -500, 500)))


# The isotonic map is refitted every this many rebalances (each fit sorts every realized row).
ISOTONIC_REFIT_PERIODS = 10


def _isotonic_probabilities(panel, scores, outcomes, included, period_scores, min_history):
    """`[periods, symbols]` isotonic P(outcome > 0 | score), fitted on rows realized by each refit's rebalance.

    Refitted every `ISOTONIC_REFIT_PERIODS` rebalances on the rows whose
    outcome was known at that rebalance (label end at or before it); 0.5
    until `min_history` such rows, with both outcomes among them, exist.
    """
    end_positions = panel.frame["end_position"].to_numpy()
    probability = np.full(period_scores.shape, 0.5)
    calibration = None
    for period, position in enumerate(panel.positions):
        if period % ISOTONIC_REFIT_PERIODS == 0:
            realized = included & (end_positions <= position)
            wins = outcomes[realized] > 0
            enough = realized.sum() >= min_history and 0 < wins.sum() < realized.sum()
            calibration = fit_isotonic(scores[realized], wins) if enough else None
        if calibration is not None:
            row = period_scores[period]
            probability[period] = np.where(np.isfinite(row), predict_isotonic(calibration, np.nan_to_num(row)), 0.5)
    return probability


def _volatility_sizes(panel, rules):
    """`[periods, symbols]` slots of `volatility_target` over each symbol's realized period-return volatility.

    The volatility is the sample standard deviation of the symbol's simple
    returns over one horizon whose outcome was realized by the rebalance;
    one slot (capped) until `min_history` of them exist.
    """
    returns = np.expm1(panel.frame["forward_return"].to_numpy(dtype=np.float64))
    symbols = panel.frame["symbol"].to_numpy()
    sizes = np.full((len(panel.positions), len(panel.symbols)), min(1.0, rules.max_position))
    for column, symbol in enumerate(panel.symbols):
        count, total, squares = _realized_sums(panel, symbols == symbol, [np.ones_like(returns), returns, returns**2])
        with np.errstate(invalid="ignore", divide="ignore"):
            deviation = np.sqrt(np.maximum(squares - total**2 / count, 0.0) / (count - 1))
            sized = np.minimum(rules.volatility_target / deviation, rules.max_position)
        known = (count >= rules.min_history) & (deviation > 0)
        sizes[known, column] = sized[known]
    return sizes


def direction_calibration(scores, forward_returns):
    """The logistic map `P(up) = sigmoid(intercept + slope * score)` of out-of-sample scores, in closed form.

    The linear discriminant `_calibration` refits at every rebalance
    (`_discriminant`), fitted once on all of `scores` (a run's test
    predictions) for the model card, so a service can state a regression
    model's confidence. Zero returns are
    left out; a score that never varied gives the base rate.

    Returns:
        `{"intercept", "slope", "n"}`.
    """
    scores, returns = np.asarray(scores, dtype=np.float64), np.asarray(forward_returns, dtype=np.float64)
    keep = np.isfinite(scores) & np.isfinite(returns) & (returns != 0)
    scores, up = scores[keep], returns[keep] > 0
    if up.all() or not up.any():
        raise BacktestError(f"A calibration needs both up and down outcomes. Received: {int(up.sum())} up of "
                            f"{len(up)}")
    intercept, slope = _discriminant(*(float(total) for side in (scores[up], scores[~up])
                                       for total in (len(side), side.sum(), (side**2).sum())))
    return {"intercept": float(intercept), "slope": float(slope), "n": int(len(scores))}


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
        if probability_source == "isotonic":
            probability = _isotonic_probabilities(panel, scores, outcomes, included, panel.column(score_column),
                                                  rules.min_history)
        else:
            intercept, slope, valid = _calibration(panel, scores, outcomes, included, rules.min_history)
            logits = intercept[:, None] + slope[:, None] * panel.column(score_column)
            probability = np.where(valid[:, None], logistic(logits), 0.5)
    if rules.confidence_target == "direction":
        probability = np.where(panel.gather(sides) < 0, 1 - probability, probability)
    return np.nan_to_num(probability, nan=0.5)


def top_k_weights(scores, available, k):
    """`[periods, symbols]` weights of a dollar-neutral book: +1/(2k) on the k highest scores, -1/(2k) on the lowest.

    Only symbols with a score and a known outcome rank; with fewer than `2k`
    of them the book takes half of those there are on each side.
    """
    weights = np.zeros(scores.shape)
    usable = available & np.isfinite(scores)
    for period in range(len(scores)):
        columns = np.flatnonzero(usable[period])
        side = min(k, len(columns) // 2)
        if side == 0:
            continue
        # Stable ranking: ties keep symbol order, so a constant score still gives a definite book.
        ranked = columns[np.argsort(scores[period, columns], kind="stable")]
        weights[period, ranked[-side:]] = 1 / (2 * side)
        weights[period, ranked[:side]] = -1 / (2 * side)
    return weights


def position_targets(panel, score_column, rules, probability_source):
    """`[periods, symbols]` weights the rules ask for, before the path-dependent controls."""
    if rules.signal == "top_k":
        return top_k_weights(panel.column(score_column), np.isfinite(panel.simple_returns), rules.top_k)
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
    if rules.sizing == "volatility":
        size = _volatility_sizes(panel, rules)
    available = np.isfinite(panel.simple_returns)
    num_available = np.maximum(available.sum(axis=1, keepdims=True), 1)
    weights = np.where(available, sides * size, 0.0) / num_available
    gross = np.abs(weights).sum(axis=1, keepdims=True)
    scale = np.where(gross > rules.max_gross_exposure, rules.max_gross_exposure / np.maximum(gross, 1e-300), 1.0)
    return weights * scale
