"""Isotonic calibration (seed 003): the non-decreasing map from a score to the chance its trade wins.

The pool-adjacent-violators algorithm on the scores' sorted unique values
(outcomes at equal scores averaged, weighted by their count), predicted by
linear interpolation between the fitted points and clipped beyond them:
scikit-learn's `IsotonicRegression(out_of_bounds="clip")`, which the tests
compare it with, without making scikit-learn a dependency of the toolkit.

Example:

```python
calibration = fit_isotonic(past_scores, past_wins)      # outcomes realized before the rebalance only
probability = predict_isotonic(calibration, todays_scores)
```
"""

import numpy as np


def fit_isotonic(scores, outcomes):
    """The isotonic (non-decreasing) least-squares fit of `outcomes` on `scores`.

    Args:
        scores: float array.
        outcomes: float array of the same length (1 win, 0 loss).

    Returns:
        `(x, y)`: the unique scores, ascending, and the fitted values there.
    """
    scores, outcomes = np.asarray(scores, dtype=np.float64), np.asarray(outcomes, dtype=np.float64)
    x, inverse, weights = np.unique(scores, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=outcomes) / weights
    # Pool adjacent violators: a stack of blocks, each with its mean, weight and length.
    block_means, block_weights, block_lengths = [], [], []
    for mean, weight in zip(means, weights.astype(np.float64)):
        block_means.append(mean)
        block_weights.append(weight)
        block_lengths.append(1)
        while len(block_means) > 1 and block_means[-2] > block_means[-1]:
            total = block_weights[-2] + block_weights[-1]
            pooled = (block_means[-2] * block_weights[-2] + block_means[-1] * block_weights[-1]) / total
            length = block_lengths[-2] + block_lengths[-1]
            del block_means[-1], block_weights[-1], block_lengths[-1]
            block_means[-1], block_weights[-1], block_lengths[-1] = pooled, total, length
    return x, np.repeat(block_means, block_lengths)


def predict_isotonic(calibration, scores):
    """The calibrated values at `scores`: interpolated between the fitted points, clipped beyond them."""
    x, y = calibration
    return np.interp(np.asarray(scores, dtype=np.float64), x, y)
