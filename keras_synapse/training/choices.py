"""The names the fitting settings accept: monitors, learning-rate schedules, losses.

Kept apart from the callbacks and losses that use them, which import Keras:
the config checks every value against these before TensorFlow is imported,
so a typo costs a second, not TensorFlow's start-up.
"""

from keras_synapse.labels.common import LABEL_KINDS

LEARNING_RATE_SCHEDULES = ("constant", "reduce_on_plateau", "cosine")
# What early stopping may watch, and which way is better. `val_loss` is the
# training loss (with any L2 penalty); `val_mse` is the plain squared error of
# regression outputs; `val_ic` and `val_rank_ic` come from
# keras_synapse.training.callbacks.InformationCoefficientCallback.
MONITORS = {"val_loss": "min", "val_mse": "min", "val_ic": "max", "val_rank_ic": "max"}
TASK_KINDS = LABEL_KINDS  # defined once, with the labels
# Each task's losses; `NAME:VALUE` takes the loss's one parameter.
LOSS_NAMES = {
    "regression": ("mse", "huber", "huber:DELTA", "correlation_aware", "correlation_aware:WEIGHT"),
    "binary": ("crossentropy", "focal", "focal:GAMMA"),
    "multiclass": ("crossentropy", "focal", "focal:GAMMA"),
}
