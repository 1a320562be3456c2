"""One conformance test over every model (as Keras runs `run_layer_test` over each layer).

For each model, task and input kind: build from the default config, one
training step lowers the loss on a tiny batch, the `.keras` file reloads in a
fresh process that never imports keras_synapse with identical predictions,
the tf2onnx export matches Keras within 1e-4, and fine-tuning trains the
model's declared head (`head_layers(spec)`) and nothing else.
"""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_synapse.config import ExperimentConfig
from keras_synapse.models import MODEL_NAMES, ModelSpec, fit_normalization, get_head_layers, get_model_builder
from keras_synapse.models.finetuning import frozen_backbone_copy
from keras_synapse.models.highway import highway_heads
from keras_synapse.serving.onnx_export import export_onnx
from keras_synapse.training.losses import task_loss

SEQUENCE_LENGTH, NUM_FEATURES, NUM_STATIC = 12, 6, 4
MULTITASK_HEADS = (("pattern_confidence", "binary", 1), ("signal_quality", "binary", 1),
                   ("market_regime", "multiclass", 3), ("volatility_forecast", "regression", 1))
CASES = [
    (name, task, num_static)
    for name in MODEL_NAMES if name != "multitask"
    for task, num_static in (("regression", 0), ("multiclass", NUM_STATIC), ("binary", 0))
] + [("multitask", "heads", 0), ("multitask", "heads", NUM_STATIC), ("transformer_sinusoidal_causal", "regression", 0),
      ("shared_backbone_highway", "regression", 0), ("shared_backbone_highway", "regression", NUM_STATIC),
      ("transformer_highway", "regression", 0)]
# The inner loop (`-m "not slow"`) trains one case per model; the other tasks, input kinds and variants,
# and the fresh-process reload of them all, run in the full suite.
FIRST_CASES = [("shared_backbone", "regression", 0), ("gru", "regression", 0), ("lstm_attention", "regression", 0),
               ("transformer", "regression", 0), ("multitask", "heads", 0),
               ("shared_backbone_highway", "regression", 0)]
TRAINING_CASES = [case if case in FIRST_CASES else pytest.param(*case, marks=pytest.mark.slow) for case in CASES]
# Named variants of a model with config overrides.
VARIANTS = {"transformer_sinusoidal_causal": ("transformer", {"positional_encoding": "sinusoidal",
                                                              "causal_mask": True, "pooling": "mean"}),
            # A linear highway beside the network (its ridge set to random weights here, so it counts).
            "shared_backbone_highway": ("shared_backbone", {"highway_bars": 3}),
            "transformer_highway": ("transformer", {"highway_bars": 1})}


def one_target(task, num_classes, rng):
    if task == "multiclass":
        return rng.integers(0, num_classes, (64, 1)).astype("float32")
    if task == "binary":
        return rng.integers(0, 2, (64, 1)).astype("float32")
    return np.abs(rng.normal(0, 0.5, (64, 1))).astype("float32")


