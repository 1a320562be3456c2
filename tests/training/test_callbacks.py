"""Callbacks: exact resume after a restart, per-epoch data order, validation IC, learning-rate schedules."""

import csv

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from keras_synapse.errors import ConfigError
from keras_synapse.evaluation.panel_metrics import information_coefficients
from keras_synapse.training.callbacks import (
    EpochCheckpoint,
    InformationCoefficientCallback,
    learning_rate_schedule,
    log_test_metrics,
    read_checkpoint,
    restore_checkpoint,
)
from keras_synapse.windows.dataset import shuffled_epoch_batches

SEED, SEQUENCE_LENGTH, NUM_FEATURES, BATCH_SIZE = 7, 5, 3, 16
RNG = np.random.default_rng(0)
ROWS = RNG.normal(0, 1, (300, NUM_FEATURES)).astype("float32")
ROW_TARGETS = (ROWS[:, :1] * 0.5 + RNG.normal(0, 1, (300, 1))).astype("float32")
FIT_ENDS = np.arange(SEQUENCE_LENGTH - 1, 200)
VALIDATION_ENDS = np.arange(205, 300)
FIT_WEIGHTS = RNG.uniform(0.5, 1.5, len(FIT_ENDS)).astype("float32")


def gather(end_rows):
    offsets = tf.range(-SEQUENCE_LENGTH + 1, 1, dtype=tf.int64)
    return {"sequence": tf.gather(ROWS, end_rows[:, None] + offsets)}, tf.gather(ROW_TARGETS, end_rows)


def training_dataset(initial_epoch):
    """`windows.make_dataset`'s pipeline with the per-epoch order of `shuffled_epoch_batches`."""
    index_batches, steps_per_epoch = shuffled_epoch_batches(len(FIT_ENDS), BATCH_SIZE, SEED, initial_epoch)
    ends, weights = tf.constant(FIT_ENDS, tf.int64), tf.constant(FIT_WEIGHTS)

    def windows(index):
        inputs, targets = gather(tf.gather(ends, index))
        return inputs, targets, tf.gather(weights, index)

    return index_batches.map(windows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True), steps_per_epoch


def validation_dataset():
    return tf.data.Dataset.from_tensor_slices(VALIDATION_ENDS.astype("int64")).batch(BATCH_SIZE).map(gather)


def build_model(schedule, steps_per_epoch, epochs):
    inputs = keras.Input((SEQUENCE_LENGTH, NUM_FEATURES), name="sequence")
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inputs))
    hidden = keras.layers.Dropout(0.3)(hidden)  # its seed state must survive the restart
    model = keras.Model({"sequence": inputs}, keras.layers.Dense(1)(hidden))
    learning_rate, schedule_callbacks = learning_rate_schedule(schedule, 0.02, epochs, steps_per_epoch, patience=1)
    model.compile(keras.optimizers.Adam(learning_rate, clipnorm=1.0), loss="mse")
    return model, schedule_callbacks


class Killed(Exception):
    pass


