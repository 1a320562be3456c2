"""Gradient-boosted trees and random forests on feature matrices, exported to ONNX.

The window baselines a network has to beat are trees (Qlib's CSI300 benchmark
measures LSTM and GRU against LightGBM). This module fits four kinds on a 2-D
matrix of per-row features (`TREE_MODELS`): LightGBM, XGBoost, CatBoost and a
scikit-learn random forest, and exports a fitted one to ONNX only when ONNX
Runtime reproduces it.

Settings (fixed, `tree_regressor`) are for noisy financial targets: at most
400 trees (200 for the forest), learning rate 0.05, shallow trees, large
leaves (LightGBM at least 200 rows a leaf, XGBoost a hessian of 100, which
for squared error is 100 rows, the forest 100 rows), 80% of rows and of
features per tree, deterministic threads (two by default) and the run's
seed. CatBoost grows symmetric trees of depth 5 because its ONNX export
writes no other kind; symmetric trees ignore `min_data_in_leaf`, so a leaf
L2 penalty of 30 shrinks the values of small leaves instead.

`fit_tree` fits on the fit rows only and keeps the number of trees (25 to
400; 25 to 200 for the forest) whose predictions have the best IC, the
Pearson correlation with the target, on the validation rows. One model is
grown to the largest count and its prefixes are scored; the returned model
holds exactly the chosen trees, so its predictions and its ONNX export use
those: LightGBM is refitted with that many trees (deterministic training with
the same seed grows the same trees; the tests check the predictions are
equal), XGBoost's booster is sliced, CatBoost is shrunk and the forest keeps
its first estimators.

Both functions cast features to float32 first, because ONNX Runtime compares
float32 inputs with float32 thresholds. XGBoost and CatBoost split float32
values with float32 thresholds, so their graphs split as they do. LightGBM
splits with float64 thresholds, and one grown on float64 features disagrees
with its float32 graph wherever float32 rounding moves a value across a
threshold: with a feature of 1e4 plus noise of 0.01 (a price level, say),
on 1,876 of 3,000 rows, by up to 0.47. Grown on float32 features, its
thresholds lie between float32 values, often halfway; onnxmltools rounds
them to the nearest float32, which sent 2,550 of those rows the other way,
so the export rounds each down to the largest float32 not above it (as
skl2onnx does for scikit-learn's trees, which split float32 values too), and
the native model and the graph then split every float32 row alike.

The parity gate's tolerance is an absolute 1e-4 for every kind. What remains
is float32 arithmetic in ONNX Runtime's sum of leaf values, where the native
libraries sum in float64. Measured with all 400 trees (the forest's 200) on
`x0 * x1` plus unit noise, predictions within about +-3.7, on 3,000 fit and
1,000 test rows with two seeds, the largest differences were 1.6e-6
(LightGBM), 2.6e-6 (XGBoost), 2.2e-6 (CatBoost) and 1.9e-7 (the forest,
whose averages stay small). They
grow with the predictions' magnitude, so targets should be scaled (the
toolkit's scaled forward returns are); `tolerance` can be raised for others.

XGBoost, CatBoost and the converters (`onnxmltools`, `skl2onnx`) are
optional, installed with `pip install -e ".[trees]"`, and imported only when
a kind needs them. `keras_synapse.models.tree_windows` puts the window
summary in front of a tree graph, so that it takes raw windows as the Keras
models do.
"""

import importlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from keras_synapse.errors import ConfigError, ExportError, SynapseError

TREE_MODELS = ("lightgbm", "xgboost", "catboost", "random_forest")
# The boosted kinds' number of trees is chosen among these by the validation rows' IC.
TREE_COUNTS = (25, 50, 100, 200, 400)
# The forest's: its trees are independent, so a prefix is a smaller forest.
FOREST_TREE_COUNTS = (25, 50, 100, 200)
PARITY_TOLERANCE = 1e-4
# The default-domain opset asked of onnxmltools and skl2onnx (onnxmltools 1.16
# supports up to 15); CatBoost writes its own graph (ai.onnx.ml only).
TARGET_OPSET = 15

