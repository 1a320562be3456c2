"""Closed-form ridge regression on windows: moments that add, one eigendecomposition for every penalty.

The ridge baselines (`keras_synapse.evaluation.baselines`) and the linear
highway beside the networks (`keras_synapse.models.highway`) are fitted
here, on a fold's training windows only, each penalty chosen on the fold's
early-stopping carve-out.
"""

import numpy as np

# Penalties tried on standardized inputs, as multiples of the number of fit
# windows (so the grid means the same for small and large folds): from
# nearly least squares to nearly a constant.
RIDGE_PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
# Windows gathered at a time when flattening: bounds memory for large panels.
_CHUNK = 8192


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
    moments = LinearMoments.of(train_features, train_targets)
    return moments.solver().predict(test_features, [alpha])[:, 0]


class LinearMoments:
    """Sums that a ridge regression needs: counts, sums, cross-products.

    Moments of disjoint row sets add, so a fit on fit + validation rows costs
    one addition once both are known.

    Args:
        count: number of rows.
        feature_sum: `[features]`.
        target_sum: a float.
        gram: `[features, features]` sum of outer products.
        cross: `[features]` sum of features times target.
    """

    def __init__(self, count, feature_sum, target_sum, gram, cross):
        self.count, self.feature_sum, self.target_sum = count, feature_sum, target_sum
        self.gram, self.cross = gram, cross

    @classmethod
    def of(cls, features, targets):
        features = np.asarray(features, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64)
        return cls(len(features), features.sum(axis=0), float(targets.sum()), features.T @ features,
                   features.T @ targets)

    def __add__(self, other):
        return LinearMoments(self.count + other.count, self.feature_sum + other.feature_sum,
                             self.target_sum + other.target_sum, self.gram + other.gram, self.cross + other.cross)

    def solver(self):
        """A `RidgeSolver` for these rows."""
        return RidgeSolver(self)


class RidgeSolver:
    """Ridge coefficients for any penalty from one eigendecomposition of the standardized Gram matrix."""

    def __init__(self, moments):
        count = max(moments.count, 1)
        self.mean = moments.feature_sum / count
        self.target_mean = moments.target_sum / count
        covariance = moments.gram - count * np.outer(self.mean, self.mean)
        self.scale = np.sqrt(np.maximum(np.diag(covariance), 0.0) / count)
        self.scale[self.scale == 0] = 1.0
        standardized = covariance / np.outer(self.scale, self.scale)
        self.eigenvalues, self.eigenvectors = np.linalg.eigh(standardized)
        self.projected = self.eigenvectors.T @ ((moments.cross - count * self.mean * self.target_mean) / self.scale)
        self.count = count

    def coefficients(self, alphas):
        """`[features, len(alphas)]` coefficients on standardized features."""
        alphas = np.asarray(alphas, dtype=np.float64)
        return self.eigenvectors @ (self.projected[:, None] / (self.eigenvalues[:, None] + alphas[None, :]))

    def predict(self, features, alphas):
        """`[rows, len(alphas)]` predictions for raw `features`."""
        standardized = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return standardized @ self.coefficients(alphas) + self.target_mean


def _inputs(windowed, ends, bars):
    """Each window's ridge inputs: its last `bars` bars flattened, or (`bars=None`) the whole window and static."""
    if bars == 1:
        return windowed.features[ends].astype(np.float64)
    gathered = windowed.gather(ends)
    parts = [gathered["sequence"][:, -(bars or windowed.sequence_length):, :].reshape(len(ends), -1)]
    if "static" in gathered and bars is None:
        parts.append(gathered["static"])
    return np.concatenate(parts, axis=1).astype(np.float64)


def _moments(windowed, ends, bars, targets):
    total = None
    for start in range(0, len(ends), _CHUNK):
        chunk = ends[start : start + _CHUNK]
        part = LinearMoments.of(_inputs(windowed, chunk, bars), np.asarray(targets)[chunk])
        total = part if total is None else total + part
    return total


def _predict(windowed, ends, bars, solver, alphas):
    return np.concatenate([solver.predict(_inputs(windowed, ends[start : start + _CHUNK], bars), alphas)
                           for start in range(0, len(ends), _CHUNK)] or [np.zeros((0, len(alphas)))])


def tuned_ridge_predictions(windowed, fit_ends, validation_ends, test_ends, flatten=False):
    """Ridge predictions whose penalty is chosen by IC on the validation windows.

    Fits on `fit_ends` for every penalty in `RIDGE_PENALTIES`, keeps the one
    whose predictions correlate best with the validation windows' targets,
    refits on fit + validation windows with it, and predicts `test_ends`.

    Args:
        windowed: a `WindowedPanel`.
        fit_ends: training window ends.
        validation_ends: the carve-out's window ends (after the fit ends).
        test_ends: the windows to predict.
        flatten: use the whole window rather than its last bar. Defaults to
            `False`.

    Returns:
        `(predictions, alpha)`: `[len(test_ends)]` and the chosen penalty.
    """
    bars = None if flatten else 1
    fit, best = _tuned_penalty(windowed, fit_ends, validation_ends, bars, windowed.targets)
    combined = fit + _moments(windowed, validation_ends, bars, windowed.targets)
    alpha = RIDGE_PENALTIES[best] * combined.count
    return _predict(windowed, test_ends, bars, combined.solver(), [alpha])[:, 0], float(RIDGE_PENALTIES[best])


def tuned_ridge_solver(windowed, fit_ends, validation_ends, bars, targets, with_validation=False):
    """A ridge on the last `bars` bars of each window, its penalty chosen on the carve-out.

    Args:
        with_validation: fit on the fit and carve-out windows, as
            `tuned_ridge_predictions` does; `False` keeps the carve-out
            unseen for whatever is chosen on it next (the model's network
            share, `keras_synapse.models.highway`). Defaults to `False`.

    Returns:
        `(solver, alpha)`: a `RidgeSolver` and the penalty as a multiple of
        its rows (`solver.coefficients([alpha * solver.count])`).
    """
    fit, best = _tuned_penalty(windowed, fit_ends, validation_ends, bars, targets)
    if with_validation:
        fit = fit + _moments(windowed, validation_ends, bars, targets)
    return fit.solver(), float(RIDGE_PENALTIES[best])


def _tuned_penalty(windowed, fit_ends, validation_ends, bars, targets):
    """The fit windows' moments and the index of the penalty whose validation predictions correlate best."""
    fit = _moments(windowed, fit_ends, bars, targets)
    alphas = np.asarray(RIDGE_PENALTIES) * fit.count
    validation_predictions = _predict(windowed, validation_ends, bars, fit.solver(), alphas)
    validation_targets = np.asarray(targets)[validation_ends].astype(np.float64)
    scores = [_correlation(validation_predictions[:, index], validation_targets) for index in range(len(alphas))]
    return fit, int(np.nanargmax(scores)) if np.isfinite(scores).any() else len(alphas) - 1


def _correlation(first, second):
    if len(first) < 3 or np.std(first) == 0 or np.std(second) == 0:
        return np.nan
    return float(np.corrcoef(first, second)[0, 1])