class KillAfterEpoch(keras.callbacks.Callback):
    """Stands in for `kill -9` right after an epoch's checkpoint: no `on_train_end`, no final save."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed()


def train(directory, schedule, initial_epoch, epochs, resume, global_seed, kill_after=None):
    keras.utils.clear_session()
    keras.utils.set_random_seed(global_seed)
    dataset, steps_per_epoch = training_dataset(initial_epoch)
    model, schedule_callbacks = build_model(schedule, steps_per_epoch, epochs)
    early_stopping = keras.callbacks.EarlyStopping(patience=15, restore_best_weights=True)
    stateful = [early_stopping] + [callback for callback in schedule_callbacks
                                   if isinstance(callback, keras.callbacks.ReduceLROnPlateau)]
    checkpoint = EpochCheckpoint(directory, callbacks=stateful, resume=resume)
    if resume:
        assert restore_checkpoint(model, directory) == initial_epoch - 1
    callbacks = [*schedule_callbacks, early_stopping, checkpoint]
    if kill_after is not None:
        callbacks.append(KillAfterEpoch(kill_after))
    try:
        model.fit(dataset, steps_per_epoch=steps_per_epoch, validation_data=validation_dataset(),
                  initial_epoch=initial_epoch, epochs=epochs, callbacks=callbacks, shuffle=False, verbose=0)
    except Killed:
        pass
    return model, checkpoint, stateful


def state_of(model, stateful):
    variables = [np.asarray(variable) for variable in model.variables + model.optimizer.variables]
    callbacks = [{name: value for name, value in vars(callback).items()
                  if name in ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")}
                 for callback in stateful]
    return variables, callbacks


@pytest.mark.parametrize("schedule", ["reduce_on_plateau", "cosine"])
def test_resume_after_restart_matches_the_uninterrupted_run(tmp_path, schedule):
    tf.config.experimental.enable_op_determinism()
    straight, straight_checkpoint, straight_stateful = train(tmp_path / "straight", schedule, 0, 4, False, SEED)
    train(tmp_path / "resumed", schedule, 0, 4, False, SEED, kill_after=1)
    assert not read_checkpoint(tmp_path / "resumed")["finished"]
    # A fresh process: new session, new model and optimizer, even a different global seed.
    resumed, resumed_checkpoint, resumed_stateful = train(tmp_path / "resumed", schedule, 2, 4, True, SEED + 1)

    straight_variables, straight_callbacks = state_of(straight, straight_stateful)
    resumed_variables, resumed_callbacks = state_of(resumed, resumed_stateful)
    assert len(straight_variables) == len(resumed_variables)
    for expected, actual in zip(straight_variables, resumed_variables):
        np.testing.assert_array_equal(actual, expected)
    assert resumed_callbacks == straight_callbacks
    assert resumed_checkpoint.history == straight_checkpoint.history
    assert len(resumed_checkpoint.history["val_loss"]) == 4 and "learning_rate" in resumed_checkpoint.history
    # Early stopping restored the best epoch's weights at the end of both runs.
    assert straight_stateful[0].best_epoch == int(np.argmin(straight_checkpoint.history["val_loss"]))
    if schedule == "reduce_on_plateau":
        # The best epoch precedes the restart and the rate drops after it: the restored callback state matters.
        assert straight_stateful[0].best_epoch < 2
        assert straight_checkpoint.history["learning_rate"][3] < straight_checkpoint.history["learning_rate"][2]


def test_checkpoint_files_and_finished_state(tmp_path):
    model, checkpoint, stateful = train(tmp_path, "constant", 0, 2, False, SEED)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.json", "final.npz"]
    state = read_checkpoint(tmp_path)
    assert state["epoch"] == 1 and state["finished"] and state["optimizer_iterations"] == 2 * 13
    assert state["callbacks"][0]["class"] == "EarlyStopping" and state["callbacks"][0]["has_best_weights"]
    final = [np.asarray(variable) for variable in model.variables]
    keras.utils.clear_session()
    fresh, _ = build_model("constant", 13, 2)
    assert restore_checkpoint(fresh, tmp_path) == 1
    for expected, actual in zip(final, fresh.variables):
        np.testing.assert_array_equal(np.asarray(actual), expected)
    assert restore_checkpoint(fresh, tmp_path / "empty") is None


def test_resume_without_restoring_the_model_fails_loudly(tmp_path):
    train(tmp_path, "constant", 0, 2, False, SEED, kill_after=0)
    with pytest.raises(ConfigError, match=r"call restore_checkpoint\(model, directory\) before fit"):
        keras.utils.clear_session()
        dataset, steps_per_epoch = training_dataset(1)
        model, _ = build_model("constant", steps_per_epoch, 2)
        model.fit(dataset, steps_per_epoch=steps_per_epoch, initial_epoch=1, epochs=2, shuffle=False, verbose=0,
                  callbacks=[EpochCheckpoint(tmp_path, resume=True)])
    with pytest.raises(ConfigError, match=r"EarlyStopping, ReduceLROnPlateau only. Received: CSVLogger"):
        EpochCheckpoint(tmp_path, callbacks=[keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))])


def test_a_rebuilt_reshuffling_dataset_replays_epoch_zero_order():
    """Why `shuffled_epoch_batches` exists: the usual seeded reshuffle restarts with the process."""
    def reshuffling():
        return tf.data.Dataset.range(20).shuffle(20, seed=SEED, reshuffle_each_iteration=True)

    keras.utils.set_random_seed(SEED)
    uninterrupted = reshuffling()
    orders = [list(uninterrupted.as_numpy_iterator()) for _ in range(3)]
    keras.utils.set_random_seed(SEED)
    after_restart = list(reshuffling().as_numpy_iterator())  # what a resumed run gets at epoch 2
    assert after_restart == orders[0] != orders[2]


def test_shuffled_epoch_batches_depend_on_seed_and_epoch_only():
    dataset, steps_per_epoch = shuffled_epoch_batches(10, 4, seed=SEED)
    assert steps_per_epoch == 3
    batches = [batch.tolist() for batch in dataset.take(4 * steps_per_epoch).as_numpy_iterator()]
    epochs = [sum(batches[start:start + 3], []) for start in range(0, 12, 3)]
    assert [len(batch) for batch in batches[:3]] == [4, 4, 2]  # each epoch ends with its own partial batch
    assert all(sorted(order) == list(range(10)) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 4
    keras.utils.set_random_seed(SEED + 1)  # the global seed plays no part
    resumed, _ = shuffled_epoch_batches(10, 4, seed=SEED, initial_epoch=2)
    assert [batch.tolist() for batch in resumed.take(6).as_numpy_iterator()] == batches[6:]
    other, _ = shuffled_epoch_batches(10, 4, seed=SEED + 1)
    assert [batch.tolist() for batch in other.take(3).as_numpy_iterator()] != batches[:3]


def test_information_coefficient_callback_logs_to_history_and_csv(tmp_path):
    keras.utils.clear_session()
    keras.utils.set_random_seed(SEED)
    dataset, steps_per_epoch = training_dataset(0)
    model, schedule_callbacks = build_model("constant", steps_per_epoch, 2)
    references = ROW_TARGETS[VALIDATION_ENDS, 0] + RNG.normal(0, 0.1, len(VALIDATION_ENDS))
    timestamps = np.repeat(pd.date_range("2024-01-01", periods=19, tz="UTC"), 5)
    information = InformationCoefficientCallback(validation_dataset(), references, timestamps=timestamps)
    predictions = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: predictions.append(model.predict(validation_dataset(), verbose=0).ravel()))
    log = tmp_path / "training_log.csv"
    history = model.fit(dataset, steps_per_epoch=steps_per_epoch, epochs=2, validation_data=validation_dataset(),
                        callbacks=[information, *schedule_callbacks, recorder, keras.callbacks.CSVLogger(str(log))],
                        shuffle=False, verbose=0).history
    for epoch, scores in enumerate(predictions):
        assert history["val_ic"][epoch] == pytest.approx(np.corrcoef(scores, references)[0, 1], abs=1e-6)
        frame = pd.DataFrame({"timestamp": timestamps, "prediction": scores, "reference": references})
        assert history["val_cross_sectional_ic"][epoch] == pytest.approx(
            information_coefficients(frame)["ic_mean"], abs=1e-6)
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["val_ic"]) for row in rows] == pytest.approx(history["val_ic"])
    assert "val_rank_ic" in rows[0] and "learning_rate" in rows[0]


def test_learning_rate_schedules():
    rate, callbacks = learning_rate_schedule("constant", 1e-3, epochs=10, steps_per_epoch=5)
    assert rate == 1e-3 and len(callbacks) == 1
    rate, callbacks = learning_rate_schedule("reduce_on_plateau", 1e-3, 10, 5, patience=3, min_learning_rate=1e-5)
    assert isinstance(callbacks[0], keras.callbacks.ReduceLROnPlateau) and callbacks[0].min_lr == 1e-5
    schedule, _ = learning_rate_schedule("cosine", 1e-3, epochs=10, steps_per_epoch=5, min_learning_rate=1e-4)
    assert float(schedule(0)) == pytest.approx(1e-3) and float(schedule(50)) == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match=r"Unknown learning-rate schedule 'step'. Valid: constant, "
                                          r"reduce_on_plateau, cosine"):
        learning_rate_schedule("step", 1e-3, 10, 5)
    with pytest.raises(ConfigError, match=r"Received: learning_rate=0"):
        learning_rate_schedule("constant", 0, 10, 5)


class ScriptedInformationCoefficient(keras.callbacks.Callback):
    """Logs `val_ic` from a script, so early stopping keeps a known epoch."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_ic"] = self.values[epoch]


