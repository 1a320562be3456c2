"""The probability of backtest overfitting (Bailey, Borwein, Lopez de Prado and Zhu, 2014), by CSCV.

Tuning picks the best of many trials on the same validation dates. Combinatorially
symmetric cross-validation asks how often that pick is a fluke: the dates
are cut into `S` blocks; for every choice of half of them as "in-sample",
the trial best on those dates is found and its rank among all trials on the
other half is read. PBO is the share of choices where the in-sample winner
ranks at or below the median out of sample (its rank logit `log(w / (1 -
w))`, `w = rank / (N + 1)`, is <= 0). Trials that are all noise give a PBO
near one half; a trial with a real edge that the search found gives a PBO
near zero.

A trial's performance on a set of dates is the mean of its per-date scores
(`date_scores`: each date's share of the pooled IC), so the in-sample
winner is the trial with the best IC on those dates.

Example:

```python
scores = date_scores(validation_frame)            # one trial's per-date IC shares
result = probability_of_backtest_overfitting(matrix, num_blocks=16)   # [dates, trials]
result["pbo"]
```
"""

import itertools

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError


def date_scores(frame, metric="ic", score_column="prediction", reference_column="reference"):
    """Each date's share of a pooled metric, higher is better: what CSCV compares trials on.

    Args:
        frame: predictions with `timestamp`, the score, the reference
            (forward return) and, for `"mse"`, `target` columns.
        metric: `"ic"` (the mean over a date's windows of z(score) *
            z(reference): its share of the pooled Pearson IC), `"rank_ic"`
            (the same on ranks), `"directional_accuracy"` (the share of
            signs right) or `"mse"` (minus the mean squared error).

    Returns:
        A `Series` by timestamp.
    """
    score = frame[score_column].to_numpy(dtype=np.float64)
    reference = frame[reference_column].to_numpy(dtype=np.float64)
    if metric == "mse":
        values = -(score - frame["target"].to_numpy(dtype=np.float64)) ** 2
    elif metric == "directional_accuracy":
        values = (np.sign(score) == np.sign(reference)).astype(np.float64)
    elif metric in ("ic", "rank_ic"):
        if metric == "rank_ic":
            score, reference = (pd.Series(score).rank().to_numpy(), pd.Series(reference).rank().to_numpy())
        spread = score.std() * reference.std()
        values = ((score - score.mean()) * (reference - reference.mean()) / spread if spread > 0
                  else np.zeros(len(frame)))
    else:
        raise ConfigError(f"`metric` must be one of ic, rank_ic, directional_accuracy, mse. Received: {metric!r}")
    return pd.Series(values, index=pd.DatetimeIndex(frame["timestamp"])).groupby(level=0).mean()


def probability_of_backtest_overfitting(performance, num_blocks=16):
    """PBO of picking the best column of `performance` by CSCV.

    Args:
        performance: `[observations, trials]` per-date scores, rows in time
            order, no NaN.
        num_blocks: `S`, an even number of blocks of rows (at most the number
            of rows); `C(S, S/2)` in-sample choices are evaluated. Defaults
            to `16`.

    Returns:
        A dict: `pbo`; `logits` (one per choice); `num_blocks`;
        `num_combinations`; `num_trials`; `num_observations`; and
        `median_out_of_sample_rank` of the in-sample winner (1 = worst).

    Raises:
        ConfigError: for fewer than two trials, an odd or too large
            `num_blocks`, or non-finite values.
    """
    performance = np.asarray(performance, dtype=np.float64)
    if performance.ndim != 2 or performance.shape[1] < 2:
        raise ConfigError(f"`performance` must be [observations, trials] with at least two trials. Received shape "
                          f"{performance.shape}")
    if not np.isfinite(performance).all():
        raise ConfigError("`performance` must hold finite values only. Received: NaN or infinite values")
    num_rows, num_trials = performance.shape
    if num_blocks < 2 or num_blocks % 2 or num_blocks > num_rows:
        raise ConfigError(f"`num_blocks` must be even, >= 2 and <= the {num_rows} observations. "
                          f"Received: num_blocks={num_blocks}")
    blocks = np.array_split(np.arange(num_rows), num_blocks)
    sums = np.stack([performance[rows].sum(axis=0) for rows in blocks])  # [blocks, trials]
    counts = np.array([len(rows) for rows in blocks], dtype=np.float64)
    logits, ranks = [], []
    for chosen in itertools.combinations(range(num_blocks), num_blocks // 2):
        inside = np.zeros(num_blocks, dtype=bool)
        inside[list(chosen)] = True
        in_sample = sums[inside].sum(axis=0) / counts[inside].sum()
        out_of_sample = sums[~inside].sum(axis=0) / counts[~inside].sum()
        winner = int(np.argmax(in_sample))
        rank = 1 + int(np.sum(out_of_sample < out_of_sample[winner]))  # 1 = worst out of sample
        relative = rank / (num_trials + 1)
        logits.append(float(np.log(relative / (1 - relative))))
        ranks.append(rank)
    logits = np.array(logits)
    return {"pbo": float(np.mean(logits <= 0)), "logits": logits.tolist(), "num_blocks": num_blocks,
            "num_combinations": len(logits), "num_trials": num_trials, "num_observations": num_rows,
            "median_out_of_sample_rank": float(np.median(ranks))}


def trial_matrix(trial_scores):
    """`[dates, trials]` from each trial's per-date scores, on the dates every trial was scored on.

    Args:
        trial_scores: dict trial -> `Series` by timestamp.

    Returns:
        `(matrix, dates, trials)`.
    """
    trials = list(trial_scores)
    frame = pd.concat([trial_scores[trial].rename(trial) for trial in trials], axis=1, join="inner").sort_index()
    return frame.to_numpy(dtype=np.float64), frame.index, trials
