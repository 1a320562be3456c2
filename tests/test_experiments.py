"""Every experiment file runs end to end with --quick (one epoch per fold to keep CI short)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from keras_synapse.train import parse_args, run

EXPERIMENTS = sorted(path.stem for path in Path(__file__).resolve().parents[1].joinpath("experiments").glob("*.py"))


def test_the_experiments_directory_holds_every_model():
    assert {"shared_backbone", "multitask", "transformer", "lstm_attention", "lstm_classifier", "hybrid",
            "finetune"} <= set(EXPERIMENTS)


# shared_backbone runs as a user would (a subprocess, full --quick) in tests/test_train.py; planted_signal
# and random_walk run there too, in tests/test_edge_truth.py, where their verdicts are checked; finetune below,
# on a registered backbone, pattern_meta_label, lightgbm and ensemble below, with their own checks.
# gru.py is shared_backbone.py with another model name: its model runs through the conformance test, and the
# suite's time goes to what differs. original_backbone trains in tests/test_edge_truth.py beside the main one.
RUN_ELSEWHERE = ("shared_backbone", "planted_signal", "random_walk", "finetune", "pattern_meta_label", "lightgbm",
                 "ensemble", "gru", "original_backbone")


@pytest.mark.parametrize("name", [name for name in EXPERIMENTS if name not in RUN_ELSEWHERE])
def test_experiment_runs_quick(name, tmp_path, request):
    path = request.config.rootpath / "experiments" / f"{name}.py"
    # One test fold: the folds' mechanics are the same for every model and run three folds in test_train.py.
    run_dir = run(parse_args([str(path), "--quick", "--epochs", "1", "--set", "n_splits=1", "--set", "test_size=0.3",
                              "--output", str(tmp_path / "runs"), "--registry", str(tmp_path / "saved_models")]))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["folds"]) == 1 and metrics["summary"]["verdict"]
    assert Path(metrics["model"]["keras"]).is_file() and Path(metrics["model"]["onnx"]).is_file()
    # Every docstring gives the command that runs it.
    assert f"python -m keras_synapse.train experiments/{name}.py" in path.read_text()


def test_finetune_uses_the_backbone_registered_in_its_registry_from_any_directory(trained_registry, tmp_path,
                                                                                 monkeypatch, capsys, request):
    from conftest import copy_version

    registry = tmp_path / "saved_models"
    backbone = copy_version(trained_registry, registry)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no saved_models/ here: only --registry can find the backbone
    path = request.config.rootpath / "experiments" / "finetune.py"
    run_dir = run(parse_args([str(path), "--quick", "--epochs", "1", "--set", f"base_model=shared_backbone/"
                              f"{backbone.name}", "--output", str(tmp_path / "runs"), "--registry", str(registry)]))
    assert f"final model: a new head on the frozen backbone of {backbone.resolve()}" in capsys.readouterr().out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["folds"]) == 3 and Path(metrics["model"]["onnx"]).is_file()


def test_a_base_model_missing_from_the_registry_is_said(tmp_path, capsys):
    import dataclasses

    from keras_synapse.config import ExperimentConfig
    from keras_synapse.train import load_base_model

    config = dataclasses.replace(ExperimentConfig(), finetune_symbol="SP500", base_model="shared_backbone/latest")
    assert load_base_model(config, tmp_path / "empty_registry", data=None, last_fold=None) is None
    said = capsys.readouterr().out
    assert f"`base_model` shared_backbone/latest is not registered in {tmp_path / 'empty_registry'}" in said
    assert "the backbone is refit before the head" in said


def test_seed_004s_pattern_meta_label_filter_runs_on_the_sample_with_reference_inputs(tmp_path, request, capsys):
    path = request.config.rootpath / "experiments" / "pattern_meta_label.py"
    run_dir = run(parse_args([str(path), "--quick", "--epochs", "1", "--output", str(tmp_path / "runs"),
                              "--registry", str(tmp_path / "saved_models")]))
    printed = capsys.readouterr().out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "python -m keras_synapse.train experiments/pattern_meta_label.py" in path.read_text()
    assert metrics["label"]["name"] == "momentum_persistence" and len(metrics["folds"]) == 3
    card = json.loads((Path(metrics["model"]["keras"]).parent / "metadata.json").read_text())
    assert len(card["inputs"]["sequence"]["feature_names"]) == 17
    assert card["config"]["sector_symbol"] == "SYN-00=SECTOR-0;SYN-01=SECTOR-1;SYN-02=SECTOR-2;SYN-03=SECTOR-0"
    # The market, sector and VIX series feed the cross-asset features; they are neither trained nor scored.
    assert "references (inputs only, not trained, scored or traded): MARKET, SECTOR-0, SECTOR-1, SECTOR-2, VIX, " \
           "VIX3M" in printed
    assert set(metrics["per_symbol"]) == {"SYN-00", "SYN-01", "SYN-02", "SYN-03"}
    # The traded book is the 0.6 filter over the momentum strategy, calibrated on that side winning.
    backtest = metrics["backtest"]
    assert backtest["rules"]["signal"] == "meta_label" and backtest["rules"]["confidence_target"] == "event"
    assert backtest["rules"]["confidence_threshold"] == 0.6
    ab = backtest["ab_test"]
    assert "model" not in ab["books"] and ab["confidence_target"] == "event"
    assert ab["books"]["momentum_filtered"] == backtest["strategy"]
    difference = ab["sharpe_differences"]["momentum_filtered - momentum"]
    assert difference["ci_low"] <= difference["difference"] <= difference["ci_high"]
    assert "filtered - alone" in printed and "momentum" in printed
    serve_the_event_model(Path(metrics["model"]["keras"]).parent, card, tmp_path)


def serve_the_event_model(version, card, tmp_path):
    """Seed 004's endpoints on a pattern model: references sent beside the symbols, a map per strategy."""
    import httpx
    from conftest import bar_records, running_server

    from keras_synapse.data import load_panel
    from keras_synapse.evaluation.classical import classical_sides

    panel = load_panel("sample:references", quick=True)
    bars = {symbol: bar_records(panel[symbol].iloc[-400:]) for symbol in panel.symbols}
    maps = card["calibration"]["strategies"]
    assert card["calibration"]["target"] == "event" and "momentum" in maps
    with running_server(version, tmp_path / "server.log") as (url, _):
        answer = httpx.post(f"{url}/predict/multi_ticker_ensemble", json={"bars": bars}, timeout=60)
        assert answer.status_code == 200, answer.text
        rows = {row["symbol"]: row for row in answer.json()["predictions"]}
        assert answer.json()["model"]["edge_significant"] == card["metrics"]["summary"]["edge_significant"]
        # The reference series feed the features and get no prediction of their own.
        assert set(rows) == {"SYN-00", "SYN-01", "SYN-02", "SYN-03"}
        for symbol, row in rows.items():
            assert not row["fallback"], row["reason"]
            sides = classical_sides(panel[symbol].iloc[-400:]).iloc[-1]
            assert row["probability_up"] is None  # an event model states no direction
            for name, side in sides.items():
                expected = (None if side == 0 or name not in maps else
                            1 / (1 + np.exp(-(maps[name]["intercept"] + maps[name]["slope"] * row["score"]))))
                assert row["win_probabilities"][name] == (pytest.approx(expected) if expected is not None else None)
                assert row["filtered_signals"][name] == (side if expected is not None and expected > 0.6 else 0.0)
        # One symbol's bars cannot carry the market, sector and VIX the model reads: a 422 naming them.
        alone = httpx.post(f"{url}/predict/ensemble_signals", json={"symbol": "SYN-00", "bars": bars["SYN-00"]},
                           timeout=60)
        assert alone.status_code == 422 and "'market'" in alone.json()["detail"]
        confidence = httpx.post(f"{url}/predict/pattern_confidence", json={"symbol": "SYN-00"}, timeout=60)
        assert confidence.status_code == 422


