"""The rules a backtest trades by (`BacktestRules`: signal, sizing, costs, limits) and quarter-Kelly sizing."""

import dataclasses
import typing

import numpy as np

from keras_synapse.errors import BacktestError

SIGNALS = ("sign", "meta_label", "top_k")


SIZINGS = ("fixed", "kelly", "volatility")


PROBABILITY_SOURCES = ("calibrated", "isotonic", "column", "score")


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
    - `"isotonic"` (seed 003): a non-decreasing step map of the score
      (`keras_synapse.evaluation.isotonic`, as scikit-learn's
      `IsotonicRegression`), refitted every `ISOTONIC_REFIT_PERIODS`
      rebalances on the test rows realized by then; it bends where the
      logistic map cannot, and needs more history to settle.
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
            negative), `"meta_label"` (the primary side, only when its win
            probability exceeds `confidence_threshold`) or `"top_k"` (a
            cross-sectional long-short book: at each rebalance long the
            `top_k` highest scores and short the `top_k` lowest, `1 / (2k)`
            of capital each, dollar neutral; with fewer than `2 * top_k`
            symbols, half of those there are). Defaults to `"sign"`.
        top_k: symbols on each side of the `"top_k"` book, >= 1. Defaults
            to `3`.
        primary_side_column: column whose sign is the primary side (long,
            short, flat) for `"meta_label"`, known at the window's end;
            `None` uses `sign(past_return)`, time-series momentum over the
            label horizon. Defaults to `None`.
        confidence_threshold: win probability a meta-labelled trade must
            exceed (strictly), in [0, 1]. Defaults to `0.6`.
        confidence_target: what the probability is of, `"direction"` or
            `"event"` (see above). Defaults to `"direction"`.
        probability_source: `"calibrated"`, `"isotonic"`, `"column"` or
            `"score"` (see above). Defaults to `"calibrated"`.
        probability_column: the probability column for
            `probability_source="column"`, e.g. `"probability_UP"`.
            Defaults to `None`.
        sizing: `"fixed"` (one slot, capped at `max_position`), `"kelly"`,
            or `"volatility"` (`volatility_target` over the standard
            deviation of the symbol's period returns realized so far,
            capped at `max_position`; one slot until `min_history` of them).
            Defaults to `"fixed"`.
        volatility_target: the period volatility a `"volatility"`-sized
            position aims at, > 0. Defaults to `0.02`.
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
        period_loss_limit: a period whose net return is below
            `-period_loss_limit` flattens the book for the next period, in
            (0, 1); `None` turns it off. Defaults to `None`.
        drawdown_limit: when the book's equity falls more than this below
            its running peak (peak to trough, on the net returns of the
            periods so far), the book is flat for `cooldown_periods`
            periods, then trades again measured from the equity it stopped
            at, in (0, 1); `None` turns it off. Defaults to `None`.
        max_loss_streak: after this many consecutive losing periods (periods
            with positions and a negative net return) trading halts for
            `cooldown_periods` periods, >= 1; `None` turns the circuit
            breaker off. Defaults to `None`.
        min_win_rate: when fewer than this share of the latest
            `win_rate_window` periods with positions had a positive net
            return, trading halts for `cooldown_periods` (seed 003's
            shutdown below 40% accuracy), in (0, 1); `None` turns it off.
            Defaults to `None`.
        win_rate_window: trading periods the accuracy shutdown looks back
            over, >= 2. Defaults to `20`.
        volatility_spike: when the net returns of the latest `spike_window`
            trading periods are more than this multiple as volatile as all
            trading periods before them (at least `2 * spike_window`), the
            next period's book is scaled by `spike_scale` (seed 003's size
            cut), > 1; `None` turns it off. Defaults to `None`.
        spike_window: trading periods the spike is measured over, >= 2.
            Defaults to `10`.
        spike_scale: the cut book's share of its size, in (0, 1).
            Defaults to `0.5`.
        cooldown_periods: periods the circuit breaker (or the drawdown
            limit) keeps the book flat, after which the loss streak starts
            again from zero, >= 1. Defaults to `5`.
        execution_lag: bars from the signal to the trade, as the labels were
            built with (`keras_synapse.labels.common.with_execution_lag`):
            an outcome is known `horizon + execution_lag` bars after its
            signal, which the calibration and payoff estimates respect,
            >= 0. Defaults to `0`.

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
    volatility_target: float = 0.02
    max_position: float = 1.0
    max_gross_exposure: float = 1.0
    min_history: int = 50
    slippage_bps: float = 0.0
    period_loss_limit: float | None = None
    drawdown_limit: float | None = None
    max_loss_streak: int | None = None
    min_win_rate: float | None = None
    win_rate_window: int = 20
    volatility_spike: float | None = None
    spike_window: int = 10
    spike_scale: float = 0.5
    cooldown_periods: int = 5
    execution_lag: int = 0
    top_k: int = 3

    def __post_init__(self):
        for name, choices in (("signal", SIGNALS), ("sizing", SIZINGS), ("probability_source", PROBABILITY_SOURCES),
                              ("confidence_target", CONFIDENCE_TARGETS)):
            if getattr(self, name) not in choices:
                raise BacktestError(f"`{name}` must be one of {choices}. Received: {name}={getattr(self, name)!r}")
        check_range("confidence_threshold", self.confidence_threshold, 0, 1, "[0, 1]")
        check_range("kelly_fraction", self.kelly_fraction, 0, 1, "(0, 1]", low_open=True)
        check_range("volatility_target", self.volatility_target, 0, np.inf, "> 0", low_open=True)
        check_range("max_position", self.max_position, 0, np.inf, "> 0", low_open=True)
        check_range("max_gross_exposure", self.max_gross_exposure, 0, np.inf, "> 0", low_open=True)
        check_range("slippage_bps", self.slippage_bps, 0, np.inf, ">= 0")
        check_integer("win_rate_window", self.win_rate_window, 2)
        check_integer("spike_window", self.spike_window, 2)
        check_range("spike_scale", self.spike_scale, 0, 1, "(0, 1)", low_open=True, high_open=True)
        if self.volatility_spike is not None:
            check_range("volatility_spike", self.volatility_spike, 1, np.inf, "> 1 or None", low_open=True)
        for name in ("period_loss_limit", "drawdown_limit", "min_win_rate"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 0, 1, "(0, 1) or None", low_open=True, high_open=True)
        check_integer("min_history", self.min_history, 2)
        check_integer("cooldown_periods", self.cooldown_periods, 1)
        check_integer("execution_lag", self.execution_lag, 0)
        check_integer("top_k", self.top_k, 1)
        if self.max_loss_streak is not None:
            check_integer("max_loss_streak", self.max_loss_streak, 1, " or None")
        if self.probability_source == "column" and self.needs_probability and self.probability_column is None:
            raise BacktestError("`probability_source='column'` needs `probability_column`, e.g. 'probability_UP'. "
                             "Received: probability_column=None")
        if self.signal == "sign" and self.confidence_target == "event":
            raise BacktestError("`confidence_target='event'` is the win probability of a primary side, so it needs "
                             "`signal='meta_label'`. Received: signal='sign'")

    @property
    def needs_probability(self):
        return self.signal == "meta_label" or self.sizing == "kelly"


