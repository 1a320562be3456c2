"""Seed ensembles: K networks that differ only in their seed, averaged into one Keras model.

A network trained on a weak edge lands somewhere different with every seed
(initial weights, dropout masks, batch order); averaging K of them keeps what
they share and cancels much of what each fitted to noise (on a planted edge
of oracle IC 0.08, five seeds raised the test IC's recovery from 0.15 to 0.25,
see `experiments/shared_backbone.py`). The average is one functional model
(`average_members`), so it saves to one `.keras` file, exports to one ONNX
graph and serves unchanged; its members are its nested models
(`ensemble_members`).

Each member's test scores ride along as `member_<k>` columns
(`member_columns`); `keras_synapse.evaluation.agreement` says what they
show: the members' ICs, their spread and seed 003's agreement.
"""

import numpy as np

from keras_synapse.evaluation.agreement import MEMBER_PREFIX


def member_name(model_name, member):
    """The name of member `member` of an ensemble of `model_name`: nested models need names of their own."""
    return f"{model_name}_{MEMBER_PREFIX}{member}"


def average_members(members, name):
    """One model whose output is the mean of the members' outputs (per head for multi-task members).

    Args:
        members: built `keras.Model`s with the same inputs and outputs.
        name: the ensemble model's name.

    Returns:
        A `keras.Model` taking the members' inputs.
    """
    import keras

    inputs = {tensor.name: keras.Input(shape=tensor.shape[1:], name=tensor.name, dtype=tensor.dtype)
              for tensor in members[0].inputs}
    outputs = [member(inputs) for member in members]
    if isinstance(outputs[0], dict):
        combined = {head: keras.layers.Average(name=f"average_{head}")([output[head] for output in outputs])
                    for head in outputs[0]}
    else:
        combined = keras.layers.Average(name="average")(outputs)
    return keras.Model(inputs, combined, name=name)


def ensemble_members(model):
    """The member models of an `average_members` ensemble (empty for a plain model or a tree)."""
    import keras

    return [layer for layer in getattr(model, "layers", ()) if isinstance(layer, keras.Model)
            and MEMBER_PREFIX in layer.name]


def member_columns(model, score_windows):
    """Each member's scores of the same windows, as `member_<k>` columns.

    Args:
        model: an ensemble (a plain model gives no columns).
        score_windows: `score_windows(member) -> [windows]` scores, e.g.
            `predict_windows(member, ...)["prediction"]`.

    Returns:
        A dict column -> scores.
    """
    return {f"{MEMBER_PREFIX}{index}": np.asarray(score_windows(member), dtype=np.float64)
            for index, member in enumerate(ensemble_members(model))}