# The random forest's fit, export and window graph are checked in tests/models (it has no native file, and its
# registration is the others' without one); a run of it costs more than the three others together.
@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "catboost"])
def test_every_tree_model_trains_registers_and_reproduces_its_folds(kind, tmp_path, request):
    """A tree as a model of the run: the same folds and evaluation, one window-input ONNX graph, `predict --fold`."""
    from keras_synapse.serving.inference import Predictor

    path = request.config.rootpath / "experiments" / "lightgbm.py"
    run_dir = run(parse_args([str(path), "--quick", "--set", f"model={kind}", "--output", str(tmp_path / "runs"),
                              "--registry", str(tmp_path / "saved_models")]))
    assert "python -m keras_synapse.train experiments/lightgbm.py" in path.read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["folds"]) == 3 and metrics["summary"]["verdict"] and "keras" not in metrics["model"]
    version = Path(metrics["model"]["onnx"]).parent
    card = json.loads((version / "metadata.json").read_text())
    assert card["model_format"] == "tree" and card["tree"]["kind"] == kind and card["onnx"]["max_abs_diff"] < 1e-4
    assert card["tree"]["num_trees"] in (25, 50, 100, 200, 400) and not (version / "model.keras").exists()
    # Each fold's graph, loaded from the registry, gives that fold's test predictions again.
    test_predictions = pd.read_csv(run_dir / "test_predictions.csv", parse_dates=["timestamp"])
    fold = test_predictions[test_predictions["fold"] == 2]
    predictor = Predictor.from_registry(version, fold=2)
    from keras_synapse.data import load_panel

    scores = predictor.predict_panel(load_panel("sample", quick=True))["score"]
    expected = fold.set_index(["symbol", "timestamp"])["prediction"]
    np.testing.assert_allclose(scores.loc[expected.index].to_numpy(), expected.to_numpy(), atol=1e-5)
    with pytest.raises(Exception, match="ONNX Runtime only"):
        Predictor.from_registry(version, backend="keras")
    # The library's own file reloads into the same trees as the registered graph.
    from keras_synapse.models.tree_windows import float32_window_summaries
    from keras_synapse.serving.tree_registration import NATIVE_FILES

    windows = np.random.default_rng(0).normal(size=(64, *card["inputs"]["sequence"]["shape"][1:])).astype(np.float32)
    native = reload_native(kind, version / NATIVE_FILES[kind])
    onnx_scores = Predictor.from_registry(version).run({"sequence": windows})["prediction"].ravel()
    np.testing.assert_allclose(native(float32_window_summaries(windows)), onnx_scores, atol=1e-4)


