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
  path-dependent risk controls read only the net returns of earlier periods
  whose outcome was known by the rebalance (with an execution lag, the
  period before is still open then).
- **Risk controls** (seed 002), each on its own: `max_position` slots per
  symbol, `max_gross_exposure` (the book is scaled down to it), a per-period
  loss limit, a peak-to-trough drawdown limit, a circuit breaker on a loss
  streak, an accuracy shutdown (seed 003: too few winning periods lately)
  and a volatility-spike size cut. Only
  period returns are observed, so a breach can act on the *next* period,
  never inside the one that breached (a stop inside the period would assume
  fills that gaps deny).

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
from keras_synapse.evaluation.calendars import calendar_groups, combine_sleeves
from keras_synapse.evaluation.positions import build_trading_panel, naive_utc, position_targets
from keras_synapse.evaluation.trading_rules import BacktestRules, check_integer, check_range


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
        halted: `[periods]` True where the circuit breaker (a loss streak, or
            the accuracy shutdown) kept the book flat.
        flattened: `[periods]` True where the period loss limit kept the book flat.
        stopped: `[periods]` True where the drawdown limit kept the book flat.
        cut: `[periods]` True where a volatility spike scaled the book down.
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
    stopped: np.ndarray
    cut: np.ndarray
    probability_source: str | None

    def weights_frame(self):
        """The weights held, a frame by rebalance timestamp and symbol."""
        return pd.DataFrame(self.weights, index=self.timestamps, columns=self.symbols)


def _run_book(panel, target_weights, cost_rate, rules=None):
    """Applies the path-dependent controls period by period; each period's symbols are vectorized.

    A period's net return reaches the controls once its outcome is known,
    `horizon + execution_lag` bars after its rebalance: with no lag that is
    the next rebalance; with a lag the next rebalance comes a bar before the
    previous period's exit, so that period acts one rebalance later (as it
    would live). `rules` `None` (buy-and-hold) applies none: the default
    rules have every control off.
    """
    rules = rules if rules is not None else BacktestRules()
    num_periods = len(target_weights)
    weights = np.zeros_like(target_weights)
    returns = np.nan_to_num(panel.simple_returns)
    turnover, gross_returns = np.zeros(num_periods), np.zeros(num_periods)
    halted, flattened, stopped, cut = (np.zeros(num_periods, bool) for _ in range(4))
    previous = np.zeros(target_weights.shape[1])
    controls = _Controls(rules)
    pending = []  # periods traded whose outcome is not known yet: (end position, net return, traded, stopped)
    for period in range(num_periods):
        known = [entry for entry in pending if entry[0] <= panel.positions[period]]
        pending = [entry for entry in pending if entry[0] > panel.positions[period]]
        flatten_now = False
        for _, net_return, traded, was_stopped in known:
            flatten_now = controls.observe(net_return, traded, was_stopped)
        target = target_weights[period]
        if controls.stop_remaining > 0:
            stopped[period], target = True, np.zeros_like(target)
            controls.stop_remaining -= 1
        elif controls.halt_remaining > 0:
            halted[period], target = True, np.zeros_like(target)
            controls.halt_remaining -= 1
        elif flatten_now:
            flattened[period], target = True, np.zeros_like(target)
        elif _volatility_spike(controls.active_returns, rules):
            cut[period], target = True, target * rules.spike_scale
        if panel.contiguous[period]:
            turnover[period] = np.abs(target - previous).sum()
        else:  # the book was closed at the previous period's end, and is reopened
            turnover[period] = np.abs(previous).sum() + np.abs(target).sum()
        if period == num_periods - 1:
            turnover[period] += np.abs(target).sum()
        gross_returns[period] = target @ returns[period]
        weights[period], previous = target, target
        pending.append((panel.end_positions[period], gross_returns[period] - cost_rate * turnover[period],
                        bool(target.any()), bool(stopped[period])))
    costs = cost_rate * turnover
    return weights, returns, gross_returns, costs, gross_returns - costs, turnover, halted, flattened, stopped, cut


