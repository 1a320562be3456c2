"""Drift: PSI over training quantile bins and KS against the stored sample."""

import json

import numpy as np
import pandas as pd
import pytest

from keras_synapse.serving.drift import drift_report, format_drift_report, population_stability_index, training_distributions
from keras_synapse.errors import SynapseError

NAMES = ["returns", "volume", "discrete"]


def rows(num_rows, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(shift, scale, num_rows), rng.lognormal(0, 1, num_rows),
                            rng.integers(0, 3, num_rows).astype(float)])


@pytest.fixture(scope="module")
def reference():
    return training_distributions(rows(5000, seed=0), NAMES)


def test_reference_is_json_ready_with_quantile_bins(reference):
    restored = json.loads(json.dumps(reference))
    returns = restored["features"]["returns"]
    assert len(returns["edges"]) == 9 and len(returns["proportions"]) == 10
    np.testing.assert_allclose(returns["proportions"], 0.1, atol=0.002)
    assert len(returns["sample"]) == 500 and restored["num_rows"] == 5000
    # Ties in a discrete feature collapse repeated quantiles; shares still sum to one.
    discrete = restored["features"]["discrete"]
    assert discrete["edges"] == sorted(set(discrete["edges"])) and len(discrete["edges"]) < 9
    assert sum(discrete["proportions"]) == pytest.approx(1.0)


def test_same_distribution_is_stable(reference):
    report = drift_report(reference, pd.DataFrame(rows(2000, seed=1), columns=NAMES))
    assert report["drifted"] == [] and report["moderate"] == []
    assert all(result["psi"] < 0.1 and result["ks_p_value"] > 0.01 for result in report["features"].values())


def test_shifted_and_widened_features_are_flagged(reference):
    new = rows(2000, seed=2, shift=1.0)
    new[:, 1] *= 3.0
    report = drift_report(reference, new)
    assert set(report["drifted"]) == {"returns", "volume"}
    assert report["features"]["returns"]["psi"] > 0.25 and report["features"]["returns"]["psi_level"] == "drift"
    assert report["features"]["returns"]["ks_p_value"] < 0.01
    assert "DRIFT" in format_drift_report(report)


def test_moderate_drift_band():
    reference = training_distributions(rows(20000, seed=0), NAMES)
    report = drift_report(reference, rows(20000, seed=3, shift=0.4))
    assert 0.1 < report["features"]["returns"]["psi"] <= 0.25
    assert report["features"]["returns"]["psi_level"] == "moderate"


def test_psi_by_hand_and_missing_features(reference):
    expected = 0.4 * np.log(0.9 / 0.5) + (-0.4) * np.log(0.1 / 0.5)
    assert population_stability_index([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected)
    report = drift_report(reference, pd.DataFrame(rows(100, seed=4)[:, :2], columns=NAMES[:2]))
    assert report["missing"] == ["discrete"]
    with pytest.raises(SynapseError, match=r"must be \[rows, 2\] for 2 feature names. Received shape: \(10, 3\)"):
        training_distributions(rows(10, seed=0), ["a", "b"])


def test_a_significant_but_negligible_difference_is_not_drift():
    """On many rows a p-value alone flags tiny differences: KS must also show an effect (a gap of 0.1 or more)."""
    rng = np.random.default_rng(0)
    reference = training_distributions(rng.standard_normal((50_000, 1)), ["x"])
    report = drift_report(reference, rng.normal(0.15, 1.0, (20_000, 1)))  # 0.15 standard deviations
    result = report["features"]["x"]
    assert result["psi_level"] == "stable" and result["ks_p_value"] < 0.01 and result["ks_statistic"] < 0.1
    assert report["drifted"] == [] and not result["ks_flag"]
    # A real shift is still flagged by both tests.
    shifted = drift_report(reference, rng.normal(1.0, 1.0, (20_000, 1)))
    assert shifted["drifted"] == ["x"] and shifted["features"]["x"]["ks_flag"]
