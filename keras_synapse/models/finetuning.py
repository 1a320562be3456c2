"""Fine-tuning (seed 004's stock-specific adaptation): a fresh head on a frozen backbone."""

import keras

from keras_synapse.errors import ConfigError


def frozen_backbone_copy(base_model, head_layers):
    """A copy of `base_model` whose layers keep their weights and are frozen, except a fresh head.

    Args:
        base_model: the trained model.
        head_layers: names of the layers to re-initialize and train (the
            model module's `head_layers(spec)`).

    Raises:
        ConfigError: when a head layer is missing from `base_model` or none
            of them has weights to train.
    """
    from keras_synapse.models.highway import is_highway_layer

    names = {layer.name for layer in base_model.layers}
    # A highway's network score layer is in the head only when the model has a highway.
    missing = [name for name in head_layers if name not in names and not is_highway_layer(name)]
    trainable = [name for name in head_layers if name in names and base_model.get_layer(name).weights]
    if missing or not trainable:
        raise ConfigError(f"Fine-tuning needs the head layers {tuple(head_layers)} in `{base_model.name}`. "
                          f"Received: a model whose layers are {sorted(names)}")
    model = keras.models.clone_model(base_model)  # same graph, re-initialized weights
    for layer in model.layers:
        if layer.name not in head_layers and layer.weights:
            layer.set_weights(base_model.get_layer(layer.name).get_weights())
            if isinstance(layer, keras.layers.Normalization):
                # set_weights leaves Normalization's cached mean/variance stale
                # until finalize_state(); without it the layer would normalize
                # with zeros and ones (the ONNX parity gate caught this).
                layer.finalize_state()
            layer.trainable = False
    return model
