"""IC decay: the run's test predictions against forward returns over several horizons.

The model is trained for one horizon; how its IC changes when the same
predictions are held for 1, 3, 5 or 20 bars says how fast its information
decays (seed 000 asks for 1-, 3- and 5-day views). Each horizon's interval
comes from its own stationary bootstrap with blocks of at least that many
bars, since k-bar returns of consecutive windows overlap by k - 1 bars.
"""

import numpy as np
import pandas as pd


def forward_returns(panel, horizon, execution_lag=0):
    """Symbol -> the forward log return the labels trade over `horizon` bars (`labels.common.entry_return`)."""
    from keras_synapse.labels.common import entry_return

    return {symbol: entry_return(bars, horizon, execution_lag) for symbol, bars in panel.items()}


def ic_decay(test_predictions, panel, horizons, execution_lag, num_resamples, seed):
    """The pooled test IC of the predictions against each horizon's forward return, with its 95% interval.

    Args:
        test_predictions: the run's test predictions (`symbol`, `timestamp`,
            `prediction`), timestamps naive UTC or time-zone aware.
        panel: the run's `Panel`.
        horizons: the horizons, in bars.
        execution_lag: bars from signal to trade, as the labels used.
        num_resamples: bootstrap resamples per horizon.
        seed: the bootstrap seed.

    Returns:
        A dict horizon -> `{"n", "ic", "ci_low", "ci_high"}`.
    """
    from keras_synapse.evaluation.summary import metric_intervals, regression_metrics

    timestamps = pd.DatetimeIndex(test_predictions["timestamp"])
    if timestamps.tz is None:
        timestamps = timestamps.tz_localize("UTC")
    decay = {}
    for horizon in horizons:
        returns = forward_returns(panel, horizon, execution_lag)
        realized = np.full(len(test_predictions), np.nan)
        for symbol, rows in test_predictions.groupby("symbol", sort=False).indices.items():
            realized[rows] = returns[symbol].reindex(timestamps[rows]).to_numpy()
        known = np.isfinite(realized)
        frame = pd.DataFrame({"timestamp": test_predictions["timestamp"].to_numpy()[known],
                              "prediction": test_predictions["prediction"].to_numpy()[known],
                              "target": realized[known], "reference": realized[known]})
        point = regression_metrics(frame["prediction"], frame["target"], frame["reference"])["ic"]
        low, high = metric_intervals(frame, "prediction", horizon, num_resamples, seed)["ic"]
        decay[int(horizon)] = {"n": int(known.sum()), "ic": float(point), "ci_low": float(low),
                               "ci_high": float(high)}
    return decay


def format_ic_decay(decay, trained_horizon):
    """A plain-text table of `ic_decay`, marking the horizon the model was trained for."""
    lines = ["IC decay (the test predictions against k-bar forward returns)",
             f"{'k bars':>7}{'n':>9}{'IC':>10}   95% CI"]
    for horizon, item in decay.items():
        lines.append(f"{horizon:>7}{item['n']:>9}{item['ic']:>+10.4f}   [{item['ci_low']:+.4f}, {item['ci_high']:+.4f}]"
                     + ("  (trained horizon)" if horizon == trained_horizon else ""))
    return "\n".join(lines)
