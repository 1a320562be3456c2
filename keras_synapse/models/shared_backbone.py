"""The shared-backbone LSTM of seed 004.

One network trained across all symbols (windows of many tickers interleave in
every batch), so the backbone learns patterns common to the universe:

    Normalization (training-fold statistics) -> BatchNorm
    -> LSTM 64 (recurrent dropout 0.3) -> BatchNorm -> Dropout 0.45
    -> LSTM 32 -> BatchNorm
    -> Dense 16 relu (L2 0.006) -> Dropout 0.36 -> Dense 1 tanh

With 8 core features it has ~32k parameters (~34k with the 17 pattern features;
the seed's "400k" is a miscount). Only built-in Keras layers are used, so the
saved `.keras` file loads with plain `keras.models.load_model`.
"""

import keras


def lstm_backbone(sequence, lstm_units, dropout, recurrent_dropout):
    """Stacked LSTMs with BatchNorm; returns the last layer's final state."""
    x = sequence
    for depth, units in enumerate(lstm_units):
        last = depth == len(lstm_units) - 1
        x = keras.layers.LSTM(
            units,
            return_sequences=not last,
            # The seed applies recurrent dropout to the first layer only.
            recurrent_dropout=recurrent_dropout if depth == 0 else 0.0,
            name=f"lstm_{depth}",
        )(x)
        x = keras.layers.BatchNormalization(name=f"lstm_{depth}_batch_norm")(x)
        if not last:
            x = keras.layers.Dropout(dropout, name=f"lstm_{depth}_dropout")(x)
    return x


def build_model(config, num_features):
    """Builds the shared-backbone LSTM.

    Args:
        config: an `ExperimentConfig` (uses `sequence_length`, `lstm_units`,
            `dropout`, `recurrent_dropout`, `dense_units`, `l2`,
            `dense_dropout`, `head_activation`).
        num_features: features per time step.

    Returns:
        An uncompiled `keras.Model` with input `{"sequence": [batch,
        sequence_length, num_features]}` and output `prediction` `[batch, 1]`.
        Its `feature_normalization` layer must be adapted before training (see
        `keras_synapse.models.fit_normalization`).
    """
    sequence = keras.Input((config.sequence_length, num_features), name="sequence")
    x = keras.layers.Normalization(axis=-1, name="feature_normalization")(sequence)
    x = keras.layers.BatchNormalization(name="input_batch_norm")(x)
    x = lstm_backbone(x, config.lstm_units, config.dropout, config.recurrent_dropout)
    x = keras.layers.Dense(
        config.dense_units,
        activation="relu",
        kernel_regularizer=keras.regularizers.L2(config.l2),
        name="dense",
    )(x)
    x = keras.layers.Dropout(config.dense_dropout, name="dense_dropout")(x)
    prediction = keras.layers.Dense(1, activation=config.head_activation, name="prediction")(x)
    return keras.Model({"sequence": sequence}, prediction, name=config.name)
