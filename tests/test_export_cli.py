"""Re-export of a registry version, int8 quantization, and the recurrent rebuild for ONNX."""

import json
import subprocess
import sys

import keras
import numpy as np
import onnx
import pytest
from conftest import copy_version

from keras_synapse.config import ExperimentConfig
from keras_synapse.export import main
from keras_synapse.serving.onnx_export import (
    MAX_QUANTIZATION_ERROR,
    check_parity,
    convert_to_onnx,
    export_onnx,
    needs_recurrent_rebuild,
    rebuild_without_cudnn,
)
from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder


def test_reexport_with_quantization_records_parity_and_keeps_the_float_model(trained_registry, tmp_path, capsys):
    version = copy_version(trained_registry, tmp_path)
    assert main([str(version), "--quantize"]) == 0
    output = capsys.readouterr().out
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["onnx"]["opset"] == 17 and metadata["onnx"]["max_abs_diff"] <= 1e-4
    assert "most recent windows of the data 'sample'" in metadata["onnx"]["parity_inputs"]
    assert metadata["onnx"]["parity_samples"] == 256 and metadata["onnx"]["rebuilt_recurrent"]
    int8 = metadata["onnx_int8"]
    assert (version / "model.int8.onnx").stat().st_size == int8["size_bytes"] < int8["float_size_bytes"]
    assert 0 < int8["max_abs_diff_vs_float"] < 0.1
    # Measured by the score on the parity windows and the card's probe windows, gated, and said.
    assert int8["parity_samples"] == 256 + 4 and "the card's 4 probe windows" in int8["compared_on"]
    assert 0 < int8["score_max_abs_diff"] <= int8["max_abs_diff_vs_float"]
    assert int8["relative_error"] == pytest.approx(int8["score_max_abs_diff"] / int8["score_std"])
    assert int8["relative_error"] <= int8["max_relative_error"] == MAX_QUANTIZATION_ERROR
    assert (f"score max |int8 - float| = {int8['score_max_abs_diff']:.3g}, {int8['relative_error']:.0%} of the "
            f"scores' standard deviation ({int8['score_std']:.3g}; allowed 25%) on 260 windows") in output
    assert "parity: max |ONNX - Keras|" in output
    # model.onnx stays the float graph.
    float_ops = {node.op_type for node in onnx.load(version / "model.onnx").graph.node}
    int8_ops = {node.op_type for node in onnx.load(version / "model.int8.onnx").graph.node}
    assert "DynamicQuantizeLSTM" not in float_ops and "LSTM" in float_ops
    assert int8_ops & {"DynamicQuantizeLSTM", "MatMulInteger", "DynamicQuantizeLinear"}
    # The predictor can run the int8 copy on request.
    from keras_synapse.data import load_panel
    from keras_synapse.serving.inference import Predictor

    panel = load_panel("sample", quick=True)
    int8_scores = Predictor.from_registry(version, backend="onnx_int8").predict_latest(panel)["score"]
    float_scores = Predictor.from_registry(version).predict_latest(panel)["score"]
    np.testing.assert_allclose(int8_scores, float_scores, atol=0.1)


def test_an_int8_model_past_the_gate_is_refused_and_nothing_changes(trained_registry, tmp_path):
    version = copy_version(trained_registry, tmp_path)
    before = {path.relative_to(version): path.read_bytes() for path in version.rglob("*") if path.is_file()}
    result = subprocess.run([sys.executable, "-m", "keras_synapse.export", str(version), "--quantize",
                             "--max-quantization-error", "0"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: int8 model refused: its scores differ from the float model's by up to ")
    assert "of the scores' standard deviation" in line and "over the allowed 0% (--max-quantization-error 0)" in line
    assert "Traceback" not in result.stderr and "model.onnx is unchanged" in line
    # TensorFlow loaded (the re-export runs Keras and tf2onnx) without its native start-up lines.
    for noise in ("absl::InitializeLog", "cuda drivers", "oneDNN", "I0000"):
        assert noise not in result.stderr, noise
    # Nothing half-written: the float model, the card and every other file are byte for byte as they were.
    after = {path.relative_to(version): path.read_bytes() for path in version.rglob("*") if path.is_file()}
    assert after == before and not list(version.glob(".*"))


def test_reexport_on_random_inputs_says_so(trained_registry, tmp_path, capsys):
    version = copy_version(trained_registry, tmp_path)
    assert main([str(version), "--parity-inputs", "random", "--parity-samples", "64"]) == 0
    metadata = json.loads((version / "metadata.json").read_text())
    assert metadata["onnx"]["parity_inputs"] == "64 random inputs drawn from the normalization statistics"
    assert "onnx_int8" not in metadata and not (version / "model.int8.onnx").exists()


def test_cli_errors_are_clean(tmp_path):
    result = subprocess.run([sys.executable, "-m", "keras_synapse.export", str(tmp_path / "missing")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "is not a registry version" in result.stderr


@pytest.fixture(scope="module")
def recurrent_model():
    keras.utils.set_random_seed(0)
    model = get_model_builder("shared_backbone")(ExperimentConfig(), ModelSpec(12, 6))
    rows = np.random.default_rng(0).normal(2.0, 3.0, (400, 6)).astype("float32")
    fit_normalization(model, rows)
    inputs = {"sequence": np.random.default_rng(1).normal(2.0, 3.0, (32, 12, 6)).astype("float32")}
    return model, inputs


def test_rebuild_without_cudnn_keeps_predictions_and_converts_to_fused_lstms(recurrent_model):
    model, inputs = recurrent_model
    # As on a GPU: the layers would take cuDNN ("auto"); the first has recurrent dropout.
    assert needs_recurrent_rebuild(model)
    assert model.get_layer("lstm_0").recurrent_dropout > 0
    clone = rebuild_without_cudnn(model)
    assert not needs_recurrent_rebuild(clone)
    lstms = [layer for layer in clone.layers if isinstance(layer, keras.layers.LSTM)]
    assert lstms and all(layer.use_cudnn is False and layer.recurrent_dropout == 0 for layer in lstms)
    expected = np.asarray(model(inputs, training=False))
    # Dropout is off at inference: the same function; without recurrent dropout Keras
    # takes its fused kernel, which differs only by float rounding.
    np.testing.assert_allclose(np.asarray(clone(inputs, training=False)), expected, atol=1e-6)
    same_path = rebuild_without_cudnn(model, clear_dropout=False)
    assert same_path.get_layer("lstm_0").recurrent_dropout > 0 and same_path.get_layer("lstm_0").use_cudnn is False
    np.testing.assert_array_equal(np.asarray(same_path(inputs, training=False)), expected)
    proto = convert_to_onnx(clone)
    op_types = [node.op_type for node in proto.graph.node]
    assert op_types.count("LSTM") == 2 and "Loop" not in op_types
    assert check_parity(model, proto, inputs) <= 1e-4


def test_export_onnx_uses_the_rebuild_and_gates_against_the_original(recurrent_model, tmp_path):
    model, inputs = recurrent_model
    info = export_onnx(model, tmp_path / "model.onnx", inputs)
    assert info["rebuilt_recurrent"] and info["max_abs_diff"] <= 1e-4
    assert "Loop" not in {node.op_type for node in onnx.load(tmp_path / "model.onnx").graph.node}
