"""Metrics over a panel of predictions: the IC across symbols on each date (and its ICIR), and each symbol's
own metrics over time. Training logs the validation IC with them, so they sit before training in the flow.
"""

import numpy as np
import pandas as pd

from keras_synapse.errors import DataError
from keras_synapse.evaluation.summary import regression_metrics


def _require_columns(frame, columns):
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(f"Prediction frame lacks column(s) {missing}. Received columns: {list(frame.columns)}")


def per_timestamp_ic(frame, prediction_column="prediction", reference_column="reference",
                     timestamp_column="timestamp", min_symbols=3):
    """The cross-sectional IC at each timestamp: how well the predictions rank the symbols that day.

    Rows with a NaN prediction or reference are dropped first. Timestamps
    with fewer than `min_symbols` symbols, or with constant predictions or
    references across symbols (no ranking to judge), are skipped.

    Args:
        frame: one row per (symbol, timestamp) window.
        prediction_column: the predictions. Defaults to `"prediction"`.
        reference_column: what they should rank like, e.g. the forward
            return. Defaults to `"reference"`.
        timestamp_column: the window time. Defaults to `"timestamp"`.
        min_symbols: fewest symbols for a timestamp to count. Defaults to `3`.

    Returns:
        A DataFrame indexed by timestamp with `ic` (Pearson), `rank_ic`
        (Spearman: Pearson of within-timestamp ranks, ties averaged) and
        `num_symbols`.
    """
    _require_columns(frame, [prediction_column, reference_column, timestamp_column])
    data = pd.DataFrame({
        "timestamp": frame[timestamp_column].reset_index(drop=True),
        "prediction": frame[prediction_column].reset_index(drop=True).astype(np.float64),
        "reference": frame[reference_column].reset_index(drop=True).astype(np.float64),
    })
    data = data[np.isfinite(data["prediction"]) & np.isfinite(data["reference"])]
    grouped = data.groupby("timestamp", sort=True)
    # max > min rather than std > 0: centring a constant column can leave round-off.
    usable = (grouped["prediction"].transform("size") >= min_symbols) & np.logical_and(
        grouped["prediction"].transform("max") > grouped["prediction"].transform("min"),
        grouped["reference"].transform("max") > grouped["reference"].transform("min"),
    )
    data = data[usable]
    grouped = data.groupby("timestamp", sort=True)
    data = data.assign(rank_prediction=grouped["prediction"].rank(), rank_reference=grouped["reference"].rank())

    def correlation(left, right):
        centred_left = data[left] - grouped[left].transform("mean")
        centred_right = data[right] - grouped[right].transform("mean")
        sums = pd.DataFrame({"products": centred_left * centred_right, "left": centred_left**2,
                             "right": centred_right**2}).groupby(data["timestamp"], sort=True).sum()
        return sums["products"] / np.sqrt(sums["left"] * sums["right"])

    grouped = data.groupby("timestamp", sort=True)
    return pd.DataFrame({
        "ic": correlation("prediction", "reference"),
        "rank_ic": correlation("rank_prediction", "rank_reference"),
        "num_symbols": grouped.size(),
    })


def information_coefficients(frame, prediction_column="prediction", reference_column="reference",
                             timestamp_column="timestamp", min_symbols=3):
    """Mean cross-sectional IC, its spread over time, and the ICIR.

    The IC of each timestamp (see `per_timestamp_ic`), summarized over
    timestamps. The ICIR is the plain ratio `mean / std` of the
    per-timestamp ICs (std with ddof=1), not annualized. It is not a
    t-statistic either: with overlapping multi-bar labels neighbouring
    timestamps' ICs are correlated, so `icir * sqrt(num_timestamps)`
    overstates significance (use the block bootstrap in `evaluation`).

    Args:
        frame: one row per (symbol, timestamp) window.
        prediction_column: the predictions. Defaults to `"prediction"`.
        reference_column: what they should rank like, e.g. the forward
            return. Defaults to `"reference"`.
        timestamp_column: the window time. Defaults to `"timestamp"`.
        min_symbols: fewest symbols for a timestamp to count. Defaults to `3`.

    Returns:
        A dict with `ic_mean`, `ic_std`, `icir`, `rank_ic_mean`,
        `rank_ic_std`, `rank_icir` and `num_timestamps` (the timestamps
        used). Values are NaN when no timestamp qualifies (e.g. a
        single-symbol panel) and the std and ICIR need two timestamps.
    """
    series = per_timestamp_ic(frame, prediction_column, reference_column, timestamp_column, min_symbols)
    summary = {}
    for name, ratio_name in (("ic", "icir"), ("rank_ic", "rank_icir")):
        values = series[name].to_numpy()
        mean = float(np.mean(values)) if len(values) else np.nan
        std = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
        summary.update({f"{name}_mean": mean, f"{name}_std": std,
                        ratio_name: mean / std if np.isfinite(std) and std > 0 else np.nan})
    summary["num_timestamps"] = int(len(series))
    return summary


def per_symbol_metrics(frame, prediction_column="prediction", reference_column="reference",
                       symbol_column="symbol", target_column=None):
    """Seed 004's cross-ticker table: the headline metrics of each symbol's predictions over time.

    Each symbol's rows are scored with `evaluation.regression_metrics`, so
    the columns mean exactly what the run's headline metrics mean.

    Args:
        frame: one row per (symbol, timestamp) window.
        prediction_column: the predictions. Defaults to `"prediction"`.
        reference_column: what they should agree with, e.g. the forward
            return. Defaults to `"reference"`.
        symbol_column: the symbol. Defaults to `"symbol"`.
        target_column: the training target, for an `mse` column; `None`
            leaves it out. Defaults to `None`.

    Returns:
        A DataFrame indexed by symbol (sorted) with `n`,
        `directional_accuracy`, `excess_directional_accuracy`, `ic`,
        `rank_ic` (time-series correlations within the symbol; NaN for
        fewer than 3 windows or constant predictions) and, with
        `target_column`, `mse`.
    """
    _require_columns(frame, [prediction_column, reference_column, symbol_column]
                     + ([target_column] if target_column else []))
    rows = {}
    for symbol, part in frame.groupby(symbol_column, sort=True):
        target = part[target_column] if target_column else part[reference_column]
        metrics = regression_metrics(part[prediction_column], target, part[reference_column])
        if not target_column:
            del metrics["mse"]
        rows[symbol] = {"n": len(part), **metrics}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = symbol_column
    return table
