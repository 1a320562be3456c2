"""Champion/challenger: a challenger is promoted only when its paired IC difference's interval lies above zero."""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.errors import SynapseError
from keras_synapse.evaluation.champion_challenger import compare_on_holdout


def held_out_rows(num_symbols=10, num_timestamps=400, seed=0):
    rng = np.random.default_rng(seed)
    count = num_symbols * num_timestamps
    return pd.DataFrame({
        "symbol": np.repeat([f"S{index}" for index in range(num_symbols)], num_timestamps),
        "timestamp": np.tile(pd.date_range("2020-01-01", periods=num_timestamps, freq="B", tz="UTC"), num_symbols),
        "forward_return": rng.normal(0, 0.01, count)}), rng


def test_a_challenger_with_a_real_edge_is_promoted_and_its_difference_is_the_direct_one():
    rows, rng = held_out_rows()
    rows["incumbent"] = rng.normal(size=len(rows))
    rows["challenger"] = rows["forward_return"] / 0.01 * 0.3 + rng.normal(size=len(rows))
    decision = compare_on_holdout(rows, horizon=1)
    direct = {name: np.corrcoef(rows[name], rows["forward_return"])[0, 1] for name in ("incumbent", "challenger")}
    assert decision.challenger_ic == pytest.approx(direct["challenger"])
    assert decision.incumbent_ic == pytest.approx(direct["incumbent"])
    assert decision.difference == pytest.approx(direct["challenger"] - direct["incumbent"])
    low, high = decision.difference_interval
    assert 0 < low < decision.difference < high
    assert decision.promote and decision.reason.startswith("challenger promoted")
    assert (decision.num_rows, decision.num_timestamps, decision.num_dropped) == (4000, 400, 0)
    assert f"{decision.challenger_ic:+.4f}" in decision.reason and "4000 held-out rows, 400 timestamps" in decision.reason
    record = decision.to_dict()
    assert record["promote"] is True and record["difference_interval"] == [low, high]


def test_a_worse_challenger_is_not_promoted():
    rows, rng = held_out_rows(seed=1)
    rows["incumbent"] = rows["forward_return"] / 0.01 * 0.3 + rng.normal(size=len(rows))
    rows["challenger"] = rng.normal(size=len(rows))
    decision = compare_on_holdout(rows, horizon=1)
    assert not decision.promote and decision.difference_interval[1] < 0
    assert decision.reason.startswith("incumbent kept: the challenger is worse")


def test_an_equal_challenger_is_not_promoted():
    rows, rng = held_out_rows(seed=2)
    edge = rows["forward_return"] / 0.01 * 0.3
    rows["incumbent"] = edge + rng.normal(size=len(rows))
    rows["challenger"] = edge + rng.normal(size=len(rows))  # the same skill, other noise
    decision = compare_on_holdout(rows, horizon=1)
    low, high = decision.difference_interval
    assert low < 0 < high and not decision.promote
    assert decision.reason.startswith("incumbent kept: the challenger does not beat it")
    # The very same scores: a difference of exactly zero, never a promotion.
    rows["challenger"] = rows["incumbent"]
    same = compare_on_holdout(rows, horizon=1)
    assert same.difference == 0 and same.difference_interval == (0.0, 0.0) and not same.promote


def test_a_constant_incumbent_needs_the_challenger_to_show_an_edge_of_its_own():
    rows, rng = held_out_rows(seed=3)
    rows["incumbent"] = 0.0  # a neutral fallback
    rows["challenger"] = rows["forward_return"] / 0.01 * 0.3 + rng.normal(size=len(rows))
    decision = compare_on_holdout(rows)
    assert np.isnan(decision.incumbent_ic) and decision.promote and "constant" in decision.reason
    assert decision.to_dict()["incumbent_ic"] is None


def test_unusable_rows_are_dropped_or_refused_by_name():
    rows, rng = held_out_rows(num_symbols=2, num_timestamps=20, seed=4)
    rows["incumbent"], rows["challenger"] = rng.normal(size=len(rows)), rng.normal(size=len(rows))
    rows.loc[:4, "forward_return"] = np.nan  # the last bars, whose forward return is not known yet
    assert compare_on_holdout(rows).num_dropped == 5
    with pytest.raises(SynapseError, match=r"lack the column\(s\) \['challenger'\]"):
        compare_on_holdout(rows.drop(columns="challenger"))
    with pytest.raises(SynapseError, match="repeat \\(symbol, timestamp\\) pairs \\(1 repeats, the first: S0"):
        compare_on_holdout(pd.concat([rows, rows.iloc[[7]]]))
    with pytest.raises(SynapseError, match="Too few held-out rows .* 9 usable rows on 9 timestamps"):
        compare_on_holdout(rows.iloc[5:14])


def draw_holdout(seed, challenger_ic, incumbent_ic, num_timestamps=250, num_symbols=40):
    """Scores with the given true ICs against i.i.d. outcomes (independent noise for each model)."""
    rng = np.random.default_rng(seed)
    outcome = rng.normal(size=num_timestamps * num_symbols)

    def score(ic):
        return ic * outcome + np.sqrt(1 - ic ** 2) * rng.normal(size=outcome.size)

    return pd.DataFrame({"symbol": np.tile(np.arange(num_symbols), num_timestamps),
                         "timestamp": np.repeat(np.arange(num_timestamps), num_symbols), "forward_return": outcome,
                         "incumbent": score(incumbent_ic), "challenger": score(challenger_ic)})


def test_at_realistic_strengths_a_real_gain_is_promoted_most_of_the_time_and_a_tie_rarely():
    # A year of daily bars on 40 symbols: the gain these rows detect with 80% power is ~0.04 IC.
    gains = [compare_on_holdout(draw_holdout(seed, 0.06, 0.0), num_resamples=300, seed=seed) for seed in range(20)]
    ties = [compare_on_holdout(draw_holdout(100 + seed, 0.03, 0.03), num_resamples=300, seed=seed)
            for seed in range(20)]
    assert all(0.03 < decision.minimum_detectable_difference < 0.05 for decision in gains + ties)
    assert sum(decision.promote for decision in gains) >= 15
    assert sum(decision.promote for decision in ties) <= 2
