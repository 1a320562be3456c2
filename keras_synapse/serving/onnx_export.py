"""ONNX export through tf2onnx, written only when it matches Keras.

The parity gate runs the converted graph in ONNX Runtime on held-back windows
and compares it with the Keras model; an export that differs by more than the
tolerance is refused with the largest difference and where it occurred.

`reexport` re-exports a registry version (and optionally writes a dynamic
int8 copy, through its own gate: `quantize_onnx`); `python -m
keras_synapse.export` is its command line.
"""

import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from keras_synapse.errors import ExportError, SynapseError

DEFAULT_OPSET = 17
PARITY_TOLERANCE = 1e-4
# The int8 gate: the largest |int8 - float| score over the compared windows, as a fraction of the float scores'
# standard deviation there. At 0.25, even if every window's score moved that far, independently of the score,
# its correlation with any outcome (the IC) would shrink by at most 1 - 1 / sqrt(1 + 0.25^2) = 3%, and a ranking
# would swap only windows already within a quarter of the spread of each other. Quick shared-backbone runs'
# int8 copies measured 0.10 to 0.18 (max errors 0.005 to 0.010 on spreads of ~0.05): they pass.
MAX_QUANTIZATION_ERROR = 0.25


class QuantizationError(ExportError):
    """The int8 model differs from the float model by more than the allowed share of the score's spread."""


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


def export_onnx(model, path, parity_inputs, opset=DEFAULT_OPSET, tolerance=PARITY_TOLERANCE, rebuild_recurrent=True):
    """Exports `model` to `path` if it passes the parity gate.

    Args:
        model: the Keras model.
        path: where to write the `.onnx` file.
        parity_inputs: held-back inputs (dict name -> float32 array) for the
            parity check.
        opset: the ONNX opset. Defaults to `17`.
        tolerance: the parity tolerance. Defaults to `1e-4`.
        rebuild_recurrent: convert a copy of the model whose LSTM/GRU layers
            have `use_cudnn=False` and no (recurrent) dropout, see
            `rebuild_without_cudnn`; parity is still checked against `model`
            itself. Needed for models built or trained on a GPU, and makes
            the ONNX graph several times faster either way. Defaults to `True`.

    Returns:
        A dict with `opset`, `max_abs_diff`, `parity_samples` and
        `rebuilt_recurrent`, for the registry metadata.

    Raises:
        ExportError: when conversion fails or parity does not hold; nothing is
            written then.
    """
    source = rebuild_without_cudnn(model) if rebuild_recurrent and needs_recurrent_rebuild(model) else model
    model_proto = convert_to_onnx(source, opset)
    largest = check_parity(model, model_proto, parity_inputs, tolerance)
    path = Path(path)
    staging = path.with_name(f".{path.name}.partial")
    staging.write_bytes(model_proto.SerializeToString())
    os.replace(staging, path)
    return {"opset": opset, "max_abs_diff": largest, "parity_samples": int(len(next(iter(parity_inputs.values())))),
            "rebuilt_recurrent": source is not model}


# --- Recurrent layers: export from an inference-equivalent rebuild -------------

_RECURRENT_LAYERS = ("LSTM", "GRU")


def _recurrent_configs(config):
    """The configs of LSTM/GRU layers in a layer config, including inside `Bidirectional`."""
    if config.get("class_name") in _RECURRENT_LAYERS:
        yield config["config"]
    for key in ("layer", "backward_layer"):
        if isinstance(config.get("config", {}).get(key), dict):
            yield from _recurrent_configs(config["config"][key])


def _walk_layers(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _walk_layers(layer)
        else:
            yield layer


def needs_recurrent_rebuild(model):
    """True when `model` holds an LSTM or GRU that may not take the plain (ONNX-convertible) path.

    That is any recurrent layer whose `use_cudnn` is not `False` (on a GPU
    Keras 3 then runs `CudnnRNNV3`, which tf2onnx cannot convert) or that has
    `dropout`/`recurrent_dropout` (Keras then unrolls a step loop, which
    tf2onnx converts to an ONNX `Loop` instead of one fused `LSTM` node).
    """
    import keras

    for layer in _walk_layers(model):
        for candidate in [layer, getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)]:
            if isinstance(candidate, (keras.layers.LSTM, keras.layers.GRU)):
                if candidate.use_cudnn is not False or candidate.dropout or candidate.recurrent_dropout:
                    return True
    return False


