"""Confidence intervals and power for test metrics: a stationary bootstrap over timestamps.

Test windows are not independent draws: the labels of neighbouring windows
overlap (a 5-bar label at every bar shares four bars with the next one),
volatility clusters, and a persistent prediction meets a persistent outcome.
Symbols of one date move together. So the bootstrap resamples whole
timestamps (every symbol of a date together) in blocks of consecutive
timestamps, with random block lengths of mean `block_length` (the stationary
bootstrap of Politis & Romano, 1994), and the mean block length is chosen from
the data by the Politis-White (2004, corrected 2009) rule
(`arch.bootstrap.optimal_block_length`) on the series that drives
the IC: each timestamp's contribution to the correlation (its influence).

Each metric is a function of per-timestamp sums (counts, sums of products,
sign agreements), so one resample is one weighted sum over timestamps: 1000
resamples of every prediction column take a fraction of a second, and every
column is resampled with the *same* draws, which gives paired intervals of
the difference between two predictors on the same windows. Rank IC uses the
ranks of the full sample (Spearman's correlation as the Pearson correlation
of fixed ranks), so it is not re-ranked per resample.

Where predictions and outcomes are both persistent, any block bootstrap
understates the spread of a correlation (two independent AR(0.9) series: its
95% interval excludes zero 10-14% of the time on 600-1000 dates). So the IC's
and rank IC's intervals, and the paired intervals of IC differences, are
widened where needed to at least the standard error given by the long-run
variance of the IC's influence series, estimated with AR(1) prewhitening
(Andrews & Monahan, 1992) and Politis' flat-top lag window with the same
data-driven bandwidth rule as the block length, with Student-t quantiles for
the estimate's own uncertainty. That holds the false-exclusion rate at 5-6%
there (`tests/evaluation/test_intervals.py`), and where the data are not persistent the
two standard errors agree, so it changes little.

Two more statistics are the field's (see `keras_synapse.evaluation.summary`
for which one a run's verdict reads): the per-date rank IC (each date's
Spearman correlation across its symbols, averaged over dates, as Qlib and
alphalens report it) and the within-fold rank IC (predictions and outcomes
ranked within each test fold, so a fold's own prediction level cannot pass
for skill). Both are rank-based: a few crash or split windows cannot decide
them.

The mean block length is chosen from the labels, not from any model's
predictions: the Politis-White rule on each date's mean outcome, at least one
label horizon. So a run's model and every baseline share one block length,
and the same baseline gets the same interval in two runs whatever the model.

The minimum detectable IC is the smallest true IC whose interval would lie
above zero with 80% probability: `(z_(1 - alpha/2) + z_power)` standard
errors.
"""

import numpy as np
from scipy import stats

from keras_synapse.errors import ConfigError

METRIC_NAMES = ("per_date_rank_ic", "within_fold_rank_ic", "directional_accuracy", "excess_directional_accuracy",
                "ic", "rank_ic", "mse")
# A date enters the per-date rank IC when at least this many symbols have an outcome there.
MIN_CROSS_SECTION = 5

# Per-timestamp sums that every metric is a function of, in column order.
_SUMS = ("count", "prediction", "reference", "prediction_squared", "reference_squared", "cross",
         "rank_prediction", "rank_reference", "rank_prediction_squared", "rank_reference_squared", "rank_cross",
         "moved", "predicted_up", "realized_up", "agreed", "squared_error",
         "fold_rank_prediction", "fold_rank_reference", "fold_rank_prediction_squared",
         "fold_rank_reference_squared", "fold_rank_cross", "date_rank_ic", "date_counted")


