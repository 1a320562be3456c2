"""The search driver: trials created into free slots, ended as they complete, failures and resumed trials, no fits."""

import json
import socket
from pathlib import Path

import pytest

from keras_synapse.config import load_experiment
from keras_synapse.errors import SynapseError
from keras_synapse.training.executors import LocalExecutor, TaskOutcome
from keras_synapse.tuning.search import EXECUTOR_REPORT, run_search
from keras_synapse.tuning.search_space import load_search_space
from keras_synapse.tuning.tuners import build_tuner

EXPERIMENT = "experiments/shared_backbone.py"


def fake_score(config, data, objective, trial_dir):
    """A `score_trial` report without a fit: the score is the trial's dropout; trial 1 raises."""
    if trial_dir is not None and Path(trial_dir).name == "trial_1":
        raise ValueError("trial 1 breaks")
    fold = {"index": 0, "objective": config.dropout, "epochs_trained": 1, "n_validation": 10,
            "standard_error": 0.01, "interval_value": config.dropout, "interval_note": ""}
    interval = {"of": f"mean {objective}", "level": 0.95, "low": config.dropout - 0.02,
                "high": config.dropout + 0.02, "standard_error": 0.01, "note": ""}
    return {"objective": objective, "mean": config.dropout, "interval": interval, "n_validation": 10,
            "epochs": config.epochs, "folds": [fold], "host": "fake-host", "pid": 0, "seconds": 0.0,
            "files": {"tensorboard/fold_0/events": b"logged remotely"}}


def always_fails(config, data, objective, trial_dir):
    raise ValueError("nothing works")


class LastInFirstOut:
    """An executor of two slots whose most recently submitted task ends first (as a faster worker's would)."""

    kind, remote = "scripted", True

    def __init__(self):
        self.pending, self.order = [], []

    def capacity(self):
        return 2

    def share(self, value):
        return value

    def submit(self, function, arguments):
        self.pending.append((function, arguments))
        return len(self.order) + len(self.pending)

    def wait_any(self, handles):
        function, arguments = self.pending.pop()
        handle = max(handles)
        self.order.append(handle)
        return handle, TaskOutcome(value=function(*arguments), node=f"node-{handle % 2}")

    def record(self):
        return {"kind": self.kind}


@pytest.fixture
def make_tuner(tmp_path, request):
    def make(max_trials=3):
        config = load_experiment(request.config.rootpath / EXPERIMENT, quick=True)
        tuner = build_tuner(config, load_search_space(request.config.rootpath / EXPERIMENT), "random", "val_ic",
                            max_trials, quick=True, directory=tmp_path)
        tuner.prepared_data = lambda config: "prepared data"  # the fake scores need none
        return tuner
    return make


def _report(tuner, trial_id):
    return json.loads((Path(tuner.get_trial_dir(trial_id)) / "synapse_trial.json").read_text())


def test_locally_each_trial_ends_before_the_next_is_created_and_a_failure_is_recorded(make_tuner, capsys):
    tuner = make_tuner()
    record = run_search(tuner, LocalExecutor(), score=fake_score)
    oracle = tuner.oracle
    assert oracle.start_order == oracle.end_order == ["0", "1", "2"]
    assert oracle.trial_tuners == {"0": "tuner0", "1": "tuner0", "2": "tuner0"}
    assert [oracle.trials[trial].status for trial in ("0", "1", "2")] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert "ValueError: trial 1 breaks" in oracle.trials["1"].message  # the traceback, as keras-tuner records it
    assert "tuner0: trial 1 failed: ValueError: trial 1 breaks" in capsys.readouterr().out
    for trial_id in ("0", "2"):
        trial, report = oracle.trials[trial_id], _report(tuner, trial_id)
        assert trial.score == report["mean"] == pytest.approx(report["values"]["dropout"])
        assert trial.metrics.get_last_value("fold_0_val_ic") == report["folds"][0]["objective"]
        assert trial.metrics.get_last_value("score_standard_error") == 0.01
        assert (report["tuner_id"], report["node"], report["host"]) == ("tuner0", socket.gethostname(), "fake-host")
    assert record["max_concurrent_trials"] == 1 and record["kind"] == "local"
    assert record["trials"]["1"] == {"tuner_id": "tuner0", "node": socket.gethostname(), "host": None,
                                     "status": "FAILED"}
    assert json.loads((Path(tuner.project_dir) / EXECUTOR_REPORT).read_text()) == record
    assert json.loads((Path(tuner.project_dir) / "oracle.json").read_text())["end_order"] == ["0", "1", "2"]


def test_concurrent_trials_end_in_completion_order_and_a_freed_slot_takes_the_next(make_tuner):
    tuner = make_tuner()
    executor = LastInFirstOut()
    record = run_search(tuner, executor, score=fake_score)
    oracle = tuner.oracle
    # Trials 0 and 1 start together; 1 ends first, 2 takes its slot and ends; then 0.
    assert oracle.start_order == ["0", "1", "2"] and oracle.end_order == ["1", "2", "0"]
    assert oracle.trial_tuners == {"0": "tuner0", "1": "tuner1", "2": "tuner1"}
    assert record["max_concurrent_trials"] == 2
    assert {trial: entry["node"] for trial, entry in record["trials"].items()} == {"0": "node-1", "1": "node-0",
                                                                                  "2": "node-1"}
    # A remote task ran without the trial directory (trial 1 did not break): its logs came back as bytes.
    assert all(oracle.trials[trial].status == "COMPLETED" for trial in ("0", "1", "2"))
    assert (Path(tuner.get_trial_dir("1")) / "tensorboard" / "fold_0" / "events").read_bytes() == b"logged remotely"


def test_a_resumed_search_runs_its_unfinished_trial_again_first(make_tuner):
    tuner = make_tuner()
    unfinished = tuner.oracle.create_trial("tuner3")  # as an interrupted run on a bigger cluster leaves it
    assert unfinished.trial_id == "0"
    run_search(tuner, LastInFirstOut(), max_concurrent_trials=1, score=fake_score)
    assert tuner.oracle.end_order == ["0", "1", "2"]
    assert tuner.oracle.trial_tuners == {"0": "tuner3", "1": "tuner0", "2": "tuner0"}


def test_consecutive_failures_stop_the_search_with_the_projects_error(make_tuner):
    tuner = make_tuner(max_trials=5)
    with pytest.raises(SynapseError, match="(?s)consecutive failures.*nothing works"):
        run_search(tuner, LocalExecutor(), score=always_fails)
    assert len(tuner.oracle.end_order) == 3
