"""Stacked LSTM with multi-head self-attention over the sequence (seeds 000 and 003).

    Normalization -> LSTM stack (returning sequences)
    -> multi-head self-attention + residual -> LayerNorm
    -> last step -> Dense -> head

Seed 000 sketches LSTM 128 -> 64 with 8-head attention; seed 003 LSTM 200 ->
100 with attention over 20 steps. The defaults follow the shared backbone's
sizes so the models compare at similar capacity; set `lstm_units` and
`num_heads` for the seeds' larger variants.
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
    """Builds the attention LSTM.

    Args:
        config: an `ExperimentConfig` (uses `lstm_units`, `dropout`,
            `recurrent_dropout`, `num_heads`, `dense_units`, `l2`,
            `dense_dropout`, `head_activation`, `name`).
        spec: a `ModelSpec`.

    Returns:
        An uncompiled `keras.Model` with inputs `{"sequence"[, "static"]}` and
        output `prediction`.
    """
    inputs, sequence, static = model_inputs(spec)
    x = append_static_to_steps(sequence, static, spec.sequence_length)
    x = lstm_backbone(x, config.lstm_units, config.dropout, config.recurrent_dropout, return_sequences=True)
    units = config.lstm_units[-1]
    attended = keras.layers.MultiHeadAttention(config.num_heads, max(1, units // config.num_heads),
                                               dropout=config.dropout, name="attention")(x, x)
    x = keras.layers.Add(name="attention_residual")([x, attended])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")(x)
    x = dense_block(x[:, -1, :], config.dense_units, config.l2, config.dense_dropout)
    output = prediction_head(x, spec, config.head_activation, highway=highway_inputs(sequence, config))
    return keras.Model(inputs, output, name=config.name)


def head_layers(spec):
    """What fine-tuning replaces: the dense block and the output layer."""
    return DENSE_HEAD_LAYERS
