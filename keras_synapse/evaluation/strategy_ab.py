"""Every run's A/B (seeds 000, 003, 004): the model, each classical strategy alone, and each filtered by the model.

On the same test dates, under the same rules and costs: the model's own
sign book, each classical strategy of `keras_synapse.evaluation.classical`
traded alone, and the same strategy traded only where the model's
walk-forward calibrated confidence that its side wins exceeds the threshold
(seed 004's meta-labeling). Each filtered book is compared with its
unfiltered strategy, and the model with the best classical one, by paired
bootstrap intervals of the Sharpe difference (`ab_test.sharpe_differences`),
so "the filter helps" is a claim with an interval; the six intervals hold
95% together (Bonferroni), since one of six at 95% each would call noise
"better" in about a quarter of runs.

Example:

```python
ab = classical_ab(test_predictions, panel, horizon=5, cost_bps=5, calendar=calendar, bars_per_year=252)
ab["sharpe_differences"]["rsi_reversion_filtered - rsi_reversion"]
```
"""

import dataclasses

import numpy as np
import pandas as pd

from keras_synapse.evaluation.ab_test import sharpe_differences
from keras_synapse.evaluation.backtest import backtest
from keras_synapse.evaluation.classical import CLASSICAL_STRATEGIES, COLUMN_PREFIX, classical_columns
from keras_synapse.evaluation.trading_rules import BacktestRules

FAMILY_LEVEL = 0.95


def _net_returns(equity_column):
    values = equity_column.to_numpy(dtype=np.float64)
    return values / np.concatenate([[1.0], values[:-1]]) - 1


def classical_ab(test_predictions, panel, horizon, cost_bps, calendar, bars_per_year, symbol_calendars=None,
                 rules=None, confidence_threshold=0.6, num_resamples=1000, seed=0, directional=True):
    """The A/B books and the Sharpe differences with their intervals.

    Args:
        test_predictions: the run's test windows (`symbol`, `timestamp`,
            `forward_return`, `prediction`).
        panel: the bars, for the classical sides at each window's time.
        horizon, cost_bps, calendar, bars_per_year, symbol_calendars: as for
            `backtest`.
        rules: the run's `BacktestRules`: every book keeps its sizing, risk
            limits, slippage and execution lag, and only the signal changes.
            Defaults to `None`, the default rules.
        confidence_threshold: the filter's least win probability. Defaults
            to `0.6` (seed 004).
        num_resamples, seed: for the paired bootstrap.
        directional: the model's score is a direction (a return or class
            forecast): it trades alone as the `model` book and its
            confidence is the calibrated P(up) of the side's direction.
            `False` for an event model (seed 004's pattern validation, a
            meta-label): no `model` book, and the confidence is the
            calibrated probability that the strategy's own side wins
            (`confidence_target="event"`). Defaults to `True`.

    Returns:
        A dict: `books` (name -> `book_metrics`: `model` when directional,
        `buy_and_hold`, each strategy and `<strategy>_filtered`),
        `sharpe_differences`,
        `interval_level` (each interval's, for 95% over all of them),
        `confidence_threshold`, `periods_per_year` and `rule` in words.
    """
    frame = test_predictions.assign(**classical_columns(test_predictions, panel))
    columns = [f"{COLUMN_PREFIX}{name}" for name in CLASSICAL_STRATEGIES]
    rules = dataclasses.replace(rules or BacktestRules(), signal="sign", primary_side_column=None,
                                confidence_target="direction")
    confidence_target = "direction" if directional else "event"
    options = dict(symbol_calendars=symbol_calendars, rules=rules)
    # The classical books trade their own side whatever the model says; the model's score moves only the filter.
    results, equity = backtest(frame, "prediction", horizon, cost_bps, calendar, bars_per_year, score_columns=columns,
                               **options)
    books = {"model": results["strategy"]} if directional else {}
    books["buy_and_hold"] = results["buy_and_hold"]
    returns = {"model": _net_returns(equity["strategy"])} if directional else {}
    for name, column in zip(CLASSICAL_STRATEGIES, columns):
        books[name] = results[column]
        returns[name] = _net_returns(equity[column])
        filtered, filtered_equity = backtest(frame, "prediction", horizon, cost_bps, calendar, bars_per_year,
                                             signal="meta_label", primary_side_column=column,
                                             confidence_threshold=confidence_threshold,
                                             confidence_target=confidence_target, **options)
        books[f"{name}_filtered"] = filtered["strategy"]
        returns[f"{name}_filtered"] = _net_returns(filtered_equity["strategy"])
    pairs = [(f"{name}_filtered", name) for name in CLASSICAL_STRATEGIES]
    if directional:
        best_classical = max(CLASSICAL_STRATEGIES, key=lambda name: np.nan_to_num(books[name]["sharpe"], nan=-np.inf))
        pairs.append(("model", best_classical))
    # Six comparisons (five for an event model): each interval at 1 - 0.05 / 6 (Bonferroni), so noise says
    # "better" in 5% of runs, not 26%.
    family_level = 1 - (1 - FAMILY_LEVEL) / len(pairs)
    differences = sharpe_differences(pd.DataFrame(returns), pairs, results["periods_per_year"], num_resamples, seed,
                                     level=family_level)
    probability = "P(up) of the side's direction" if directional else "probability that the side wins"
    return {"books": books, "sharpe_differences": differences, "confidence_threshold": confidence_threshold,
            "confidence_target": confidence_target, "interval_level": family_level,
            "periods_per_year": results["periods_per_year"],
            "rule": (f"each classical strategy's side, traded alone and only where the model's walk-forward "
                     f"calibrated {probability} exceeds {confidence_threshold:g}; same dates, rules and costs as "
                     "the backtest")}


def format_ab(ab):
    """The A/B table as printed after a run."""
    lines = [f"\nA/B after costs ({ab['rule']})",
             f"{'strategy':<22}{'alone':>8}{'filtered':>10}{'trades':>14}   filtered - alone "
             f"[{ab['interval_level']:.1%} CI: 95% over the {len(ab['sharpe_differences'])} comparisons]"]
    differences = ab["sharpe_differences"]
    for name in CLASSICAL_STRATEGIES:
        item = differences[f"{name}_filtered - {name}"]
        trades = f"{ab['books'][f'{name}_filtered']['num_trades']}/{ab['books'][name]['num_trades']}"
        if ab["books"][f"{name}_filtered"]["num_trades"] == 0:
            lines.append(f"{name:<22}{item['sharpe_b']:>+8.2f}{'-':>10}{trades:>14}   no trade: the model's "
                         f"confidence never exceeded {ab['confidence_threshold']:g} on its signals")
            continue
        lines.append(f"{name:<22}{item['sharpe_b']:>+8.2f}{item['sharpe_a']:>+10.2f}{trades:>14}   "
                     f"{item['difference']:+.2f} [{item['ci_low']:+.2f}, {item['ci_high']:+.2f}]"
                     + ("  better" if item["better"] else ""))
    model = next((item for key, item in differences.items() if key.startswith("model - ")), None)
    if model is None:  # an event model: a filter, not a strategy of its own
        return "\n".join(lines)
    lines.append(f"model alone vs the best classical ({model['b']}): Sharpe {model['sharpe_a']:+.2f} vs "
                 f"{model['sharpe_b']:+.2f}, difference {model['difference']:+.2f} [{model['ci_low']:+.2f}, "
                 f"{model['ci_high']:+.2f}]" + ("  better" if model["better"] else ""))
    return "\n".join(lines)
