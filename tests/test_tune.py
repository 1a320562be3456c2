"""The tune command: search folds before the test folds, scoring, the tuned experiment file, end to end."""

import contextlib
import dataclasses
import io
import json
import shutil
import types

import keras_tuner
import numpy as np
import pytest

from keras_synapse.config import ExperimentConfig, load_experiment
from keras_synapse.errors import ConfigError
from keras_synapse.tune import parse_args, run
from keras_synapse.tuning.results import expected_maximum, format_results, selection_bias_line
from keras_synapse.tuning.scoring import fold_score, score_interval, validation_uncertainty
from keras_synapse.tuning.search_space import data_key, load_search_space, search_folds, search_values
from keras_synapse.tuning.tuned_file import write_tuned_experiment
from keras_synapse.tuning.tuners import build_tuner
from keras_synapse.windows.splitters import GappedTimeSeriesCV

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
    history = {"val_loss": [1.0, 0.8, 0.9, 0.8], "val_mse": [0.9, 0.7, 0.6, 0.6],
               "val_ic": [0.01, 0.02, 0.09, 0.09], "val_rank_ic": [0.03, 0.01, 0.02, 0.05]}
    assert fold_score(history, "val_ic", "val_loss") == (0.02, 1)  # not the best val_ic of any epoch (0.09)
    assert fold_score(history, "val_loss", "val_loss") == (0.8, 1)  # ties keep the first best, as early stopping
    # Monitors are followed in their own direction: val_ic is maximized, val_mse minimized.
    assert fold_score(history, "val_rank_ic", "val_ic") == (0.02, 2)
    assert fold_score(history, "val_ic", "val_mse") == (0.09, 2)
    assert fold_score(history, "val_ic", "val_rank_ic") == (0.09, 3)
    assert np.isnan(fold_score({"val_loss": [np.nan]}, "val_ic", "val_loss")[0])
    assert fold_score({"val_loss": [1.0], "val_ic": [np.nan, 0.1]}, "val_ic", "val_ic") == (0.1, 1)
    assert np.isnan(fold_score({"val_loss": [1.0]}, "val_rank_ic", "val_loss")[0])
    score, epoch = fold_score({"val_loss": [1.0]}, "val_loss", "val_ic")  # the monitor was never logged
    assert np.isnan(score) and epoch == -1
    with pytest.raises(ConfigError, match="`monitor` must be one of"):
        fold_score(history, "val_ic", "val_accuracy")


def test_expected_maximum_of_normals_matches_known_values():
    assert expected_maximum(1) == pytest.approx(0.0, abs=1e-6)
    assert expected_maximum(2) == pytest.approx(1 / np.sqrt(np.pi), abs=1e-6)
    assert expected_maximum(20) == pytest.approx(1.8675, abs=1e-3)
    draws = np.random.default_rng(0).standard_normal((20_000, 5)).max(axis=1)
    assert expected_maximum(5) == pytest.approx(draws.mean(), abs=0.02)
    with pytest.raises(ConfigError, match="Received: 0"):
        expected_maximum(0)


def _fold(score, standard_error, value=None, n_validation=100):
    return {"objective": score, "standard_error": standard_error, "n_validation": n_validation,
            "interval_value": score if value is None else value, "interval_note": ""}


def test_a_trials_interval_combines_its_folds_standard_errors():
    interval = score_interval([_fold(0.02, 0.03), _fold(0.04, 0.04)], "val_ic")
    # mean 0.03; SE of the mean sqrt(0.03^2 + 0.04^2) / 2 = 0.025.
    assert interval["standard_error"] == pytest.approx(0.025)
    assert (interval["low"], interval["high"]) == pytest.approx((0.03 - 1.96 * 0.025, 0.03 + 1.96 * 0.025))
    assert interval["of"] == "mean val_ic"
    # val_loss gets the interval of the validation MSE, centred on it, not on the loss.
    interval = score_interval([_fold(1.5, 0.1, value=1.2), _fold(1.7, 0.1, value=1.4)], "val_loss")
    assert interval["of"] == "mean val MSE"
    assert (interval["low"] + interval["high"]) / 2 == pytest.approx(1.3)
    # Where no bootstrap metric stands for the objective, the folds say why and the interval is n/a.
    classifier = types.SimpleNamespace(head_tasks=None, task=types.SimpleNamespace(kind="binary"))
    missing = validation_uncertainty(None, classifier, np.arange(3), "val_loss", ExperimentConfig())
    assert missing["interval_metric"] is None and "cross-entropy" in missing["interval_note"]
    multi_task = types.SimpleNamespace(head_tasks={"main": None}, task=types.SimpleNamespace(kind="regression"))
    assert "multi-task" in validation_uncertainty(None, multi_task, np.arange(3), "val_loss",
                                                  ExperimentConfig())["interval_note"]
    interval = score_interval([{**_fold(0.9, np.nan), **missing}], "val_loss")
    assert np.isnan(interval["standard_error"]) and "cross-entropy" in interval["note"]