class _Controls:
    """The state the path-dependent controls keep: loss streak, recent wins, equity and peak, cooldowns."""

    def __init__(self, rules):
        self.rules = rules
        self.recent_wins = []  # win (True) or loss of the latest periods with positions, for the accuracy shutdown
        self.active_returns = []  # net returns of the periods with positions, for the volatility-spike cut
        self.halt_remaining = self.stop_remaining = self.loss_streak = 0
        self.equity = self.peak = 1.0

    def observe(self, net_return, traded, was_stopped):
        """Takes in one period's realized net return; returns whether the period loss limit was breached."""
        rules = self.rules
        if traded:
            self.loss_streak = self.loss_streak + 1 if net_return < 0 else 0
            self.recent_wins = (self.recent_wins + [net_return > 0])[-rules.win_rate_window:]
            self.active_returns.append(net_return)
        # Seed 003's shutdown: the latest `win_rate_window` trading periods won too rarely.
        accuracy_failed = (rules.min_win_rate is not None and len(self.recent_wins) == rules.win_rate_window
                           and np.mean(self.recent_wins) < rules.min_win_rate)
        self.equity *= 1 + net_return
        # While stopped the peak follows the equity, so trading resumes measured from where it stopped.
        self.peak = self.equity if was_stopped else max(self.peak, self.equity)
        if rules.drawdown_limit is not None and self.equity / self.peak - 1 < -rules.drawdown_limit:
            self.stop_remaining, self.peak = rules.cooldown_periods, self.equity
        elif (rules.max_loss_streak is not None and self.loss_streak >= rules.max_loss_streak) or accuracy_failed:
            self.halt_remaining, self.loss_streak, self.recent_wins = rules.cooldown_periods, 0, []
        elif rules.period_loss_limit is not None and net_return < -rules.period_loss_limit:
            return True
        return False


def _volatility_spike(active_returns, rules):
    """Seed 003's size cut: the latest `spike_window` trading periods' volatility over `volatility_spike` x that of
    every trading period before them (at least twice as many)."""
    window = rules.spike_window
    if rules.volatility_spike is None or len(active_returns) < 3 * window:
        return False
    recent, before = np.std(active_returns[-window:], ddof=1), np.std(active_returns[:-window], ddof=1)
    return bool(recent > rules.volatility_spike * before)


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
    check_integer("horizon", horizon, 1)
    check_range("cost_bps", cost_bps, 0, np.inf, ">= 0")
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
    return build_trading_panel(frame, horizon, calendar, rules.execution_lag)


def _simulate(panel, score_column, cost_bps, rules, probability_source):
    target_weights = position_targets(panel, score_column, rules, probability_source)
    outputs = _run_book(panel, target_weights, (cost_bps + rules.slippage_bps) / 1e4, rules)
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
        `periods_halted` (circuit breaker); `periods_flattened` (period loss
        limit); `periods_stopped` (drawdown limit); `periods_cut` (volatility
        spike);
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
        "periods_stopped": int(book.stopped.sum()),
        "periods_cut": int(book.cut.sum()),
        "num_periods": int(num_periods),
    }


