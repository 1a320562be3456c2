"""Tree models that take raw windows: the window summary computed inside their ONNX graph.

The serving stack feeds every ONNX model `{"sequence": float32 [N, L, F]}`,
the Keras models' input. A tree from `keras_synapse.models.trees` reads one
summary row a window instead: the last step's features, then each feature's
mean over the window, then its population standard deviation (ddof 0), the
columns of `keras_synapse.evaluation.lightgbm_baseline.window_summaries`.
`window_input_graph` puts that summary in front of the tree graph, so the
model takes `sequence` itself and is served like any other; only windows
without static features are handled.

The summary is float32 arithmetic in a fixed order, which
`float32_window_summaries` repeats in numpy bit for bit:
`total = x[0] + x[1] + ... + x[L-1]` added left to right, `mean = total / L`,
`var = (x[0] - mean)^2 + ... + (x[L-1] - mean)^2` added left to right,
divided by `L`, and `std = sqrt(var)`; each step is one correctly rounded
float32 operation. The trees compare float32 features with float32
thresholds, so a summary one unit in the last place off can send a row down
the other branch; a model must therefore be FIT on
`float32_window_summaries` of its windows (not on the float64
`window_summaries`, which differ from them by about 1e-7 relative) for the
graph to split every window as the native model does. The graph spells the
sums out as one Gather a step and a chain of Adds (5 L + 2 nodes) rather
than ReduceMean or ReduceSum, because ONNX Runtime reduces in an order of
its own: measured on 3,000 random windows, its ReduceMean differed from a
left-to-right float32 mean in 38% of values (L=10, F=4) and 75% (L=60), by
up to 4e-5 relative, and on windows at a level of 1e4 moving by 0.01 (L=10,
F=4) a ReduceMean summary changed the predictions of trees fit on these rows
by more than 1e-4 on 48% (forest) to 66% (XGBoost) of 5,000 windows, by up
to 1.2; on those windows, checking against float64 summaries rounded to
float32 instead of these found differences of 0.7 to 1.0. The graph's
summary equals this function's bit for bit (the tests check it with one and
two threads, L from 1 to 250). Those nodes mean the same in every
default-domain opset from 8 on, so the preprocessing takes the tree graph's
version.

`export_tree_window_onnx` converts a fitted tree, composes it, and writes the
file only when ONNX Runtime on the sample windows reproduces
`model.predict(float32_window_summaries(windows))` within the tolerance. The
summaries being exact, what differs is what `export_tree_onnx` measures (ONNX
Runtime's float32 sum of leaf values), and 1e-4 holds for every kind: on
1,000 windows of the tests' product target (L=10, F=4, predictions within
about +-4, two seeds) the largest differences were 1.1e-6 (LightGBM), 3.3e-6
(XGBoost), 1.8e-6 (CatBoost) and 2.1e-7 (the forest), and on the crowded
windows above 2.6e-7 to 5.0e-7.
"""

from pathlib import Path

import numpy as np

from keras_synapse.errors import ConfigError, ExportError
from keras_synapse.models.trees import (
    PARITY_TOLERANCE,
    TARGET_OPSET,
    _check_kind,
    _checked_export,
    _convert,
    _rename,
)

_PREFIX = "window_summary/"


def _size(value, name):
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = None
    if isinstance(value, bool) or size is None or size != value or size < 1:
        raise ConfigError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return size


def _as_windows(windows, name, sequence_length=None, num_features=None):
    windows = np.asarray(windows, dtype=np.float32)
    wanted = (sequence_length, num_features)
    if windows.ndim != 3 or not windows.shape[1] or any(w is not None and w != got
                                                        for w, got in zip(wanted, windows.shape[1:])):
        expected = ", ".join(f"{label}={value}" for label, value in zip(("sequence_length", "num_features"), wanted)
                             if value is not None)
        raise ConfigError(f"`{name}` must be 3-D [windows, steps, features]{f' with {expected}' if expected else ''}. "
                          f"Received: shape={windows.shape}")
    return windows