def _row(trial, score, standard_error, status="COMPLETED"):
    return {"trial": trial, "tuner": "tuner0", "status": status, "objective": score,
            "folds": [] if score is None else [score],
            "ci": None if standard_error is None else (score - 1.96 * standard_error, score + 1.96 * standard_error),
            "standard_error": standard_error, "n_validation": None if standard_error is None else 1234,
            "values": {"dropout": 0.3}, "message": [""]}


def test_the_results_table_shows_intervals_windows_and_the_selection_bias():
    rows = [_row("0", 0.01, 0.02), _row("1", 0.05, 0.03), _row("2", None, None, status="FAILED")]
    table = format_results(rows, "val_ic").splitlines()
    assert "mean val_ic" in table[0] and "95% CI of mean val_ic" in table[0] and "n_val" in table[0]
    assert table[2].startswith("* 1") and "[-0.0088, +0.1088]" in table[2] and "1234" in table[2]
    assert table[3].count("n/a") == 3  # score, interval, windows
    assert "95% CI of mean val MSE" in format_results(rows, "val_loss").splitlines()[0]
    line = selection_bias_line(rows, "val_ic")
    # Two completed trials: E[max of 2 normals] = 0.56 times the median SE 0.025.
    assert "2 trials" in line and "0.56 x 0.0250 = 0.0141" in line and "never seen by the search" in line
    assert "not sized here" in selection_bias_line([_row("0", 0.9, None), _row("1", 0.8, None)], "val_loss")


def test_search_space_values_are_checked_and_plain(request):
    base = load_experiment(request.config.rootpath / EXPERIMENT)
    search_space = load_search_space(request.config.rootpath / EXPERIMENT)
    values = search_values(search_space, keras_tuner.HyperParameters(), base)
    # The declared defaults are the experiment's own, so the first trial is the experiment as written.
    assert dataclasses.replace(base, **values) == base
    assert dataclasses.replace(ExperimentConfig(), **values) != ExperimentConfig()
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
    with pytest.raises(ConfigError, match="log no val_mse"):
        build_tuner(ExperimentConfig(heads="main=forward_return", label="forward_return"), search_space, "random",
                    "val_mse", 2, directory=tmp_path)
    # The plain validation MSE compares trials whatever loss each one trains with.
    assert build_tuner(ExperimentConfig(), search_space, "random", "val_mse", 2, directory=tmp_path).objective_name \
        == "val_mse"


def test_keras_tuner_grpc_mode_is_refused_naming_its_replacement(tmp_path, request, monkeypatch):
    search_space = load_search_space(request.config.rootpath / EXPERIMENT)
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    with pytest.raises(ConfigError, match="KERASTUNER_ORACLE_IP is set.*--executor ray"):
        build_tuner(ExperimentConfig(), search_space, "random", "val_ic", 2, directory=tmp_path)


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


# A random-walk universe with nothing to find: whatever the search selects, the
# tuned run's test verdict must not claim an edge.
NULL_DATA = "synthetic:num_symbols=6,num_bars=1000,signal_strength=0.0,seed=0"


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory, request):
    """Three random-search trials on null data, then the tuned experiment trained and registered (~30 s).

    Early stopping watches val_ic (two epochs), so the score of each fold is
    the IC of the epoch it kept. Returns `(root, tuned_file, stdout)`.
    """
    root = tmp_path_factory.mktemp("tune")
    args = parse_args([str(request.config.rootpath / EXPERIMENT), "--max-trials", "3", "--quick", "--epochs", "2",
                       "--data", NULL_DATA, "--set", "n_splits=1", "--set", "stride=10", "--set", "monitor=val_ic",
                       "--directory", str(root / "tuning"), "--tuned-file", str(root / "tuned_shared_backbone.py"),
                       "--output", str(root / "runs"), "--registry", str(root / "saved_models")])
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        tuned_file = run(args)
    print(output.getvalue())  # still shown with -s, or on failure
    return root, tuned_file, output.getvalue()


def _trial_reports(root):
    project = root / "tuning" / "shared_backbone_random_val_ic"
    return [json.loads(path.read_text()) for path in sorted(project.glob("trial_*/synapse_trial.json"))]


