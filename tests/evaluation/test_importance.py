"""Permutation importance finds the feature a scorer uses, and only that one."""

import numpy as np
import pandas as pd

from keras_synapse.evaluation.importance import format_importance, importance_of_run, permuted_scores


def test_only_the_feature_the_scorer_reads_matters():
    rng = np.random.default_rng(0)
    num_windows, length, names = 3_000, 10, ["noise_a", "signal", "noise_b"]
    sequence = rng.standard_normal((num_windows, length, len(names))).astype(np.float32)
    # A realistic edge: the outcome correlates 0.1 with the last bar of `signal`.
    outcome = 0.1 * sequence[:, -1, 1] + np.sqrt(1 - 0.01) * rng.standard_normal(num_windows)

    def score(inputs):
        return inputs["sequence"][:, -1, 1] + 0.0 * inputs["sequence"][:, -1, 0]

    frame = pd.DataFrame({"timestamp": np.repeat(np.arange(num_windows // 3), 3).astype("datetime64[D]"),
                          "target": outcome, "reference": outcome, "prediction": score({"sequence": sequence})})
    permuted = permuted_scores(score, {"sequence": sequence}, {"sequence": names}, seed=1)
    assert set(permuted) == {f"permuted:{name}" for name in names}
    importance = importance_of_run(frame, pd.DataFrame(permuted), horizon=1, num_resamples=300, seed=0)
    assert list(importance)[0] == "signal" and importance["signal"]["used"]
    assert 0.05 < importance["signal"]["ic_drop"] < 0.15  # the whole IC of about 0.1 is lost
    for name in ("noise_a", "noise_b"):  # permuting what the scorer ignores changes nothing
        assert importance[name]["ic_drop"] == 0 and not importance[name]["used"]
    assert "1 of 3 features measurably used (interval above zero), 0 hurt" in format_importance(importance)
    # A scorer that reads a feature against the outcome loses by it: scrambling the feature raises the IC.
    both = outcome + 0.1 * sequence[:, -1, 0]

    def contrary(inputs):
        return inputs["sequence"][:, -1, 1] - inputs["sequence"][:, -1, 0]

    frame = frame.assign(prediction=contrary({"sequence": sequence}), target=both, reference=both)
    permuted = permuted_scores(contrary, {"sequence": sequence}, {"sequence": names}, seed=1)
    importance = importance_of_run(frame, pd.DataFrame(permuted), horizon=1, num_resamples=300, seed=0)
    assert importance["noise_a"]["hurts"] and importance["signal"]["used"] and not importance["noise_b"]["hurts"]
    assert "hurts (rises when scrambled)" in format_importance(importance)
