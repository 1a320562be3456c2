"""Simple baselines, predicted on exactly the model's test windows.

A model's number means little alone: these say what the same folds give to
"always up", to yesterday's trend, to linear models on the same inputs and to
a coin. Anything fitted (the ridges, the trees) is fitted on the fold's training windows
only, at every bar, and its penalty (or the trees' number) is chosen on the
fold's early-stopping carve-out, as the network's epochs are.

- `always_up`: a constant "up" (its IC is undefined; it trades as buy-and-hold).
- `momentum`: the past `horizon`-bar log return.
- `ridge`: ridge regression on the features of each window's last bar.
- `ridge_window`: ridge regression on the whole window, flattened: exactly the
  inputs the network sees, so a network that cannot beat it has learned
  nothing a linear model could not.
- `lightgbm`: gradient-boosted trees on each window's last bar and its
  means and spreads (`keras_synapse.evaluation.lightgbm_baseline`), the
  baseline of the field's benchmarks, early-stopped on the carve-out.
- `random`: standard normal noise, what luck looks like.
"""

import numpy as np

from keras_synapse.models.ridge import tuned_ridge_predictions

BASELINE_NAMES = ("always_up", "momentum", "ridge", "ridge_window", "lightgbm", "random")


def baseline_predictions(windowed, fit_ends, validation_ends, test_ends, seed=0):
    """Predictions of every baseline for the windows ending at `test_ends`.

    Args:
        windowed: a `WindowedPanel`.
        fit_ends: the fold's training window ends before its carve-out.
        validation_ends: the carve-out's window ends (for the ridges' penalty).
        test_ends: the fold's test window ends.
        seed: seed of the random baseline. Defaults to `0`.

    Returns:
        A dict baseline name -> `[len(test_ends)]` predictions.
    """
    from keras_synapse.evaluation.lightgbm_baseline import lightgbm_predictions

    rng = np.random.default_rng(seed)
    return {
        "always_up": np.ones(len(test_ends)),
        "momentum": np.nan_to_num(windowed.past_returns[test_ends]),
        "ridge": tuned_ridge_predictions(windowed, fit_ends, validation_ends, test_ends)[0],
        "ridge_window": tuned_ridge_predictions(windowed, fit_ends, validation_ends, test_ends, flatten=True)[0],
        "lightgbm": lightgbm_predictions(windowed, fit_ends, validation_ends, test_ends, seed)[0],
        "random": rng.standard_normal(len(test_ends)),
    }
