"""Tree regressors: learn a product a linear fit cannot, choose their size on validation rows, export exactly."""

import json
import os
import sys

import numpy as np
import pytest

from keras_synapse.errors import ConfigError, ExportError
from keras_synapse.models.trees import (
    FOREST_TREE_COUNTS,
    TREE_COUNTS,
    TREE_MODELS,
    export_tree_onnx,
    fit_tree,
    tree_regressor,
)

NUM_FEATURES = 6
FIT, VALIDATION, TEST = slice(0, 3000), slice(3000, 4000), slice(4000, 5000)
# One thread each: the suite runs two workers on two cores, and LightGBM's two
# threads spin for seconds when the other core is busy.
THREADS = 1
FEW_TREES = {"lightgbm": {"n_estimators": 20}, "xgboost": {"n_estimators": 20}, "catboost": {"iterations": 20},
             "random_forest": {"n_estimators": 20}}


def product_problem(seed=0, signal=1.0):
    """`y = signal * x0 * x1 + noise` on 5,000 rows of 6 standard normal features: no linear edge at all."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5000, NUM_FEATURES))
    return x, signal * x[:, 0] * x[:, 1] + rng.normal(size=len(x))


def correlation(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def fit_and_predict_test(kind, x, y):
    model, info = fit_tree(kind, x[FIT], y[FIT], x[VALIDATION], y[VALIDATION], threads=THREADS)
    return model.predict(x[TEST].astype(np.float32)), info


@pytest.fixture(scope="module", params=TREE_MODELS)
def fitted(request):
    kind = request.param
    x, y = product_problem()
    model, info = fit_tree(kind, x[FIT], y[FIT], x[VALIDATION], y[VALIDATION], threads=THREADS)
    return kind, x, y, model, info


def test_trees_learn_a_product_that_a_linear_fit_cannot(fitted):
    kind, x, y, model, info = fitted
    design = np.c_[np.ones(len(x)), x]
    coefficients = np.linalg.lstsq(design[FIT], y[FIT], rcond=None)[0]
    linear_ic = correlation(design[TEST] @ coefficients, y[TEST])
    tree_ic = correlation(model.predict(x[TEST].astype(np.float32)), y[TEST])
    # The best possible IC is 1/sqrt(2) = 0.71; a linear fit sees nothing of x0 * x1.
    assert abs(linear_ic) < 0.15
    assert tree_ic > 0.45 and tree_ic > linear_ic + 0.35, (kind, tree_ic, linear_ic)
    assert info["kind"] == kind and info["validation_ic"] > 0.45
    json.dumps(info)  # the whole info goes into run metadata


def test_the_kept_model_is_the_best_validation_prefix_of_a_full_run(fitted):
    kind, x, y, model, info = fitted
    counts = FOREST_TREE_COUNTS if kind == "random_forest" else TREE_COUNTS
    full = tree_regressor(kind, threads=THREADS).fit(x[FIT].astype(np.float32), y[FIT])
    validation_x, test_x = x[VALIDATION].astype(np.float32), x[TEST].astype(np.float32)

    def prefix(features, count):
        if kind == "lightgbm":
            return full.predict(features, num_iteration=count)
        if kind == "xgboost":
            return full.predict(features, iteration_range=(0, count))
        if kind == "catboost":
            return full.predict(features, ntree_end=count)
        return np.mean([tree.predict(features) for tree in full.estimators_[:count]], axis=0)

    scores = [correlation(prefix(validation_x, count), y[VALIDATION]) for count in counts]
    assert info["num_trees"] == counts[int(np.argmax(scores))]
    assert info["validation_ic"] == pytest.approx(max(scores), abs=1e-9)
    # The returned model holds exactly those trees (LightGBM's is a refit: the same trees again).
    kept = {"lightgbm": lambda: model.booster_.num_trees(), "xgboost": lambda: model.get_booster().num_boosted_rounds(),
            "catboost": lambda: model.tree_count_, "random_forest": lambda: len(model.estimators_)}[kind]()
    assert kept == info["num_trees"]
    np.testing.assert_allclose(model.predict(test_x), prefix(test_x, info["num_trees"]), rtol=0, atol=1e-12)


def test_onnx_export_matches_the_native_model_on_the_test_rows(fitted, tmp_path):
    import onnxruntime

    kind, x, y, model, info = fitted
    path = tmp_path / f"{kind}.onnx"
    result = export_tree_onnx(model, kind, NUM_FEATURES, path, x[TEST])
    assert result["tolerance"] <= 1e-4 and result["max_abs_diff"] <= result["tolerance"]
    assert isinstance(result["opset"], int)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no staging file left
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file the process writes, not private

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (source,), outputs = session.get_inputs(), session.get_outputs()
    assert source.name == "input" and source.type == "tensor(float)" and source.shape[1] == NUM_FEATURES
    assert not isinstance(source.shape[0], int) and len(outputs) == 1
    test_x = x[TEST].astype(np.float32)
    (predictions,) = session.run(None, {"input": test_x})
    assert predictions.shape == (len(test_x), 1)
    difference = np.abs(predictions[:, 0] - model.predict(test_x))
    assert difference.max() <= result["tolerance"]
    assert difference.max() == pytest.approx(result["max_abs_diff"])
    assert np.std(predictions) > 0.3  # a real model, not a constant that matches trivially


@pytest.mark.parametrize("kind", TREE_MODELS)
def test_export_is_exact_where_float32_values_crowd_the_thresholds(kind, tmp_path):
    # A level of 1e4 moving by 0.01: float32 spacing there is 0.001, so most
    # thresholds lie halfway between two float32 values; rounded to the nearest
    # (onnxmltools' LightGBM converter) they sent most rows the other way.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, NUM_FEATURES))
    x[:, 0] = 1e4 + 0.01 * x[:, 0]
    y = (x[:, 0] - 1e4) * 100 * x[:, 1] + rng.normal(size=len(x))
    model, _ = fit_tree(kind, x[:1500], y[:1500], x[1500:], y[1500:], threads=THREADS)
    result = export_tree_onnx(model, kind, NUM_FEATURES, tmp_path / "model.onnx", x)
    assert result["max_abs_diff"] <= 1e-4


@pytest.mark.parametrize("kind", TREE_MODELS)
def test_the_number_of_trees_is_chosen_on_the_validation_rows_only(kind):
    x, y = product_problem(seed=1)
    predictions, info = fit_and_predict_test(kind, x, y)
    other_test = y.copy()
    other_test[TEST] = np.random.default_rng(9).normal(size=len(other_test[TEST]))
    same_predictions, same_info = fit_and_predict_test(kind, x, other_test)
    # Equal to the last bit but for the forest, whose threads add the trees' predictions in any order.
    np.testing.assert_allclose(same_predictions, predictions, rtol=0, atol=1e-12)
    assert same_info == {**info, "validation_ic": pytest.approx(info["validation_ic"], abs=1e-12)}
    # The validation targets are what is read: shuffled, the chosen trees score about nothing there.
    other_validation = y.copy()
    other_validation[VALIDATION] = np.random.default_rng(9).permutation(other_validation[VALIDATION])
    _, shuffled_info = fit_and_predict_test(kind, x, other_validation)
    assert abs(shuffled_info["validation_ic"]) < 0.15 < info["validation_ic"]


@pytest.mark.parametrize("kind", TREE_MODELS)
def test_pure_noise_targets_give_no_test_ic(kind):
    x, y = product_problem(seed=2, signal=0.0)
    predictions, info = fit_and_predict_test(kind, x, y)
    assert abs(correlation(predictions, y[TEST])) < 0.1
    assert info["num_trees"] in (FOREST_TREE_COUNTS if kind == "random_forest" else TREE_COUNTS)


@pytest.mark.parametrize("kind", TREE_MODELS)
def test_a_model_that_disagrees_with_its_export_is_refused_and_nothing_is_left(kind, tmp_path, monkeypatch):
    x, y = product_problem(seed=3)
    model = tree_regressor(kind, threads=THREADS, **FEW_TREES[kind]).fit(x[:1000].astype(np.float32), y[:1000])
    native = model.predict
    # The converters read the trees, not `predict`: the graph is right and the native side is off by 1e-3.
    monkeypatch.setattr(model, "predict", lambda features, **options: native(features, **options) + 1e-3)
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match=rf"{kind} ONNX export differs .* by 0\.001 \(tolerance 0\.0001\)"):
        export_tree_onnx(model, kind, NUM_FEATURES, path, x[1000:1200])
    assert list(tmp_path.iterdir()) == []
    # An older export at the path is left as it was.
    path.write_bytes(b"older export")
    with pytest.raises(ExportError, match="differs"):
        export_tree_onnx(model, kind, NUM_FEATURES, path, x[1000:1200])
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"older export"
    monkeypatch.undo()
    assert export_tree_onnx(model, kind, NUM_FEATURES, path, x[1000:1200])["max_abs_diff"] <= 1e-4


def test_unknown_kinds_missing_libraries_and_wrong_widths_are_config_errors(tmp_path, monkeypatch):
    x, y = product_problem()
    for call in (lambda: tree_regressor("gbdt"), lambda: fit_tree("gbdt", x[FIT], y[FIT], x[VALIDATION], y[VALIDATION]),
                 lambda: export_tree_onnx(None, "gbdt", NUM_FEATURES, tmp_path / "m.onnx", x[TEST])):
        known = r"Known: lightgbm, xgboost, catboost, random_forest\. Received: kind='gbdt'"
        with pytest.raises(ConfigError, match=known):
            call()
    monkeypatch.setitem(sys.modules, "catboost", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r'catboost.*pip install -e "\.\[trees\]"'):
        tree_regressor("catboost")
    with pytest.raises(ConfigError, match="num_features=5"):
        export_tree_onnx(None, "lightgbm", 5, tmp_path / "m.onnx", x[TEST])
    assert list(tmp_path.iterdir()) == []


def test_a_missing_export_converter_stops_a_tree_run_before_it_trains(monkeypatch, capsys, tmp_path, request):
    # `experiments/lightgbm.py` without the trees extra once trained every fold, then lost it all at the export.
    from keras_synapse.models.trees import require_packages
    from keras_synapse.train import main

    monkeypatch.setitem(sys.modules, "onnxmltools", None)  # as if the trees extra were not installed
    with pytest.raises(ConfigError, match=r'optional package `onnxmltools`.*pip install -e "\.\[trees\]"'):
        require_packages("lightgbm")
    status = main([str(request.config.rootpath / "experiments/lightgbm.py"), "--quick", "--output",
                   str(tmp_path / "runs"), "--registry", str(tmp_path / "registry")])
    assert status == 2 and "onnxmltools" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before the run directory, let alone a fit
