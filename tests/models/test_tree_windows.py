"""Tree graphs on raw windows: the summary inside the graph is the numpy one to the bit, the trees split alike."""

import numpy as np
import pytest

from keras_synapse.errors import ConfigError, ExportError
from keras_synapse.evaluation.lightgbm_baseline import window_summaries
from keras_synapse.models.tree_windows import export_tree_window_onnx, float32_window_summaries, window_input_graph
from keras_synapse.models.trees import TREE_MODELS, export_tree_onnx, fit_tree

LENGTH, FEATURES = 10, 4
FIT, VALIDATION, TEST = slice(0, 3000), slice(3000, 4000), slice(4000, 5000)
# One thread each, as in test_trees.py: two workers share two cores.
THREADS = 1


def session(model, threads=None):
    """An ONNX Runtime session; by default with the threads the export's check uses, which sum the trees alike."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, str) else model.SerializeToString()
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def product_windows(seed=0):
    """5,000 windows of 4 standard normal features; `y = last x0 * last x1 + noise`, no linear edge."""
    rng = np.random.default_rng(seed)
    windows = rng.normal(size=(5000, LENGTH, FEATURES)).astype(np.float32)
    return windows, windows[:, -1, 0].astype(np.float64) * windows[:, -1, 1] + rng.normal(size=len(windows))


def fit_on_windows(kind, windows, y):
    summaries = float32_window_summaries(windows)
    return fit_tree(kind, summaries[FIT], y[FIT], summaries[VALIDATION], y[VALIDATION], threads=THREADS)[0]


@pytest.fixture(scope="module", params=TREE_MODELS)
def fitted(request):
    windows, y = product_windows()
    return request.param, windows, fit_on_windows(request.param, windows, y)


def test_the_window_graph_takes_sequence_and_matches_the_native_model(fitted, tmp_path):
    kind, windows, model = fitted
    path = tmp_path / f"{kind}.onnx"
    result = export_tree_window_onnx(model, kind, LENGTH, FEATURES, path, windows[TEST])
    assert result["tolerance"] <= 1e-4 and result["max_abs_diff"] <= result["tolerance"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no staging file left

    served = session(str(path))
    (source,), (output,) = served.get_inputs(), served.get_outputs()
    assert source.name == "sequence" and source.type == "tensor(float)" and source.shape[1:] == [LENGTH, FEATURES]
    assert not isinstance(source.shape[0], int)
    assert output.name == "prediction" and output.shape[1] == 1
    (predictions,) = served.run(None, {"sequence": windows[TEST]})
    assert predictions.shape == (1000, 1)
    difference = np.abs(predictions[:, 0] - model.predict(float32_window_summaries(windows[TEST])))
    assert difference.max() <= result["tolerance"]
    assert difference.max() == pytest.approx(result["max_abs_diff"])
    assert np.std(predictions) > 0.3  # a real model, not a constant that matches trivially

    # Composing the tree file `export_tree_onnx` writes gives the same graph, with the trees' opsets.
    tree_path = tmp_path / "tree.onnx"
    tree = export_tree_onnx(model, kind, 3 * FEATURES, tree_path, float32_window_summaries(windows[TEST]))
    assert {domain: result["opsets"][domain] for domain in tree["opsets"]} == tree["opsets"]
    assert result["opset"] == tree["opset"] and "" in result["opsets"]
    composed = session(window_input_graph(tree_path, LENGTH, FEATURES))
    np.testing.assert_array_equal(composed.run(None, {"sequence": windows[TEST]})[0], predictions)


def identity_tree(width):
    """A stand-in 'tree' graph that returns its summary row, to read the summary the graph computes."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["prediction"])], "identity",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
                              [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [None, width])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)


@pytest.mark.parametrize("length, features, level", [(10, 4, 0.0), (1, 1, 0.0), (60, 1, 1e4), (250, 8, 100.0)])
def test_the_graph_computes_float32_window_summaries_bit_for_bit(length, features, level):
    rng = np.random.default_rng(length)
    scales = rng.lognormal(size=(500, 1, features))
    windows = (level + rng.normal(size=(500, length, features)) * scales).astype(np.float32)
    graph = window_input_graph(identity_tree(3 * features), length, features)
    expected = float32_window_summaries(windows)
    assert expected.dtype == np.float32 and expected.shape == (500, 3 * features)
    for threads in (1, 2):
        np.testing.assert_array_equal(session(graph, threads).run(None, {"sequence": windows})[0], expected)