def check_range(name, value, low, high, description, low_open=False, high_open=False):
    valid = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if valid:
        valid = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not valid:
        raise BacktestError(f"`{name}` must be in {description}. Received: {name}={value!r}")


def check_integer(name, value, minimum, suffix=""):
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


def rules_from_text(pairs, **fixed):
    """`BacktestRules` from an experiment's `strategy` pairs (strings), e.g. `{"sizing": "kelly"}`.

    Values are converted to each field's type (`none` for an optional one
    left off); a `primary_side_column` naming a classical strategy
    (`rsi_reversion`, ...) reads that strategy's side column.

    Args:
        pairs: dict field -> string value.
        **fixed: fields the run decides (`execution_lag`), not the strategy.

    Raises:
        BacktestError: naming an unknown field, a field the run decides, or
            a value of the wrong type or range.
    """
    from keras_synapse.evaluation.classical import CLASSICAL_STRATEGIES, COLUMN_PREFIX

    fields = {field.name: field.type for field in dataclasses.fields(BacktestRules)}
    values = {}
    for name, text in pairs.items():
        if name not in fields or name in fixed:
            raise BacktestError(f"`strategy` has no setting {name!r} (the run itself sets {sorted(fixed)}). "
                                f"Settings: {', '.join(sorted(set(fields) - set(fixed)))}")
        values[name] = _typed(name, text, fields[name])
    if values.get("primary_side_column") in CLASSICAL_STRATEGIES:
        values["primary_side_column"] = f"{COLUMN_PREFIX}{values['primary_side_column']}"
    return BacktestRules(**values, **fixed)


def _typed(name, text, kind):
    options = typing.get_args(kind) or (kind,)
    if type(None) in options and text.lower() == "none":
        return None
    target = next(option for option in options if option is not type(None))
    if target is str:
        return text
    try:
        number = float(text)
    except ValueError:
        raise BacktestError(f"`strategy` {name} must be a number. Received: {name}={text!r}") from None
    if target is int:
        if not number.is_integer():
            raise BacktestError(f"`strategy` {name} must be a whole number. Received: {name}={text!r}")
        return int(number)
    return number
