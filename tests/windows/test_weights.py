"""Sample weights: uniqueness by hand, time decay, class balance."""

import numpy as np
import pytest

from keras_synapse.errors import ConfigError
from keras_synapse.windows.weights import average_uniqueness, class_balance, time_decay

CALENDAR = np.arange(20).astype("datetime64[D]")


def test_uniqueness_by_hand():
    # Three labels of one symbol over bars (1..3), (2..4), (8..10): the first two share bars 2 and 3.
    times = CALENDAR[[0, 1, 7]]
    ends = CALENDAR[[3, 4, 10]]
    uniqueness = average_uniqueness(times, ends, np.zeros(3, dtype=int), CALENDAR)
    np.testing.assert_allclose(uniqueness, [(1 + 0.5 + 0.5) / 3, (0.5 + 0.5 + 1) / 3, 1.0])


def test_labels_of_different_symbols_do_not_dilute_each_other():
    times, ends = CALENDAR[[0, 0]], CALENDAR[[3, 3]]
    np.testing.assert_allclose(average_uniqueness(times, ends, np.array([0, 1]), CALENDAR), [1.0, 1.0])
    np.testing.assert_allclose(average_uniqueness(times, ends, np.array([0, 0]), CALENDAR), [0.5, 0.5])


def test_stride_one_windows_with_horizon_five_weigh_about_a_fifth():
    times = CALENDAR[:15]
    uniqueness = average_uniqueness(times, times + 5, np.zeros(15, dtype=int), np.arange(25).astype("datetime64[D]"))
    np.testing.assert_allclose(uniqueness[5:10], 0.2)


def test_time_decay_and_class_balance():
    np.testing.assert_allclose(time_decay(CALENDAR[:3], oldest_weight=0.25), [0.25, 0.625, 1.0])
    weights = class_balance(np.array([0, 0, 0, 1]))
    np.testing.assert_allclose(weights, [2 / 3, 2 / 3, 2 / 3, 2.0])
    assert weights[:3].sum() == pytest.approx(weights[3:].sum())
    with pytest.raises(ConfigError, match=r"`oldest_weight` must be in \[0, 1\]. Received: oldest_weight=2"):
        time_decay(CALENDAR, oldest_weight=2)
