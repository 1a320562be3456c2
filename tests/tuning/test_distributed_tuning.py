"""Distributed tuning end to end on loopback: a chief oracle and two workers, one `tune` command each."""

import json
import os
import socket
import subprocess
import sys

import pytest

MAX_TRIALS = 4
COMMAND = ["-m", "keras_synapse.tune", "experiments/shared_backbone.py", "--max-trials", str(MAX_TRIALS), "--quick",
           "--epochs", "1", "--set", "n_splits=2", "--set", "stride=10", "--no-train"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_search(tmp_path_factory, request):
    directory = tmp_path_factory.mktemp("tuning")
    port = str(free_port())
    processes = {}
    # The chief first: workers block (wait_for_ready) until it listens.
    for tuner_id in ("chief", "tuner0", "tuner1"):
        environment = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
                       "KERASTUNER_ORACLE_PORT": port, "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes[tuner_id] = subprocess.Popen(
            [sys.executable, *COMMAND, "--directory", str(directory), "--tuned-file", str(directory / "tuned.py")],
            cwd=request.config.rootpath, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=300)[0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for tuner_id, process in processes.items():
        assert process.returncode == 0, f"{tuner_id} failed:\n{outputs[tuner_id][-4000:]}"
    return directory / "shared_backbone_random_val_ic", outputs


def test_the_oracle_recorded_every_trial_and_both_workers_ran_some(distributed_search):
    project, _ = distributed_search
    oracle = json.loads((project / "oracle.json").read_text())
    trial_tuners = oracle["trial_tuners"]
    assert len(trial_tuners) == MAX_TRIALS
    assert set(trial_tuners.values()) == {"tuner0", "tuner1"}  # spread over both workers, none on the chief
    statuses = {path.parent.name: json.loads(path.read_text())["status"] for path in project.glob("trial_*/trial.json")}
    assert len(statuses) == MAX_TRIALS and set(statuses.values()) == {"COMPLETED"}


def test_each_worker_wrote_reports_of_the_trials_the_oracle_gave_it(distributed_search):
    project, outputs = distributed_search
    oracle = json.loads((project / "oracle.json").read_text())
    for trial_id, tuner_id in oracle["trial_tuners"].items():
        report = json.loads((project / f"trial_{trial_id}" / "synapse_trial.json").read_text())
        assert report["tuner_id"] == tuner_id
        assert len(report["folds"]) == 2 and all(fold["n_validation"] > 0 for fold in report["folds"])
        trial = json.loads((project / f"trial_{trial_id}" / "trial.json").read_text())
        # The score the chief's oracle holds is the mean the worker computed.
        assert trial["score"] == pytest.approx(report["mean"])
    for tuner_id in ("tuner0", "tuner1"):
        assert f"{tuner_id}: the oracle has no more trials" in outputs[tuner_id]


def test_the_chief_prints_the_table_and_writes_the_tuned_experiment(distributed_search):
    from keras_synapse.config import load_experiment

    project, outputs = distributed_search
    assert "mean val_ic" in outputs["chief"] and "tuner0" in outputs["chief"] and "tuner1" in outputs["chief"]
    assert (project / "results.csv").read_text().count("COMPLETED") == MAX_TRIALS
    config = load_experiment(project.parent / "tuned.py")
    assert config.name == "shared_backbone_tuned" and config.n_splits == 2
