"""IC decay: the same predictions against forward returns over several horizons, with intervals."""

import numpy as np
import pandas as pd
import pytest
from conftest import make_bars

from keras_synapse.data.panel import Panel
from keras_synapse.evaluation.ic_decay import format_ic_decay, forward_returns, ic_decay


def oracle_predictions(panel):
    """Each bar's own next-bar log return: the perfect 1-bar forecast."""
    rows = []
    for symbol, returns in forward_returns(panel, 1).items():
        known = returns.dropna()
        rows.append(pd.DataFrame({"symbol": symbol, "timestamp": known.index.tz_localize(None),
                                  "prediction": known.to_numpy()}))
    return pd.concat(rows, ignore_index=True)


def test_a_one_bar_oracle_decays_as_the_square_root_of_the_horizon():
    panel = Panel({f"S{index}": make_bars(800, seed=index) for index in range(4)})
    decay = ic_decay(oracle_predictions(panel), panel, (1, 5, 20), execution_lag=0, num_resamples=200, seed=0)
    assert decay[1]["ic"] == pytest.approx(1.0)
    # i.i.d. returns: corr(r_1, r_k) = 1 / sqrt(k).
    for horizon in (5, 20):
        assert decay[horizon]["ci_low"] < 1 / np.sqrt(horizon) < decay[horizon]["ci_high"]
        assert abs(decay[horizon]["ic"] - 1 / np.sqrt(horizon)) < 0.1
    # A bar later the same forecast knows nothing: the lagged returns start after the bar it predicted.
    lagged = ic_decay(oracle_predictions(panel), panel, (1,), execution_lag=1, num_resamples=200, seed=0)
    assert lagged[1]["ci_low"] < 0 < lagged[1]["ci_high"]
    assert "(trained horizon)" in format_ic_decay(decay, 5).splitlines()[3]
