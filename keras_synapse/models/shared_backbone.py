"""The shared-backbone LSTM of seed 004.

One network trained across all symbols (windows of many tickers interleave in
every batch), so the backbone learns patterns common to the universe:

    Normalization (training-fold statistics) -> BatchNorm
    -> LSTM 64 (recurrent dropout 0.3) -> BatchNorm -> Dropout 0.45
    -> LSTM 32 -> BatchNorm
    -> Dense 16 relu (L2 0.006) -> Dropout 0.36 -> Dense 1 tanh

With 17 features it has ~34k parameters (the seed's "400k" is a miscount).
Options: a binary (sigmoid) or 3-class (softmax, UP/DOWN/FLAT as seed 001)
head follows the label; hybrid inputs get the static vector appended to every
time step.
"""

import keras

from keras_synapse.models.blocks import (
    DENSE_HEAD_LAYERS,
    append_static_to_steps,
    dense_block,
    lstm_backbone,
    highway_inputs,
    model_inputs,
    prediction_head,
)


def build_model(config, spec):
    """Builds the shared-backbone LSTM.

    Args:
        config: an `ExperimentConfig` (uses `lstm_units`, `dropout`,
            `recurrent_dropout`, `dense_units`, `l2`, `dense_dropout`,
            `head_activation`, `name`).
        spec: a `ModelSpec` (input shapes and task).

    Returns:
        An uncompiled `keras.Model` with inputs `{"sequence"[, "static"]}` and
        output `prediction`.
    """
    return build_backbone(config, spec, "lstm")


def build_backbone(config, spec, cell):
    """The shared backbone with `cell` (`"lstm"` or `"gru"`) recurrent layers; see `build_model`."""
    inputs, sequence, static = model_inputs(spec)
    x = keras.layers.BatchNormalization(name="input_batch_norm")(sequence)
    x = append_static_to_steps(x, static, spec.sequence_length)
    x = lstm_backbone(x, config.lstm_units, config.dropout, config.recurrent_dropout, cell=cell)
    x = dense_block(x, config.dense_units, config.l2, config.dense_dropout)
    output = prediction_head(x, spec, config.head_activation, highway=highway_inputs(sequence, config))
    return keras.Model(inputs, output, name=config.name)


def head_layers(spec):
    """What fine-tuning replaces: the dense block and the output layer."""
    return DENSE_HEAD_LAYERS
