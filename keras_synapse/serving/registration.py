"""Registering a trained model: `model.keras`, the parity-gated `model.onnx`, fold models and the model card."""

import numpy as np


def register_model(config, registry_dir, model, data, metrics, parity_inputs, drift_rows, fold_models=(),
                   promote=True):
    """Saves `model.keras`, exports `model.onnx` through the parity gate, writes the metadata.

    With `promote=False` the version is registered without moving `latest`
    (a challenger, see `keras_synapse.serving.registry.set_latest`).

    The metadata records every file's SHA-256 and probe windows with both
    backends' outputs (`keras_synapse.serving.probes`), checked at each load.

    `drift_rows` selects the feature rows the model was fitted on; their
    per-feature distributions go into the metadata as the drift reference.
    The fold models go to `folds/fold_<k>.keras`, so `predict --fold k`
    reproduces the run's test-fold predictions.
    """
    import keras

    from keras_synapse.config import config_to_dict
    from keras_synapse.runs import json_ready
    from keras_synapse.serving.drift import training_distributions
    from keras_synapse.serving.model_card import NORMALIZATION_DDOF, file_digest
    from keras_synapse.serving.onnx_export import export_onnx
    from keras_synapse.serving.probes import record_probes, select_probe_inputs
    from keras_synapse.serving.registry import register
    from keras_synapse.serving.runners import KerasRunner, OnnxRunner

    from keras_synapse.serving.stack_registration import write_stack_files
    from keras_synapse.serving.tree_registration import fit_row_moments, tree_card_fields, write_tree_files
    from keras_synapse.training.stacking import StackModel
    from keras_synapse.training.tree_trainer import TreeModel

    windowed, panel = data.windowed, data.panel
    tree, stack = isinstance(model, TreeModel), isinstance(model, StackModel)

    def write_files(directory):
        if tree:
            write_tree_files(directory, model, fold_models, parity_inputs, metadata)
            return
        if stack:
            write_stack_files(directory, model, parity_inputs, metadata)
            return
        # An uncompiled copy (same layers and weights): a compiled model would
        # carry keras_synapse's custom loss and metrics, and plain
        # keras.models.load_model could not open it without our package.
        inference_model = keras.Model(model.input, model.output, name=model.name)
        inference_model.save(directory / "model.keras")
        (directory / "folds").mkdir()
        for index, fold_model in enumerate(fold_models):
            keras.Model(fold_model.input, fold_model.output, name=fold_model.name).save(
                directory / "folds" / f"fold_{index}.keras")
        # register() writes metadata.json after this returns, so the export figures and digests land in it.
        metadata["onnx"] = json_ready(export_onnx(inference_model, directory / "model.onnx", parity_inputs))
        metadata["probes"] = record_probes(select_probe_inputs(parity_inputs), {
            "keras": KerasRunner.from_model(inference_model), "onnx": OnnxRunner(directory / "model.onnx")})
        names = ["model.keras", "model.onnx"] + [f"folds/fold_{index}.keras" for index in range(len(fold_models))]
        metadata["files"] = {name: file_digest(directory / name) for name in names}

    from keras_synapse.training.seed_ensemble import ensemble_members

    # A seed ensemble's members share the final refit's fit rows, so the first member's statistics are everyone's.
    normalized = (ensemble_members(model) or [model])[0]

    def statistics(layer_name):
        return normalization_statistics(normalized.get_layer(layer_name))

    inputs = {"sequence": {"shape": [None, config.sequence_length, len(windowed.feature_names)],
                           "feature_set": config.features, "feature_names": list(windowed.feature_names),
                           "definitions": feature_definitions(config.features, windowed.feature_names)}}
    normalization = {"fitted_on": "the final refit's fit rows (training data only)",
                     "sequence": ({**fit_row_moments(windowed.features[drift_rows]), "ddof": NORMALIZATION_DDOF}
                                  if tree or stack else statistics("feature_normalization"))}
    if tree or stack:
        normalization["used"] = "none: trees split on the raw features; the fit rows' moments, for parity inputs"
    else:
        normalization["formula"] = NORMALIZATION_FORMULA
    if windowed.static_features is not None:
        inputs["static"] = {"shape": [None, len(windowed.static_feature_names)], "feature_set": config.static_features,
                            "feature_names": list(windowed.static_feature_names),
                            "definitions": feature_definitions(config.static_features, windowed.static_feature_names)}
        normalization["static"] = statistics("static_normalization")
    metadata = {
        "experiment": config.name,
        "config": config_to_dict(config),
        "feature_set": config.features,
        "feature_names": list(windowed.feature_names),
        "inputs": inputs,
        "raw_features": True,
        "label": metrics["label"],
        "normalization": normalization,
        "windows": window_rules(config, windowed.sessions),
        "data": {"spec": config.data, "bars": config.bars or "the source's bars",
                 "bars_note": "predict builds these bars from the source's; serve and the stream take bars "
                              "already built", "symbols": list(panel.symbols), "fingerprint": panel.fingerprint(),
                 "start": str(panel.start), "end": str(panel.end)},
        "metrics": {"folds": metrics["folds"], "summary": metrics["summary"]},
        "calibration": metrics.get("calibration"),
        "filter_confidence": config.filter_confidence,
        "packages": _package_versions(),
        "parameters": int(model.count_params()),
        **(tree_card_fields(model) if tree else {"model_format": "stack"} if stack else {}),
    }
    rows, names = windowed.features[drift_rows], list(windowed.feature_names)
    if windowed.static_features is not None:  # the same columns as Predictor.feature_rows
        extra = [index for index, name in enumerate(windowed.static_feature_names) if name not in names]
        rows = np.concatenate([rows, windowed.static_features[drift_rows][:, extra]], axis=1)
        names += [windowed.static_feature_names[index] for index in extra]
    metadata["drift_reference"] = training_distributions(rows, names)
    metadata = json_ready(metadata)
    return register(registry_dir, config.name, write_files, metadata, promote=promote)