def tiny_data(spec, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {"sequence": rng.normal(3, 2, (64, spec.sequence_length, spec.num_features)).astype("float32")}
    if spec.num_static_features:
        inputs["static"] = rng.normal(-1, 5, (64, spec.num_static_features)).astype("float32")
    if spec.heads:
        return inputs, {name: one_target(task, num_classes, rng) for name, task, num_classes in spec.heads}
    return inputs, one_target(spec.task, spec.num_classes, rng)


def case_key(name, task, num_static):
    return f"{name}-{task}-{num_static}"


def build_case(name, task, num_static, directory):
    """Builds, trains a few steps, saves and exports one case; returns what the tests check."""
    keras.utils.set_random_seed(0)
    model_name, overrides = VARIANTS.get(name, (name, {}))
    config = ExperimentConfig(name=model_name, model=model_name, **overrides)
    heads = MULTITASK_HEADS if task == "heads" else ()
    spec = ModelSpec(SEQUENCE_LENGTH, NUM_FEATURES, num_static, task, 3 if task == "multiclass" else 1, heads)
    model = get_model_builder(model_name)(config, spec)
    inputs, targets = tiny_data(spec)
    fit_normalization(model, inputs["sequence"].reshape(-1, NUM_FEATURES), inputs.get("static"))
    for head in highway_heads(model):
        layer = model.get_layer(f"{head}_highway")
        layer.set_weights([np.random.default_rng(1).normal(0, 0.3, weight.shape).astype("float32")
                           for weight in layer.get_weights()])
    if heads:
        loss = {head: task_loss("auto", head_task) for head, head_task, _ in heads}
    else:
        loss = task_loss(config.loss, spec.task)
    model.compile(keras.optimizers.Adam(1e-2), loss=loss)
    # Training-mode losses (dropout and batch statistics on) over a few steps.
    losses = [float(np.ravel(model.train_on_batch(inputs, targets))[0]) for _ in range(8)]
    before, after = losses[0], float(np.mean(losses[-2:]))
    key = case_key(name, task, num_static)
    path = directory / f"{key}.keras"
    model.save(path)
    onnx_info = export_onnx(model, directory / f"{key}.onnx", inputs)
    np.savez(directory / f"{key}.npz", **inputs)
    predictions = model.predict(inputs, verbose=0)
    output_widths = ({head: predictions[head].shape[1] for head, _, _ in heads} if heads
                     else {"prediction": predictions.shape[1]})
    predictions = np.concatenate([predictions[head] for head, _, _ in heads], axis=1) if heads else predictions
    print(f"{key}: {model.count_params()} parameters, loss {before:.4f} -> {after:.4f}, "
          f"onnx max diff {onnx_info['max_abs_diff']:.2e}")
    return {"path": str(path), "inputs": str(directory / f"{key}.npz"), "before": before, "after": after,
            "predictions": predictions, "output_widths": output_widths, "heads": [head for head, _, _ in heads]}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Builds each case on first use, so one broken model fails its own cases, not every model's."""
    directory, cache = tmp_path_factory.mktemp("conformance"), {}

    def get(name, task, num_static):
        key = case_key(name, task, num_static)
        if key not in cache:
            cache[key] = build_case(name, task, num_static, directory)
        return cache[key]

    return get


@pytest.mark.parametrize("name, task, num_static", TRAINING_CASES)
def test_training_steps_lower_the_loss_and_the_outputs_fit_the_task(built, name, task, num_static):
    item = built(name, task, num_static)
    assert item["after"] < item["before"]
    expected = ({head: num_classes if head_task == "multiclass" else 1 for head, head_task, num_classes in
                 MULTITASK_HEADS} if task == "heads" else {"prediction": 3 if task == "multiclass" else 1})
    assert item["output_widths"] == expected


@pytest.mark.slow
def test_every_model_reloads_without_keras_synapse_and_predicts_identically(built, tmp_path):
    saved_models = {case_key(*case): built(*case) for case in CASES}
    listing = {key: {"path": item["path"], "inputs": item["inputs"], "heads": item["heads"]}
               for key, item in saved_models.items()}
    (tmp_path / "models.json").write_text(json.dumps(listing))
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, keras
        listing = json.load(open({str(tmp_path / 'models.json')!r}))
        for key, item in listing.items():
            model = keras.models.load_model(item["path"])
            inputs = dict(np.load(item["inputs"]))
            predictions = model.predict(inputs, verbose=0)
            if isinstance(predictions, dict):  # multi-task: heads in the order they were declared
                predictions = np.concatenate([predictions[head] for head in item["heads"]], axis=1)
            np.save(item["path"] + ".reloaded.npy", np.asarray(predictions))
        assert not any(name.startswith("keras_synapse") for name in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for key, item in saved_models.items():
        np.testing.assert_array_equal(np.load(item["path"] + ".reloaded.npy"), item["predictions"], err_msg=key)


@pytest.mark.parametrize("name, task, num_static", CASES)
def test_fine_tuning_trains_a_fresh_head_and_nothing_else(name, task, num_static):
    model_name, overrides = VARIANTS.get(name, (name, {}))
    config = ExperimentConfig(name=model_name, model=model_name, **overrides)
    heads = MULTITASK_HEADS if task == "heads" else ()
    spec = ModelSpec(SEQUENCE_LENGTH, NUM_FEATURES, num_static, task, 3 if task == "multiclass" else 1, heads)
    keras.utils.set_random_seed(0)
    base = get_model_builder(model_name)(config, spec)
    inputs, _ = tiny_data(spec)
    fit_normalization(base, inputs["sequence"].reshape(-1, NUM_FEATURES), inputs.get("static"))
    # As if trained: every trainable weight moved off its initial value, so a re-initialized head shows.
    for weight in base.trainable_weights:
        weight.assign(weight + np.random.default_rng(2).normal(0, 0.1, weight.shape).astype("float32"))
    head_layers = get_head_layers(model_name, spec)
    copy = frozen_backbone_copy(base, head_layers)
    weighted = [layer for layer in copy.layers if layer.weights]
    head = [layer for layer in weighted if layer.name in head_layers]
    # The head has trainable weights and is re-initialized; every other layer is frozen with the base's weights.
    assert head and all(layer.trainable and layer.trainable_weights for layer in head)
    assert any(not np.array_equal(mine, theirs) for layer in head
               for mine, theirs in zip(layer.get_weights(), base.get_layer(layer.name).get_weights()))
    for layer in weighted:
        if layer.name not in head_layers:
            assert not layer.trainable, layer.name
            for mine, theirs in zip(layer.get_weights(), base.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(mine, theirs, err_msg=layer.name)
    assert {weight.path for weight in copy.trainable_weights} == {weight.path for layer in head
                                                                  for weight in layer.trainable_weights}
