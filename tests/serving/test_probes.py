"""Probe windows: every load re-runs the model on the card's probe inputs and compares with registration."""

import json
import shutil

import numpy as np
import pytest
from conftest import copy_version, damage_onnx_weights

from keras_synapse.serving.model_card import ModelCard
from keras_synapse.serving.probes import check_probes, probe_inputs
from keras_synapse.serving.runners import KerasRunner, ModelLoadError, OnnxRunner


def _drop_digests(version):
    """What a user who keeps a hand edit does (see ModelCard): the card then verifies no file."""
    card = json.loads((version / "metadata.json").read_text())
    del card["checksum"], card["files"]
    (version / "metadata.json").write_text(json.dumps(card))


def test_registration_records_probes_both_backends_reproduce(trained_registry):
    card = ModelCard.read(trained_registry)
    probes = card["probes"]
    assert set(probes["outputs"]) == {"keras", "onnx"}
    inputs = probe_inputs(probes)
    assert inputs["sequence"].dtype == np.float32 and inputs["sequence"].shape[0] == 4
    assert np.isfinite(inputs["sequence"]).all() and inputs["sequence"].std() > 0  # real windows, not zeros
    check_probes(card, KerasRunner(trained_registry / "model.keras"), "keras", "model.keras")
    check_probes(card, OnnxRunner(trained_registry / "model.onnx"), "onnx", "model.onnx")
    # The check can fail: a runner answering something else is refused, naming the output and the difference.
    other = KerasRunner(trained_registry / "folds" / "fold_0.keras")
    with pytest.raises(ModelLoadError, match="does not compute what it computed at registration.*output 'prediction' "
                                             "differs by up to"):
        check_probes(card, other, "keras", "model.keras")
    # A runner answering NaN is refused too, and the message says so rather than "differs by up to nan".
    def nan_runner(inputs):
        return {name: np.full_like(values, np.nan) for name, values in other(inputs).items()}

    with pytest.raises(ModelLoadError, match="output 'prediction' is NaN or infinite in 4 of 4 values"):
        check_probes(card, nan_runner, "keras", "model.keras")


def test_probes_catch_a_damaged_model_when_the_card_verifies_no_file(trained_registry, tmp_path, caplog):
    from keras_synapse.data import load_panel
    from keras_synapse.serving.inference import Predictor

    panel = load_panel("sample", quick=True).select(["SP500", "SYN-01"])
    expected = Predictor.from_registry(trained_registry, backend="keras").predict_latest(panel)["score"]
    version = copy_version(trained_registry, tmp_path / "saved_models")
    _drop_digests(version)
    damage_onnx_weights(version / "model.onnx")

    predictor = Predictor.from_registry(version)
    assert predictor.backend == "keras" and "does not compute what it computed at registration" in caplog.text
    assert (predictor.predict_latest(panel)["score"] == expected).all()
    # model.keras replaced by another model of the same shape: no verified backend is left, so nothing predicts.
    shutil.copy(version / "folds" / "fold_0.keras", version / "model.keras")
    with pytest.raises(ModelLoadError, match="model.keras does not compute what it computed at registration"):
        Predictor.from_registry(version)


def test_reexport_keeps_the_probe_windows_and_adds_the_int8_outputs(trained_registry, tmp_path):
    from keras_synapse.serving.inference import Predictor
    from keras_synapse.serving.onnx_export import reexport

    version = copy_version(trained_registry, tmp_path / "saved_models")
    before = ModelCard.read(version)["probes"]
    card = reexport(version, quantize=True, parity_inputs="random", parity_samples=16)
    assert card["probes"]["inputs"] == before["inputs"] and card["probes"]["outputs"]["keras"] == \
        before["outputs"]["keras"]
    assert set(card["probes"]["outputs"]) == {"keras", "onnx", "onnx_int8"}
    assert Predictor.from_registry(version, backend="onnx_int8").backend == "onnx_int8"
