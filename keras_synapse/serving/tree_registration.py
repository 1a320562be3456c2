"""Registering a tree model: its window-input ONNX graphs (final and per fold), its native file, its card fields.

A tree has no `model.keras`: the registry version holds `model.onnx` (the
window summary and the trees in one graph, `keras_synapse.models.tree_windows`,
written only past the parity gate), `folds/fold_<k>.onnx` for `predict
--fold k`, and the library's own file for apps that use the library
(`model.lightgbm.txt`, `model.xgboost.json`, `model.catboost.cbm`; the
random forest has none, its ONNX graph is the portable form). The card says
`model_format: tree` so that loaders run ONNX Runtime and never look for a
Keras file.
"""

import numpy as np

NATIVE_FILES = {"lightgbm": "model.lightgbm.txt", "xgboost": "model.xgboost.json", "catboost": "model.catboost.cbm"}


def write_tree_files(directory, model, fold_models, parity_inputs, metadata):
    """Writes the graphs, the native file and the probes; records the export figures and digests in `metadata`."""
    from keras_synapse.models.tree_windows import export_tree_window_onnx
    from keras_synapse.runs import json_ready
    from keras_synapse.serving.model_card import file_digest
    from keras_synapse.serving.probes import record_probes, select_probe_inputs
    from keras_synapse.serving.runners import OnnxRunner

    windows = parity_inputs["sequence"]
    _, sequence_length, num_features = windows.shape

    def export(tree, path):
        return export_tree_window_onnx(tree.native, tree.kind, sequence_length, num_features, path, windows)

    metadata["onnx"] = json_ready(export(model, directory / "model.onnx"))
    (directory / "folds").mkdir()
    names = ["model.onnx"]
    for index, fold_model in enumerate(fold_models):
        export(fold_model, directory / "folds" / f"fold_{index}.onnx")
        names.append(f"folds/fold_{index}.onnx")
    if model.kind in NATIVE_FILES:
        _save_native(model, directory / NATIVE_FILES[model.kind])
        names.append(NATIVE_FILES[model.kind])
    metadata["probes"] = record_probes(select_probe_inputs(parity_inputs),
                                       {"onnx": OnnxRunner(directory / "model.onnx")})
    metadata["files"] = {name: file_digest(directory / name) for name in names}


def _save_native(model, path):
    if model.kind == "lightgbm":
        model.native.booster_.save_model(str(path))
    else:  # XGBoost and CatBoost save through their estimators
        model.native.save_model(str(path))


def fit_row_moments(rows):
    """The fit rows' per-feature mean and variance: what a card states (and parity inputs draw from) for a tree."""
    rows = np.asarray(rows, dtype=np.float64)
    return {"mean": rows.mean(axis=0).tolist(), "variance": rows.var(axis=0).tolist()}


def tree_card_fields(model):
    """The card's `model_format` and `tree` entries: the kind, the trees kept, their settings and the library."""
    from importlib import metadata

    library = {"random_forest": "scikit-learn", "xgboost": "xgboost-cpu"}.get(model.kind, model.kind)
    try:
        version = metadata.version(library)
    except metadata.PackageNotFoundError:
        version = None
    return {"model_format": "tree", "tree": {**model.info, "library": library, "library_version": version,
                                             "inputs": "the window's last bar, and each feature's window mean and "
                                                       "standard deviation, computed inside model.onnx"}}