def rebuild_without_cudnn(model, clear_dropout=True):
    """Clones `model` with every LSTM/GRU set to `use_cudnn=False` and copies its weights.

    A Keras 3 LSTM trained on a GPU runs cuDNN kernels (`CudnnRNNV3`) that
    tf2onnx cannot convert; the clone computes the same function with the
    generic kernels. Dropout is inactive at inference, so the clone also sets
    `dropout` and `recurrent_dropout` to 0 by default: with recurrent dropout
    Keras traces a step-by-step loop (an ONNX `Loop`, ~8x slower in ONNX
    Runtime for one window) instead of one fused LSTM. The clone is for
    inference and export only; `export_onnx` still checks parity against the
    original model.

    Args:
        model: a functional or sequential Keras model.
        clear_dropout: also set `dropout` and `recurrent_dropout` of the
            recurrent layers to 0. Defaults to `True`.

    Returns:
        A new `keras.Model` with the same inputs, outputs and weights.

    Example:

    >>> import keras, numpy as np
    >>> inputs = keras.Input((5, 3))
    >>> model = keras.Model(inputs, keras.layers.LSTM(4, recurrent_dropout=0.2)(inputs))
    >>> clone = rebuild_without_cudnn(model)
    >>> x = np.ones((2, 5, 3), "float32")
    >>> bool(np.allclose(model(x, training=False), clone(x, training=False)))
    True
    """
    import keras

    def clone_layer(layer):
        config = layer.get_config()
        wrapped = {"class_name": type(layer).__name__, "config": config}
        for recurrent in _recurrent_configs(wrapped):
            recurrent["use_cudnn"] = False
            if clear_dropout:
                recurrent["dropout"] = 0.0
                recurrent["recurrent_dropout"] = 0.0
        return type(layer).from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer)
    clone.set_weights(model.get_weights())
    # Adapted preprocessing layers (Normalization) derive their mean and
    # variance from the copied accumulators only when finalized.
    for layer in _walk_layers(clone):
        if hasattr(layer, "finalize_state") and layer.built:
            layer.finalize_state()
    return clone


# --- Dynamic int8 quantization ------------------------------------------------