def float32_window_summaries(windows):
    """`[N, 3 F]` float32 summary rows of `[N, L, F]` windows, exactly as `window_input_graph` computes them.

    Columns: the last step's features, their means over the window and their
    population standard deviations, each step in float32 in the order the
    module docstring gives. Fit the trees on these rows.

    Raises:
        ConfigError: when `windows` is not `[N, L, F]` with `L >= 1`.
    """
    windows = _as_windows(windows, "windows")
    length = np.float32(windows.shape[1])
    steps = [windows[:, step, :] for step in range(windows.shape[1])]
    total = steps[0]
    for step in steps[1:]:
        total = total + step
    mean = total / length
    squares = None
    for step in steps:
        difference = step - mean
        squares = difference * difference if squares is None else squares + difference * difference
    return np.concatenate([steps[-1], mean, np.sqrt(squares / length)], axis=1)


def _summary_nodes(sequence_length):
    """Nodes and initializers from `sequence` [N, L, F] to `window_summary/row` [N, 3 F]."""
    from onnx import helper, numpy_helper

    nodes, initializers = [], [numpy_helper.from_array(np.array(sequence_length, dtype=np.float32), f"{_PREFIX}length")]

    def node(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [f"{_PREFIX}{output}"], name=f"{_PREFIX}{output}", **attributes))
        return f"{_PREFIX}{output}"

    steps = []
    for step in range(sequence_length):
        initializers.append(numpy_helper.from_array(np.array(step, dtype=np.int64), f"{_PREFIX}index_{step}"))
        steps.append(node("Gather", ["sequence", f"{_PREFIX}index_{step}"], f"step_{step}", axis=1))
    total = steps[0]
    for step in range(1, sequence_length):
        total = node("Add", [total, steps[step]], f"total_{step}")
    mean = node("Div", [total, f"{_PREFIX}length"], "mean")
    squares = None
    for step in range(sequence_length):
        difference = node("Sub", [steps[step], mean], f"difference_{step}")
        square = node("Mul", [difference, difference], f"square_{step}")
        squares = square if squares is None else node("Add", [squares, square], f"squares_{step}")
    std = node("Sqrt", [node("Div", [squares, f"{_PREFIX}length"], "variance")], "std")
    node("Concat", [steps[-1], mean, std], "row", axis=1)
    return nodes, initializers


def window_input_graph(tree_proto_or_path, sequence_length, num_features):
    """One ONNX model: `sequence` float32 [None, L, F] -> the window summary -> the trees -> `prediction` [N, 1].

    Args:
        tree_proto_or_path: the tree graph (an `onnx.ModelProto`, or the path
            of an `.onnx` file), one float32 input of `[N, 3 num_features]`
            summary rows and one output, as `export_tree_onnx` writes; it is
            not modified.
        sequence_length: `L`, the steps a window.
        num_features: `F`, the features a step.

    Returns:
        The composed `onnx.ModelProto`. Its opsets are the tree graph's, each
        domain's highest version, with the default domain added at
        `TARGET_OPSET` if the trees had none; its IR version the tree's, raised
        where the opsets or the summary's initializers need a later one.

    Raises:
        ConfigError: for sizes that are not positive integers, or a tree graph
            whose input is not `3 * num_features` wide.
        ExportError: for a tree graph without exactly one float32 input and
            one output, or one that cannot be composed.
    """
    import onnx
    from onnx import TensorProto, compose, helper

    sequence_length, num_features = _size(sequence_length, "sequence_length"), _size(num_features, "num_features")
    if isinstance(tree_proto_or_path, onnx.ModelProto):
        tree = onnx.ModelProto()
        tree.CopyFrom(tree_proto_or_path)
    else:
        tree = onnx.load(str(Path(tree_proto_or_path)))
    graph = tree.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportError(f"The tree graph has {len(graph.input)} inputs and {len(graph.output)} outputs; "
                          f"one of each was expected.")
    source = graph.input[0].type.tensor_type
    if source.elem_type != TensorProto.FLOAT:
        raise ExportError(f"The tree graph's input must be float32. Received: elem_type={source.elem_type}")
    width = [dim.dim_value if dim.HasField("dim_value") else None for dim in source.shape.dim]
    if len(width) != 2 or width[1] not in (None, 3 * num_features):
        raise ConfigError(f"The tree graph takes rows of shape {width}; window summaries of "
                          f"num_features={num_features} are [N, {3 * num_features}].")
    _rename(graph, graph.input[0].name, "input")
    _rename(graph, graph.output[0].name, "prediction")
    dims = graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 1:
        dims.add().dim_value = 1  # one prediction a row, declared [N, 1] as the Keras models' are

    opsets = {}
    for entry in tree.opset_import:
        opsets[entry.domain] = max(opsets.get(entry.domain, 0), int(entry.version))
    opsets.setdefault("", TARGET_OPSET)
    imports = [helper.make_opsetid(domain, version) for domain, version in sorted(opsets.items())]
    ir_version = max(int(tree.ir_version), helper.find_min_ir_version_for(imports), 4)  # 4: initializers need no input
    del tree.opset_import[:]
    tree.opset_import.extend(imports)
    tree.ir_version = ir_version

    nodes, initializers = _summary_nodes(sequence_length)
    summary = helper.make_model(
        helper.make_graph(nodes, "window_summary",
                          [helper.make_tensor_value_info("sequence", TensorProto.FLOAT,
                                                         [None, sequence_length, num_features])],
                          [helper.make_tensor_value_info(f"{_PREFIX}row", TensorProto.FLOAT,
                                                         [None, 3 * num_features])],
                          initializers),
        opset_imports=[helper.make_opsetid("", opsets[""])], ir_version=ir_version)
    try:
        composed = compose.merge_models(summary, tree, io_map=[(f"{_PREFIX}row", "input")],
                                        name="window_summary_trees")
    except Exception as error:  # onnx raises ValueError and its own checker errors
        raise ExportError(f"The window summary could not be composed with the tree graph: {error}") from None
    del composed.opset_import[:]
    composed.opset_import.extend(imports)  # merge_models lists the default domain once for each model
    return composed


