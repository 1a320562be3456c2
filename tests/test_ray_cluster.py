"""Scale-out on a real two-node Ray cluster on 127.0.0.1: train's folds, tune's trials and bench edge's runs run
on both nodes and give the local executor's figures; a task survives its worker's death.

The cluster (a head and a second node, each its own `ray start` process with
one CPU) is started once for the module and torn down by it. Each Ray run is
compared with a local run given the same `--cpus-per-task 1` (TensorFlow's
thread count), run at the same time.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ray_cluster import ENVIRONMENT, loopback_cluster

REPOSITORY = Path(__file__).resolve().parents[1]
PROJECT = "shared_backbone_random_val_ic"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with loopback_cluster(tmp_path_factory.mktemp("ray"), cpus_per_node=1) as address:
        yield address


def without_ray_address():
    environment = {**ENVIRONMENT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    environment.pop("RAY_ADDRESS", None)
    return environment


def run_beside(local_command, remote_command, cluster, timeout=500):
    """Runs a command locally and, at the same time, on the cluster; returns both outputs once both succeeded."""
    environment = without_ray_address()
    local = subprocess.Popen(local_command, cwd=REPOSITORY, env=environment, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        remote = subprocess.run(remote_command, cwd=REPOSITORY, env={**environment, "RAY_ADDRESS": cluster},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        local_output = local.communicate(timeout=timeout)[0]
    finally:
        if local.poll() is None:
            local.kill()
            local.wait()
    assert remote.returncode == 0, remote.stdout[-4000:]
    assert local.returncode == 0, local_output[-4000:]
    return local_output, remote.stdout


def train_command(root, *options):
    # Two folds and the final refit of two epochs on every fifth window: three tasks for two nodes.
    return [sys.executable, "-m", "keras_synapse.train", "experiments/shared_backbone.py", "--quick",
            "--epochs", "2", "--set", "n_splits=2", "--set", "stride=5", "--cpus-per-task", "1",
            "--output", str(root / "runs"),
            "--registry", str(root / "saved_models"), *options]


def test_train_runs_its_folds_on_both_nodes_and_gives_the_local_metrics(cluster, tmp_path):
    run_beside(train_command(tmp_path / "local"), train_command(tmp_path / "ray", "--executor", "ray"), cluster)
    remote, local = (json.loads(next((tmp_path / name / "runs").glob("*/*/metrics.json")).read_text())
                     for name in ("ray", "local"))
    executor = remote["executor"]
    assert executor["kind"] == "ray" and executor["address"] == cluster
    assert executor["tasks"] == len(remote["folds"]) + 1  # every fold and the final refit
    assert len(executor["nodes"]) == 2  # both nodes fitted
    assert [fold["metrics"] for fold in remote["folds"]] == [fold["metrics"] for fold in local["folds"]]
    assert remote["summary"] == local["summary"] and remote["baselines"] == local["baselines"]
    assert local["executor"]["kind"] == "local"



def tune_command(directory, executor):
    # The smallest search that still runs two trials at once: one fold, one epoch, every tenth window.
    return [sys.executable, "-m", "keras_synapse.tune", "experiments/shared_backbone.py", "--max-trials", "2",
            "--quick", "--epochs", "1", "--set", "n_splits=1", "--set", "stride=10", "--no-train",
            "--executor", executor, "--cpus-per-task", "1", "--directory", str(directory / "tuning"),
            "--tuned-file", str(directory / "tuned.py")]


def trial_reports(directory):
    return {path.parent.name: json.loads(path.read_text())
            for path in (directory / "tuning" / PROJECT).glob("trial_*/synapse_trial.json")}


def best_line(output):
    return re.search(r"best trial (\S+): mean val_ic ([+-]\d+\.\d+)", output).groups()


@pytest.fixture(scope="module")
def searches(cluster, tmp_path_factory):
    """The same search on the loopback cluster and locally, run at the same time (~1 min on 2 CPUs)."""
    root = tmp_path_factory.mktemp("tune_ray")
    (root / "local").mkdir()
    (root / "ray").mkdir()
    local_output, remote_output = run_beside(tune_command(root / "local", "local"), tune_command(root / "ray", "ray"),
                                             cluster, timeout=400)
    return root, local_output, remote_output


def die_once(marker):
    """Kills its own worker the first time (a machine lost mid-trial), then returns."""
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return "survived"


def raise_value_error():
    raise ValueError("the trial's own error")


def test_the_trials_ran_at_once_on_both_nodes(searches):
    root, _, _ = searches
    record = json.loads((root / "ray" / "tuning" / PROJECT / "executor.json").read_text())
    assert record["kind"] == "ray" and record["tasks"] == 2 and record["cpus_per_task"] == 1
    nodes = {trial["node"] for trial in record["trials"].values()}
    assert len(nodes) == 2 and set(record["nodes"]) == nodes
    assert record["max_concurrent_trials"] == 2
    assert {trial["tuner_id"] for trial in record["trials"].values()} == {"tuner0", "tuner1"}
    for trial_id, report in trial_reports(root / "ray").items():
        assert report["node"] == record["trials"][trial_id.removeprefix("trial_")]["node"]
        # The TensorBoard logs written on the worker came back into the trial's directory.
        assert list((root / "ray" / "tuning" / PROJECT / trial_id / "tensorboard" / "fold_0").rglob("*.v2"))


def test_ray_and_local_searches_give_the_same_trials_scores_and_best(searches):
    root, local_output, remote_output = searches
    local, remote = trial_reports(root / "local"), trial_reports(root / "ray")
    assert sorted(local) == sorted(remote) == ["trial_0", "trial_1"]
    for trial_id in local:
        assert remote[trial_id]["values"] == local[trial_id]["values"]
        assert remote[trial_id]["mean"] == local[trial_id]["mean"]
        assert [fold["objective"] for fold in remote[trial_id]["folds"]] == \
            [fold["objective"] for fold in local[trial_id]["folds"]]
        assert remote[trial_id]["interval"] == local[trial_id]["interval"]
    assert best_line(remote_output) == best_line(local_output)
    print(f"local {best_line(local_output)}, ray {best_line(remote_output)}")


def test_submitted_tasks_survive_a_dead_worker_and_report_their_own_errors(cluster, tmp_path, monkeypatch):
    import ray
    import ray.cloudpickle

    from keras_synapse.training.executors import RayExecutor

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    # This test module is not importable on the workers: its functions travel by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        executor = RayExecutor(cluster)
        assert executor.capacity() == 2
        handles = [executor.submit(die_once, (tmp_path / "marker",)), executor.submit(raise_value_error, ())]
        first = executor.wait_any(handles)
        outcomes = dict([first, executor.wait_any([handle for handle in handles if handle != first[0]])])
        survived, failed = outcomes[handles[0]], outcomes[handles[1]]
        assert survived.value == "survived" and survived.error is None and survived.node
        assert isinstance(failed.error, ValueError) and "the trial's own error" in str(failed.error)
        assert (tmp_path / "marker").read_text() == "died"  # the first attempt died; Ray ran it again
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()


# The smallest power check: the null and one planted row, one seed each (two runs, one per node), on a
# tiny universe, one fold, one epoch of a small network and no permutation importance.
SMALLEST_POWER = ["edge", "power", "--seeds", "1", "--kinds", "ar1", "--strengths", "0.05", "--symbols", "3",
                  "--bars", "300", "--set", "epochs=1", "--set", "n_splits=1", "--set", "lstm_units=8,4",
                  "--set", "feature_importance=false", "--cpus-per-task", "1", "--experiments", "shared_backbone.py"]


def bench(arguments, json_path, environment):
    return subprocess.Popen([sys.executable, "-m", "keras_synapse.bench", *SMALLEST_POWER, *arguments,
                             "--json", str(json_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=environment, cwd=REPOSITORY)


def finished(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]
    return output


def test_bench_edge_power_runs_as_ray_tasks_on_both_nodes_with_the_local_figures(cluster, tmp_path):
    # The local reference trains beside the Ray run: the figures depend on the seeds and the thread counts only.
    local = bench(["--executor", "local"], tmp_path / "local.json", without_ray_address())
    try:
        output = finished(bench(["--executor", "ray"], tmp_path / "ray.json",
                                {**without_ray_address(), "RAY_ADDRESS": cluster}))
    finally:
        local_output = finished(local)
    on_ray, here = (json.loads((tmp_path / name).read_text()) for name in ("ray.json", "local.json"))
    # Both nodes ran a task, and the record says which ran what.
    assert on_ray["executor"]["kind"] == "ray" and on_ray["executor"]["tasks"] == 2
    assert len(on_ray["executor"]["nodes"]) == 2 and len({run["node"] for run in on_ray["runs"]}) == 2
    assert here["executor"] == {"kind": "local", "cpus_per_task": 1, "tasks": 2, "nodes": here["executor"]["nodes"]}
    # The same seeds on one thread each: the very same figures, and the same table.
    assert [row["kind"] for row in on_ray["rows"]] == ["null", "ar1"]
    assert on_ray["rows"] == here["rows"]
    table = [line for line in output.splitlines() if line.startswith(("experiment ", "shared_backbone "))
             and " seed " not in line]  # the header and its two rows, not each run's own line
    assert len(table) == 3 and all(line in local_output.splitlines() for line in table)
    assert "tasks per node" in output
