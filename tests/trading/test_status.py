"""The dashboard's monitor: rolling rank IC and hit rate, checked against scipy on the same rows."""

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from keras_synapse.trading.status import monitor


def realized_rows(num_bars=120, num_symbols=4, strength=0.3, seed=0):
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=num_bars, freq="B", tz="UTC")
    outcome = rng.normal(0, 0.01, (num_bars, num_symbols))
    score = strength * outcome / 0.01 + rng.normal(0, 1, (num_bars, num_symbols))
    return pd.DataFrame({"symbol": np.tile([f"S{k}" for k in range(num_symbols)], num_bars),
                         "timestamp": np.repeat(times, num_symbols), "prediction": score.ravel(),
                         "forward_return": outcome.ravel()})


def test_each_point_is_the_rank_ic_and_hit_rate_of_its_window_and_the_cache_changes_nothing():
    rows = realized_rows()
    cache = {}
    first = monitor(rows.iloc[: 100 * 4], 30, 0.0, 50, cache)
    result = monitor(rows, 30, 0.0, 50, cache)
    assert first["rolling_ic"] == result["rolling_ic"][:100]
    assert result == monitor(rows, 30, 0.0, 50)
    times = rows["timestamp"].unique()
    for end in (29, 75, 119):
        window = rows[(rows["timestamp"] >= times[end - 29]) & (rows["timestamp"] <= times[end])]
        point = result["rolling_ic"][end]
        assert point["timestamp"] == pd.Timestamp(times[end]).isoformat()
        assert np.isclose(point["ic"], spearmanr(window["prediction"], window["forward_return"]).statistic)
        hits = np.sign(window["prediction"]) == np.sign(window["forward_return"])
        assert np.isclose(result["rolling_accuracy"][end]["accuracy"], hits.mean())
    assert result["realized"] == 30 * 4 and result["ic"] == result["rolling_ic"][-1]["ic"]


def test_degraded_only_below_the_floor_and_with_enough_realized_predictions():
    assert not monitor(realized_rows(strength=0.3), 30, 0.0, 50)["degraded"]
    assert monitor(realized_rows(strength=-0.3), 30, 0.0, 50)["degraded"]
    assert not monitor(realized_rows(strength=-0.3), 30, 0.0, 500)["degraded"]  # too few to judge