_PARAMETERS = {
    "lightgbm": {
        "objective": "regression",
        "n_estimators": max(TREE_COUNTS),
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 200,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "deterministic": True,
        "force_col_wise": True,
        "verbose": -1,
    },
    "xgboost": {
        "objective": "reg:squarederror",
        "n_estimators": max(TREE_COUNTS),
        "learning_rate": 0.05,
        "max_depth": 5,
        "min_child_weight": 100.0,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "reg_lambda": 1.0,
        "tree_method": "hist",
    },
    "catboost": {
        "loss_function": "RMSE",
        "iterations": max(TREE_COUNTS),
        "learning_rate": 0.05,
        "depth": 5,
        "grow_policy": "SymmetricTree",
        "l2_leaf_reg": 30.0,
        "bootstrap_type": "Bernoulli",
        "subsample": 0.8,
        "rsm": 0.8,
        "logging_level": "Silent",
        "allow_writing_files": False,
    },
    "random_forest": {
        "n_estimators": max(FOREST_TREE_COUNTS),
        "min_samples_leaf": 100,
        "max_features": 0.8,
        "bootstrap": True,
        "max_samples": 0.8,
    },
}
# Each library's names for the seed and the number of threads.
_SEED_AND_THREADS = {
    "lightgbm": ("random_state", "n_jobs"),
    "xgboost": ("random_state", "n_jobs"),
    "catboost": ("random_seed", "thread_count"),
    "random_forest": ("random_state", "n_jobs"),
}
# kind -> (module, class, pip package).
_ESTIMATORS = {
    "lightgbm": ("lightgbm", "LGBMRegressor", "lightgbm"),
    "xgboost": ("xgboost", "XGBRegressor", "xgboost"),
    "catboost": ("catboost", "CatBoostRegressor", "catboost"),
    "random_forest": ("sklearn.ensemble", "RandomForestRegressor", "scikit-learn"),
}


def _check_kind(kind):
    if kind not in TREE_MODELS:
        raise ConfigError(f"Unknown tree model. Known: {', '.join(TREE_MODELS)}. Received: kind={kind!r}")


def _import(module, package, kind):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"The {kind} trees need the optional package `{package}` ({error}). "
            f'Install the tree extras: pip install -e ".[trees]"'
        ) from None


# The ONNX converter of each kind (CatBoost exports itself): checked with the estimator before a run trains.
_CONVERTERS = {"lightgbm": "onnxmltools", "xgboost": "onnxmltools", "random_forest": "skl2onnx"}


def require_packages(kind):
    """Imports what fitting and exporting `kind` need, so a missing extra stops a run before it trains.

    Raises:
        ConfigError: naming the missing package and the extra that installs it.
    """
    _check_kind(kind)
    module, _, package = _ESTIMATORS[kind]
    _import(module, package, kind)
    if kind in _CONVERTERS:
        _import(_CONVERTERS[kind], _CONVERTERS[kind], kind)


def _parameters(kind, seed, threads, overrides):
    seed_name, threads_name = _SEED_AND_THREADS[kind]
    return {**_PARAMETERS[kind], seed_name: int(seed), threads_name: int(threads), **overrides}


def tree_regressor(kind, seed=0, threads=2, **overrides):
    """An unfitted regressor of kind `kind` with the module's fixed settings.

    Args:
        kind: one of `TREE_MODELS`.
        seed: the random seed (row and feature sampling). Defaults to `0`.
        threads: the number of threads. Defaults to `2`.
        **overrides: settings that replace the defaults, in the library's
            own names (e.g. `n_estimators=50`, or `iterations=50` for CatBoost).

    Returns:
        A `lightgbm.LGBMRegressor`, `xgboost.XGBRegressor`,
        `catboost.CatBoostRegressor` or
        `sklearn.ensemble.RandomForestRegressor`.

    Raises:
        ConfigError: for an unknown kind, or when the kind's library is not
            installed.
    """
    _check_kind(kind)
    module, name, package = _ESTIMATORS[kind]
    return getattr(_import(module, package, kind), name)(**_parameters(kind, seed, threads, overrides))


