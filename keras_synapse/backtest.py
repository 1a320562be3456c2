"""A vectorized backtest of test-fold predictions, after costs.

Each symbol holds `sign(prediction)` (long, short or flat) for one label
horizon; the portfolio is equally weighted across the symbols with a window at
that date. Holding periods do not overlap: ends closer together than the
horizon are thinned, so no return is counted twice.
"""

import numpy as np
import pandas as pd


def _period_metrics(net_returns, positions, turnover, periods_per_year):
    equity = np.cumprod(1 + net_returns)
    drawdown = equity / np.maximum.accumulate(equity) - 1
    downside = net_returns[net_returns < 0]
    gains, losses = net_returns[net_returns > 0].sum(), -net_returns[net_returns < 0].sum()
    years = len(net_returns) / periods_per_year
    volatility = net_returns.std()
    return {
        "total_return": float(equity[-1] - 1),
        "annualized_return": float(equity[-1] ** (1 / years) - 1) if years > 0 and equity[-1] > 0 else np.nan,
        "sharpe": float(net_returns.mean() / volatility * np.sqrt(periods_per_year)) if volatility > 0 else np.nan,
        "sortino": float(net_returns.mean() / np.sqrt(np.mean(downside**2)) * np.sqrt(periods_per_year))
        if len(downside)
        else np.nan,
        "max_drawdown": float(drawdown.min()),
        "win_rate": float(np.mean(net_returns[positions.any(axis=1)] > 0)) if positions.any() else np.nan,
        "profit_factor": float(gains / losses) if losses > 0 else np.nan,
        "turnover": float(turnover.mean()),
        "num_periods": int(len(net_returns)),
    }


def non_overlapping_timestamps(timestamps, calendar, horizon):
    """Thins sorted timestamps so consecutive ones are at least `horizon` bars apart on `calendar`.

    Both are `DatetimeIndex`-like in the same time zone.
    """
    positions = pd.DatetimeIndex(calendar).searchsorted(timestamps)
    kept, last = [], None
    for timestamp, position in zip(timestamps, positions):
        if last is None or position - last >= horizon:
            kept.append(timestamp)
            last = position
    return pd.DatetimeIndex(kept)


def backtest(frame, prediction_column, horizon, cost_bps, calendar, bars_per_year=252):
    """Backtests `sign(prediction)` positions against buy-and-hold.

    Args:
        frame: test predictions with columns `symbol`, `timestamp`,
            `forward_return` and `prediction_column`.
        prediction_column: the column holding the predictions.
        horizon: bars each position is held (the label horizon).
        cost_bps: cost plus slippage per unit of turnover, in basis points.
        calendar: sorted unique (naive UTC) timestamps of the panel, to count bars.
        bars_per_year: bars in a year, for annualizing. Defaults to `252`.

    Returns:
        A tuple: a dict with `strategy` and `buy_and_hold` metrics (total and
        annualized return, Sharpe, Sortino, max drawdown, win rate, profit
        factor, turnover), and a frame of both equity curves by timestamp.
    """
    timestamps = pd.DatetimeIndex(frame["timestamp"].unique()).sort_values()
    kept = non_overlapping_timestamps(timestamps, pd.DatetimeIndex(calendar).tz_localize(timestamps.tz), horizon)
    frame = frame[frame["timestamp"].isin(kept)]
    returns = frame.pivot_table(index="timestamp", columns="symbol", values="forward_return")
    signals = frame.pivot_table(index="timestamp", columns="symbol", values=prediction_column)
    simple_returns = np.expm1(returns.to_numpy())
    available = np.isfinite(simple_returns)
    num_available = np.maximum(available.sum(axis=1), 1)
    periods_per_year = bars_per_year / horizon
    results, equity = {}, {}
    for name, positions in (
        ("strategy", np.sign(np.nan_to_num(signals.to_numpy()))),
        ("buy_and_hold", available.astype(float)),
    ):
        positions = np.where(available, positions, 0.0)
        gross = (positions * np.nan_to_num(simple_returns)).sum(axis=1) / num_available
        turnover = np.abs(np.diff(positions, axis=0, prepend=0)).sum(axis=1) / num_available
        net = gross - turnover * cost_bps / 1e4
        results[name] = _period_metrics(net, positions, turnover, periods_per_year)
        equity[name] = np.cumprod(1 + net)
    return results, pd.DataFrame(equity, index=returns.index)
