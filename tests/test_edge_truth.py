"""The edge verdict against known truth, through the whole command line.

A planted edge of realistic size must be found, and the verdict must say
whether the model beat its best baseline; driftless random walks must be
called edge-free. `python -m keras_synapse.bench edge power` runs the full
versions (every planted kind at two strengths, and the null, over seeds).
"""

import json

import pytest

from keras_synapse.bench.edge import NULL_EXPERIMENT, PLANTED_EXPERIMENT, null_run, oracle_comparison, train_run
from keras_synapse.errors import ConfigError


def test_a_realistic_planted_edge_is_found_and_judged_against_the_best_baseline(tmp_path):
    # Oracle IC 0.08 in the population (not the 0.5 no market has): time-series momentum under volatility regimes.
    run_dir = train_run(PLANTED_EXPERIMENT, tmp_path, ["--quick"])
    result = oracle_comparison(run_dir)
    summary = json.loads((run_dir / "metrics.json").read_text())["summary"]
    best = summary["best_baseline"]
    print(f"\nplanted edge (--quick): model {result['statistic']} {result['model_ic']:+.4f}, oracle "
          f"{result['oracle_ic']:+.4f} on the same windows ({result['ratio']:.0%}); best baseline {best}: "
          f"{summary['versus_baselines'][best]}; minimum detectable {summary['minimum_detectable_ic']:.4f}")
    assert result["oracle_ic"] < 0.12 and result["statistic"] == "within_fold_rank_ic"  # a time-series strategy
    # The run says it could have seen an edge the size of the planted one. (The model's own figure may lie below
    # that 80%-power size and still be detected: the minimum detectable value is not a detection threshold.)
    assert 0 < summary["minimum_detectable_ic"] < result["oracle_ic"]
    # The verdict finds the edge: in the model, or, where the model misses it (the shared backbone recovers
    # ~40% of a linear edge, at the edge of this run's power), in the baselines that hold it, saying so.
    if result["edge_significant"]:
        # It names the best baseline and says, from the paired interval, whether the model beat it.
        beats = summary["versus_baselines"][best]["beats"]
        assert f"{'better than the best baseline, ' if beats else 'no better than '}{best}" in summary["verdict"]
    else:
        assert summary["baselines_with_an_edge"], summary["verdict"]
        assert "the data hold an edge this model missed" in summary["verdict"]
        assert all(item["ci_low"] > 0 and item["level"] == summary["versus_baselines"][best]["level"]
                   for item in summary["baselines_with_an_edge"].values())


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_walk_universe_has_no_edge(seed, tmp_path):
    result = null_run(seed, tmp_path, quick=True)
    assert not result["edge_significant"], result


def test_the_oracle_is_only_defined_for_synthetic_data(tmp_path):
    (tmp_path / "config.json").write_text('{"data": "sample"}')
    with pytest.raises(ConfigError, match="only for `synthetic:` data. Received: data='sample'"):
        oracle_comparison(tmp_path)


def test_both_experiments_name_their_command():
    for experiment in (PLANTED_EXPERIMENT, NULL_EXPERIMENT):
        assert f"python -m keras_synapse.train experiments/{experiment.name}" in experiment.read_text()


def test_the_power_table_counts_detections_and_averages_shares_of_the_oracle():
    from keras_synapse.bench.edge import planted_data, power_table

    rows = [{"kind": "null", "oracle_ic": 0.0, "seed": seed, "model_ic": 0.01, "model_edge": False,
             "baseline_ic": 0.0, "baseline_edge": seed == 0, "beats_baseline": False, "minimum_detectable_ic": 0.04,
             "realized_oracle_ic": None, "oracle_edge": None, "model_ratio": None, "baseline_ratio": None}
            for seed in range(2)]
    rows += [{"kind": "ar1", "oracle_ic": 0.05, "seed": seed, "model_ic": 0.02, "model_edge": seed == 1,
              "baseline_ic": 0.04, "baseline_edge": True, "beats_baseline": False, "minimum_detectable_ic": 0.03,
              "realized_oracle_ic": 0.05, "oracle_edge": True, "model_ratio": ratio, "baseline_ratio": 0.8}
             for seed, ratio in enumerate((0.2, 0.6))]
    table = power_table(rows).splitlines()
    assert table[0].startswith("(realized, MDE and the ratios in each run's primary statistic")
    assert table[2].split()[:2] == ["null", "0.000"] and "1/2" in table[2]
    assert table[3].split() == ["ar1", "0.050", "2", "0.0500", "0.0300", "2/2", "1/2", "40%", "2/2", "80%", "0/2"]
    assert planted_data("ar1", 0.05, 3, 20, 4032) == \
        "synthetic:num_symbols=20,num_bars=4032,seed=3,signal=ar1,oracle_ic=0.05"
    assert planted_data(None, 0.0, 3, 20, 4032) == "synthetic:num_symbols=20,num_bars=4032,seed=3"