def onnx_outputs(path_or_bytes, inputs):
    """Runs an ONNX model in ONNX Runtime on `inputs`; returns dict output name -> array."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes), providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs)))


def _largest_difference(first, second):
    return max(float(np.max(np.abs(first[name].astype(np.float64) - second[name].astype(np.float64))))
               for name in first)


def quantize_onnx(float_path, int8_path, parity_inputs, score_fn=None, max_relative_error=None):
    """Writes a dynamically int8-quantized copy of an ONNX model, measured against the float model (and gated).

    Weights of MatMul/Gemm/LSTM/attention nodes are stored as int8 and
    activations are quantized on the fly (`onnxruntime.quantization.
    quantize_dynamic`, per-tensor, signed). Both models then run on
    `parity_inputs`; the error that matters is the score's, the number a
    user ranks and trades on, so it is also stated relative to the float
    scores' standard deviation on the same windows.

    Args:
        float_path: the float ONNX model.
        int8_path: where to write the quantized model (atomically).
        parity_inputs: dict input name -> float32 array to compare on.
        score_fn: maps a dict of model outputs to one score per window (see
            `Predictor.output_columns`). Defaults to `None` (the first
            output's first unit).
        max_relative_error: the largest allowed max |int8 - float| score
            difference over the score's standard deviation; `None` gates
            nothing (the figures are still returned). Defaults to `None`.

    Returns:
        A dict with `path` (file name), `weight_type`,
        `max_abs_diff_vs_float` (over every output), `score_max_abs_diff`,
        `score_std`, `relative_error` (the ratio of the two),
        `max_relative_error`, `parity_samples`, `size_bytes` and
        `float_size_bytes`.

    Raises:
        QuantizationError: when `relative_error` exceeds `max_relative_error`;
            nothing is written then.
        ExportError: when quantization or the quantized model fails.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    float_path, int8_path = Path(float_path), Path(int8_path)
    staging = int8_path.with_name(f".{int8_path.stem}.partial.onnx")
    try:
        quantize_dynamic(str(float_path), str(staging), weight_type=QuantType.QInt8)
        float_outputs, int8_outputs = onnx_outputs(float_path, parity_inputs), onnx_outputs(staging, parity_inputs)
    except Exception as error:  # onnxruntime raises its own untyped errors
        staging.unlink(missing_ok=True)
        raise ExportError(f"int8 quantization of {float_path} failed: {error}") from None
    score_fn = score_fn or (lambda outputs: np.asarray(next(iter(outputs.values()))).reshape(
        len(next(iter(parity_inputs.values()))), -1)[:, 0])
    float_scores = np.asarray(score_fn(float_outputs), dtype=np.float64)
    score_error = float(np.max(np.abs(np.asarray(score_fn(int8_outputs), dtype=np.float64) - float_scores)))
    score_std = float(np.std(float_scores))
    relative = score_error / score_std if score_std > 0 else (0.0 if score_error == 0 else float("inf"))
    count = int(len(float_scores))
    if max_relative_error is not None and not relative <= max_relative_error:
        staging.unlink(missing_ok=True)
        raise QuantizationError(
            f"int8 model refused: its scores differ from the float model's by up to {score_error:.3g}, "
            f"{relative:.0%} of the scores' standard deviation ({score_std:.3g}) on {count} windows, over the "
            f"allowed {max_relative_error:.0%} (--max-quantization-error {max_relative_error:g}); nothing was "
            f"written and {float_path.name} is unchanged. Serve the float model, or allow more error knowingly.")
    os.replace(staging, int8_path)
    return {"path": int8_path.name, "weight_type": "int8 (dynamic, per-tensor)",
            "max_abs_diff_vs_float": _largest_difference(float_outputs, int8_outputs),
            "score_max_abs_diff": score_error, "score_std": score_std, "relative_error": relative,
            "max_relative_error": max_relative_error, "parity_samples": count,
            "size_bytes": int8_path.stat().st_size, "float_size_bytes": float_path.stat().st_size}


# --- Parity inputs for a registry version ---------------------------------------


def random_parity_inputs(metadata, num_samples=256, seed=0):
    """Random raw inputs shaped like the model's, drawn from the training normalization statistics.

    Each feature is normal with the mean and variance the model's
    `Normalization` layer was fitted on, so after normalization the inputs
    look standard normal: a shape-and-scale check, not real market windows.
    """
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, spec in metadata["inputs"].items():
        statistics = metadata["normalization"][name]
        mean = np.asarray(statistics["mean"], dtype=np.float64)
        scale = np.sqrt(np.maximum(np.asarray(statistics["variance"], dtype=np.float64), 0.0))
        shape = (num_samples, *spec["shape"][1:])
        inputs[name] = (mean + scale * rng.standard_normal(shape)).astype(np.float32)
    return inputs


def data_parity_inputs(metadata, data_spec=None, num_samples=256):
    """The most recent windows of the data a registry version was trained on, rebuilt from its metadata.

    Loads `data_spec` (default: the spec in the metadata), keeps the symbols
    and the time range recorded at training, computes the features with the
    training code and windows them like `keras_synapse.serving.inference`.

    Returns:
        `(inputs, description)`.

    Raises:
        SynapseError: when the data cannot be loaded or gives no window.
    """
    from keras_synapse.data import load_panel
    from keras_synapse.serving.model_inputs import ModelInputs

    spec = data_spec or metadata["data"]["spec"]
    panel = load_panel(spec)
    trained = [symbol for symbol in metadata["data"].get("symbols", []) if symbol in panel]
    if trained:
        panel = panel.select(trained)
    if metadata["data"].get("end"):
        panel = panel.truncate(metadata["data"]["end"])
    windows = ModelInputs.from_metadata(metadata).windows(panel)
    if windows.count == 0:
        raise SynapseError(f"The data '{spec}' gives no complete window for the model.")
    recent = np.sort(np.argsort(windows.frame["timestamp"].to_numpy(), kind="stable")[-num_samples:])
    inputs = {name: values[recent] for name, values in windows.inputs.items()}
    return inputs, f"the {len(recent)} most recent windows of the data '{spec}' (rebuilt from the metadata)"


# --- Command line: re-export (and quantize) a registry version ------------------

def reexport(version, quantize=False, opset=DEFAULT_OPSET, tolerance=PARITY_TOLERANCE, parity_inputs="auto",
             data_spec=None, parity_samples=256, max_quantization_error=MAX_QUANTIZATION_ERROR):
    """Re-exports `model.onnx` (and optionally `model.int8.onnx`) of a registry version.

    Both files are written to a staging directory inside the version first;
    only when the float parity gate and, with `quantize`, the int8 gate pass
    do they replace the version's files, and the card is updated. The int8
    model is compared with the float model on the parity windows plus the
    card's probe windows, by the score a `Predictor` reports.

    Args:
        max_quantization_error: with `quantize`, the largest allowed max
            |int8 - float| score difference as a fraction of the float
            scores' standard deviation on those windows (see
            `MAX_QUANTIZATION_ERROR` for why `0.25`); `None` gates nothing.
            Defaults to `0.25`.

    Returns:
        The updated `ModelCard` (also written to `metadata.json`, with the
        current `format_version`).

    Raises:
        ExportError: when conversion or the parity gate fails, and
            `QuantizationError` when the int8 gate does (the version's files
            and card are then left as they were).
        SynapseError: for a path that is not a registry version, or
            `parity_inputs="data"` with data that cannot be loaded.
    """
    import logging

    from keras_synapse.serving.inference import Predictor
    from keras_synapse.serving.probes import probe_inputs, record_probes, select_probe_inputs, with_backend_outputs
    from keras_synapse.serving.registry import read_metadata, resolve
    from keras_synapse.serving.runners import KerasRunner, OnnxRunner

    version_dir = resolve(version)
    metadata = read_metadata(version_dir)
    if metadata.get("model_format") == "tree":
        raise SynapseError(f"{version_dir} holds a tree model, exported at registration from its fitted trees "
                           "(there is no model.keras to re-export from); retrain to export it again.")
    if not (version_dir / "model.keras").is_file():
        raise SynapseError(f"{version_dir} has no model.keras to export from.")
    if max_quantization_error is not None and not max_quantization_error >= 0:
        raise SynapseError(f"`max_quantization_error` must be >= 0. Received: max_quantization_error="
                           f"{max_quantization_error}")
    if parity_inputs in ("auto", "data"):
        try:
            inputs, description = data_parity_inputs(metadata, data_spec, parity_samples)
        except SynapseError as error:
            if parity_inputs == "data":
                raise
            logging.getLogger("keras_synapse.serving.onnx_export").warning(
                "Could not rebuild windows from the data (%s); checking parity on random inputs instead.", error)
            parity_inputs = "random"
    if parity_inputs == "random":
        inputs = random_parity_inputs(metadata, parity_samples)
        description = f"{parity_samples} random inputs drawn from the normalization statistics"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    import keras

    model = keras.models.load_model(version_dir / "model.keras", compile=False)
    staging = version_dir / ".export.partial"
    shutil.rmtree(staging, ignore_errors=True)  # left by a crash: never a committed file
    staging.mkdir()
    try:
        info = export_onnx(model, staging / "model.onnx", inputs, opset, tolerance)
        if quantize:
            predictor = Predictor(metadata, OnnxRunner(staging / "model.onnx"), "onnx")
            compared, windows = inputs, description
            if metadata.get("probes"):
                probes = probe_inputs(metadata["probes"])
                compared = {name: np.concatenate([values, probes[name]]) for name, values in inputs.items()}
                windows = f"{description}, and the card's {len(next(iter(probes.values())))} probe windows"
            int8_info = quantize_onnx(staging / "model.onnx", staging / "model.int8.onnx", compared,
                                      lambda outputs: predictor.output_columns(outputs)["score"],
                                      max_quantization_error)
        # Both gates passed: the files replace the version's. A crash before the card is written leaves files
        # whose digests the card does not record: refused at load by name, never used unverified.
        if quantize:
            os.replace(staging / "model.int8.onnx", version_dir / "model.int8.onnx")
        os.replace(staging / "model.onnx", version_dir / "model.onnx")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    metadata = metadata.updated(onnx={**info, "tolerance": tolerance, "parity_inputs": description,
                                      "exported_by": "python -m keras_synapse.export"})
    runners = {"onnx": OnnxRunner(version_dir / "model.onnx")}
    if quantize:
        metadata = metadata.updated(onnx_int8={**int8_info, "compared_on": windows})
        runners["onnx_int8"] = OnnxRunner(version_dir / "model.int8.onnx")
    # The probes keep the windows and Keras outputs of registration; a card from before probes gets new ones.
    probes = metadata.get("probes") or record_probes(select_probe_inputs(inputs),
                                                     {"keras": KerasRunner.from_model(model)})
    metadata = metadata.updated(probes=with_backend_outputs(probes, runners))
    # The exported files' digests; model.keras keeps the one recorded at registration (a card from before
    # digests existed records the file exported from).
    names = ["model.onnx"] + (["model.int8.onnx"] if quantize else []) + (
        [] if "model.keras" in metadata.get("files", {}) else ["model.keras"])
    metadata = metadata.with_file_digests(version_dir, names)
    metadata.write(version_dir)
    return metadata
