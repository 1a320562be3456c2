"""Combinatorial purged CV's backtest paths: each a complete out-of-sample history, together a distribution.

With C(N, k) splits of N time blocks, each block is tested by C(N-1, k-1)
splits; path p takes each block's predictions from the p-th split testing it
(*Advances in Financial Machine Learning*, ch. 12). Every path covers every
block once, by models that never trained on (or near) it, so each is a
backtest on its own: their spread of IC and Sharpe says how much of one
backtest's figure is the luck of one split. The run's summary, baselines and
backtest are those of path 0; the distribution sits beside them.

Example:

```python
masks = path_masks(fold_predictions, n_groups=6, n_test_groups=2, folds=folds)
test_predictions = fold_predictions[masks[0]]
distribution = path_distribution(fold_predictions, masks, task, run_backtest)
```
"""

import numpy as np

from keras_synapse.windows.splitters import CombinatorialPurgedCV


def path_masks(fold_predictions, n_groups, n_test_groups, folds):
    """One boolean mask over `fold_predictions` rows per backtest path.

    Args:
        fold_predictions: every split's test predictions, with `fold` (the
            split index) and `timestamp` columns.
        n_groups, n_test_groups: the CPCV settings the folds were cut with.
        folds: the CPCV `Fold`s, in split order.

    Returns:
        A list of `C(n_groups - 1, n_test_groups - 1)` masks; each selects
        every test window exactly once.
    """
    splitter = CombinatorialPurgedCV(n_groups, n_test_groups)
    block_of_group = {}
    for fold, groups in zip(folds, splitter.combinations()):
        block_of_group.update(zip(groups, fold.test_blocks))
    split = fold_predictions["fold"].to_numpy()
    times = fold_predictions["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    masks = []
    for path in splitter.paths():
        mask = np.zeros(len(fold_predictions), dtype=bool)
        for group, split_index in enumerate(path):
            first, last = block_of_group[group]
            mask |= (split == split_index) & (times >= first) & (times <= last)
        masks.append(mask)
    return masks


def path_distribution(fold_predictions, masks, score, trade):
    """Each path's figures and their spread.

    Args:
        fold_predictions: every split's test predictions.
        masks: from `path_masks`.
        score: function frame -> dict of metrics (`ic`, `rank_ic`, ...).
        trade: function frame -> the strategy's backtest metrics, or `None`
            when the task is not traded.

    Returns:
        A dict: `num_paths`; `paths` (each path's `ic`, `rank_ic`,
        `directional_accuracy` and, when traded, `sharpe`); and for each of
        `ic` and `sharpe` its `mean`, `std`, `min`, `max` and `share_positive`
        over the paths.
    """
    paths = []
    for index, mask in enumerate(masks):
        frame = fold_predictions[mask]
        metrics = score(frame)
        entry = {"index": index, "n": int(mask.sum()), **{name: metrics[name] for name in
                                                         ("ic", "rank_ic", "directional_accuracy")}}
        books = trade(frame)
        if books is not None:
            entry["sharpe"] = books["sharpe"]
        paths.append(entry)
    result = {"num_paths": len(paths), "summary_path": 0, "paths": paths}
    for name in ("ic", "sharpe"):
        values = np.array([path[name] for path in paths if name in path], dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values):
            result[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else
                            float("nan"), "min": float(values.min()), "max": float(values.max()),
                            "share_positive": float(np.mean(values > 0))}
    return result


def format_paths(distribution):
    """The path distribution as printed after a CPCV run."""
    lines = [f"CPCV backtest paths ({distribution['num_paths']}; the summary above is path 0's):",
             f"{'path':<6}{'n':>7}{'IC':>9}{'rank IC':>9}{'dir.acc':>9}{'sharpe':>8}"]
    for path in distribution["paths"]:
        lines.append(f"{path['index']:<6}{path['n']:>7}{path['ic']:>+9.4f}{path['rank_ic']:>+9.4f}"
                     f"{path['directional_accuracy']:>+9.4f}" + (f"{path['sharpe']:>+8.2f}" if "sharpe" in path
                                                                  else ""))
    for name in ("ic", "sharpe"):
        if name in distribution:
            item = distribution[name]
            lines.append(f"{name} over paths: mean {item['mean']:+.4f}, std {item['std']:.4f}, range "
                         f"[{item['min']:+.4f}, {item['max']:+.4f}], positive on {item['share_positive']:.0%}")
    return "\n".join(lines)