class TimestampSums:
    """Per-timestamp sufficient statistics of one or more prediction columns.

    Args:
        frame: test predictions with columns `timestamp`, `target` (for
            `mse`), `reference` (the forward return, or a centred event
            outcome), the prediction columns and, optionally, `fold` (the
            test fold of each window; without it all windows are one fold).
        columns: the prediction columns.

    Attributes:
        timestamps: the sorted unique timestamps.
        sums: dict column -> float64 `[timestamps, len(_SUMS)]`.
    """

    def __init__(self, frame, columns):
        timestamps, codes = np.unique(frame["timestamp"].to_numpy(), return_inverse=True)
        self.timestamps = timestamps
        self.codes = codes
        self.folds = (np.unique(frame["fold"].to_numpy(), return_inverse=True)[1] if "fold" in frame
                      else np.zeros(len(frame), dtype=int))
        reference = frame["reference"].to_numpy(dtype=np.float64)
        target = frame["target"].to_numpy(dtype=np.float64)
        self._reference = reference
        self._frame_columns = {column: frame[column].to_numpy(dtype=np.float64) for column in columns}
        self.sums = {column: self._sums(self._frame_columns[column], reference, target) for column in columns}

    def _sums(self, prediction, reference, target):
        rank_prediction = _centred_ranks(prediction)
        rank_reference = _centred_ranks(reference)
        fold_prediction = _group_percentile_ranks(prediction, self.folds)
        fold_reference = _group_percentile_ranks(reference, self.folds)
        moved = reference != 0
        predicted_up = moved & (prediction > 0)
        realized_up = moved & (reference > 0)
        values = np.column_stack([
            np.ones_like(prediction), prediction, reference, prediction**2, reference**2, prediction * reference,
            rank_prediction, rank_reference, rank_prediction**2, rank_reference**2, rank_prediction * rank_reference,
            moved, predicted_up, realized_up, moved & (predicted_up == realized_up),
            np.where(np.isfinite(target), (prediction - target) ** 2, 0.0),
            fold_prediction, fold_reference, fold_prediction**2, fold_reference**2, fold_prediction * fold_reference,
        ]).astype(np.float64)
        sums = np.zeros((len(self.timestamps), len(_SUMS)))
        np.add.at(sums[:, :values.shape[1]], self.codes, values)
        date_ic, counted = self._per_date_rank_ic(prediction, reference)
        sums[:, _SUMS.index("date_rank_ic")] = np.where(counted, date_ic, 0.0)
        sums[:, _SUMS.index("date_counted")] = counted
        return sums

    def _per_date_rank_ic(self, prediction, reference):
        """Each timestamp's Spearman correlation across its symbols, and whether it counts (enough symbols, not tied)."""
        rank_prediction = _group_percentile_ranks(prediction, self.codes)
        rank_reference = _group_percentile_ranks(reference, self.codes)
        size = len(self.timestamps)
        count = np.bincount(self.codes, minlength=size)
        cross = np.bincount(self.codes, weights=rank_prediction * rank_reference, minlength=size)
        variance_prediction = np.bincount(self.codes, weights=rank_prediction**2, minlength=size)
        variance_reference = np.bincount(self.codes, weights=rank_reference**2, minlength=size)
        counted = (count >= MIN_CROSS_SECTION) & (variance_prediction > 1e-12) & (variance_reference > 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            correlation = cross / np.sqrt(variance_prediction * variance_reference)
        return np.where(counted, correlation, np.nan), counted.astype(np.float64)

    def per_date_rank_ic(self, column):
        """The per-timestamp rank ICs of `column` (NaN where a date does not count), for the ICIR and plots."""
        return self._per_date_rank_ic(self._frame_columns[column], self._reference)[0]

    def influence(self, column, metric="ic"):
        """Each timestamp's contribution to `metric` of `column` (its empirical influence), and its normalizer.

        For standardized values `a` and `b` with correlation `rho`, one
        observation moves the correlation by `a b - rho (a^2 + b^2) / 2`;
        summed over a timestamp's symbols, this is the series whose
        long-run variance floors the interval (divided by the normalizer, the
        number of windows). The rank IC and within-fold rank IC take the
        same form on their ranks. The per-date rank IC is a mean over
        dates: each date moves it by its own IC minus the mean, and the
        normalizer is the number of dates that count.

        Returns:
            `(series, normalizer)`.
        """
        prediction, reference = self._frame_columns[column], self._reference
        if metric == "per_date_rank_ic":
            date_ic, counted = self._per_date_rank_ic(prediction, reference)
            mean = np.nansum(date_ic) / max(counted.sum(), 1.0)
            return np.where(counted > 0, np.nan_to_num(date_ic) - mean, 0.0), float(max(counted.sum(), 1.0))
        if metric == "rank_ic":
            prediction, reference = _centred_ranks(prediction), _centred_ranks(reference)
        elif metric == "within_fold_rank_ic":
            prediction = _group_percentile_ranks(prediction, self.folds)
            reference = _group_percentile_ranks(reference, self.folds)
        a = (prediction - prediction.mean()) / (prediction.std() or 1.0)
        b = (reference - reference.mean()) / (reference.std() or 1.0)
        rho = np.mean(a * b)
        series = np.bincount(self.codes, weights=a * b - rho * (a**2 + b**2) / 2, minlength=len(self.timestamps))
        return series, float(len(prediction))

    def label_block_length(self):
        """The Politis-White mean block length of each timestamp's mean outcome: the labels' own dependence."""
        count = np.bincount(self.codes, minlength=len(self.timestamps))
        mean_outcome = np.bincount(self.codes, weights=self._reference, minlength=len(self.timestamps)) / count
        return politis_white_block_length(mean_outcome)


def _centred_ranks(values):
    return stats.rankdata(values) - (len(values) + 1) / 2


def _group_percentile_ranks(values, groups):
    """Ranks within each group, scaled to (-0.5, 0.5) and centred (ties share their mean rank)."""
    import pandas as pd

    grouped = pd.Series(values).groupby(groups)
    ranks = grouped.rank(method="average").to_numpy()
    sizes = grouped.transform("size").to_numpy(dtype=np.float64)
    return (ranks - (sizes + 1) / 2) / sizes


def metrics_from_sums(sums):
    """`METRIC_NAMES` from summed statistics.

    Args:
        sums: `[..., len(_SUMS)]` sums over timestamps (one row per resample).

    Returns:
        A dict metric -> array of shape `sums.shape[:-1]` (NaN where undefined).
    """
    column = {name: sums[..., index] for index, name in enumerate(_SUMS)}
    count = column["count"]
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = column["moved"]
        accuracy = column["agreed"] / moved
        rate_predicted = column["predicted_up"] / moved
        rate_realized = column["realized_up"] / moved
        chance = rate_predicted * rate_realized + (1 - rate_predicted) * (1 - rate_realized)
        return {
            "directional_accuracy": accuracy,
            "excess_directional_accuracy": accuracy - chance,
            "ic": _correlation(count, column["prediction"], column["reference"], column["prediction_squared"],
                               column["reference_squared"], column["cross"]),
            "rank_ic": _correlation(count, column["rank_prediction"], column["rank_reference"],
                                    column["rank_prediction_squared"], column["rank_reference_squared"],
                                    column["rank_cross"]),
            "mse": column["squared_error"] / count,
            "within_fold_rank_ic": _correlation(count, column["fold_rank_prediction"], column["fold_rank_reference"],
                                                column["fold_rank_prediction_squared"],
                                                column["fold_rank_reference_squared"], column["fold_rank_cross"]),
            "per_date_rank_ic": np.where(column["date_counted"] > 0,
                                         column["date_rank_ic"] / np.maximum(column["date_counted"], 1.0), np.nan),
        }


def _correlation(count, sum_x, sum_y, sum_xx, sum_yy, sum_xy):
    covariance = sum_xy - sum_x * sum_y / count
    variance_x = sum_xx - sum_x**2 / count
    variance_y = sum_yy - sum_y**2 / count
    # A constant predictor has no correlation; relative tolerance absorbs rounding.
    defined = (variance_x > 1e-12 * np.maximum(sum_xx, 1e-300)) & (variance_y > 1e-12 * np.maximum(sum_yy, 1e-300))
    return np.where(defined, covariance / np.sqrt(np.where(defined, variance_x * variance_y, 1.0)), np.nan)


def politis_white_block_length(series):
    """The stationary bootstrap's optimal mean block length for `series` (Politis & White).

    Args:
        series: a 1-d float array.

    Returns:
        `arch.bootstrap.optimal_block_length(series)["stationary"]`, at
        least 1 (and 1 for fewer than 10 values or a constant series).
    """
    from arch.bootstrap import optimal_block_length

    series = np.asarray(series, dtype=np.float64)
    if len(series) < 10 or np.std(series) == 0:
        return 1.0
    with np.errstate(divide="ignore", invalid="ignore"):  # arch divides by a zero variance on flat stretches
        value = float(optimal_block_length(series)["stationary"].iloc[0])
    return float(np.clip(value, 1.0, len(series))) if np.isfinite(value) else 1.0


def flat_top_long_run_variance(series):
    """The long-run variance of `series`, prewhitened by an AR(1) and summed with a flat-top lag window.

    The AR(1) fit takes out most of a persistent series' dependence
    (Andrews & Monahan, 1992); the residuals' autocovariances are summed with
    Politis' trapezoid flat-top window `min(1, 2 (1 - |k| / M))`, `M` twice the
    first lag after which the autocorrelations stay insignificant (the
    Politis-White bandwidth rule); recolouring divides by `(1 - phi)^2`.

    The estimate is itself uncertain, most of all through the AR(1)
    coefficient, which enters as `1 / (1 - phi)^2`: its equivalent degrees
    of freedom (Satterthwaite's: `2 / CV^2` of the estimate) combine the
    coefficient's, `(1 - phi) n / (2 (1 + phi))`, and the lag window's,
    `1.5 n / M`, so that an interval can use Student's t instead of the
    normal quantile.

    Args:
        series: a 1-d float array.

    Returns:
        `(variance, degrees_of_freedom)`: the long-run variance (the variance
        of `sqrt(n)` times the mean), >= 0, and its equivalent degrees of
        freedom.
    """
    centred = np.asarray(series, dtype=np.float64) - np.mean(series)
    if len(centred) < 10 or not np.any(centred):
        return float(np.mean(centred**2)), float(max(len(centred) - 1, 1))
    coefficient = float(np.clip(np.dot(centred[1:], centred[:-1]) / np.dot(centred[:-1], centred[:-1]), -0.97, 0.97))
    residuals = centred[1:] - coefficient * centred[:-1]
    residuals -= residuals.mean()
    num = len(residuals)
    lag_count = max(5, int(np.log10(num)))
    max_lag = int(np.ceil(np.sqrt(num))) + lag_count
    autocovariance = np.array([np.dot(residuals[lag:], residuals[: num - lag]) / num for lag in range(max_lag + 1)])
    significant = np.abs(autocovariance[1:] / autocovariance[0]) >= 2 * np.sqrt(np.log10(num) / num)
    first_small = max_lag
    for lag in range(len(significant) - lag_count + 1):
        if not significant[lag : lag + lag_count].any():
            first_small = lag + 1
            break
    bandwidth = min(2 * max(first_small - 1, 1), max_lag)
    lags = np.arange(1, bandwidth + 1)
    weights = np.minimum(1.0, 2 * (1 - lags / bandwidth))
    variance = autocovariance[0] + 2 * np.sum(weights * autocovariance[1 : bandwidth + 1])
    inverse_freedom = 2 * (1 + coefficient) / ((1 - coefficient) * num) + bandwidth / (1.5 * num)
    return float(max(variance, 0.0) / (1 - coefficient) ** 2), float(1 / inverse_freedom)


def stationary_resample_counts(num_timestamps, block_length, num_resamples, rng):
    """How often each timestamp is drawn in each stationary-bootstrap resample.

    Each resample is a sequence of blocks starting at uniform random
    timestamps, each continuing to the next timestamp (wrapping round) with
    probability `1 - 1/block_length`, until `num_timestamps` are drawn.

    Returns:
        int `[num_resamples, num_timestamps]` counts; each row sums to
        `num_timestamps`.
    """
    if num_timestamps < 1:
        raise ConfigError(f"`num_timestamps` must be >= 1. Received: num_timestamps={num_timestamps}")
    block_length = float(np.clip(block_length, 1.0, num_timestamps))
    starts = rng.integers(0, num_timestamps, size=(num_resamples, num_timestamps))
    new_block = rng.random((num_resamples, num_timestamps)) < 1.0 / block_length
    new_block[:, 0] = True
    # Within a block the index advances by one from the block's start.
    positions = np.arange(num_timestamps)
    block_begin = np.maximum.accumulate(np.where(new_block, positions, 0), axis=1)
    block_start = np.take_along_axis(starts, block_begin, axis=1)
    indices = (block_start + positions - block_begin) % num_timestamps
    offsets = (np.arange(num_resamples) * num_timestamps)[:, None]
    return np.bincount((indices + offsets).ravel(), minlength=num_resamples * num_timestamps).reshape(
        num_resamples, num_timestamps)


def bootstrap_metrics(frame, columns, *, block_length=None, min_block_length=1, num_resamples=1000, seed=0,
                      level=0.95):
    """Intervals of every metric of every column, from one set of stationary-bootstrap draws.

    Args:
        frame: see `TimestampSums`.
        columns: the prediction columns.
        block_length: the mean block length in timestamps; `None` chooses it
            by Politis-White on each timestamp's mean outcome (the labels'
            dependence, the same whatever the predictions). Defaults to
            `None`.
        min_block_length: a floor for the chosen block length (one label
            horizon in timestamps, so that overlapping labels stay
            together). Defaults to `1`.
        num_resamples: bootstrap resamples. Defaults to `1000`.
        seed: the resampling seed. Defaults to `0`.
        level: the two-sided coverage of each interval. Defaults to `0.95`.

    Returns:
        A `BootstrapResult`.
    """
    sums = TimestampSums(frame, columns)
    if block_length is None:
        block_length = sums.label_block_length()
    block_length = max(float(block_length), float(min_block_length), 1.0)
    counts = stationary_resample_counts(len(sums.timestamps), block_length, num_resamples,
                                        np.random.default_rng(seed)).astype(np.float64)
    draws = {column: metrics_from_sums(counts @ sums.sums[column]) for column in columns}
    point = {column: {name: float(value) for name, value in metrics_from_sums(sums.sums[column].sum(axis=0)).items()}
             for column in columns}
    influences = {(column, name): sums.influence(column, name) for column in columns for name in _CORRELATIONS}
    return BootstrapResult(point=point, draws=draws, block_length=block_length, num_resamples=num_resamples,
                           level=level, num_timestamps=len(sums.timestamps), influences=influences,
                           num_observations=len(frame))


# The metrics whose intervals get the long-run-variance floor.
_CORRELATIONS = ("ic", "rank_ic", "within_fold_rank_ic", "per_date_rank_ic")


class BootstrapResult:
    """What `bootstrap_metrics` found: point values and bootstrap draws, the same draws for every column.

    Attributes:
        point: column -> metric -> value on the full sample.
        draws: column -> metric -> `[num_resamples]` resampled values.
        block_length: the mean block length used, in timestamps.
        num_resamples: resamples drawn.
        level: the intervals' two-sided coverage.
        num_timestamps: distinct test timestamps.
        influences: `(column, metric)` -> `(series, normalizer)`: the
            per-timestamp influence series of each correlation (for its
            long-run-variance floor), see `TimestampSums.influence`.
        num_observations: test windows.
    """

    def __init__(self, point, draws, block_length, num_resamples, level, num_timestamps, influences,
                 num_observations):
        self.point, self.draws = point, draws
        self.block_length, self.num_resamples, self.level = block_length, num_resamples, level
        self.num_timestamps, self.influences, self.num_observations = num_timestamps, influences, num_observations

    def interval(self, column, metric, level=None):
        """The interval of `metric` for `column`, `(low, high)`: percentile, floored for correlations.

        Args:
            level: the coverage, e.g. `1 - 0.05 / k` for one of `k`
                comparisons (Bonferroni). Defaults to the result's `level`.
        """
        return self._interval(self.point[column][metric], self.draws[column][metric],
                              self.influences.get((column, metric)), level or self.level)

    def difference(self, column, other, metric="ic", level=None):
        """`column`'s metric minus `other`'s on the full sample, and its paired interval.

        Args:
            level: the coverage. Defaults to the result's `level`.

        Returns:
            A dict with `difference`, `ci_low`, `ci_high`.
        """
        value = self.point[column][metric] - self.point[other][metric]
        low, high = self._interval(value, self.draws[column][metric] - self.draws[other][metric],
                                   self._paired_influence(column, other, metric), level or self.level)
        return {"difference": value, "ci_low": low, "ci_high": high}

    def _paired_influence(self, column, other, metric):
        if (column, metric) not in self.influences:
            return None
        (series, normalizer), (other_series, _) = self.influences[(column, metric)], self.influences[(other, metric)]
        return series - other_series, normalizer

    def difference_standard_error(self, column, other, metric="ic"):
        """The standard error of `column`'s metric minus `other`'s, paired like `difference`."""
        errors = [_spread(self.draws[column][metric] - self.draws[other][metric]),
                  self._long_run_error(self._paired_influence(column, other, metric), self.level)]
        return float(np.nanmax(errors)) if np.isfinite(errors).any() else np.nan

    def standard_error(self, column, metric="ic"):
        """The standard error of `metric` for `column`: the bootstrap's, or the long-run floor if larger."""
        errors = [_spread(self.draws[column][metric]),
                  self._long_run_error(self.influences.get((column, metric)), self.level)]
        return float(np.nanmax(errors)) if np.isfinite(errors).any() else np.nan

    def _long_run_error(self, influence, level):
        """The long-run standard error, scaled by `t / z` so that a normal-quantile interval on it has t coverage."""
        if influence is None:
            return 0.0
        series, normalizer = influence
        variance, degrees_of_freedom = flat_top_long_run_variance(series)
        quantile = 1 - (1 - level) / 2
        inflation = stats.t.ppf(quantile, degrees_of_freedom) / stats.norm.ppf(quantile)
        return float(inflation * np.sqrt(variance * len(series)) / normalizer)

    def _interval(self, value, draws, influence, level):
        low, high = _percentile_interval(draws, level)
        spread = _spread(draws)
        if not (np.isfinite(value) and np.isfinite(low) and spread > 0):
            return low, high
        widening = max(1.0, self._long_run_error(influence, level) / spread)
        return (float(value - (value - low) * widening), float(value + (high - value) * widening))

    def minimum_detectable(self, column, metric="ic", power=0.8):
        """The smallest true `metric` whose interval would exclude zero with probability `power`."""
        return minimum_detectable_effect(self.standard_error(column, metric), self.level, power)


def minimum_detectable_effect(standard_error, level=0.95, power=0.8):
    """`(z_(1 - (1 - level)/2) + z_power)` standard errors: the effect detected with `power`.

    Args:
        standard_error: the estimate's standard error.
        level: the interval's two-sided coverage. Defaults to `0.95`.
        power: the wanted probability of detection. Defaults to `0.8`.
    """
    return float((stats.norm.ppf(1 - (1 - level) / 2) + stats.norm.ppf(power)) * standard_error)


def _spread(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.std(values, ddof=1)) if len(values) > 1 else np.nan


def _percentile_interval(values, level):
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return (np.nan, np.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return (float(low), float(high))
