"""Probe windows: a few model inputs and what each backend answered at registration, re-checked at every load.

The file digests of the model card say a model file holds the bytes that were
registered; the probes say the runtime that loads it still computes what it
computed then. They catch what a digest cannot: a card without digests (an
older version, or one whose `checksum` and `files` were deleted to keep a hand
edit), an ONNX Runtime or Keras upgrade that changes results, a file replaced
together with its recorded digest by a tool that knew no better.

A card's `probes` entry holds the inputs (`PROBE_COUNT` held-back windows,
float32, base64 of the raw bytes so they are exact) and, per backend
(`keras`, `onnx`, `onnx_int8`), the outputs it gave on them:

    {"inputs": {"sequence": {"shape": [4, 30, 12], "float32_base64": "..."}},
     "outputs": {"keras": {"prediction": {...}}, "onnx": {...}},
     "rtol": 0.001, "atol": 1e-05}

Checking costs one model call on four windows (under a millisecond in ONNX
Runtime, a few in Keras).
"""

import base64
import binascii

import numpy as np

from keras_synapse.serving.runners import ModelLoadError

PROBE_COUNT = 4
# Same model, same runtime, other thread counts or CPUs: differences of 1e-7.
# A damaged weight moved outputs by up to 0.58 in the reliability probe.
RELATIVE_TOLERANCE = 1e-3
ABSOLUTE_TOLERANCE = 1e-5


def select_probe_inputs(inputs, count=PROBE_COUNT):
    """`count` windows spread evenly over `inputs` (dict name -> array with windows first)."""
    total = len(next(iter(inputs.values())))
    rows = np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))
    return {name: np.ascontiguousarray(values[rows], dtype=np.float32) for name, values in inputs.items()}


def record_probes(inputs, runners):
    """The card's `probes` entry: `inputs` and each runner's outputs on them.

    Args:
        inputs: the probe inputs, from `select_probe_inputs`.
        runners: dict backend name -> runner (a callable dict input name ->
            array to dict output name -> array, as in
            `keras_synapse.serving.runners`).
    """
    return {"inputs": {name: _encode(values) for name, values in inputs.items()},
            "outputs": {backend: {name: _encode(values) for name, values in runner(inputs).items()}
                        for backend, runner in runners.items()},
            "rtol": RELATIVE_TOLERANCE, "atol": ABSOLUTE_TOLERANCE}


def with_backend_outputs(probes, runners):
    """`probes` with the outputs of `runners` (dict backend -> runner) on its inputs replaced or added."""
    inputs = probe_inputs(probes)
    outputs = {backend: {name: _encode(values) for name, values in runner(inputs).items()}
               for backend, runner in runners.items()}
    return {**probes, "outputs": {**probes["outputs"], **outputs}}


def probe_inputs(probes):
    """The probe inputs of a card's `probes` entry, as float32 arrays."""
    return {name: _decode(value) for name, value in probes["inputs"].items()}


def check_probes(card, runner, backend, source):
    """Runs `runner` on the card's probe inputs and compares with what `backend` answered at registration.

    A card without probes, or without outputs for `backend`, checks nothing.

    Args:
        card: the version's `ModelCard`.
        runner: the loaded runner.
        backend: `"keras"`, `"onnx"` or `"onnx_int8"`.
        source: the model file, for the message.

    Raises:
        ModelLoadError: when an output differs beyond the tolerance, naming the
            file, the output and the largest difference.
    """
    probes = card.get("probes")
    if not probes or backend not in probes.get("outputs", {}):
        return
    try:
        expected = {name: _decode(value).astype(np.float64) for name, value in probes["outputs"][backend].items()}
        inputs = probe_inputs(probes)
    except (KeyError, TypeError, ValueError, binascii.Error) as error:
        raise ModelLoadError(f"{source}: the model card's `probes` entry is damaged ({error}).") from None
    actual = runner(inputs)
    rtol, atol = probes.get("rtol", RELATIVE_TOLERANCE), probes.get("atol", ABSOLUTE_TOLERANCE)
    for name, want in expected.items():
        got = np.asarray(actual.get(name), dtype=np.float64) if name in actual else None
        if got is None or got.shape != want.shape:
            raise ModelLoadError(f"{source} does not give the outputs registered with it: output '{name}' is "
                                 f"{'missing' if got is None else f'shaped {got.shape}'}, was {want.shape}.")
        difference = np.abs(got - want)
        if not np.all(difference <= atol + rtol * np.abs(want)):
            not_finite = int((~np.isfinite(got)).sum())
            how = (f"is NaN or infinite in {not_finite} of {got.size} values" if not_finite else
                   f"differs by up to {float(difference.max()):.3g} (allowed {atol:g} + {rtol:g} x |expected|)")
            raise ModelLoadError(
                f"{source} does not compute what it computed at registration: on the card's probe windows its "
                f"output '{name}' {how}. The file or the runtime changed; re-export or re-train it.")


def _encode(values):
    values = np.ascontiguousarray(values, dtype=np.float32)
    return {"shape": list(values.shape), "float32_base64": base64.b64encode(values.tobytes()).decode("ascii")}


def _decode(value):
    raw = base64.b64decode(value["float32_base64"])
    return np.frombuffer(raw, dtype=np.float32).reshape(value["shape"])
