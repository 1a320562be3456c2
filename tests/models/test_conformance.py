"""One conformance test over every model (as Keras runs `run_layer_test` over each layer).

For each model, task and input kind: build from the default config, one
training step lowers the loss on a tiny batch, the `.keras` file reloads in a
fresh process that never imports keras_synapse with identical predictions,
and the tf2onnx export matches Keras within 1e-4.
"""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_synapse.config import ExperimentConfig
from keras_synapse.export import export_onnx
from keras_synapse.models import MODEL_NAMES, ModelSpec, fit_normalization, get_model_builder
from keras_synapse.tasks import Task

SEQUENCE_LENGTH, NUM_FEATURES, NUM_STATIC = 12, 6, 4
CASES = [
    (name, task, num_static)
    for name in MODEL_NAMES
    for task, num_static in (("regression", 0), ("multiclass", NUM_STATIC), ("binary", 0))
]


def tiny_data(spec, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {"sequence": rng.normal(3, 2, (64, spec.sequence_length, spec.num_features)).astype("float32")}
    if spec.num_static_features:
        inputs["static"] = rng.normal(-1, 5, (64, spec.num_static_features)).astype("float32")
    if spec.task == "multiclass":
        targets = rng.integers(0, spec.num_classes, (64, 1)).astype("float32")
    elif spec.task == "binary":
        targets = rng.integers(0, 2, (64, 1)).astype("float32")
    else:
        targets = rng.normal(0, 0.5, (64, 1)).astype("float32")
    return inputs, targets


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("conformance")
    saved = {}
    for name, task, num_static in CASES:
        keras.utils.set_random_seed(0)
        config = ExperimentConfig(name=name, model=name)
        spec = ModelSpec(SEQUENCE_LENGTH, NUM_FEATURES, num_static, task, 3 if task == "multiclass" else 1)
        model = get_model_builder(name)(config, spec)
        inputs, targets = tiny_data(spec)
        fit_normalization(model, inputs["sequence"].reshape(-1, NUM_FEATURES), inputs.get("static"))
        model.compile(keras.optimizers.Adam(1e-2), loss=Task("any", spec.task).loss(config.loss))
        # Training-mode losses (dropout and batch statistics on) over a few steps.
        losses = [float(model.train_on_batch(inputs, targets)) for _ in range(8)]
        before, after = losses[0], float(np.mean(losses[-2:]))
        key = f"{name}-{task}-{num_static}"
        path = directory / f"{key}.keras"
        model.save(path)
        onnx_info = export_onnx(model, directory / f"{key}.onnx", inputs)
        np.savez(directory / f"{key}.npz", **inputs)
        predictions = np.asarray(model.predict(inputs, verbose=0))
        print(f"{key}: {model.count_params()} parameters, loss {before:.4f} -> {after:.4f}, "
              f"onnx max diff {onnx_info['max_abs_diff']:.2e}")
        saved[key] = {"path": str(path), "inputs": str(directory / f"{key}.npz"), "before": before, "after": after,
                      "predictions": predictions, "parameters": model.count_params()}
    return saved


@pytest.mark.parametrize("key", [f"{name}-{task}-{num_static}" for name, task, num_static in CASES])
def test_training_steps_lower_the_loss(saved_models, key):
    assert saved_models[key]["after"] < saved_models[key]["before"]
    assert saved_models[key]["parameters"] > 0


def test_every_model_reloads_without_keras_synapse_and_predicts_identically(saved_models, tmp_path):
    listing = {key: {"path": item["path"], "inputs": item["inputs"]} for key, item in saved_models.items()}
    (tmp_path / "models.json").write_text(json.dumps(listing))
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, keras
        listing = json.load(open({str(tmp_path / 'models.json')!r}))
        for key, item in listing.items():
            model = keras.models.load_model(item["path"])
            inputs = dict(np.load(item["inputs"]))
            np.save(item["path"] + ".reloaded.npy", np.asarray(model.predict(inputs, verbose=0)))
        assert not any(name.startswith("keras_synapse") for name in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for key, item in saved_models.items():
        np.testing.assert_array_equal(np.load(item["path"] + ".reloaded.npy"), item["predictions"], err_msg=key)
