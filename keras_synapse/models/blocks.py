"""Building blocks shared by the models: inputs with normalization, heads, backbones.

Everything here is made of built-in Keras layers (and `keras.ops` on symbolic
tensors, which Keras serializes), so a saved `.keras` model loads with plain
`keras.models.load_model` in a process that never imports keras_synapse.
"""

import dataclasses

import keras



@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a model's inputs and output look like, derived from the data and label.

    Attributes:
        sequence_length: bars per window.
        num_features: sequence features per bar.
        num_static_features: static (last-bar) features for hybrid inputs; 0
            for none.
        task: `"regression"`, `"binary"` or `"multiclass"`.
        num_classes: classes of a multiclass label (1 otherwise).
        heads: for multi-task models, `(name, task, num_classes)` per head.
    """

    sequence_length: int
    num_features: int
    num_static_features: int = 0
    task: str = "regression"
    num_classes: int = 1
    heads: tuple = ()


def model_inputs(spec):
    """Named inputs and their normalized tensors.

    Returns:
        `(inputs, sequence, static)`: the input dict for `keras.Model`, the
        normalized sequence `[batch, L, F]`, and the normalized static vector
        `[batch, F_static]` (or `None`). The `Normalization` layers
        (`feature_normalization`, `static_normalization`) are adapted on the
        training fold by `keras_synapse.models.fit_normalization`, so the
        saved model takes raw features.
    """
    sequence_input = keras.Input((spec.sequence_length, spec.num_features), name="sequence")
    inputs = {"sequence": sequence_input}
    sequence = keras.layers.Normalization(axis=-1, name="feature_normalization")(sequence_input)
    static = None
    if spec.num_static_features:
        static_input = keras.Input((spec.num_static_features,), name="static")
        inputs["static"] = static_input
        static = keras.layers.Normalization(axis=-1, name="static_normalization")(static_input)
    return inputs, sequence, static


def append_static_to_steps(sequence, static, sequence_length):
    """Concatenates the static vector to every time step (hybrid input for recurrent models)."""
    if static is None:
        return sequence
    repeated = keras.layers.RepeatVector(sequence_length, name="static_repeated")(static)
    return keras.layers.Concatenate(axis=-1, name="sequence_with_static")([sequence, repeated])


# The head of the recurrent models: `dense_block` then `prediction_head`, whose network score layer is separate
# when the head has a highway (its ridge was fitted on every symbol and stays frozen).
DENSE_HEAD_LAYERS = ("dense", "dense_dropout", "prediction", "prediction_network")


def prediction_head(x, spec, head_activation="tanh", name="prediction", highway=None):
    """The output layer for the task: tanh/linear regression, sigmoid or softmax.

    Args:
        highway: for a regression head, the flattened last bars
            (`keras_synapse.models.highway.highway_window`) whose ridge is
            added to the network's score before the activation; `None` for
            none. Defaults to `None`.
    """
    if spec.task == "binary":
        return keras.layers.Dense(1, activation="sigmoid", name=name)(x)
    if spec.task == "multiclass":
        return keras.layers.Dense(spec.num_classes, activation="softmax", name=name)(x)
    if highway is not None:
        from keras_synapse.models.highway import regression_output

        return regression_output(x, highway, head_activation, name)
    return keras.layers.Dense(1, activation=head_activation, name=name)(x)


def highway_inputs(sequence, config):
    """The highway's inputs for `config.highway_bars` > 0 (the normalized sequence's last bars), else `None`."""
    if not config.highway_bars:
        return None
    from keras_synapse.models.highway import highway_window

    return highway_window(sequence, config.highway_bars)


def lstm_backbone(sequence, lstm_units, dropout, recurrent_dropout, return_sequences=False, cell="lstm"):
    """Stacked LSTMs (or GRUs) with BatchNorm and dropout between them (seed 004).

    Args:
        sequence: `[batch, L, F]`.
        lstm_units: units per layer, e.g. `(64, 32)`.
        dropout: dropout after every layer but the last.
        recurrent_dropout: recurrent dropout of the first layer (as the seed).
        return_sequences: return the last layer's full sequence instead of
            its final state. Defaults to `False`.
        cell: `"lstm"` or `"gru"` (seed 001's next step); layers are named
            `<cell>_<depth>`. Defaults to `"lstm"`.
    """
    layer = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    x = sequence
    for depth, units in enumerate(lstm_units):
        last = depth == len(lstm_units) - 1
        x = layer(
            units,
            return_sequences=return_sequences or not last,
            recurrent_dropout=recurrent_dropout if depth == 0 else 0.0,
            name=f"{cell}_{depth}",
        )(x)
        x = keras.layers.BatchNormalization(name=f"{cell}_{depth}_batch_norm")(x)
        if not last:
            x = keras.layers.Dropout(dropout, name=f"{cell}_{depth}_dropout")(x)
    return x


def dense_block(x, units, l2, dropout, name="dense"):
    """Dense relu with L2 on the kernel, then dropout (the seed's head)."""
    x = keras.layers.Dense(units, activation="relu", kernel_regularizer=keras.regularizers.L2(l2), name=name)(x)
    return keras.layers.Dropout(dropout, name=f"{name}_dropout")(x)