def _as_features(x, name):
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ConfigError(f"`{name}` must be a 2-D [rows, features] matrix. Received: shape={x.shape}")
    return x


def _correlation(predictions, targets):
    predictions = np.asarray(predictions, dtype=np.float64).ravel()
    spread = np.std(predictions) * np.std(targets)
    if not spread:
        return float("nan")
    return float(np.mean((predictions - predictions.mean()) * (targets - targets.mean())) / spread)


def _prefix_predictions(model, kind, x, counts):
    """`{count: predictions of the model's first `count` trees}` on `x`."""
    if kind == "lightgbm":
        return {count: model.predict(x, num_iteration=count) for count in counts}
    if kind == "xgboost":
        return {count: model.predict(x, iteration_range=(0, count)) for count in counts}
    if kind == "catboost":
        return {count: model.predict(x, ntree_end=count) for count in counts}
    cumulative = np.cumsum([tree.predict(x) for tree in model.estimators_], axis=0)
    return {count: cumulative[count - 1] / count for count in counts}


def _keep_trees(model, kind, count, parameters, fit_x, fit_y):
    """`model` with only its first `count` trees, ready to predict and export."""
    if kind == "lightgbm":
        if count == model.n_estimators:
            return model
        # Deterministic, single-seeded training grows the same first trees.
        return type(model)(**{**parameters, "n_estimators": count}).fit(fit_x, fit_y)
    if kind == "xgboost":
        if count == model.get_booster().num_boosted_rounds():
            return model
        kept = type(model)(**{**parameters, "n_estimators": count})
        kept.load_model(bytearray(model.get_booster()[:count].save_raw("ubj")))
        return kept
    if kind == "catboost":
        if count < model.tree_count_:
            model.shrink(ntree_end=count)
        return model
    model.estimators_ = model.estimators_[:count]
    model.n_estimators = count
    return model


def fit_tree(kind, fit_x, fit_y, validation_x, validation_y, seed=0, threads=2):
    """Fits trees on the fit rows, keeping as many as score best on the validation rows.

    Args:
        kind: one of `TREE_MODELS`.
        fit_x: `[rows, features]` the trees are grown on (cast to float32).
        fit_y: `[rows]` targets of the fit rows.
        validation_x: `[rows, features]` that choose the number of trees
            (cast to float32); never fitted on.
        validation_y: `[rows]` targets of the validation rows.
        seed: the random seed. Defaults to `0`.
        threads: the number of threads. Defaults to `2`.

    Returns:
        `(model, info)`: the fitted model holding only the chosen trees, and a
        dict with `kind`, `num_trees`, `validation_ic` (the kept model's IC on
        the validation rows; NaN when its predictions are constant) and
        `parameters` (the JSON-serializable settings the trees were grown
        with; the first `num_trees` of them are kept).

    Raises:
        ConfigError: for an unknown kind, a missing library, or inputs that
            are not 2-D matrices with as many targets as rows and the same
            features.
    """
    _check_kind(kind)
    fit_x, validation_x = _as_features(fit_x, "fit_x"), _as_features(validation_x, "validation_x")
    fit_y = np.asarray(fit_y, dtype=np.float64).ravel()
    validation_y = np.asarray(validation_y, dtype=np.float64).ravel()
    if len(fit_y) != len(fit_x) or len(validation_y) != len(validation_x):
        raise ConfigError(f"Each row needs one target. Received: {len(fit_x)} fit rows with {len(fit_y)} targets, "
                          f"{len(validation_x)} validation rows with {len(validation_y)} targets")
    if fit_x.shape[1] != validation_x.shape[1]:
        raise ConfigError(f"The fit and validation rows must have the same features. "
                          f"Received: {fit_x.shape[1]} and {validation_x.shape[1]}")
    parameters = _parameters(kind, seed, threads, {})
    json.dumps(parameters)  # the settings go into run metadata as they are
    model = tree_regressor(kind, seed, threads).fit(fit_x, fit_y)
    counts = FOREST_TREE_COUNTS if kind == "random_forest" else TREE_COUNTS
    scores = [_correlation(predictions, validation_y)
              for predictions in _prefix_predictions(model, kind, validation_x, counts).values()]
    num_trees = counts[int(np.nanargmax(scores))] if np.isfinite(scores).any() else counts[0]
    model = _keep_trees(model, kind, num_trees, parameters, fit_x, fit_y)
    info = {
        "kind": kind,
        "num_trees": int(num_trees),
        "validation_ic": _correlation(model.predict(validation_x), validation_y),
        "parameters": parameters,
    }
    return model, info


