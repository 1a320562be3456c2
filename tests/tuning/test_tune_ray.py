"""Tuning on a real two-node Ray cluster (loopback): trials on both nodes, the same scores as a local search."""

import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("ray")

from ray_cluster import ENVIRONMENT, loopback_cluster  # noqa: E402

PROJECT = "shared_backbone_random_val_ic"


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
def cluster(tmp_path_factory):
    with loopback_cluster(tmp_path_factory.mktemp("ray_cluster"), cpus_per_node=1) as address:
        yield address


@pytest.fixture(scope="module")
def searches(cluster, tmp_path_factory, request):
    """The same search on the loopback cluster and locally, run at the same time (~1 min on 2 CPUs)."""
    root = tmp_path_factory.mktemp("tune_ray")
    environment = {**ENVIRONMENT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    environment.pop("RAY_ADDRESS", None)
    (root / "local").mkdir()
    (root / "ray").mkdir()
    local = subprocess.Popen(tune_command(root / "local", "local"), cwd=request.config.rootpath, env=environment,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        remote = subprocess.run(tune_command(root / "ray", "ray"), cwd=request.config.rootpath,
                                env={**environment, "RAY_ADDRESS": cluster}, capture_output=True, text=True,
                                timeout=400)
        local_output = local.communicate(timeout=400)[0]
    finally:
        if local.poll() is None:
            local.kill()
            local.wait()
    remote_output = remote.stdout + remote.stderr
    assert remote.returncode == 0, remote_output[-4000:]
    assert local.returncode == 0, local_output[-4000:]
    return root, local_output, remote_output


def die_once(marker):
    """Kills its own worker the first time (a machine lost mid-trial), then returns."""
    if not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return "survived"


def raise_value_error():
    raise ValueError("the trial's own error")


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