def test_tune_writes_results_and_the_tuned_experiment(tuned_run):
    root, tuned_file, _ = tuned_run
    project = root / "tuning" / "shared_backbone_random_val_ic"
    rows = (project / "results.csv").read_text().splitlines()
    assert rows[0].startswith("trial,tuner,status,mean,ci_low,ci_high,standard_error,n_validation,fold_0,"
                              "lstm_units,dropout,learning_rate,sequence_length,loss")
    assert len(rows) == 4 and all(",COMPLETED," in row for row in rows[1:])
    reports = _trial_reports(root)
    assert len(reports) == 3 and all(len(report["folds"]) == 1 for report in reports)
    best = max(reports, key=lambda report: report["mean"])
    config = load_experiment(tuned_file, quick=True)
    assert config.name == "shared_backbone_tuned" and (config.epochs, config.stride, config.n_splits) == (2, 10, 1)
    assert config.lstm_units == tuple(best["values"]["lstm_units"])
    assert config.sequence_length == best["values"]["sequence_length"]
    assert (config.data, config.monitor) == (NULL_DATA, "val_ic")
    # Each fold's scores come from its validation carve-out, before the test fold the final run reports.
    metrics_file = next((root / "runs" / "shared_backbone_tuned").glob("*/metrics.json"))
    test_start = json.loads(metrics_file.read_text())["folds"][0]["test"][0]
    assert all(fold["validation"][1] < test_start for report in reports for fold in report["folds"])


def test_each_trial_reports_its_interval_and_validation_windows(tuned_run):
    root, _, output = tuned_run
    for report in _trial_reports(root):
        interval, folds = report["interval"], report["folds"]
        assert report["n_validation"] == sum(fold["n_validation"] for fold in folds) > 0
        assert interval["of"] == "mean val_ic" and np.isfinite(interval["standard_error"])
        assert interval["low"] < report["mean"] < interval["high"]
        for fold in folds:
            # The kept model's validation IC, recomputed, is the fold's score: fold_score picked the
            # epoch early stopping kept, and with a highway the score is read after the network's share.
            assert fold["interval_metric"] == "ic" and fold["standard_error"] > 0
            assert fold["interval_value"] == pytest.approx(fold["objective"], abs=1e-4)
    lines = output.splitlines()
    header = next(index for index, line in enumerate(lines) if "95% CI of mean val_ic" in line)
    assert "n_val" in lines[header] and sum(line.startswith("* ") for line in lines[header + 1:header + 4]) == 1
    selection = lines[header + 4]
    assert selection.startswith("Selection: if all 3 trials were equally good") and "0.85 x" in selection
    assert lines[header + 5].startswith("Probability of backtest overfitting (CSCV, Bailey et al. 2014): ")
    pbo = json.loads((root / "tuning" / "shared_backbone_random_val_ic" / "pbo.json").read_text())
    assert pbo["num_trials"] == 3 and pbo["num_blocks"] == 16 and 0 <= pbo["pbo"] <= 1
    assert f"{pbo['pbo']:.0%} of {pbo['num_combinations']} half-splits" in lines[header + 5]
    assert all(len(fold["date_scores"]) > 50 for report in _trial_reports(root) for fold in report["folds"])


def test_tuning_on_null_data_leaves_the_test_verdict_without_an_edge(tuned_run):
    root, _, output = tuned_run
    best = max(_trial_reports(root), key=lambda report: report["mean"])
    metrics_file = next((root / "runs" / "shared_backbone_tuned").glob("*/metrics.json"))
    summary = json.loads(metrics_file.read_text())["summary"]
    ic = summary["ic"]
    print(f"null data: best trial's mean val_ic {best['mean']:+.4f} [{best['interval']['low']:+.4f}, "
          f"{best['interval']['high']:+.4f}] vs the tuned run's test IC {ic['pooled']:+.4f} "
          f"[{ic['ci_low']:+.4f}, {ic['ci_high']:+.4f}]")
    # The test folds were never seen by the search, so nothing it selected can make them claim an edge.
    assert summary["edge_significant"] is False
    assert ic["ci_low"] <= 0 <= ic["ci_high"]
    assert "search vs test: best of 3 trials" in output and "edge_significant False" in output


def test_tune_trains_and_registers_the_tuned_experiment(tuned_run):
    root, _, _ = tuned_run
    version = root / "saved_models" / "shared_backbone_tuned" / "1"
    assert (version / "model.keras").is_file() and (version / "model.onnx").is_file()
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["config"]["name"] == "shared_backbone_tuned"
