"""Sample weights for training windows: uniqueness, time decay, class balance.

Overlapping labels are not independent samples: ten windows whose 5-bar labels
share the same bars carry roughly one observation's worth of information.
Weighting by average uniqueness ("Advances in Financial Machine Learning",
ch. 4) keeps those clusters from dominating the loss.
"""

import numpy as np

from keras_synapse.errors import ConfigError

WEIGHTINGS = ("none", "uniqueness", "time_decay", "class_balance")


def average_uniqueness(times, end_times, symbol_codes, calendar):
    """Each sample's average uniqueness over the bars its label spans.

    A label from `time` to `end_time` spans the returns of the bars after
    `time` up to `end_time`. A bar's concurrency is the number of the same
    symbol's labels spanning it; a sample's uniqueness is the mean of
    `1 / concurrency` over its bars (1 when no label overlaps it).

    Args:
        times: each sample's time (`datetime64`).
        end_times: each sample's label end time.
        symbol_codes: each sample's symbol code.
        calendar: sorted unique times covering all samples and end times.

    Returns:
        float64 uniqueness in (0, 1], one per sample.
    """
    starts = np.searchsorted(calendar, times) + 1
    stops = np.searchsorted(calendar, end_times) + 1  # exclusive
    uniqueness = np.ones(len(times))
    for code in np.unique(symbol_codes):
        mine = np.flatnonzero(symbol_codes == code)
        concurrency = np.zeros(len(calendar) + 2)
        np.add.at(concurrency, starts[mine], 1)
        np.add.at(concurrency, stops[mine], -1)
        concurrency = np.cumsum(concurrency)
        inverse = np.where(concurrency > 0, 1.0 / np.maximum(concurrency, 1), 0.0)
        prefix = np.concatenate([[0.0], np.cumsum(inverse)])
        spans = np.maximum(stops[mine] - starts[mine], 1)
        uniqueness[mine] = (prefix[stops[mine]] - prefix[starts[mine]]) / spans
    return uniqueness


def time_decay(times, oldest_weight=0.5):
    """Weights rising linearly in time from `oldest_weight` to 1 (recent data counts more).

    Args:
        times: each sample's time.
        oldest_weight: the weight of the oldest sample, in [0, 1]. Defaults
            to `0.5`.
    """
    if not 0 <= oldest_weight <= 1:
        raise ConfigError(f"`oldest_weight` must be in [0, 1]. Received: oldest_weight={oldest_weight}")
    position = times.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    span = position.max() - position.min()
    fraction = (position - position.min()) / span if span > 0 else np.ones(len(times))
    return oldest_weight + (1 - oldest_weight) * fraction


def class_balance(targets):
    """Weights inversely proportional to class frequency (each class totals the same)."""
    classes, inverse, counts = np.unique(targets, return_inverse=True, return_counts=True)
    return len(targets) / (len(classes) * counts[inverse])


def sample_weights(windowed, ends, weighting):
    """Weights for the training windows ending at `ends`, normalized to mean 1.

    Args:
        windowed: a `WindowedPanel`.
        ends: the training window end rows.
        weighting: one of `WEIGHTINGS`.

    Returns:
        float32 weights, or `None` for `"none"`.

    Raises:
        ConfigError: for an unknown weighting.
    """
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"`sample_weighting` must be one of {WEIGHTINGS}. Received: sample_weighting={weighting!r}")
    if weighting == "none":
        return None
    times = windowed.timestamps[ends]
    if weighting == "uniqueness":
        calendar = np.union1d(windowed.calendar, windowed.label_end_times[ends])
        weights = average_uniqueness(times, windowed.label_end_times[ends], windowed.symbol_codes[ends], calendar)
    elif weighting == "time_decay":
        weights = time_decay(times)
    else:
        weights = class_balance(windowed.targets[ends])
    return (weights / weights.mean()).astype(np.float32)