# What the model's Normalization layers compute (Keras' backend epsilon, 1e-7, guards a constant feature).
NORMALIZATION_FORMULA = ("(x - mean) / max(sqrt(variance), 1e-7) per feature, the variance with ddof 0 (the sum of "
                         "squared deviations over the row count)")


def normalization_statistics(layer):
    """The card's entry for an adapted `keras.layers.Normalization`: its `mean`, `variance` and their `ddof`.

    `adapt` computes the population variance (`ddof` 0, numpy's default),
    so a user who standardizes with pandas' `std()` (`ddof` 1) would feed
    the model slightly different inputs; the card names the convention.
    """
    from keras_synapse.serving.model_card import NORMALIZATION_DDOF

    return {"mean": np.asarray(layer.mean, dtype=np.float64).ravel().tolist(),
            "variance": np.asarray(layer.variance, dtype=np.float64).ravel().tolist(), "ddof": NORMALIZATION_DDOF}


def _package_versions():
    from importlib import metadata

    versions = {}
    for name in ("keras_synapse", "tensorflow", "keras", "tf2onnx", "onnxruntime", "numpy", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def feature_definitions(feature_set_name, feature_names):
    """What the model card states about each input feature: `kind`, parameters and `formula`, or `None`."""
    from keras_synapse.features import get_feature_set

    definitions = get_feature_set(feature_set_name).definitions
    return {name: definitions.get(name) for name in feature_names}


def window_rules(config, sessions):
    """How windows are cut from a symbol's feature rows, as the model card states it."""
    from keras_synapse.training.preparation import warmup_bars

    warmup = warmup_bars(config)
    return {
        "sequence_length": config.sequence_length,
        "warmup": warmup,
        "feature_rows": f"a symbol's feature rows start at its bar number {warmup} (the first {warmup - 1} bars "
                        "are history only)",
        "window": f"the {config.sequence_length} consecutive feature rows ending at each row t, oldest first",
        "max_gap_factor": config.max_gap_factor,
        "gap_rule": f"a row whose spacing from the previous row exceeds {config.max_gap_factor:g} x the median "
                    "spacing of the symbol's feature rows starts a new segment, unless the spacing is a regular "
                    "closure (`sessions`); a window must lie within one segment (0 disables the rule)",
        "sessions": {**sessions.to_dict(), "rule": sessions.describe()},
        "non_finite": "a window holding a NaN or infinite feature is skipped",
        "dtype": "float32",
        "normalization": "inside the model: pass raw features",
    }