def backtest(frame, prediction_column, horizon, cost_bps, calendar, bars_per_year=252, rules=None, score_columns=(),
             symbol_calendars=None, **options):
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
        symbol_calendars: dict symbol -> its own bar times. Symbols on
            different calendars are then held as sleeves, each on its own
            dates and annualized from its own spacing
            (`keras_synapse.evaluation.calendars`). Defaults to `None`: one
            calendar, `calendar`.
        **options: `BacktestRules` fields, overriding those of `rules`, e.g.
            `sizing="kelly", max_loss_streak=3`.

    Returns:
        A tuple `(results, equity)`. `results` has one `book_metrics` dict
        per book, `strategy` (the prediction column), `buy_and_hold` (equal
        weight long every symbol on the same periods, same costs, no risk
        controls) and one per score column (books that needed win
        probabilities also say their `probability_source`), plus `rules` (the
        resolved `BacktestRules` as a dict), `periods_per_year` and, for
        symbols on several calendars, `sleeves` (each one's symbols, capital
        share, periods per year and books).
        `equity` is indexed by rebalance timestamp, each row the state at
        the end of that period: `strategy`, `buy_and_hold` and one column
        per score column (equity from 1, after costs), `drawdown` (of the
        strategy), and the strategy's `net_return`, `gross_exposure`,
        `turnover`, `halted`, `flattened`, `stopped`, `cut`, and `period_end`.

    Raises:
        ValueError: for invalid options, missing columns, timestamps off the
            calendar, or duplicate rows.
    """
    rules = _resolve_rules(rules, options)
    check_range("bars_per_year", bars_per_year, 0, np.inf, "> 0", low_open=True)
    score_columns = list(score_columns)
    taken = {"strategy", "buy_and_hold", "rules", "periods_per_year", "sleeves", "drawdown", "net_return",
             "gross_exposure", "turnover", "halted", "flattened", "stopped", "cut", "period_end", prediction_column}
    for column in score_columns:
        if column in taken or score_columns.count(column) > 1:
            raise BacktestError(f"`score_columns` must be distinct from each other, `prediction_column` and the result "
                             f"names {sorted(taken - {prediction_column})}. Received: score_columns={score_columns}")
    groups = []
    if symbol_calendars is not None:
        missing = sorted(set(frame["symbol"]) - set(symbol_calendars))
        if missing:
            raise BacktestError(f"`symbol_calendars` must hold every symbol of `frame`. Received: none for {missing}")
        groups = calendar_groups({symbol: symbol_calendars[symbol] for symbol in frame["symbol"].unique()})
    if len(groups) <= 1:
        books = _books(frame, prediction_column, score_columns, horizon, cost_bps, calendar, rules)
        periods_per_year, sleeves = bars_per_year / horizon, None
    else:
        books, periods_per_year, sleeves = _sleeve_books(frame, prediction_column, score_columns, horizon, cost_bps,
                                                         calendar, bars_per_year, rules, groups, symbol_calendars)
    results = {name: book_metrics(book, periods_per_year) for name, book in books.items()}
    for name, book in books.items():
        if book.probability_source is not None:
            results[name]["probability_source"] = book.probability_source
    results["rules"] = dataclasses.asdict(rules)
    results["periods_per_year"] = float(periods_per_year)
    if sleeves:
        results["sleeves"] = sleeves
    strategy = books["strategy"]
    equity = pd.DataFrame({name: np.cumprod(1 + book.net_returns) for name, book in books.items()},
                          index=strategy.timestamps)
    equity["drawdown"] = equity["strategy"] / np.maximum.accumulate(np.maximum(equity["strategy"], 1.0)) - 1
    equity["net_return"] = strategy.net_returns
    equity["gross_exposure"] = np.abs(strategy.weights).sum(axis=1)
    equity["turnover"] = strategy.turnover
    equity["halted"] = strategy.halted
    equity["flattened"] = strategy.flattened
    equity["stopped"] = strategy.stopped
    equity["cut"] = strategy.cut
    equity["period_end"] = strategy.period_ends
    return results, equity


def _books(frame, prediction_column, score_columns, horizon, cost_bps, calendar, rules):
    """The strategy, buy-and-hold and each score column's book on one calendar."""
    panel = _prepare(frame, [prediction_column, *score_columns], horizon, cost_bps, calendar, rules)
    books = {"strategy": _simulate(panel, prediction_column, cost_bps, rules, rules.probability_source),
             "buy_and_hold": _buy_and_hold(panel, cost_bps, rules)}
    # A baseline has no probability column of its own: it is calibrated the same leak-free way.
    baseline_source = "calibrated" if rules.probability_source == "column" else rules.probability_source
    for column in score_columns:
        books[column] = _simulate(panel, column, cost_bps, rules, baseline_source)
    return books


def _sleeve_books(frame, prediction_column, score_columns, horizon, cost_bps, calendar, bars_per_year, rules, groups,
                  symbol_calendars):
    """Each calendar's symbols simulated as a sleeve on their own dates, then combined into one book per name."""
    union = naive_utc(calendar)
    num_symbols = sum(len(group) for group in groups)
    per_sleeve, shares, sleeves = [], [], []
    for group in groups:
        own = pd.DatetimeIndex(np.unique(np.concatenate([pd.DatetimeIndex(symbol_calendars[symbol]).as_unit("ns")
                                                          .asi8 for symbol in group])).astype("datetime64[ns]"))
        books = _books(frame[frame["symbol"].isin(group)], prediction_column, score_columns, horizon, cost_bps,
                       own, rules)
        # Its own year: as many of its bars as the union calendar's year holds of the span it covers.
        spanned = union.searchsorted(own[-1], side="right") - union.searchsorted(own[0])
        own_periods_per_year = bars_per_year * len(own) / max(spanned, 1) / horizon
        per_sleeve.append(books)
        shares.append(len(group) / num_symbols)
        sleeves.append({"symbols": list(group), "share": shares[-1], "periods_per_year": float(own_periods_per_year),
                        **{name: book_metrics(book, own_periods_per_year) for name, book in books.items()}})
    combined = {name: combine_sleeves([books[name] for books in per_sleeve], shares, Book) for name in per_sleeve[0]}
    grid = naive_utc(combined["strategy"].timestamps)
    spanned = union.searchsorted(grid[-1]) + horizon - union.searchsorted(grid[0])
    return combined, len(grid) * bars_per_year / max(spanned, 1), sleeves

