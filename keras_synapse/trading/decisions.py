"""Target weights at each live bar by exactly the rules the backtest trades by, and the orders that reach them.

The runner does not re-implement the strategy. At every bar it lays out the
predictions made so far as the backtest's prediction frame and asks
`keras_synapse.evaluation.backtest.simulate_book` for the book; the weights of
its last period are the targets now. Outcomes not realized yet (the forward
returns of the last `horizon + execution_lag` bars) are unknown live, and the
backtest reads, by construction, no outcome before it is realized (its
calibration, payoff estimates and breakers see only labels that ended by the
rebalance): so they are filled with a placeholder that cannot reach the
weights. The parity test (a replay through the runner against a backtest of
the whole period) is what would catch a backtest that peeked.

Sizing in shares: a weight is a share of the strategy's capital (its own
allocation, not the account's equity, so that other holdings of the account
never move it), scaled by the allocation ramp, at the signal bar's close:
`round(weight * ramp * capital / close)` whole shares (or to 1e-4 with
fractional shares).
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.evaluation.backtest import simulate_book
from keras_synapse.evaluation.classical import COLUMN_PREFIX, classical_columns
from keras_synapse.labels.common import entry_return

SCORE_COLUMN = "prediction"
# Seed 003's gradual adoption: a new strategy trades a quarter, then half, then all of its allocation.
DEFAULT_RAMP = (0.25, 0.5, 1.0)
DEFAULT_RAMP_PERIODS = 20


@dataclasses.dataclass(frozen=True)
class Decision:
    """The targets at one rebalance.

    Attributes:
        timestamp: the signal bar.
        weights: `{symbol: weight}` of the strategy's capital, after the risk
            controls, before the ramp.
        halted, stopped, flattened, cut: the backtest's breaker states for
            this period (loss streak or accuracy shutdown, drawdown limit,
            period loss limit, volatility-spike cut).
        period: the rebalance's number, from 0.
    """

    timestamp: pd.Timestamp
    weights: dict
    halted: bool
    stopped: bool
    flattened: bool
    cut: bool
    period: int

    @property
    def breakers(self):
        return {"halted": self.halted, "stopped": self.stopped, "flattened": self.flattened, "cut": self.cut}


def prediction_frame(bars, predictions, horizon, execution_lag, rules):
    """The backtest's prediction frame of the bars and predictions seen so far.

    Args:
        bars: `{symbol: OHLCV frame}`, every bar seen (warm-up included).
        predictions: a frame with `symbol`, `timestamp` (UTC), `prediction`
            (the score) and any probability columns, one row per traded bar.
        horizon: the label horizon, bars.
        execution_lag: bars from signal to trade, as the labels were built.
        rules: the `BacktestRules`, for the columns they read.

    Returns:
        The frame with `forward_return` (NaN until realized) and
        `past_return` as the training windows define them, and the classical
        side columns when the rules trade one.
    """
    parts = []
    for symbol, rows in predictions.groupby("symbol", sort=False):
        forward = entry_return(bars[symbol], horizon, execution_lag)
        past = forward.shift(horizon + execution_lag)
        at = pd.DatetimeIndex(rows["timestamp"])
        parts.append(rows.assign(forward_return=forward.reindex(at).to_numpy(),
                                 past_return=past.reindex(at).to_numpy()))
    frame = pd.concat(parts, ignore_index=True) if parts else predictions.assign(forward_return=[], past_return=[])
    if (rules.primary_side_column or "").startswith(COLUMN_PREFIX):
        frame = frame.assign(**classical_columns(frame, bars))
    return frame


def decide(frame, calendar, horizon, cost_bps, rules):
    """The targets at the newest bar of `frame`, or `None` when that bar is not a rebalance.

    Args:
        frame: a `prediction_frame`.
        calendar: every bar time seen, sorted (UTC).
        horizon: the label horizon, bars (the holding period).
        cost_bps: commission per unit of turnover, basis points.
        rules: the `BacktestRules`.

    Returns:
        A `Decision`, or `None`.
    """
    latest = frame["timestamp"].max()
    unknown = ~np.isfinite(frame["forward_return"].to_numpy(dtype=np.float64))
    # The backtest reads no outcome before it is realized: any placeholder gives the same weights.
    placeholder = frame.assign(forward_return=np.where(unknown, 0.0, frame["forward_return"]))
    book = simulate_book(placeholder, SCORE_COLUMN, horizon, cost_bps, calendar, rules)
    if book.timestamps[-1] != latest:
        return None
    weights = {symbol: float(weight) for symbol, weight in zip(book.symbols, book.weights[-1])}
    return Decision(latest, weights, bool(book.halted[-1]), bool(book.stopped[-1]), bool(book.flattened[-1]),
                    bool(book.cut[-1]), len(book.timestamps) - 1)


def ramp_fraction(decisions, stages=DEFAULT_RAMP, periods_per_stage=DEFAULT_RAMP_PERIODS):
    """The share of the allocation traded at the newest of `decisions` (seed 003's 25% -> 50% -> 100%).

    The ramp moves up one stage every `periods_per_stage` rebalances in a row
    without a breaker (halt, drawdown stop, loss-limit flattening); a breaker
    sends it back to the first stage.

    Args:
        decisions: the `Decision`s so far, oldest first.
        stages: the shares, increasing, the last 1.0. Defaults to `(0.25, 0.5, 1.0)`.
        periods_per_stage: rebalances per stage, >= 1. Defaults to `20`.
    """
    clean = 0
    for decision in decisions[:-1]:
        clean = 0 if (decision.halted or decision.stopped or decision.flattened) else clean + 1
    return float(stages[min(len(stages) - 1, clean // periods_per_stage)])


def target_quantities(weights, prices, capital, ramp, fractional=False):
    """Signed shares per symbol for `weights` of `ramp * capital` at `prices`.

    Args:
        weights: `{symbol: weight}`.
        prices: `{symbol: price}` (the signal bar's close).
        capital: the strategy's allocation, in the account's currency.
        ramp: the traded share of it.
        fractional: round to 1e-4 shares instead of whole shares.
            Defaults to `False`.
    """
    decimals = 4 if fractional else 0
    return {symbol: float(np.round(weight * ramp * capital / prices[symbol], decimals)) + 0.0
            for symbol, weight in weights.items()}


def client_order_id(strategy_id, symbol, timestamp):
    """The order's id at the broker: one per strategy, symbol and bar, so a resent order is a duplicate.

    Alpaca allows 128 characters; symbols such as `BTC/USD` keep their slash out.
    """
    stamp = pd.Timestamp(timestamp).tz_convert("UTC").strftime("%Y%m%dT%H%M%S")
    return f"ks-{strategy_id}-{symbol.replace('/', '')}-{stamp}"
