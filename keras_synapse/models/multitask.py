"""The shared backbone with seed 004's four heads (multi-task learning).

    shared-backbone LSTM -> Dense 16
    -> pattern_confidence   sigmoid   (a seed-004 pattern-validation label)
    -> signal_quality       sigmoid   (a meta-label: does the primary signal pay?)
    -> market_regime        softmax 3 (bear / neutral / bull: the direction label)
    -> volatility_forecast  softplus  (forward realized volatility, non-negative)

Each head is trained on its own label from the label library with its own
loss and weight; windows where a head's label is unknown (a pattern that did
not fire) weigh zero for that head only. Which label feeds which head is the
experiment's `heads` field; the seed's sigmoid on the volatility head is
replaced by softplus, since volatility is not bounded by 1.
"""

import keras

from keras_synapse.models.blocks import append_static_to_steps, dense_block, lstm_backbone, model_inputs


def head_layer(x, name, task, num_classes):
    """One output head: sigmoid for binary, softmax for multiclass, softplus for (non-negative) regression."""
    if task == "binary":
        return keras.layers.Dense(1, activation="sigmoid", name=name)(x)
    if task == "multiclass":
        return keras.layers.Dense(num_classes, activation="softmax", name=name)(x)
    return keras.layers.Dense(1, activation="softplus", name=name)(x)


def build_model(config, spec):
    """Builds the multi-task shared backbone.

    Args:
        config: an `ExperimentConfig` (backbone fields as `shared_backbone`).
        spec: a `ModelSpec` whose `heads` lists `(name, task, num_classes)`.

    Returns:
        An uncompiled `keras.Model` with inputs `{"sequence"[, "static"]}` and
        a dict of outputs, one per head.
    """
    inputs, sequence, static = model_inputs(spec)
    x = keras.layers.BatchNormalization(name="input_batch_norm")(sequence)
    x = append_static_to_steps(x, static, spec.sequence_length)
    x = lstm_backbone(x, config.lstm_units, config.dropout, config.recurrent_dropout)
    x = dense_block(x, config.dense_units, config.l2, config.dense_dropout)
    outputs = {name: head_layer(x, name, task, num_classes) for name, task, num_classes in spec.heads}
    return keras.Model(inputs, outputs, name=config.name)


def head_layers(spec):
    """What fine-tuning replaces: the shared dense block and every output head."""
    return ("dense", "dense_dropout", *(name for name, _, _ in spec.heads))
