"""Losses: the correlation-aware and focal losses by hand, the config names, class weights, and saving."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_synapse.errors import ConfigError
from keras_synapse.training.losses import CorrelationAwareLoss, FocalLoss, class_weights, get_loss
from keras_synapse.training.metrics import PearsonCorrelation

RNG = np.random.default_rng(0)
TARGETS = RNG.normal(0, 1, (64, 1)).astype("float32")
PREDICTIONS = (0.3 * TARGETS + RNG.normal(0, 1, (64, 1))).astype("float32")
WEIGHTS = RNG.uniform(0.2, 2.0, 64).astype("float32")


def weighted_correlation(x, y, w):
    x, y = x.ravel().astype(np.float64), y.ravel().astype(np.float64)
    covariance = np.cov(x, y, aweights=w)
    return covariance[0, 1] / np.sqrt(covariance[0, 0] * covariance[1, 1])


def test_correlation_weight_zero_is_keras_mse_with_and_without_sample_weights():
    loss, mse = CorrelationAwareLoss(correlation_weight=0.0), keras.losses.MeanSquaredError()
    np.testing.assert_allclose(float(loss(TARGETS, PREDICTIONS)), float(mse(TARGETS, PREDICTIONS)), rtol=1e-6)
    np.testing.assert_allclose(float(loss(TARGETS, PREDICTIONS, sample_weight=WEIGHTS)),
                               float(mse(TARGETS, PREDICTIONS, sample_weight=WEIGHTS)), rtol=1e-6)


def test_blend_is_mse_minus_weighted_pearson_correlation():
    loss = CorrelationAwareLoss(correlation_weight=0.3)
    errors = (PREDICTIONS - TARGETS).ravel().astype(np.float64) ** 2
    expected = 0.7 * errors.mean() - 0.3 * np.corrcoef(PREDICTIONS.ravel(), TARGETS.ravel())[0, 1]
    np.testing.assert_allclose(float(loss(TARGETS, PREDICTIONS)), expected, rtol=1e-5)
    weighted = 0.7 * np.sum(WEIGHTS * errors) / 64 - 0.3 * weighted_correlation(PREDICTIONS, TARGETS, WEIGHTS)
    np.testing.assert_allclose(float(loss(TARGETS, PREDICTIONS, sample_weight=WEIGHTS)), weighted, rtol=1e-5)
    # Pure correlation: scale and shift of the predictions do not matter.
    pure = CorrelationAwareLoss(correlation_weight=1.0)
    np.testing.assert_allclose(float(pure(TARGETS, 5 * PREDICTIONS - 3)), float(pure(TARGETS, PREDICTIONS)),
                               rtol=1e-5)


@pytest.mark.parametrize("predictions", [np.zeros((16, 1)), np.full((16, 1), 0.7), np.zeros((1, 1))])
def test_constant_predictions_give_zero_correlation_and_finite_gradients(predictions):
    predictions = tf.Variable(predictions.astype("float32"))
    targets = TARGETS[: len(predictions.numpy())]
    with tf.GradientTape() as tape:
        value = CorrelationAwareLoss(correlation_weight=1.0)(targets, predictions)
    gradient = tape.gradient(value, predictions).numpy()
    assert float(value) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(gradient).all()


def test_correlation_stays_within_one_for_tiny_prediction_variance():
    tiny = (TARGETS * 1e-6).astype("float32")
    assert -1.0 <= float(CorrelationAwareLoss(correlation_weight=1.0)(TARGETS, tiny)) <= 0.0


def test_correlation_aware_loss_trains_a_model_with_sample_weights():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.Adam(0.05, clipnorm=1.0), loss=get_loss("correlation_aware", "regression"))
    features = RNG.normal(0, 1, (256, 4)).astype("float32")
    targets = (features @ np.array([[1.0], [-0.5], [0.0], [0.2]]) + RNG.normal(0, 0.5, (256, 1))).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((features, targets, np.ones(256, "float32"))).batch(32)
    history = model.fit(dataset, epochs=5, shuffle=False, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]


def test_focal_loss_matches_the_formula_and_cross_entropy_at_gamma_zero():
    labels = RNG.integers(0, 3, (32, 1))
    logits = RNG.normal(0, 2, (32, 3)).astype("float32")
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    true_probability = probabilities[np.arange(32), labels.ravel()]
    expected = np.mean(-((1 - true_probability) ** 2) * np.log(true_probability))
    np.testing.assert_allclose(float(FocalLoss(gamma=2.0)(labels, probabilities)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(FocalLoss(gamma=2.0, from_logits=True)(labels, logits)), expected, rtol=1e-5)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy()(labels, probabilities)
    np.testing.assert_allclose(float(FocalLoss(gamma=0.0)(labels, probabilities)), float(cross_entropy), rtol=1e-5)
    weighted = FocalLoss()(labels, probabilities, sample_weight=WEIGHTS[:32])
    unreduced = FocalLoss(reduction=None)(labels, probabilities)
    np.testing.assert_allclose(float(weighted), np.sum(WEIGHTS[:32] * unreduced) / 32, rtol=1e-5)


def test_binary_focal_loss_equals_keras_binary_focal_crossentropy():
    labels = RNG.integers(0, 2, (32, 1)).astype("float32")
    scores = RNG.uniform(0.01, 0.99, (32, 1)).astype("float32")
    for gamma in (0.0, 1.5):
        np.testing.assert_allclose(float(FocalLoss(gamma=gamma)(labels, scores)),
                                   float(keras.losses.BinaryFocalCrossentropy(gamma=gamma)(labels, scores)),
                                   rtol=1e-5)


def test_focal_loss_and_class_weights_train_a_classifier_from_a_dataset():
    keras.utils.set_random_seed(0)
    features = RNG.normal(0, 1, (192, 4)).astype("float32")
    labels = np.where(features[:, 0] > 1.0, 2, np.where(features[:, 0] < -1.0, 0, 1)).astype("float32")[:, None]
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    model.compile(keras.optimizers.Adam(0.05), loss=get_loss("focal:2", "multiclass"))
    weights = class_weights(labels, 3)
    history = model.fit(tf.data.Dataset.from_tensor_slices((features, labels)).batch(32), epochs=4,
                        class_weight=weights, shuffle=False, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]


@pytest.mark.parametrize("name, kind, expected", [
    ("mse", "regression", keras.losses.MeanSquaredError),
    ("huber", "regression", keras.losses.Huber),
    ("correlation_aware", "regression", CorrelationAwareLoss),
    ("crossentropy", "binary", keras.losses.BinaryCrossentropy),
    ("crossentropy", "multiclass", keras.losses.SparseCategoricalCrossentropy),
    ("focal", "binary", keras.losses.BinaryFocalCrossentropy),
    ("focal", "multiclass", FocalLoss),
])
def test_get_loss_maps_names_to_losses(name, kind, expected):
    assert type(get_loss(name, kind)) is expected


def test_get_loss_parameters():
    assert get_loss("correlation_aware:0.3", "regression").correlation_weight == 0.3
    assert get_loss("correlation_aware", "regression").correlation_weight == 0.5
    assert get_loss("focal:1.5", "multiclass").gamma == 1.5
    assert get_loss("focal:1.5", "binary").get_config()["gamma"] == 1.5
    # Errors of 1 are far past delta: the loss is delta * (|error| - delta / 2).
    assert float(get_loss("huber:0.05", "regression")([[0.0]], [[1.0]])) == pytest.approx(0.05 * 0.975)


@pytest.mark.parametrize("name, kind, message", [
    ("mse", "binary", r"'mse' is for regression labels, not binary. Valid for binary: crossentropy, focal"),
    ("focal", "regression", r"'focal' is for binary and multiclass labels, not regression"),
    ("hinge", "regression", r"Unknown loss 'hinge'. Valid for regression: mse, huber, huber:DELTA, "
                            r"correlation_aware, correlation_aware:WEIGHT"),
    ("correlation_aware:1.5", "regression", r"must be in \[0, 1\]"),
    ("focal:abc", "multiclass", r"must be >= 0"),
    ("mse:2", "regression", r"'mse' takes no value"),
    ("mse", "ranking", r"`task_kind` must be one of regression, binary, multiclass. Received: task_kind='ranking'"),
])
def test_get_loss_errors_name_the_valid_choices(name, kind, message):
    with pytest.raises(ConfigError, match=message):
        get_loss(name, kind)


def test_class_weights_are_balanced():
    weights = class_weights(np.array([0, 0, 0, 1, np.nan]), 3)
    assert weights == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0), 2: 1.0}
    assert class_weights([0, 1, 1, 1], 2) == {0: pytest.approx(2.0), 1: pytest.approx(2 / 3)}
    with pytest.raises(ConfigError, match=r"num_classes=1"):
        class_weights([0, 1], 1)
    with pytest.raises(ConfigError, match=r"integers in \[0, 2\). Received: 2.0"):
        class_weights([0, 1, 2], 2)


def test_configs_round_trip_through_keras_serialization():
    for loss in (CorrelationAwareLoss(correlation_weight=0.25, epsilon=1e-6, name="corr"),
                 FocalLoss(gamma=1.0, from_logits=True, name="focal_1", reduction="sum")):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    assert CorrelationAwareLoss().get_config() == {"correlation_weight": 0.5, "epsilon": 1e-8,
                                                   "name": "correlation_aware"}
    with pytest.raises(ConfigError, match=r"Received: correlation_weight=2"):
        CorrelationAwareLoss(correlation_weight=2)


def test_custom_loss_blocks_plain_loading_and_an_uncompiled_copy_fixes_it(tmp_path):
    """The registry's fix: save `keras.Model(model.input, model.output)`, which carries no compile config."""
    keras.utils.set_random_seed(0)
    sequence, static = keras.Input((6, 3), name="sequence"), keras.Input((2,), name="static")
    hidden = keras.layers.Concatenate()([keras.layers.Dropout(0.2)(keras.layers.Flatten()(sequence)), static])
    model = keras.Model({"sequence": sequence, "static": static}, keras.layers.Dense(1)(hidden), name="tiny")
    model.compile(keras.optimizers.Adam(1e-3), loss=CorrelationAwareLoss(), metrics=[PearsonCorrelation()])
    inputs = {"sequence": RNG.normal(0, 1, (32, 6, 3)).astype("float32"),
              "static": RNG.normal(0, 1, (32, 2)).astype("float32")}
    model.fit(inputs, TARGETS[:32], epochs=1, verbose=0)
    np.savez(tmp_path / "inputs.npz", **inputs)
    np.save(tmp_path / "predictions.npy", model.predict(inputs, verbose=0))
    model.save(tmp_path / "compiled.keras")
    inference = keras.Model(model.input, model.output, name=model.name)
    assert inference.get_config() == model.get_config()
    inference.save(tmp_path / "inference.keras")
    # With keras_synapse imported, the compiled file loads with its loss.
    assert isinstance(keras.models.load_model(tmp_path / "compiled.keras").loss, CorrelationAwareLoss)

    script = textwrap.dedent("""
        import sys, numpy as np, keras
        inputs = dict(np.load("inputs.npz"))
        try:
            keras.models.load_model("compiled.keras")
            print("compiled: loaded")
        except TypeError as error:
            print("compiled: failed:", str(error)[:60])
        model = keras.models.load_model("inference.keras")
        np.save("reloaded.npy", model.predict(inputs, verbose=0))
        assert not any(name.startswith("keras_synapse") for name in sys.modules)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compiled: failed: Could not locate class 'CorrelationAwareLoss'" in result.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "reloaded.npy"), np.load(tmp_path / "predictions.npy"))