def test_float32_window_summaries_are_the_float64_window_summaries_to_1e_5():
    windows = np.random.default_rng(5).normal(size=(700, LENGTH, FEATURES)).astype(np.float32)

    class Windowed:  # the two members `window_summaries` reads
        feature_names, static_feature_names = tuple(f"x{i}" for i in range(FEATURES)), None

        def gather(self, ends):
            return {"sequence": windows[ends]}

    reference = window_summaries(Windowed(), np.arange(len(windows)))
    sequence = windows.astype(np.float64)
    formula = np.concatenate([sequence[:, -1], sequence.mean(axis=1), sequence.std(axis=1)], axis=1)
    np.testing.assert_array_equal(reference, formula)
    np.testing.assert_allclose(float32_window_summaries(windows), formula, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", TREE_MODELS)
def test_the_export_is_exact_where_float32_means_crowd_the_thresholds(kind, tmp_path):
    # A level of 1e4 moving by 0.01: float32 spacing there is 0.001, so a mean
    # one unit in the last place off (ONNX Runtime's ReduceMean, or float64 sums) crosses thresholds.
    rng = np.random.default_rng(4)
    windows = (1e4 + 0.01 * rng.normal(size=(5000, LENGTH, FEATURES))).astype(np.float32)
    summaries = float32_window_summaries(windows)
    y = (summaries[:, FEATURES] - 1e4) * 3e4 * summaries[:, 2 * FEATURES + 1] + rng.normal(size=len(windows))
    model = fit_on_windows(kind, windows, y)
    result = export_tree_window_onnx(model, kind, LENGTH, FEATURES, tmp_path / "model.onnx", windows)
    assert result["max_abs_diff"] <= 1e-4


def test_a_model_that_disagrees_with_its_export_is_refused_and_nothing_is_left(fitted, tmp_path, monkeypatch):
    kind, windows, model = fitted
    native = model.predict
    monkeypatch.setattr(model, "predict", lambda features, **options: native(features, **options) + 1e-3)
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match=rf"{kind} ONNX export differs .* by 0\.001 \(tolerance 0\.0001\)"):
        export_tree_window_onnx(model, kind, LENGTH, FEATURES, path, windows[TEST])
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(b"older export")
    with pytest.raises(ExportError, match="differs"):
        export_tree_window_onnx(model, kind, LENGTH, FEATURES, path, windows[TEST])
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"older export"


def test_wrong_sizes_are_config_errors_naming_the_sizes(tmp_path):
    windows, y = product_windows(seed=1)
    model = fit_on_windows("lightgbm", windows, y)
    path = tmp_path / "model.onnx"
    with pytest.raises(ConfigError, match=r"sequence_length=12, num_features=4\. Received: shape=\(1000, 10, 4\)"):
        export_tree_window_onnx(model, "lightgbm", 12, FEATURES, path, windows[TEST])
    with pytest.raises(ConfigError, match=r"num_features=5\. Received: shape=\(1000, 10, 4\)"):
        export_tree_window_onnx(model, "lightgbm", LENGTH, 5, path, windows[TEST])
    with pytest.raises(ConfigError, match=r"must be 3-D"):
        export_tree_window_onnx(model, "lightgbm", LENGTH, FEATURES, path, windows[TEST, -1])
    with pytest.raises(ConfigError, match=r"fit on 12 columns; window summaries of num_features=5 have 15"):
        export_tree_window_onnx(model, "lightgbm", LENGTH, 5, path, np.zeros((3, LENGTH, 5), np.float32))
    with pytest.raises(ConfigError, match=r"sequence_length=0"):
        export_tree_window_onnx(model, "lightgbm", 0, FEATURES, path, windows[TEST])
    with pytest.raises(ConfigError, match=r"Known: lightgbm"):
        export_tree_window_onnx(model, "gbdt", LENGTH, FEATURES, path, windows[TEST])
    with pytest.raises(ConfigError, match=r"takes rows of shape \[None, 12\].*num_features=5 are \[N, 15\]"):
        window_input_graph(identity_tree(12), LENGTH, 5)
    assert list(tmp_path.iterdir()) == []
