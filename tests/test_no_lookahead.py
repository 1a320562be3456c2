"""The no-look-ahead proof, as a property over random panels.

For every registered feature set and every label: computing on bars truncated
at a random time t gives identical values at every time <= t (labels:
wherever the truncated label's end time is <= t). A deliberately shifted
feature fails the same check (tests/test_features_core.py), so the property
can fail.
"""

import numpy as np
from conftest import make_bars
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_synapse.data.panel import Panel
from keras_synapse.features import FEATURE_SETS
from keras_synapse.features.references import REFERENCE_ROLES
from keras_synapse.labels import LABELS, compute_labels

panels = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000),
    "num_bars": st.integers(300, 700),
    "cut_fraction": st.floats(0.3, 0.95),
    "volatility_scale": st.sampled_from([0.3, 1.0, 3.0]),
})


def random_bars(seed, num_bars, volatility_scale):
    bars = make_bars(num_bars, seed=seed)
    log_close = np.log(bars["close"])
    scaled = np.exp(log_close.iloc[0] + (log_close - log_close.iloc[0]) * volatility_scale)
    ratio = scaled / bars["close"]
    return bars.assign(open=bars["open"] * ratio, high=bars["high"] * ratio, low=bars["low"] * ratio, close=scaled)


def references_for(feature_set, seed, num_bars, cut=None):
    references = {}
    for offset, role in enumerate(REFERENCE_ROLES):
        if role in feature_set.references:
            reference = make_bars(num_bars + 20, seed=seed + 101 + offset)  # runs past the symbol's end
            references[role] = reference if cut is None else reference.loc[:cut]
    return references


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(panels)
def test_every_feature_set_uses_past_bars_only(case):
    bars = random_bars(case["seed"], case["num_bars"], case["volatility_scale"])
    cut = bars.index[int(case["cut_fraction"] * (len(bars) - 1))]
    for name, feature_set in FEATURE_SETS.items():
        full = feature_set.compute(bars, references_for(feature_set, case["seed"], case["num_bars"]))
        truncated = feature_set.compute(
            bars.loc[:cut], references_for(feature_set, case["seed"], case["num_bars"], cut=cut)
        )
        np.testing.assert_allclose(truncated.to_numpy(), full.loc[:cut].to_numpy(), rtol=1e-9, atol=1e-12,
                                   equal_nan=True, err_msg=f"feature set {name} looks ahead")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(panels)
def test_every_label_is_fixed_once_its_end_time_has_passed(case):
    bars = random_bars(case["seed"], case["num_bars"], case["volatility_scale"])
    cut = bars.index[int(case["cut_fraction"] * (len(bars) - 1))]
    for name in LABELS:
        full = compute_labels(Panel({"A": bars}, validate=False), name)["A"]
        truncated = compute_labels(Panel({"A": bars.loc[:cut]}, validate=False), name)["A"]
        known = truncated.end_time.notna()
        assert (truncated.end_time[known] <= cut).all(), name
        np.testing.assert_allclose(truncated.values[known].to_numpy(dtype=float),
                                   full.values[known[known].index].to_numpy(dtype=float), rtol=1e-12,
                                   err_msg=f"label {name} changes after its end time")
        np.testing.assert_array_equal(truncated.end_time[known].to_numpy(), full.end_time[known[known].index].to_numpy())
