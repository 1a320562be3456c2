"""The tune command: search folds before the test folds, scoring, the tuned experiment file, end to end."""

import dataclasses
import json
import shutil

import keras_tuner
import numpy as np
import pytest

from keras_synapse.config import ExperimentConfig, load_experiment
from keras_synapse.errors import ConfigError
from keras_synapse.tune import (
    build_tuner,
    data_key,
    fold_score,
    load_search_space,
    parse_args,
    role,
    run,
    search_folds,
    search_values,
    write_tuned_experiment,
)
from keras_synapse.validation import GappedTimeSeriesCV

EXPERIMENT = "experiments/shared_backbone.py"


def test_search_folds_lie_before_the_first_test_fold():
    calendar = np.arange("2000-01-01", "2004-01-01", dtype="datetime64[D]")
    config = ExperimentConfig()
    first_test = GappedTimeSeriesCV(config.n_splits, config.test_size, config.gap).split(calendar)[0]
    folds = search_folds(calendar, config)
    assert len(folds) == config.n_splits
    # Every search fold, its test block included, ends `gap` bars before the first test fold.
    assert all(fold.test_end <= first_test.train_end < first_test.test_start for fold in folds)
    assert np.sum((calendar > folds[-1].test_end) & (calendar < first_test.test_start)) == config.gap
    with pytest.raises(ConfigError, match="search period"):
        search_folds(calendar[:40], config)


def test_a_fold_scores_the_objective_at_the_epoch_early_stopping_kept():
    history = {"val_loss": [1.0, 0.8, 0.9, 0.8], "val_ic": [0.01, 0.02, 0.09, 0.03]}
    assert fold_score(history, "val_ic") == (0.02, 1)  # not the best val_ic of any epoch (0.09)
    assert fold_score(history, "val_loss") == (0.8, 1)
    assert np.isnan(fold_score({"val_loss": [np.nan]}, "val_ic")[0])
    assert np.isnan(fold_score({"val_loss": [1.0]}, "val_rank_ic")[0])


def test_search_space_values_are_checked_and_plain(request):
    base = ExperimentConfig()
    search_space = load_search_space(request.config.rootpath / EXPERIMENT)
    values = search_values(search_space, keras_tuner.HyperParameters(), base)
    # The declared defaults are the experiment's own.
    assert dataclasses.replace(base, **values) == dataclasses.replace(base, loss="mse")
    assert values["lstm_units"] == (64, 32)
    with pytest.raises(ConfigError, match="unknown config field"):
        search_values(lambda hp: {"units": 3}, keras_tuner.HyperParameters(), base)
    with pytest.raises(ConfigError, match="must return a dict"):
        search_values(lambda hp: [3], keras_tuner.HyperParameters(), base)
    with pytest.raises(ConfigError, match="defines no `search_space"):
        load_search_space(request.config.rootpath / "experiments" / "transformer.py")


def test_data_is_prepared_once_per_data_setting():
    base = ExperimentConfig()
    assert data_key(base) == data_key(dataclasses.replace(base, dropout=0.1, lstm_units=(8,), loss="mse"))
    assert data_key(base) != data_key(dataclasses.replace(base, sequence_length=40))
    assert data_key(base) != data_key(dataclasses.replace(base, features="technical"))


def test_objectives_that_cannot_compare_trials_are_refused(tmp_path, request):
    search_space = load_search_space(request.config.rootpath / EXPERIMENT)
    with pytest.raises(ConfigError, match="varies the loss"):
        build_tuner(ExperimentConfig(), search_space, "random", "val_loss", 2, directory=tmp_path)
    with pytest.raises(ConfigError, match="log no val_ic"):
        build_tuner(ExperimentConfig(heads="main=forward_return", label="forward_return"), search_space, "random",
                    "val_ic", 2, directory=tmp_path)


def test_the_distributed_role_comes_from_keras_tuner_variables(monkeypatch):
    for name in ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        monkeypatch.delenv(name, raising=False)
    assert role() == "standalone"
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(ConfigError, match="KERASTUNER_ORACLE_PORT"):
        role()
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    assert role() == "chief"
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner3")
    assert role() == "worker"


@pytest.mark.parametrize("beside_base", [True, False])
def test_the_tuned_experiment_file_reproduces_the_tuned_config(tmp_path, request, beside_base):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    base_file = experiments / "shared_backbone.py"
    shutil.copy(request.config.rootpath / EXPERIMENT, base_file)
    tuned_file = (experiments if beside_base else tmp_path / "elsewhere") / "tuned_shared_backbone.py"
    tuned = {"lstm_units": (32, 16), "dropout": 0.3, "loss": "correlation_aware:0.5"}
    write_tuned_experiment(tuned_file, base_file, "shared_backbone_tuned", tuned, {"epochs": 1, "stride": 10},
                           summary="Best of the search: trial 3.", command="python -m keras_synapse.tune ...")
    text = tuned_file.read_text()
    assert ("import shared_backbone" in text) == beside_base
    assert "python -m keras_synapse.train" in text and "Best of the search: trial 3." in text
    for quick in (False, True):
        expected = dataclasses.replace(load_experiment(base_file, quick=quick), name="shared_backbone_tuned",
                                       epochs=1, stride=10, **tuned)
        assert load_experiment(tuned_file, quick=quick) == expected


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, request):
    """Two random-search trials on quick data, then the tuned experiment trained and registered (~45 s)."""
    root = tmp_path_factory.mktemp("tune")
    args = parse_args([str(request.config.rootpath / EXPERIMENT), "--max-trials", "2", "--quick", "--epochs", "1",
                       "--set", "n_splits=1", "--set", "stride=10", "--directory", str(root / "tuning"),
                       "--tuned-file", str(root / "tuned_shared_backbone.py"), "--output", str(root / "runs"),
                       "--registry", str(root / "saved_models")])
    tuned_file = run(args)
    return root, tuned_file


def test_tune_writes_results_and_the_tuned_experiment(tuned_run, capsys):
    root, tuned_file = tuned_run
    project = root / "tuning" / "shared_backbone_random_val_ic"
    rows = (project / "results.csv").read_text().splitlines()
    assert rows[0].startswith("trial,tuner,status,mean,fold_0,lstm_units,dropout,learning_rate,sequence_length,loss")
    assert len(rows) == 3 and all(",COMPLETED," in row for row in rows[1:])
    reports = [json.loads(path.read_text()) for path in sorted(project.glob("trial_*/synapse_trial.json"))]
    assert len(reports) == 2 and all(len(report["folds"]) == 1 for report in reports)
    best = max(reports, key=lambda report: report["mean"])
    config = load_experiment(tuned_file, quick=True)
    assert config.name == "shared_backbone_tuned" and (config.epochs, config.stride, config.n_splits) == (1, 10, 1)
    assert config.lstm_units == tuple(best["values"]["lstm_units"])
    assert config.sequence_length == best["values"]["sequence_length"]
    # Each fold's scores come from its validation carve-out, before the test fold the final run reports.
    metrics_file = next((root / "runs" / "shared_backbone_tuned").glob("*/metrics.json"))
    test_start = json.loads(metrics_file.read_text())["folds"][0]["test"][0]
    assert all(fold["validation"][1] < test_start for report in reports for fold in report["folds"])


def test_tune_trains_and_registers_the_tuned_experiment(tuned_run):
    root, _ = tuned_run
    version = root / "saved_models" / "shared_backbone_tuned" / "1"
    assert (version / "model.keras").is_file() and (version / "model.onnx").is_file()
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["config"]["name"] == "shared_backbone_tuned"
