"""LightGBM on window summaries: the baseline a deep model has to beat.

In the field's best-known benchmark (Qlib on CSI300) gradient-boosted trees
are what deep sequence models are measured against: LightGBM IC 0.040 beside
LSTM 0.045 and GRU 0.049 on Alpha360. A network that does not beat a
LightGBM on the same windows has learned nothing trees could not.

Inputs per window (`window_summaries`): the last bar's features, and each
feature's mean and standard deviation over the window (plus the static
features of hybrid inputs). The target is the model's (`windowed.targets`:
the scaled forward return, or the class index of a classification label,
regressed on as the ridges do). Fitted on the fold's fit windows only, it
keeps the number of trees (25 to 400) whose predictions have the best IC on
the same early-stopping carve-out as the network, the measure the network
stops on, and predicts the test windows. Tree-by-tree early stopping does
worse on weak edges: a planted nonlinear edge takes ~100 trees to show, and
the validation score of the first few trees, noise, stopped it there. Nothing
else is tuned, so the baseline costs a few seconds a fold.

Settings (fixed, `keras_synapse.models.trees`'s for `lightgbm`): 31 leaves,
learning rate 0.05, at least 200 windows per leaf (overlapping windows make small leaves fit label
noise), 80% of rows and features per tree, L2 penalty 1, deterministic
two-thread histograms, the run's seed.
"""

import os

import numpy as np

_CHUNK = 8192


def window_summaries(windowed, ends):
    """`[len(ends), 3 F (+ static)]`: each window's last-bar features, their window means and standard deviations."""
    parts = []
    for start in range(0, len(ends), _CHUNK):
        gathered = windowed.gather(ends[start:start + _CHUNK])
        sequence = gathered["sequence"].astype(np.float64)
        columns = [sequence[:, -1, :], sequence.mean(axis=1), sequence.std(axis=1)]
        if "static" in gathered:
            columns.append(gathered["static"].astype(np.float64))
        parts.append(np.concatenate(columns, axis=1))
    if not parts:
        return np.zeros((0, 3 * len(windowed.feature_names) + len(windowed.static_feature_names or ())))
    return np.concatenate(parts)


def _correlation(predictions, targets):
    spread = np.std(predictions) * np.std(targets)
    return float(np.mean((predictions - predictions.mean()) * (targets - targets.mean())) / spread) if spread else np.nan


def lightgbm_predictions(windowed, fit_ends, validation_ends, test_ends, seed=0):
    """LightGBM fitted on the fit windows, early-stopped on the validation windows, predicting the test windows.

    Args:
        windowed: a `WindowedPanel`.
        fit_ends: the fold's training window ends before its carve-out.
        validation_ends: the carve-out's window ends.
        test_ends: the windows to predict.
        seed: the trees' seed. Defaults to `0`.

    Returns:
        `(predictions, num_trees)`: `[len(test_ends)]` and the trees kept.
    """
    from keras_synapse.models.trees import TREE_COUNTS, tree_regressor

    threads = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    # The same trees as `model=lightgbm`; the baseline keeps float64 summaries and its own selection below.
    model = tree_regressor("lightgbm", seed=seed, threads=threads)
    model.fit(window_summaries(windowed, fit_ends), windowed.targets[fit_ends].astype(np.float64))
    validation = window_summaries(windowed, validation_ends)
    targets = windowed.targets[validation_ends].astype(np.float64)
    scores = [_correlation(model.predict(validation, num_iteration=trees), targets) for trees in TREE_COUNTS]
    trees = TREE_COUNTS[int(np.nanargmax(scores))] if np.isfinite(scores).any() else TREE_COUNTS[0]
    return model.predict(window_summaries(windowed, test_ends), num_iteration=trees), trees
