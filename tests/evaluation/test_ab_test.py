"""Paired Sharpe-difference intervals: as arch's stationary bootstrap gives them, and honest in both directions."""

import numpy as np
import pandas as pd
import pytest
from arch.bootstrap import StationaryBootstrap

from keras_synapse.errors import ConfigError
from keras_synapse.evaluation.ab_test import annualized_sharpe, sharpe_differences


def _books(edge, seed, periods=500):
    rng = np.random.default_rng(seed)
    common = rng.normal(0, 0.01, periods)  # both books share the market's moves
    return pd.DataFrame({"filtered": common + rng.normal(edge, 0.005, periods),
                         "alone": common + rng.normal(0, 0.005, periods)})


def test_the_interval_matches_arch_on_the_same_returns():
    returns = _books(0.0005, seed=0)
    ours = sharpe_differences(returns, [("filtered", "alone")], 252, num_resamples=2000, block_length=5)
    result = ours["filtered - alone"]

    def difference(filtered, alone):
        return annualized_sharpe(np.column_stack([filtered, alone]), 252) @ np.array([1.0, -1.0])

    bootstrap = StationaryBootstrap(5, returns["filtered"].to_numpy(), returns["alone"].to_numpy(), seed=1)
    low, high = bootstrap.conf_int(difference, reps=2000, method="percentile").ravel()
    assert result["difference"] == pytest.approx(difference(returns["filtered"], returns["alone"])[()])
    assert result["ci_low"] == pytest.approx(low, abs=0.15) and result["ci_high"] == pytest.approx(high, abs=0.15)


def test_noise_is_not_called_better_and_a_real_sized_improvement_is():
    # The same book twice plus noise: no pair is better in (almost) every draw.
    calls = [sharpe_differences(_books(0.0, seed), [("filtered", "alone")], 252, num_resamples=500)
             ["filtered - alone"]["better"] for seed in range(20)]
    assert sum(calls) <= 2
    # +5 bp a day beside a 1.1% daily volatility: an annualized Sharpe gain of about 0.7, over eight years.
    found = [sharpe_differences(_books(0.0005, seed, periods=2000), [("filtered", "alone")], 252,
                                num_resamples=500)["filtered - alone"]["better"] for seed in range(20)]
    assert sum(found) >= 14


def test_bad_pairs_say_what_was_received():
    with pytest.raises(ConfigError, match=r"books without returns: \['other'\]"):
        sharpe_differences(_books(0, 0), [("filtered", "other")], 252)
    with pytest.raises(ConfigError, match="at least 10 periods"):
        sharpe_differences(_books(0, 0, periods=5), [("filtered", "alone")], 252)
