"""The edge verdict against known truth, through the whole command line.

A planted edge must be found and most of it recovered; driftless random walks
must be called edge-free. `python -m keras_synapse.bench edge` runs the full
versions (the full-size planted universe; 20 random-walk seeds).
"""

import pytest

from keras_synapse.bench_edge import NULL_EXPERIMENT, PLANTED_EXPERIMENT, null_run, oracle_comparison, train_run


def test_a_planted_edge_is_found_with_at_least_80_percent_of_the_oracles_ic(tmp_path):
    result = oracle_comparison(train_run(PLANTED_EXPERIMENT, tmp_path, ["--quick"]))
    print(f"\nplanted edge (--quick): model IC {result['model_ic']:+.4f}, oracle IC {result['oracle_ic']:+.4f}, "
          f"ratio {result['ratio']:.1%}")
    assert result["edge_significant"]
    assert result["ratio"] >= 0.8


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_walk_universe_has_no_edge(seed, tmp_path):
    result = null_run(seed, tmp_path, quick=True)
    assert not result["edge_significant"], result


def test_the_oracle_is_only_defined_for_synthetic_data(tmp_path):
    (tmp_path / "config.json").write_text('{"data": "sample"}')
    with pytest.raises(ValueError, match="only for `synthetic:` data. Received: data='sample'"):
        oracle_comparison(tmp_path)


def test_both_experiments_name_their_command():
    for experiment in (PLANTED_EXPERIMENT, NULL_EXPERIMENT):
        assert f"python -m keras_synapse.train experiments/{experiment.name}" in experiment.read_text()