def scalars(run_directory):
    """`{tag: {step: value}}` of the TensorBoard event files in one run directory."""
    logged = {}
    for events in run_directory.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                logged.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return logged


def test_test_metrics_sit_on_the_validation_curves_at_the_epoch_early_stopping_kept(tmp_path):
    keras.utils.clear_session()
    keras.utils.set_random_seed(SEED)
    dataset, steps_per_epoch = training_dataset(0)
    model, _ = build_model("constant", steps_per_epoch, 10)
    # The best validation IC is at epoch 1; patience 2 stops after epoch 3, having trained 4 epochs.
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_ic", mode="max", patience=2,
                                                   restore_best_weights=True)
    checkpoint = EpochCheckpoint(tmp_path / "checkpoints" / "fold_0", callbacks=[early_stopping])
    log_dir = tmp_path / "tensorboard" / "fold_0"
    model.fit(dataset, steps_per_epoch=steps_per_epoch, epochs=10, validation_data=validation_dataset(),
              callbacks=[ScriptedInformationCoefficient([0.1, 0.3, 0.2, 0.1, 0.0, 0.0]), early_stopping, checkpoint,
                         keras.callbacks.TensorBoard(log_dir=str(log_dir))], shuffle=False, verbose=0)
    epochs_trained = len(checkpoint.history["loss"])
    assert epochs_trained == 4 and early_stopping.best_epoch == 1

    step = log_test_metrics(tmp_path, "fold_0", {"ic": 0.05, "directional_accuracy": 0.52, "n": 300},
                            {"ic": (0.01, 0.09)}, epochs_trained)
    assert step == 1
    validation, test = scalars(log_dir / "validation"), scalars(log_dir / "test")
    # Beside the validation curve: the same tag, in a `test` run next to `train` and `validation`.
    assert "epoch_ic" in validation and sorted(validation["epoch_ic"]) == [0, 1, 2, 3]
    assert test["epoch_ic"] == {1: pytest.approx(0.05)}
    assert test["epoch_ic_ci_low"] == {1: pytest.approx(0.01)} and test["epoch_ic_ci_high"] == {1: pytest.approx(0.09)}
    assert test["epoch_directional_accuracy"] == {1: pytest.approx(0.52)}
    assert sorted(path.name for path in log_dir.iterdir()) == ["test", "train", "validation"]


def test_test_metrics_without_a_checkpoint_go_at_the_last_epoch(tmp_path):
    # A fit without early-stopping state (a tree model has no checkpoint): its last epoch, or 0.
    assert log_test_metrics(tmp_path, "fold_2", {"ic": 0.02}, {}, epochs_trained=5) == 4
    assert scalars(tmp_path / "tensorboard" / "fold_2" / "test") == {"epoch_ic": {4: pytest.approx(0.02)}}
    assert log_test_metrics(tmp_path, "fold_3", {"ic": 0.02}, {}, epochs_trained=0) == 0
