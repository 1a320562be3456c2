"""Simple baselines, predicted on exactly the model's test windows.

A model's number means little alone: these say what the same folds give to
"always up", to yesterday's trend, to a linear model on the same features and
to a coin. Anything fitted (the ridge) is fitted on the fold's training
windows only.
"""

import numpy as np

BASELINE_NAMES = ("always_up", "momentum", "ridge", "random")


def ridge_predictions(train_features, train_targets, test_features, alpha=1.0):
    """Ridge regression fitted on training rows, with training-only standardization.

    Args:
        train_features: `[train_rows, features]`.
        train_targets: `[train_rows]`.
        test_features: `[test_rows, features]`.
        alpha: the L2 penalty on standardized features. Defaults to `1.0`.

    Returns:
        `[test_rows]` predictions.
    """
    mean = train_features.mean(axis=0)
    scale = train_features.std(axis=0)
    scale[scale == 0] = 1.0
    design = (train_features - mean) / scale
    target_mean = train_targets.mean()
    gram = design.T @ design + alpha * np.eye(design.shape[1])
    coefficients = np.linalg.solve(gram, design.T @ (train_targets - target_mean))
    return ((test_features - mean) / scale) @ coefficients + target_mean


def baseline_predictions(windowed, train_ends, test_ends, seed=0):
    """Predictions of every baseline for the windows ending at `test_ends`.

    Args:
        windowed: a `WindowedPanel`.
        train_ends: the fold's training window ends (for the ridge).
        test_ends: the fold's test window ends.
        seed: seed of the random baseline. Defaults to `0`.

    Returns:
        A dict baseline name -> `[len(test_ends)]` predictions. The ridge sees
        the features of each window's last bar.
    """
    rng = np.random.default_rng(seed)
    return {
        "always_up": np.ones(len(test_ends)),
        "momentum": np.nan_to_num(windowed.past_returns[test_ends]),
        "ridge": ridge_predictions(
            windowed.features[train_ends].astype(np.float64),
            windowed.targets[train_ends].astype(np.float64),
            windowed.features[test_ends].astype(np.float64),
        ),
        "random": rng.standard_normal(len(test_ends)),
    }
