"""Feature drift: how far today's inputs are from the ones the model was trained on.

At registration the training rows of every feature are summarized by
`training_distributions` (quantile bin edges, the share of rows in each bin,
and a small random sample), stored in `metadata.json` under
`"drift_reference"`. At prediction time `drift_report` compares new feature
rows with it, feature by feature:

- **PSI** (population stability index) over the training quantile bins,
  `sum((p_new - p_train) * ln(p_new / p_train))`: below 0.1 stable, 0.1 to
  0.25 moderate drift, above 0.25 drift (the usual credit-scoring
  thresholds);
- **KS**: the two-sample Kolmogorov-Smirnov statistic and p-value
  (`scipy.stats.ks_2samp`) of the new rows against the stored sample, flagged
  when p is below 0.01 *and* the statistic (the largest gap between the two
  distribution functions, an effect size) is at least 0.1: on thousands of
  rows a p-value alone flags differences too small to matter, down to the
  sampling noise of a model's own training rows.

Each feature gets one `flag` (`"drift"`, `"moderate"` or `"stable"`) and
the tests that raised it (`flagged_by`, with a `reason` such as "KS 0.160 >=
0.1 with p 4.0e-04 < 0.01"): a feature can drift by KS while its PSI is
only moderate, and a table that showed the PSI level beside a KS flag would
not say why it was flagged. Summary counts are counts of these flags.

Both tests treat rows as independent draws. Feature rows of one series are
autocorrelated (a 20-bar rolling volatility barely moves from one bar to the
next), so KS p-values are over-confident on long windows of new rows: a
flag says "look", not "the model is broken". PSI does not depend on the
number of rows the same way and is the primary flag.

    reference = training_distributions(train_rows, feature_names)
    report = drift_report(reference, new_rows)   # new_rows: a frame with those columns
    report["drifted"]                            # PSI > 0.25, or KS p < 0.01 with KS >= 0.1
    report["features"]["rsi_14"]["reason"]       # which test flagged it, its value and threshold
"""

import numpy as np
import pandas as pd

from keras_synapse.errors import SynapseError

PSI_MODERATE = 0.1
PSI_DRIFT = 0.25
KS_P_VALUE = 0.01
KS_MIN_STATISTIC = 0.1
# Empty bins would make PSI infinite; a share is floored at this before the log.
_PROPORTION_FLOOR = 1e-4


