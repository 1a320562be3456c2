"""Every experiment file runs end to end with --quick (one epoch per fold to keep CI short)."""

import json
from pathlib import Path

import pytest

from keras_synapse.train import parse_args, run

EXPERIMENTS = sorted(path.stem for path in Path(__file__).resolve().parents[1].joinpath("experiments").glob("*.py"))


def test_the_experiments_directory_holds_every_model():
    assert {"shared_backbone", "multitask", "transformer", "lstm_attention", "lstm_classifier", "hybrid",
            "finetune"} <= set(EXPERIMENTS)


# shared_backbone runs as a user would (a subprocess, full --quick) in tests/test_train.py; planted_signal
# and random_walk run there too, in tests/test_edge_truth.py, where their verdicts are checked; finetune below,
# on a registered backbone.
RUN_ELSEWHERE = ("shared_backbone", "planted_signal", "random_walk", "finetune")


@pytest.mark.parametrize("name", [name for name in EXPERIMENTS if name not in RUN_ELSEWHERE])
def test_experiment_runs_quick(name, tmp_path, request):
    path = request.config.rootpath / "experiments" / f"{name}.py"
    run_dir = run(parse_args([str(path), "--quick", "--epochs", "1", "--output", str(tmp_path / "runs"),
                              "--registry", str(tmp_path / "saved_models")]))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["folds"]) == 3 and metrics["summary"]["verdict"]
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
