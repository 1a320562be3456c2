"""A Transformer encoder for bar sequences (seed 002).

    input projection -> positional encoding (learned or sinusoidal)
    [-> a static-feature token in front, for hybrid inputs]
    -> N x (pre-LayerNorm multi-head self-attention + residual,
            pre-LayerNorm feed-forward + residual)
    -> LayerNorm -> pooling (last step or mean) -> head

The causal mask (seed 002's open question) is optional: every window ends at
the bar the prediction is made for, so attending to later bars inside the
window leaks nothing; the mask only changes what each position summarizes.
Built from built-in layers and `keras.ops`, so the saved model loads with
plain Keras.
"""

import keras
import numpy as np

from keras_synapse.errors import ConfigError
from keras_synapse.models import POOLINGS, POSITIONAL_ENCODINGS
from keras_synapse.models.blocks import highway_inputs, model_inputs, prediction_head


def sinusoidal_encoding(length, model_dim):
    """The fixed sine/cosine position table of "Attention Is All You Need", `[1, length, model_dim]`."""
    positions = np.arange(length)[:, None]
    frequencies = np.exp(-np.log(10000.0) * (np.arange(0, model_dim, 2) / model_dim))
    table = np.zeros((length, model_dim), dtype=np.float32)
    table[:, 0::2] = np.sin(positions * frequencies)
    table[:, 1::2] = np.cos(positions * frequencies)[:, : model_dim // 2]
    return table[None]


def positional_encoding(x, kind, length, model_dim):
    """Adds a learned or fixed encoding of each step's position to `x`."""
    if kind == "sinusoidal":
        return x + sinusoidal_encoding(length, model_dim)
    # Positions 0..L-1 derived from the input, so the embedding stays a plain
    # built-in layer (no custom layer to register for loading).
    positions = keras.ops.cast(keras.ops.zeros_like(x[:, :, 0]), "int32") + keras.ops.arange(length, dtype="int32")
    return x + keras.layers.Embedding(length, model_dim, name="position_embedding")(positions)


def transformer_encoder(x, num_heads, key_dim, ff_dim, dropout, causal, name):
    """One pre-LayerNorm encoder block: self-attention and feed-forward, each with a residual."""
    attended = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{name}_attention_norm")(x)
    attended = keras.layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout, name=f"{name}_attention")(
        attended, attended, use_causal_mask=causal
    )
    x = keras.layers.Add(name=f"{name}_attention_residual")([x, attended])
    forward = keras.layers.LayerNormalization(epsilon=1e-6, name=f"{name}_feed_forward_norm")(x)
    # relu, not gelu: tf2onnx lowers exact gelu to Erfc, which ONNX Runtime lacks.
    forward = keras.layers.Dense(ff_dim, activation="relu", name=f"{name}_feed_forward_1")(forward)
    forward = keras.layers.Dropout(dropout, name=f"{name}_feed_forward_dropout")(forward)
    forward = keras.layers.Dense(x.shape[-1], name=f"{name}_feed_forward_2")(forward)
    return keras.layers.Add(name=f"{name}_feed_forward_residual")([x, forward])


def build_model(config, spec):
    """Builds the Transformer encoder.

    Args:
        config: an `ExperimentConfig` (uses `model_dim`, `num_heads`,
            `num_blocks`, `ff_dim`, `dropout`, `positional_encoding`,
            `causal_mask`, `pooling`, `head_activation`, `name`).
        spec: a `ModelSpec`.

    Returns:
        An uncompiled `keras.Model` with inputs `{"sequence"[, "static"]}` and
        output `prediction`.
    """
    if config.positional_encoding not in POSITIONAL_ENCODINGS:
        raise ConfigError(f"`positional_encoding` must be one of {POSITIONAL_ENCODINGS}. "
                          f"Received: positional_encoding={config.positional_encoding!r}")
    if config.pooling not in POOLINGS:
        raise ConfigError(f"`pooling` must be one of {POOLINGS}. Received: pooling={config.pooling!r}")
    inputs, sequence, static = model_inputs(spec)
    x = keras.layers.Dense(config.model_dim, name="input_projection")(sequence)
    x = positional_encoding(x, config.positional_encoding, spec.sequence_length, config.model_dim)
    if static is not None:
        token = keras.layers.Dense(config.model_dim, name="static_embedding")(static)
        token = keras.layers.Reshape((1, config.model_dim), name="static_token")(token)
        # The static token goes first so "last step" pooling still reads the last bar.
        x = keras.layers.Concatenate(axis=1, name="tokens")([token, x])
    x = keras.layers.Dropout(config.dropout, name="embedding_dropout")(x)
    for block in range(config.num_blocks):
        x = transformer_encoder(x, config.num_heads, config.model_dim // config.num_heads, config.ff_dim,
                                config.dropout, config.causal_mask, name=f"encoder_{block}")
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    if config.pooling == "mean":
        x = keras.layers.GlobalAveragePooling1D(name="mean_pooling")(x)
    else:
        x = x[:, -1, :]
    output = prediction_head(x, spec, config.head_activation, highway=highway_inputs(sequence, config))
    return keras.Model(inputs, output, name=config.name)


def head_layers(spec):
    """What fine-tuning replaces: the final LayerNorm (its gain and bias) and the output layer.

    The encoder has no dense block before its output, so without the norm a
    fine-tuned Transformer would adapt one linear layer only.
    """
    return ("final_norm", "prediction", "prediction_network")
