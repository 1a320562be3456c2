"""ONNX export through tf2onnx, written only when it matches Keras.

The parity gate runs the converted graph in ONNX Runtime on held-back windows
and compares it with the Keras model; an export that differs by more than the
tolerance is refused with the largest difference and where it occurred.
"""

import os
import warnings
from pathlib import Path

import numpy as np

from keras_synapse.errors import SynapseError

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-4


class ExportError(SynapseError):
    """The ONNX graph could not be produced or does not match the Keras model."""


def convert_to_onnx(model, opset=DEFAULT_OPSET):
    """Converts a Keras model with named inputs to an ONNX `ModelProto`.

    The batch dimension is dynamic; input names are the Keras input names.
    """
    import tensorflow as tf
    import tf2onnx

    signature = [
        tf.TensorSpec((None, *tensor.shape[1:]), tf.float32, name=tensor.name) for tensor in model.inputs
    ]
    with warnings.catch_warnings():
        # tf2onnx calls a dict-input model with positional tensors; Keras
        # warns about the structure but maps them by position correctly.
        warnings.simplefilter("ignore", UserWarning)
        model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=opset)
    return model_proto


def check_parity(model, model_proto, inputs, tolerance=PARITY_TOLERANCE):
    """Compares ONNX Runtime with Keras on `inputs`.

    Args:
        model: the Keras model.
        model_proto: its ONNX `ModelProto` (or serialized bytes).
        inputs: a dict input name -> float32 array.
        tolerance: the largest allowed absolute difference. Defaults to `1e-4`.

    Returns:
        The largest absolute difference.

    Raises:
        ExportError: when the difference exceeds `tolerance`, naming it and
            the sample and output index where it occurred.
    """
    import onnxruntime

    serialized = model_proto if isinstance(model_proto, bytes) else model_proto.SerializeToString()
    try:
        session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        onnx_outputs = dict(zip(names, session.run(None, inputs)))
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise ExportError(f"ONNX Runtime could not run the exported model: {error}") from None
    keras_outputs = model(inputs, training=False)
    # A multi-output (dict) model is compared output by output, by name.
    if not isinstance(keras_outputs, dict):
        keras_outputs = {names[0]: keras_outputs}
    largest = 0.0
    for name, keras_output in keras_outputs.items():
        keras_output = np.asarray(keras_output, dtype=np.float64)
        onnx_output = onnx_outputs[name].astype(np.float64)
        difference = np.abs(onnx_output - keras_output)
        if not difference.max() <= tolerance:
            where = np.unravel_index(np.nanargmax(difference), difference.shape)
            raise ExportError(
                f"ONNX output '{name}' differs from Keras by {difference.max():.3g} (tolerance {tolerance:g}) at "
                f"sample {where[0]}, output index {tuple(int(index) for index in where[1:])}: ONNX {onnx_output[where]:.6g} vs Keras "
                f"{keras_output[where]:.6g}."
            )
        largest = max(largest, float(difference.max()))
    return largest


def export_onnx(model, path, parity_inputs, opset=DEFAULT_OPSET, tolerance=PARITY_TOLERANCE):
    """Exports `model` to `path` if it passes the parity gate.

    Args:
        model: the Keras model.
        path: where to write the `.onnx` file.
        parity_inputs: held-back inputs (dict name -> float32 array) for the
            parity check.
        opset: the ONNX opset. Defaults to `17`.
        tolerance: the parity tolerance. Defaults to `1e-4`.

    Returns:
        A dict with `opset` and `max_abs_diff`, for the registry metadata.

    Raises:
        ExportError: when conversion fails or parity does not hold; nothing is
            written then.
    """
    model_proto = convert_to_onnx(model, opset)
    largest = check_parity(model, model_proto, parity_inputs, tolerance)
    path = Path(path)
    staging = path.with_name(f".{path.name}.partial")
    staging.write_bytes(model_proto.SerializeToString())
    os.replace(staging, path)
    return {"opset": opset, "max_abs_diff": largest, "parity_samples": int(len(next(iter(parity_inputs.values()))))}