def _convert(model, kind, num_features, staging):
    """The ONNX `ModelProto` of `model`, input `input` float32 [None, num_features], output `prediction`."""
    import onnx

    if kind == "lightgbm" or kind == "xgboost":
        onnxmltools = _import("onnxmltools", "onnxmltools", kind)
        from onnxmltools.convert.common.data_types import FloatTensorType

        if kind == "lightgbm":
            convert, source = onnxmltools.convert_lightgbm, _float32_thresholds(model)
        else:
            convert, source = onnxmltools.convert_xgboost, model
        proto = convert(source, initial_types=[("input", FloatTensorType([None, num_features]))],
                        target_opset=TARGET_OPSET)
    elif kind == "random_forest":
        skl2onnx = _import("skl2onnx", "skl2onnx", kind)
        from skl2onnx.common.data_types import FloatTensorType

        proto = skl2onnx.convert_sklearn(model, initial_types=[("input", FloatTensorType([None, num_features]))],
                                         target_opset=TARGET_OPSET)
    else:
        model.save_model(str(staging), format="onnx")
        proto = onnx.load(str(staging))
    graph = proto.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportError(f"The {kind} ONNX graph has {len(graph.input)} inputs and {len(graph.output)} outputs; "
                           f"one of each was expected.")
    _rename(graph, graph.input[0].name, "input")
    _rename(graph, graph.output[0].name, "prediction")
    # CatBoost declares its output [N] but returns [N, 1]; declare what comes out.
    dims = graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 1:
        dims.add().dim_value = 1
    return proto


def _float32_thresholds(model):
    """A copy of the LightGBM booster whose thresholds are rounded down to float32 values.

    LightGBM splits `x <= t` with `t` in float64, often the midpoint of two
    adjacent float32 values; onnxmltools rounds `t` to the nearest float32,
    which can be the upper value, and sends that value left instead of right.
    For float32 `x`, `x <= t` exactly when `x` is at most the largest float32
    not above `t`, so with those thresholds the graph splits every float32
    row as LightGBM does.
    """
    import lightgbm

    booster = model.booster_ if hasattr(model, "booster_") else model
    lines = booster.model_to_string().splitlines()
    if any(line.startswith("num_cat=") and line != "num_cat=0" for line in lines):
        return booster  # categorical splits keep category lists in `threshold`; left as they are
    rounded = []
    for line in lines:
        if line.startswith("tree_sizes="):
            continue  # byte offsets of the trees, which change; LightGBM reads the trees in order without them
        if line.startswith("threshold="):
            thresholds = np.array(line.removeprefix("threshold=").split(), dtype=np.float64)
            with np.errstate(over="ignore"):
                nearest = thresholds.astype(np.float32)
            below = np.where(nearest.astype(np.float64) > thresholds, np.nextafter(nearest, np.float32(-np.inf)),
                             nearest)
            line = "threshold=" + " ".join(repr(float(value)) for value in below)
        rounded.append(line)
    return lightgbm.Booster(model_str="\n".join(rounded) + "\n")


def _rename(graph, old, new):
    if old == new:
        return
    for value in (*graph.input, *graph.output):
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]


