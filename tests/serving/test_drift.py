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


def flag_column(table):
    """The `flag` cell of each feature row of a `format_drift_report` table."""
    header, *rows = table.splitlines()[1:-1]
    start = header.index("flag")
    return [row[start:start + 9].strip() for row in rows if not row.startswith("not in the data")]


def test_each_flag_names_the_test_that_raised_it_and_the_counts_agree_with_the_rows():
    """A 0.4-sd shift on 20,000 rows: PSI alone is moderate, KS flags drift. The row and the counts say KS."""
    reference = training_distributions(rows(20000, seed=0), NAMES)
    report = drift_report(reference, rows(20000, seed=3, shift=0.4))
    returns = report["features"]["returns"]
    assert returns["psi_level"] == "moderate" and returns["ks_flag"]
    assert returns["flag"] == "drift" and returns["flagged_by"] == ["ks"]
    assert returns["reason"] == (f"KS {returns['ks_statistic']:.3f} >= 0.1 with p {returns['ks_p_value']:.1e} "
                                 "< 0.01")
    assert report["drifted"] == ["returns"] and report["moderate"] == []
    table = format_drift_report(report)
    # The table used to show the PSI level ("moderate") beside the KS flag, and "0 moderate" under it.
    assert "moderate" not in "\n".join(table.splitlines()[2:-1])
    flags = flag_column(table)
    assert flags == ["DRIFT", "", ""]
    assert table.splitlines()[-1] == "1 drifted (by PSI 0, by KS 1), 0 moderate of 3 features"

    # PSI raises a flag of its own: drift above 0.25 (with KS here too), moderate in 0.1-0.25 without KS.
    new = rows(2000, seed=2, shift=1.0)
    new[:, 1] *= 3.0
    both = drift_report(reference, new)["features"]["returns"]
    assert both["flagged_by"] == ["psi", "ks"] and both["reason"].startswith(f"PSI {both['psi']:.3f} > 0.25; KS ")
    moderate = drift_report(reference, rows(200, seed=5, shift=0.35))
    result = moderate["features"]["returns"]
    assert result["flag"] == "moderate" and result["flagged_by"] == ["psi"] and not result["ks_flag"]
    assert result["reason"] == f"PSI {result['psi']:.3f} in 0.1-0.25"
    table = format_drift_report(moderate)
    assert flag_column(table).count("moderate") == len(moderate["moderate"]) == 1
    assert table.splitlines()[-1].endswith(", 1 moderate of 3 features")


def test_the_counts_agree_with_the_rows_on_many_mixed_reports():
    reference = training_distributions(rows(5000, seed=0), NAMES)
    rng = np.random.default_rng(7)
    for seed in range(12):
        new = rows(int(rng.integers(200, 4000)), seed=seed + 10, shift=rng.uniform(0, 0.6), scale=rng.uniform(0.8, 1.3))
        report = drift_report(reference, new)
        flags = flag_column(format_drift_report(report))
        counts = format_drift_report(report).splitlines()[-1]
        assert counts.startswith(f"{flags.count('DRIFT')} drifted ")
        assert counts.endswith(f", {flags.count('moderate')} moderate of 3 features")