def training_distributions(feature_rows, feature_names, num_bins=10, sample_size=500, seed=0):
    """Summarizes training feature rows for later drift checks (JSON-ready).

    Args:
        feature_rows: `[rows, features]` array (or frame) of training rows,
            e.g. the final refit's fit rows.
        feature_names: one name per column.
        num_bins: quantile bins per feature. Defaults to `10`.
        sample_size: rows kept per feature for the KS test (drawn without
            replacement, seeded). Defaults to `500`.
        seed: the sampling seed. Defaults to `0`.

    Returns:
        A dict: `num_rows`, `num_bins`, `thresholds`, and `features`, mapping
        each name to `edges` (the interior bin edges: bin 0 is `(-inf,
        edges[0]]`, the last `(edges[-1], inf)`; repeated quantiles of a
        discrete feature are merged), `proportions` (the training share of
        each bin), `mean`, `std` and `sample`.

    Raises:
        SynapseError: when the names do not match the columns or no row is
            finite.

    Example:

    >>> rows = np.random.default_rng(0).normal(size=(1000, 2))
    >>> reference = training_distributions(rows, ["a", "b"], num_bins=4)
    >>> len(reference["features"]["a"]["proportions"])
    4
    """
    values = np.asarray(feature_rows, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(feature_names):
        raise SynapseError(f"feature_rows must be [rows, {len(feature_names)}] for {len(feature_names)} feature names. "
                           f"Received shape: {values.shape}")
    if num_bins < 2:
        raise SynapseError(f"`num_bins` must be >= 2. Received: num_bins={num_bins}")
    rng = np.random.default_rng(seed)
    features = {}
    for column, name in enumerate(feature_names):
        column_values = values[:, column]
        column_values = column_values[np.isfinite(column_values)]
        if len(column_values) == 0:
            raise SynapseError(f"Feature '{name}' has no finite training value.")
        quantiles = np.quantile(column_values, np.linspace(0, 1, num_bins + 1)[1:-1])
        edges = np.unique(quantiles)
        counts = np.bincount(_bin_of(column_values, edges), minlength=len(edges) + 1)
        sample = column_values if len(column_values) <= sample_size else rng.choice(column_values, sample_size,
                                                                                      replace=False)
        features[str(name)] = {
            "edges": [float(edge) for edge in edges],
            "proportions": [float(count) for count in counts / counts.sum()],
            "mean": float(column_values.mean()),
            "std": float(column_values.std()),
            # Six significant digits keep the JSON small; KS needs no more.
            "sample": [float(f"{value:.6g}") for value in np.sort(sample)],
        }
    return {"num_rows": int(len(values)), "num_bins": int(num_bins),
            "thresholds": {"psi_moderate": PSI_MODERATE, "psi_drift": PSI_DRIFT, "ks_p_value": KS_P_VALUE,
                           "ks_min_statistic": KS_MIN_STATISTIC},
            "features": features}


def _bin_of(values, edges):
    # Bins are right-closed, (edges[i-1], edges[i]], as np.quantile puts ties at the edge.
    return np.searchsorted(edges, values, side="left")


def population_stability_index(expected, actual):
    """PSI between two bin-share vectors (each floored at 1e-4 so an empty bin stays finite)."""
    expected = np.maximum(np.asarray(expected, dtype=np.float64), _PROPORTION_FLOOR)
    actual = np.maximum(np.asarray(actual, dtype=np.float64), _PROPORTION_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift_report(reference, feature_rows, feature_names=None):
    """Compares new feature rows with a `training_distributions` reference.

    Args:
        reference: the dict from `training_distributions` (e.g.
            `metadata["drift_reference"]`).
        feature_rows: a frame whose columns include the reference's features,
            or an array whose columns are `feature_names` (default: the
            reference's features, in order).
        feature_names: column names for an array. Defaults to `None`.

    Returns:
        A dict: `num_rows`; `thresholds` (those applied); `features`,
        mapping each feature to `psi`, `psi_level` (`"stable"`, `"moderate"`
        or `"drift"` by PSI alone), `ks_statistic`, `ks_p_value`, `ks_flag`,
        `mean`, `training_mean`, and the feature's verdict: `flag`
        (`"drift"` when PSI is above 0.25 or KS flags it, else `"moderate"`
        when PSI is 0.1 to 0.25, else `"stable"`), `flagged_by` (the tests
        that raised the flag, `"psi"` and/or `"ks"`) and `reason` (those
        tests' values against their thresholds, empty when stable);
        `drifted` and `moderate` (the features flagged so, in order);
        `missing` (reference features absent from the rows).

    Raises:
        SynapseError: when an array's width does not match the names.
    """
    from scipy.stats import ks_2samp

    names = list(reference["features"])
    if isinstance(feature_rows, pd.DataFrame):
        frame = feature_rows
    else:
        values = np.asarray(feature_rows, dtype=np.float64)
        columns = list(feature_names or names)
        if values.ndim != 2 or values.shape[1] != len(columns):
            raise SynapseError(f"feature_rows must be [rows, {len(columns)}]. Received shape: {values.shape}")
        frame = pd.DataFrame(values, columns=columns)
    thresholds = {"psi_moderate": PSI_MODERATE, "psi_drift": PSI_DRIFT, "ks_p_value": KS_P_VALUE,
                  "ks_min_statistic": KS_MIN_STATISTIC, **reference.get("thresholds", {})}
    report = {"num_rows": int(len(frame)), "thresholds": thresholds, "features": {}, "drifted": [], "moderate": [],
              "missing": []}
    for name in names:
        if name not in frame.columns:
            report["missing"].append(name)
            continue
        summary = reference["features"][name]
        values = frame[name].to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            report["missing"].append(name)
            continue
        edges = np.asarray(summary["edges"], dtype=np.float64)
        counts = np.bincount(_bin_of(values, edges), minlength=len(edges) + 1)
        psi = population_stability_index(summary["proportions"], counts / counts.sum())
        ks = ks_2samp(np.asarray(summary["sample"], dtype=np.float64), values)
        result = {"psi": psi, "ks_statistic": float(ks.statistic), "ks_p_value": float(ks.pvalue),
                  "mean": float(values.mean()), "training_mean": summary["mean"]}
        result.update(feature_flag(result, thresholds))
        report["features"][name] = result
        if result["flag"] in ("drift", "moderate"):
            report["drifted" if result["flag"] == "drift" else "moderate"].append(name)
    return report


def feature_flag(result, thresholds):
    """One feature's flag and the tests that raised it, from its `psi`, `ks_statistic` and `ks_p_value`.

    Args:
        result: a dict with `psi`, `ks_statistic` and `ks_p_value`.
        thresholds: `psi_moderate`, `psi_drift`, `ks_p_value` and
            `ks_min_statistic`.

    Returns:
        A dict: `psi_level`, `ks_flag`, `flag` (`"drift"`, `"moderate"` or
        `"stable"`), `flagged_by` (`"psi"` and/or `"ks"`: the tests that
        raised `flag`) and `reason` (their values against their thresholds).
    """
    psi, statistic, p_value = result["psi"], result["ks_statistic"], result["ks_p_value"]
    level = ("drift" if psi > thresholds["psi_drift"] else "moderate" if psi > thresholds["psi_moderate"]
             else "stable")
    ks_flag = bool(p_value < thresholds["ks_p_value"] and statistic >= thresholds["ks_min_statistic"])
    flagged_by, reasons = [], []
    if level == "drift":
        flagged_by.append("psi")
        reasons.append(f"PSI {psi:.3f} > {thresholds['psi_drift']:g}")
    if ks_flag:
        flagged_by.append("ks")
        reasons.append(f"KS {statistic:.3f} >= {thresholds['ks_min_statistic']:g} with p {p_value:.1e} < "
                       f"{thresholds['ks_p_value']:g}")
    flag = "drift" if flagged_by else level
    if flag == "moderate":
        flagged_by.append("psi")
        reasons.append(f"PSI {psi:.3f} in {thresholds['psi_moderate']:g}-{thresholds['psi_drift']:g}")
    return {"psi_level": level, "ks_flag": ks_flag, "flag": flag, "flagged_by": flagged_by,
            "reason": "; ".join(reasons)}


def format_drift_report(report):
    """A plain-text table of a `drift_report`, flagged features first, each with the test that flagged it.

    The closing counts are counts of the `flag` column, so they agree with
    the rows: a feature KS flags as drift is counted as drifted (by KS)
    even when its PSI alone is only moderate.
    """
    thresholds = {"psi_moderate": PSI_MODERATE, "psi_drift": PSI_DRIFT, "ks_p_value": KS_P_VALUE,
                  "ks_min_statistic": KS_MIN_STATISTIC, **report.get("thresholds", {})}
    lines = [f"feature drift vs training ({report['num_rows']} rows; drift: PSI > {thresholds['psi_drift']:g}, or KS "
             f">= {thresholds['ks_min_statistic']:g} with p < {thresholds['ks_p_value']:g}; moderate: PSI "
             f"{thresholds['psi_moderate']:g}-{thresholds['psi_drift']:g})",
             f"{'feature':<28}{'PSI':>8}{'KS':>8}{'KS p':>11}  {'flag':<9}flagged by"]
    rank = {"drift": 0, "moderate": 1, "stable": 2}
    order = sorted(report["features"].items(), key=lambda item: (rank[item[1]["flag"]], -item[1]["psi"]))
    for name, result in order:
        flag = {"drift": "DRIFT", "moderate": "moderate", "stable": ""}[result["flag"]]
        lines.append(f"{name:<28}{result['psi']:>8.3f}{result['ks_statistic']:>8.3f}{result['ks_p_value']:>11.2e}  "
                     f"{flag:<9}{result['reason']}".rstrip())
    if report["missing"]:
        lines.append(f"not in the data: {', '.join(report['missing'])}")
    by_test = {test: sum(test in report["features"][name]["flagged_by"] for name in report["drifted"])
               for test in ("psi", "ks")}
    lines.append(f"{len(report['drifted'])} drifted (by PSI {by_test['psi']}, by KS {by_test['ks']}), "
                 f"{len(report['moderate'])} moderate of {len(report['features'])} features")
    return "\n".join(lines)
