"""The ONNX parity gate: exports that match are written, corrupted ones are refused."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from keras_synapse.config import ExperimentConfig
from keras_synapse.errors import ExportError
from keras_synapse.serving.onnx_export import (
    MAX_QUANTIZATION_ERROR,
    QuantizationError,
    check_parity,
    convert_to_onnx,
    export_onnx,
    onnx_outputs,
    quantize_onnx,
)
from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder

NUM_FEATURES = 8


@pytest.fixture(scope="module")
def model_and_inputs():
    model = get_model_builder("shared_backbone")(ExperimentConfig(), ModelSpec(12, NUM_FEATURES))
    rng = np.random.default_rng(0)
    fit_normalization(model, (rng.normal(5, 3, (500, NUM_FEATURES))).astype("float32"))
    inputs = {"sequence": rng.normal(5, 3, (64, 12, NUM_FEATURES)).astype("float32")}
    return model, inputs


def test_export_matches_keras_and_has_a_dynamic_batch(tmp_path, model_and_inputs):
    model, inputs = model_and_inputs
    info = export_onnx(model, tmp_path / "model.onnx", inputs)
    assert info["max_abs_diff"] <= 1e-4 and info["opset"] == 17
    graph = onnx.load(tmp_path / "model.onnx").graph
    assert [tensor.name for tensor in graph.input] == ["sequence"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 0  # symbolic batch


def test_a_corrupted_export_is_refused_with_the_largest_difference(tmp_path, model_and_inputs):
    model, inputs = model_and_inputs
    proto = convert_to_onnx(model)
    # Corrupt the largest float initializer (a weight matrix) the way a bad conversion would.
    largest = max(
        (tensor for tensor in proto.graph.initializer if tensor.data_type == onnx.TensorProto.FLOAT),
        key=lambda tensor: np.prod(tensor.dims),
    )
    weights = numpy_helper.to_array(largest).copy()
    largest.CopyFrom(numpy_helper.from_array(weights * 1.5 + 0.1, largest.name))
    with pytest.raises(ExportError, match=r"ONNX output 'prediction' differs from Keras by .* \(tolerance 0.0001\) at sample \d+"):
        check_parity(model, proto, inputs)


def test_nothing_is_written_when_parity_fails(tmp_path, model_and_inputs):
    model, inputs = model_and_inputs
    with pytest.raises(ExportError):
        export_onnx(model, tmp_path / "model.onnx", inputs, tolerance=-1.0)  # an impossible bar: the gate must refuse
    assert list(tmp_path.iterdir()) == []


def test_the_int8_copy_is_measured_by_its_score_and_refused_past_the_gate(tmp_path, model_and_inputs):
    model, inputs = model_and_inputs
    export_onnx(model, tmp_path / "model.onnx", inputs)
    float_bytes = (tmp_path / "model.onnx").read_bytes()
    info = quantize_onnx(tmp_path / "model.onnx", tmp_path / "model.int8.onnx", inputs,
                         max_relative_error=MAX_QUANTIZATION_ERROR)
    float_scores = onnx_outputs(tmp_path / "model.onnx", inputs)["prediction"][:, 0].astype(np.float64)
    int8_scores = onnx_outputs(tmp_path / "model.int8.onnx", inputs)["prediction"][:, 0].astype(np.float64)
    assert info["score_max_abs_diff"] == pytest.approx(np.max(np.abs(int8_scores - float_scores)), rel=1e-6)
    assert info["score_max_abs_diff"] > 0
    assert info["score_std"] == pytest.approx(np.std(float_scores), rel=1e-6)
    assert info["relative_error"] == pytest.approx(info["score_max_abs_diff"] / info["score_std"])
    assert info["relative_error"] <= info["max_relative_error"] == MAX_QUANTIZATION_ERROR
    assert info["parity_samples"] == 64
    # Past the gate: a one-line error with the figures, and nothing written beside the untouched float model.
    (tmp_path / "model.int8.onnx").unlink()
    with pytest.raises(QuantizationError, match=r"int8 model refused: its scores differ from the float model's by "
                                                r"up to .*% of the scores' standard deviation .* on 64 windows, over "
                                                r"the allowed 0% \(--max-quantization-error 0\)") as refused:
        quantize_onnx(tmp_path / "model.onnx", tmp_path / "model.int8.onnx", inputs, max_relative_error=0.0)
    assert "\n" not in str(refused.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx"]
    assert (tmp_path / "model.onnx").read_bytes() == float_bytes