def export_tree_onnx(model, kind, num_features, path, sample_x, tolerance=PARITY_TOLERANCE):
    """Exports a fitted tree model to ONNX if ONNX Runtime reproduces it on `sample_x`.

    The graph takes a float32 input `input` of shape `[None, num_features]`
    and has one output, `prediction`, of shape `[None, 1]`. The file is
    staged beside `path` and moved into place only after the parity check
    passes, so a refused export leaves nothing (and an older file at `path`
    stays as it was).

    Args:
        model: a model from `fit_tree` or `tree_regressor` of kind `kind`.
        kind: one of `TREE_MODELS`.
        num_features: the number of input features.
        path: where to write the `.onnx` file.
        sample_x: `[rows, num_features]` held-back rows for the parity check
            (cast to float32; the native model predicts the same float32
            values).
        tolerance: the largest allowed absolute difference between ONNX
            Runtime's and the native predictions. Defaults to `1e-4`.

    Returns:
        A dict with `max_abs_diff`, `tolerance`, `opset` (the version of the
        `ai.onnx.ml` domain, whose TreeEnsembleRegressor holds the trees) and
        `opsets` (every domain's version, `""` being the default domain).

    Raises:
        ConfigError: for an unknown kind, a missing library, or `sample_x`
            without rows or without `num_features` columns.
        ExportError: when the conversion fails or the ONNX predictions differ
            from the native ones by more than `tolerance`, naming the kind,
            the difference and the tolerance; nothing is written then.
    """
    _check_kind(kind)
    sample_x = _as_features(sample_x, "sample_x")
    num_features = int(num_features)
    if sample_x.shape[1] != num_features or not len(sample_x):
        raise ConfigError(f"`sample_x` must have rows and num_features={num_features} columns. "
                          f"Received: shape={sample_x.shape}")
    return _checked_export(kind, path, lambda staging: _convert(model, kind, num_features, staging),
                           {"input": sample_x}, lambda: model.predict(sample_x), tolerance)


def _checked_export(kind, path, build, feeds, native, tolerance):
    """Writes the graph `build(staging)` to `path` if ONNX Runtime reproduces `native()` on `feeds`.

    The file is staged beside `path` (`build` may write there too) and moved
    into place only after the parity check passes; a refused export leaves
    nothing, and an older file at `path` stays as it was. Returns the dict
    `export_tree_onnx` documents; `tree_windows` exports through this too.
    """
    import onnxruntime

    path = Path(path)
    descriptor, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(descriptor)
    staging = Path(staging)
    try:
        try:
            proto = build(staging)
            serialized = proto.SerializeToString()
            session = onnxruntime.InferenceSession(serialized, providers=["CPUExecutionProvider"])
            onnx_predictions = session.run(None, feeds)[0]
        except SynapseError:
            raise
        except Exception as error:  # the converters and onnxruntime raise their own untyped errors
            raise ExportError(f"The {kind} model could not be exported to ONNX: {error}") from None
        native = np.asarray(native(), dtype=np.float64).ravel()
        onnx_predictions = np.asarray(onnx_predictions, dtype=np.float64).reshape(len(native), -1)[:, 0]
        difference = np.abs(onnx_predictions - native)
        largest = float(difference.max())
        if not largest <= tolerance:
            where = int(np.nanargmax(difference)) if np.isfinite(difference).any() else 0
            raise ExportError(
                f"The {kind} ONNX export differs from the native model by {largest:.3g} (tolerance {tolerance:g}) "
                f"at sample {where}: ONNX {onnx_predictions[where]:.6g} vs native {native[where]:.6g}; "
                f"nothing was written to {path}."
            )
        staging.write_bytes(serialized)
        # mkstemp makes the file private; a registry file is read by whoever serves it, as Keras's files are.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o666 & ~umask)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    opsets = {entry.domain: int(entry.version) for entry in proto.opset_import}
    return {"max_abs_diff": largest, "tolerance": float(tolerance), "opset": opsets.get("ai.onnx.ml"),
            "opsets": opsets}
