"""bench edge power's executors: the order of its runs, their record, the thread counts, what is refused.

The runs on a real two-node Ray cluster are in tests/test_ray_cluster.py, on the cluster it shares.
"""

import argparse
import json

import pytest

from keras_synapse.bench import edge
from keras_synapse.errors import ConfigError

def power_arguments(**changes):
    parser = argparse.ArgumentParser()
    edge.add_arguments(parser)
    return argparse.Namespace(**{**vars(parser.parse_args(["power"])), **changes})


def test_the_local_executor_runs_every_cell_in_order_and_records_it(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_power_run(kind, oracle_ic, seed, output, num_symbols, num_bars, experiment, extra_arguments,
                       cpus_per_task):
        calls.append((experiment.name, num_symbols, kind, oracle_ic, seed, num_bars, experiment.read_text(),
                      extra_arguments, cpus_per_task))
        return {"experiment": experiment.stem, "symbols": num_symbols, "kind": kind or "null", "oracle_ic": oracle_ic,
                "seed": seed, "model_ic": 0.01 * seed, "model_edge": False, "baseline_ic": 0.0,
                "baseline_edge": False, "beats_baseline": False, "minimum_detectable_ic": 0.04,
                "realized_oracle_ic": None if kind is None else 0.05, "oracle_edge": None if kind is None else True,
                "model_ratio": None if kind is None else 0.2, "baseline_ratio": None if kind is None else 0.0,
                "oracle_minimum_detectable_ic": None if kind is None else 0.02}

    monkeypatch.setattr(edge, "power_run", fake_power_run)
    args = power_arguments(seeds=2, kinds="ar1", strengths="0.05", symbols="3,4", bars=300, overrides=["epochs=1"],
                           json_path=str(tmp_path / "power.json"), results=str(tmp_path / "power.csv"),
                           plot=str(tmp_path / "curve.png"))
    result = edge.bench_power(args)
    # Per experiment (the main one, then the design's original protocol) and universe size: the null first, then
    # each kind x strength, each over the seeds; the driver's experiment file in every run.
    cells = [(size, kind, strength, seed) for size in (3, 4) for kind, strength in ((None, 0.0), ("ar1", 0.05))
             for seed in (0, 1)]
    experiments = (edge.MAIN_EXPERIMENT, edge.REFERENCE_EXPERIMENT)
    assert [call[:5] for call in calls] == [(path.name, *cell) for path in experiments for cell in cells]
    assert all(call[5:] == (300, (edge.EXPERIMENTS / call[0]).read_text(), ["--set=epochs=1"], None)
               for call in calls)
    assert json.loads((tmp_path / "power.json").read_text())["rows"] == result["rows"]
    assert result["executor"]["kind"] == "local" and result["executor"]["tasks"] == 16
    assert len(result["runs"]) == 16 and (tmp_path / "power.csv").is_file()
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    output = capsys.readouterr().out
    assert "shared_backbone 4 symbols ar1             0.050 seed 1: model IC +0.0100 (20% of the oracle's +0.0500)" \
        in output
    # One table row per experiment, size, kind and strength; MDE x is the model's over the oracle's.
    assert any(line.split()[:5] == ["original_backbone", "4", "ar1", "0.050", "2"] and line.split()[7] == "2.00"
               for line in output.splitlines())
    assert "executor:" not in output  # a local run prints what it printed before executors


def test_power_refuses_unknown_experiments_and_bad_universe_sizes():
    with pytest.raises(ConfigError, match="not found: .*no_such.py"):
        edge.power_cells(power_arguments(experiments="no_such.py"))
    with pytest.raises(ConfigError, match="symbol counts >= 2.*Received: '10,x'"):
        edge.power_cells(power_arguments(symbols="10,x"))


def test_a_training_process_gets_the_thread_counts_and_other_checks_refuse_an_executor():
    environment = edge.thread_environment(2)
    assert (environment["TF_NUM_INTRAOP_THREADS"], environment["OMP_NUM_THREADS"],
            environment["TF_NUM_INTEROP_THREADS"]) == ("2", "2", "1")
    assert edge.thread_environment(None) is None
    with pytest.raises(ConfigError, match="apply to `bench edge power` only"):
        edge.bench_edge(power_arguments(check="null", executor="ray"))
    with pytest.raises(ConfigError, match="--executor"):
        edge.bench_power(power_arguments(executor="spark"))
