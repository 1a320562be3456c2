"""The model zoo: one module per model, each exposing `build_model(config, spec)`.

The trainer finds a model by name, `keras_synapse.models.<config.model>`, so a
new model is a new module and nothing else.
"""

import importlib

from keras_synapse.errors import ConfigError

# The names the model settings accept, here rather than beside the layers that
# use them: the config checks them before TensorFlow is imported.
MODEL_NAMES = ("shared_backbone", "gru", "multitask", "lstm_attention", "transformer")
POSITIONAL_ENCODINGS = ("learned", "sinusoidal")
POOLINGS = ("last", "mean")
# A regression head's output: tanh (the shared-backbone design) or linear. Classifiers use sigmoid/softmax.
HEAD_ACTIVATIONS = ("tanh", "linear")


def __getattr__(name):
    # `ModelSpec` lives with the blocks, which import Keras: loaded only when asked for.
    if name == "ModelSpec":
        from keras_synapse.models.blocks import ModelSpec

        return ModelSpec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_model_builder(name):
    """Returns `build_model` of the model module `name`.

    Raises:
        ConfigError: for an unknown model name, listing the known ones.
    """
    if name not in MODEL_NAMES:
        raise ConfigError(f"Unknown model {name!r}. Known: {', '.join(MODEL_NAMES)}")
    return importlib.import_module(f"keras_synapse.models.{name}").build_model


def get_head_layers(name, spec):
    """The layers fine-tuning re-initializes and trains on model `name`'s frozen backbone.

    Every model module declares them as `head_layers(spec)`: part of the
    model contract, checked for every model by the conformance test.
    """
    get_model_builder(name)  # the same error for an unknown name
    return tuple(importlib.import_module(f"keras_synapse.models.{name}").head_layers(spec))


def fit_normalization(model, feature_rows, static_rows=None):
    """Adapts the model's input normalization to training-fold rows.

    The statistics then live inside the model, so a saved `.keras` file takes
    raw features. Pass rows from the training fold only.

    Args:
        model: a model built by this package (normalization layers named
            `feature_normalization` and, for hybrid inputs,
            `static_normalization`).
        feature_rows: float32 `[rows, features]` from the training fold.
        static_rows: float32 `[rows, static features]` from the training
            fold, for hybrid models. Defaults to `None`.
    """
    # The layer was built on [batch, time, features]; adapt() wants the same rank.
    model.get_layer("feature_normalization").adapt(feature_rows[:, None, :])
    if static_rows is not None:
        model.get_layer("static_normalization").adapt(static_rows)