def reload_native(kind, path):
    """The predict function of a tree reloaded by its own library from the registered file."""
    if kind == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_file=str(path)).predict
    if kind == "xgboost":
        import xgboost

        model = xgboost.XGBRegressor()
        model.load_model(str(path))
        return model.predict
    import catboost

    return catboost.CatBoostRegressor().load_model(str(path)).predict


def test_a_tree_refuses_what_only_a_network_can_do(tmp_path, request):
    from keras_synapse.errors import ConfigError

    path = request.config.rootpath / "experiments" / "lightgbm.py"
    with pytest.raises(ConfigError, match=r"model='lightgbm' cannot train here: label 'direction' is multiclass"):
        run(parse_args([str(path), "--quick", "--set", "label=direction", "--output", str(tmp_path / "runs")]))
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def test_seed_003s_stack_trains_its_meta_learner_out_of_fold_registers_and_serves(tmp_path, request):
    from keras_synapse.data import load_panel
    from keras_synapse.serving.inference import Predictor

    path = request.config.rootpath / "experiments" / "ensemble.py"
    run_dir = run(parse_args([str(path), "--quick", "--epochs", "1", "--output", str(tmp_path / "runs"),
                              "--registry", str(tmp_path / "saved_models")]))
    assert "python -m keras_synapse.train experiments/ensemble.py" in path.read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    members = ["shared_backbone", "lightgbm", "xgboost", "catboost"]
    assert [record["members"] for record in metrics["stack"]["folds"]] == [members]
    assert set(metrics["stack"]["final"]["weights"]) == set(members) and metrics["summary"]["verdict"]
    version = Path(metrics["model"]["onnx"]).parent
    card = json.loads((version / "metadata.json").read_text())
    assert card["model_format"] == "stack" and card["onnx"]["max_abs_diff"] < 1e-4
    assert sorted(card["files"]) == [f"members/{member}.onnx" for member in sorted(members)]
    scores = Predictor.from_registry(version).predict_latest(load_panel("sample", quick=True))["score"]
    assert len(scores) == 6 and np.isfinite(scores).all()

