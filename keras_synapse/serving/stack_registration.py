"""Registering and running a stack: one ONNX graph per member and the meta-learner's weights in the card.

The version holds `members/<member>.onnx` (a network through the Keras
export's parity gate, a tree as its window-input graph) and the card's
`stack` entry: each member's weight on its standardized score, the means and
scales, the intercept. `StackRunner` runs the members in ONNX Runtime and
combines them with exactly `StackModel.combine`'s formula; registration
checks that the runner reproduces the trained stack within `PARITY_TOLERANCE`
on the parity windows before anything is registered.
"""

import numpy as np

from keras_synapse.errors import ExportError

PARITY_TOLERANCE = 1e-4


def write_stack_files(directory, model, parity_inputs, metadata):
    """Exports every member, checks the combined runner against the stack, records probes and digests."""
    from keras_synapse.models.tree_windows import export_tree_window_onnx
    from keras_synapse.runs import json_ready
    from keras_synapse.serving.model_card import file_digest
    from keras_synapse.serving.onnx_export import export_onnx
    from keras_synapse.serving.probes import record_probes, select_probe_inputs
    from keras_synapse.training.tree_trainer import TreeModel

    (directory / "members").mkdir()
    exports = {}
    for member, member_model in model.members.items():
        path = directory / "members" / f"{member}.onnx"
        if isinstance(member_model, TreeModel):
            windows = parity_inputs["sequence"]
            exports[member] = export_tree_window_onnx(member_model.native, member_model.kind, windows.shape[1],
                                                      windows.shape[2], path, windows)
        else:
            import keras

            plain = keras.Model(member_model.input, member_model.output, name=member_model.name)
            exports[member] = export_onnx(plain, path, parity_inputs)
    metadata["stack"] = stack_card_entry(model)
    runner = StackRunner(directory, metadata["stack"])
    largest = float(np.max(np.abs(runner(parity_inputs)["prediction"] - model.predict(parity_inputs))))
    if not largest <= PARITY_TOLERANCE:
        raise ExportError(f"The stack's ONNX members combined differ from the trained stack by {largest:.3g} "
                          f"(tolerance {PARITY_TOLERANCE:g}).")
    metadata["onnx"] = json_ready({"max_abs_diff": largest, "members": exports})
    metadata["probes"] = record_probes(select_probe_inputs(parity_inputs), {"onnx": runner})
    metadata["files"] = {f"members/{member}.onnx": file_digest(directory / "members" / f"{member}.onnx")
                         for member in model.members}


def stack_card_entry(model):
    """The card's `stack` entry: members, weights, the out-of-fold means and scales, the intercept."""
    return {"members": list(model.members),
            "weights": {member: float(value) for member, value in model.weights.items()},
            "mean": {member: float(value) for member, value in model.mean.items()},
            "scale": {member: float(value) for member, value in model.scale.items()},
            "intercept": model.intercept, "files": {member: f"members/{member}.onnx" for member in model.members},
            "combination": "intercept + sum of weight * (member score - mean) / scale",
            "fitted_on": "each member's out-of-fold scores of the final refit's fit windows (purged inner folds)"}


class StackRunner:
    """The stack's members in ONNX Runtime, combined: a runner as `OnnxRunner` is (dict inputs -> dict outputs).

    Args:
        version_dir: the registry version (holding `members/`).
        entry: the card's `stack` entry.
        intra_op_threads: per member session. Defaults to `None`.
    """

    def __init__(self, version_dir, entry, intra_op_threads=None):
        from pathlib import Path

        from keras_synapse.serving.runners import OnnxRunner

        self.entry = entry
        self.runners = {member: OnnxRunner(Path(version_dir) / entry["files"][member], intra_op_threads)
                        for member in entry["members"]}
        self.input_shapes = next(iter(self.runners.values())).input_shapes
        self.output_names = ["prediction"]

    def __call__(self, inputs):
        entry = self.entry
        total = None
        for member, runner in self.runners.items():
            scores = np.asarray(next(iter(runner(inputs).values())), dtype=np.float64).ravel()
            part = entry["weights"][member] * (scores - entry["mean"][member]) / entry["scale"][member]
            total = part if total is None else total + part
        return {"prediction": (total + entry["intercept"]).reshape(-1, 1).astype(np.float32)}