def export_tree_window_onnx(model, kind, sequence_length, num_features, path, sample_windows,
                            tolerance=PARITY_TOLERANCE):
    """Exports a fitted tree model as a graph on raw windows, if ONNX Runtime reproduces it.

    The graph (`window_input_graph`) takes `sequence` float32
    `[None, sequence_length, num_features]` and outputs `prediction`
    `[None, 1]`. The check runs it on `sample_windows` against
    `model.predict(float32_window_summaries(sample_windows))`, so the model
    must have been fit on `float32_window_summaries` rows. The file is staged
    and moved into place as `export_tree_onnx` does: a refused export leaves
    nothing, and an older file at `path` stays as it was.

    Args:
        model: a model from `fit_tree` or `tree_regressor` of kind `kind`,
            fit on `3 * num_features` summary columns.
        kind: one of `TREE_MODELS`.
        sequence_length: the steps a window.
        num_features: the features a step.
        path: where to write the `.onnx` file.
        sample_windows: `[windows, sequence_length, num_features]` held-back
            windows for the parity check (cast to float32).
        tolerance: the largest allowed absolute difference between ONNX
            Runtime's and the native predictions. Defaults to `1e-4`.

    Returns:
        The dict `export_tree_onnx` returns: `max_abs_diff`, `tolerance`,
        `opset` (the `ai.onnx.ml` version) and `opsets`.

    Raises:
        ConfigError: for an unknown kind, a missing library, sizes that are
            not positive integers, `sample_windows` without windows or not of
            `[N, sequence_length, num_features]`, or a model fit on another
            number of columns than `3 * num_features`.
        ExportError: when the conversion or composition fails or the
            predictions differ by more than `tolerance`, naming the kind, the
            difference and the tolerance; nothing is written then.
    """
    _check_kind(kind)
    sequence_length, num_features = _size(sequence_length, "sequence_length"), _size(num_features, "num_features")
    windows = _as_windows(sample_windows, "sample_windows", sequence_length, num_features)
    if not len(windows):
        raise ConfigError(f"`sample_windows` must have windows. Received: shape={windows.shape}")
    fitted = getattr(model, "n_features_in_", None)
    if fitted is not None and int(fitted) != 3 * num_features:
        raise ConfigError(f"The {kind} model was fit on {int(fitted)} columns; window summaries of "
                          f"num_features={num_features} have {3 * num_features}.")
    summaries = float32_window_summaries(windows)
    return _checked_export(
        kind, path,
        lambda staging: window_input_graph(_convert(model, kind, 3 * num_features, staging), sequence_length,
                                           num_features),
        {"sequence": windows}, lambda: model.predict(summaries), tolerance)
