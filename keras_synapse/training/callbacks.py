"""Training callbacks: learning-rate schedules, validation IC, and resumable epoch checkpoints.

Resuming after a crash (`kill -9`) reproduces the uninterrupted run exactly
only if every piece of training state comes back:

- model variables, including the dropout seed-generator states that
  `model.get_weights()` leaves out;
- optimizer variables: Adam's moments, the iteration count (which also
  positions a `CosineDecay` schedule) and the learning-rate variable (which
  `ReduceLROnPlateau` lowers);
- the state of `EarlyStopping` (best value, wait count, best weights) and
  `ReduceLROnPlateau` (best value, wait, cooldown);
- the data order: `dataset.shuffle(seed=s, reshuffle_each_iteration=True)`
  draws each epoch's order from a generator that a new process restarts, so
  a resumed run would replay epoch 0's order at epoch k.
  `keras_synapse.windows.dataset.shuffled_epoch_batches` makes each epoch's order a function of
  `(seed, epoch)` alone.

`EpochCheckpoint` saves the first three every epoch; `restore_checkpoint`
and `EpochCheckpoint(resume=True)` put them back. The recipe (one checkpoint
directory per fold):

```python
model.compile(optimizer=keras.optimizers.Adam(rate, clipnorm=clipnorm), loss=loss)
state = read_checkpoint(directory) if resume else None
initial_epoch = 0 if state is None else restore_checkpoint(model, directory) + 1
if state is not None and state["finished"]:
    history = state["history"]  # the model now holds the fold's final weights
else:
    index_batches, steps_per_epoch = shuffled_epoch_batches(len(ends), batch_size, seed, initial_epoch)
    early_stopping = keras.callbacks.EarlyStopping(patience=15, restore_best_weights=True)
    checkpoint = EpochCheckpoint(directory, callbacks=[early_stopping], resume=state is not None)
    model.fit(train, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch, epochs=epochs,
              validation_data=validation, callbacks=[ic_callback, early_stopping, checkpoint, csv_logger])
    history = checkpoint.history  # every epoch, including those before the restart
```
"""

import json
import os
import pathlib
import re

import keras
import numpy as np
import pandas as pd
from scipy import stats

from keras_synapse.errors import ConfigError
from keras_synapse.evaluation.panel_metrics import information_coefficients
from keras_synapse.training.choices import LEARNING_RATE_SCHEDULES, MONITORS

CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT = 1
# The attributes that make up each supported callback's training state.
CALLBACK_STATE = {
    keras.callbacks.EarlyStopping: ("wait", "stopped_epoch", "best", "best_epoch", "best_weights"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "best", "cooldown_counter"),
}


class LearningRateLogger(keras.callbacks.Callback):
    """Writes the optimizer's learning rate to `logs["learning_rate"]` at the end of each epoch.

    Keras 3 puts the learning rate in the logs (and so in the history and
    the CSV log) only when `ReduceLROnPlateau` or `LearningRateScheduler`
    runs; its `TensorBoard` callback plots it regardless. This records the
    same end-of-epoch value TensorBoard plots (for a schedule, the rate the
    next step will use). Place it before `CSVLogger`.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def learning_rate_schedule(kind, learning_rate, epochs, steps_per_epoch, monitor="val_loss", factor=0.5,
                           patience=5, min_learning_rate=0.0):
    """The optimizer's learning rate and the callbacks that go with it.

    - `"constant"`: `learning_rate` throughout.
    - `"reduce_on_plateau"`: multiplied by `factor` after `patience` epochs
      without improvement of `monitor` (`keras.callbacks.ReduceLROnPlateau`);
      keep `patience` below early stopping's so the lower rate gets a chance.
    - `"cosine"`: `keras.optimizers.schedules.CosineDecay` from
      `learning_rate` to `min_learning_rate` over `epochs * steps_per_epoch`
      steps. The schedule reads the optimizer's iteration count, so it
      resumes where it was once the optimizer state is restored; with early
      stopping the run simply ends partway down the curve.

    All three log `learning_rate` each epoch.

    Args:
        kind: one of `LEARNING_RATE_SCHEDULES`.
        learning_rate: the initial learning rate, > 0.
        epochs: the maximum number of epochs (cosine's length).
        steps_per_epoch: training batches per epoch (cosine's length).
        monitor: the quantity `reduce_on_plateau` watches. Defaults to
            `"val_loss"`.
        factor: `reduce_on_plateau`'s multiplier. Defaults to `0.5`.
        patience: `reduce_on_plateau`'s epochs without improvement.
            Defaults to `5`.
        min_learning_rate: the floor of `reduce_on_plateau` and the end of
            `cosine`. Defaults to `0.0`.

    Returns:
        `(learning_rate, callbacks)`: a float or
        `keras.optimizers.schedules.LearningRateSchedule` for the
        optimizer, and a list of callbacks to pass to `fit` (before the
        `CSVLogger`, `TensorBoard` and `EpochCheckpoint`).

    Raises:
        ConfigError: for an unknown kind or a non-positive rate or length.

    Example:

    >>> rate, callbacks = learning_rate_schedule("cosine", 1e-3, epochs=10, steps_per_epoch=100)
    >>> optimizer = keras.optimizers.Adam(rate, clipnorm=1.0)
    """
    if kind not in LEARNING_RATE_SCHEDULES:
        raise ConfigError(f"Unknown learning-rate schedule {kind!r}. Valid: {', '.join(LEARNING_RATE_SCHEDULES)}")
    if not learning_rate > 0:
        raise ConfigError(f"`learning_rate` must be > 0. Received: learning_rate={learning_rate}")
    if not 0 <= min_learning_rate <= learning_rate:
        raise ConfigError(f"`min_learning_rate` must be in [0, learning_rate]. Received: "
                          f"min_learning_rate={min_learning_rate}, learning_rate={learning_rate}")
    if kind == "reduce_on_plateau":
        return float(learning_rate), [keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=MONITORS.get(monitor, "auto"), factor=factor, patience=patience,
            min_lr=min_learning_rate)]
    if kind == "cosine":
        if epochs < 1 or steps_per_epoch < 1:
            raise ConfigError(f"`epochs` and `steps_per_epoch` must be >= 1 for a cosine schedule. "
                              f"Received: epochs={epochs}, steps_per_epoch={steps_per_epoch}")
        schedule = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=int(epochs * steps_per_epoch), alpha=min_learning_rate / learning_rate)
        return schedule, [LearningRateLogger()]
    return float(learning_rate), [LearningRateLogger()]


def _pooled_coefficients(scores, references):
    # NaN (constant scores) becomes 0 so that EarlyStopping(monitor="val_ic") keeps working:
    # a NaN best value would never be improved upon.
    coefficients = {}
    for name, left, right in (("ic", scores, references),
                              ("rank_ic", stats.rankdata(scores), stats.rankdata(references))):
        if len(left) < 3 or np.ptp(left) == 0 or np.ptp(right) == 0:
            coefficients[name] = 0.0
        else:
            coefficients[name] = float(np.corrcoef(left, right)[0, 1])
    return coefficients


class InformationCoefficientCallback(keras.callbacks.Callback):
    """Logs the IC of the model's validation predictions at the end of every epoch.

    One `model.predict` over the validation windows per epoch, then
    `logs["val_ic"]` (Pearson) and `logs["val_rank_ic"]` (Spearman) of the
    scores against `references`, pooled over all windows as in the run's
    headline `ic`. With `timestamps`, also `logs["val_cross_sectional_ic"]`:
    the mean per-timestamp IC across symbols (see
    `metrics.information_coefficients`). Undefined values (constant
    predictions) are logged as 0.

    Keras passes one `logs` dict through the callbacks in order, so placing
    this callback before `EarlyStopping`, `CSVLogger` and `TensorBoard`
    puts the values in the history and the CSV log, lets early stopping
    monitor `val_ic` (with `mode="max"`), and makes TensorBoard plot them as
    `epoch_ic` under the validation run; it needs no writer of its own.

    Args:
        dataset: the validation inputs, unshuffled, batched; a dataset of
            `(inputs, targets)` works too (targets are ignored).
        references: what the scores should agree with, one per window in
            dataset order (the forward return, or the centred event
            outcome).
        timestamps: each window's timestamp, for the cross-sectional IC.
            Defaults to `None` (pooled IC only).
        score_fn: maps the model's outputs `[windows, units]` to one score
            per window, e.g. `task.scores`. Defaults to `None` (the first
            output unit).
    """

    def __init__(self, dataset, references, timestamps=None, score_fn=None):
        super().__init__()
        self.dataset = dataset
        self.references = np.asarray(references, dtype=np.float64).ravel()
        self.timestamps = None if timestamps is None else np.asarray(timestamps)
        if self.timestamps is not None and len(self.timestamps) != len(self.references):
            raise ValueError(f"`timestamps` and `references` must have the same length. Received: "
                             f"{len(self.timestamps)} and {len(self.references)}")
        self.score_fn = score_fn

    def on_epoch_end(self, epoch, logs=None):
        outputs = np.asarray(self.model.predict(self.dataset, verbose=0))
        if self.score_fn is None:
            scores = outputs.reshape(len(outputs), -1)[:, 0]
        else:
            scores = np.asarray(self.score_fn(outputs), dtype=np.float64).ravel()
        if len(scores) != len(self.references):
            raise ValueError(f"The validation dataset gave {len(scores)} predictions for "
                             f"{len(self.references)} references; pass an unshuffled dataset of the same windows.")
        valid = np.isfinite(scores) & np.isfinite(self.references)
        values = {f"val_{name}": value
                  for name, value in _pooled_coefficients(scores[valid], self.references[valid]).items()}
        if self.timestamps is not None:
            frame = pd.DataFrame({"timestamp": self.timestamps, "prediction": scores, "reference": self.references})
            mean = information_coefficients(frame)["ic_mean"]
            values["val_cross_sectional_ic"] = float(mean) if np.isfinite(mean) else 0.0
        if logs is not None:
            logs.update(values)


def log_test_metrics(run_dir, name, metrics, intervals, epochs_trained=None):
    """Writes a fit's test metrics (and their interval bounds) to `tensorboard/<name>/test`, at the epoch kept.

    Keras' `TensorBoard` callback writes a fit's per-epoch curves to
    `tensorboard/<name>/train` and `tensorboard/<name>/validation`, as
    `epoch_<metric>` at step = epoch (0-based); a validation metric `val_ic`
    is `epoch_ic` of the `validation` run. The test metrics go to a third
    run, `test`, under the same names (`epoch_ic`, `epoch_rank_ic`,
    `epoch_directional_accuracy`, ..., and `epoch_ic_ci_low`,
    `epoch_ic_ci_high` for the interval bounds), so TensorBoard draws each one
    on the card of the matching validation curve: one point at the epoch
    whose weights made the test predictions: the epoch early stopping kept (`restore_best_weights`), recorded
    as `EarlyStopping`'s `best_epoch` in the fit's checkpoint (`run_dir/checkpoints/<name>`), not the last
    epoch trained. A seed ensemble (`<name>_member_<k>`) is logged beside its first member.

    Args:
        run_dir: the run directory.
        name: the fit's name, e.g. `"fold_0"`.
        metrics: metric name -> test value; non-numbers are skipped.
        intervals: metric name -> `(low, high)`.
        epochs_trained: the fit's number of epochs, used only when no
            checkpoint records the kept epoch (the last one is then
            assumed). Defaults to `None` (step 0).

    Returns:
        The step the metrics were written at.
    """
    import tensorflow as tf

    run_dir = pathlib.Path(run_dir)
    fit_name, step = kept_epoch_of(run_dir, name)
    step = max(int(epochs_trained or 0) - 1, 0) if step is None else step
    scalars = {f"epoch_{metric}": value for metric, value in metrics.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)}
    scalars.update({f"epoch_{metric}_{bound}": value for metric, bounds in intervals.items()
                    for bound, value in zip(("ci_low", "ci_high"), bounds)})
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard" / fit_name / "test"))
    with writer.as_default():
        for tag, value in scalars.items():
            if np.isfinite(value):
                tf.summary.scalar(tag, float(value), step=step)
    writer.close()
    return step


def kept_epoch_of(run_dir, name):
    """`(fit name, epoch)`: the epoch (0-based) whose weights `EarlyStopping` restored for fit `name`.

    Read from the fit's checkpoint (or, for a seed ensemble, its first
    member's). Without `EarlyStopping` state, or when it never saved weights
    to restore (its monitor was never logged), the model kept the last
    epoch's weights. The epoch is `None` when there is no checkpoint (a tree
    model).
    """
    checkpoints = pathlib.Path(run_dir) / "checkpoints"
    for fit_name in (name, f"{name}_member_0"):
        if not (checkpoints / fit_name / CHECKPOINT_FILE).exists():
            continue
        state = read_checkpoint(checkpoints / fit_name)
        stopping = next((saved for saved in state["callbacks"] if saved["class"] == "EarlyStopping"), None)
        if stopping is not None and stopping.get("has_best_weights") and stopping.get("best_epoch") is not None:
            return fit_name, int(stopping["best_epoch"])
        return fit_name, int(state["epoch"])
    return name, None


def _write_atomically(path, write):
    # Write a temp file in the same directory, flush it to disk, then rename:
    # a reader (or a restart after kill -9) sees the old file or the new one, never half of one.
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _plain(value):
    # JSON-ready Python scalars from NumPy scalars and 0-d arrays (Keras logs hold either).
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
        return value.item()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def read_checkpoint(directory):
    """The state of the checkpoint in `directory`, or `None` if there is none.

    Returns:
        A dict with `epoch` (the last completed epoch, 0-based), `finished`
        (whether `fit` returned normally; the file then holds the final
        weights, after early stopping restored the best ones), `history`
        (logs of every completed epoch), `file`, `optimizer_iterations` and
        `callbacks`.
    """
    path = pathlib.Path(directory) / CHECKPOINT_FILE
    if not path.exists():
        return None
    with open(path) as handle:
        state = json.load(handle)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"Checkpoint {path} has format {state.get('format')!r}; expected {CHECKPOINT_FORMAT}")
    return state


def _assign_all(variables, values, what, path):
    if len(variables) != len(values):
        raise ConfigError(f"Checkpoint {path} holds {len(values)} {what} variables; the model has "
                          f"{len(variables)}. Resume with the same model configuration.")
    for variable, value in zip(variables, values):
        if tuple(variable.shape) != value.shape:
            raise ConfigError(f"Checkpoint {path}: {what} variable {variable.path} has shape "
                              f"{tuple(variable.shape)}, the checkpoint {value.shape}. Resume with the same "
                              "model configuration.")
    for variable, value in zip(variables, values):
        variable.assign(value)


def _arrays(archive, prefix):
    keys = sorted(key for key in archive.files if re.fullmatch(rf"{re.escape(prefix)}/\d+", key))
    return [archive[key] for key in keys]


def restore_checkpoint(model, directory):
    """Loads the model's variables and its optimizer's state from the checkpoint in `directory`.

    Call after `model.compile(...)` and before `model.fit(...,
    initial_epoch=last + 1)`; the callbacks' state comes back through
    `EpochCheckpoint(resume=True)` when `fit` starts. Variables are matched
    by order and shape, so rebuild the model from the same configuration.

    Args:
        model: the compiled model, freshly built.
        directory: the checkpoint directory of `EpochCheckpoint`.

    Returns:
        The last completed epoch (0-based), or `None` when `directory`
        holds no checkpoint (start from epoch 0). When
        `read_checkpoint(directory)["finished"]` is true the model now
        holds the run's final weights and needs no further `fit`.

    Raises:
        ConfigError: when the checkpoint does not match the model.
    """
    state = read_checkpoint(directory)
    if state is None:
        return None
    if model.optimizer is None:
        raise ConfigError("restore_checkpoint needs a compiled model (the optimizer state is restored too)")
    path = pathlib.Path(directory) / state["file"]
    with np.load(path) as archive:
        model_values = _arrays(archive, "model")
        optimizer_values = _arrays(archive, "optimizer")
    _assign_all(model.variables, model_values, "model", path)
    if not model.optimizer.built:
        # What fit() would do first; building here lets the moments be assigned now.
        model.optimizer.build(model.trainable_variables)
    _assign_all(model.optimizer.variables, optimizer_values, "optimizer", path)
    return int(state["epoch"])


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves everything a resumed `fit` needs after every epoch, atomically.

    Each epoch writes `epoch_NNNNN.npz` (all model variables, including
    dropout seed states; all optimizer variables; the listed callbacks'
    best weights), then commits it by atomically replacing
    `checkpoint.json` (last completed epoch, history, callback state), then
    deletes older `.npz` files. A crash at any point leaves a complete
    checkpoint of the last or the previous epoch. When `fit` returns
    normally the final weights (after early stopping restored the best
    ones) are saved the same way, with `finished: true`.

    Place it after every callback that changes state or logs at epoch end
    (`EarlyStopping`, `ReduceLROnPlateau`, `InformationCoefficientCallback`,
    `LearningRateLogger`) and before `CSVLogger`, so what it saves is the
    epoch's final state.

    Args:
        directory: where the checkpoint lives (created if missing).
        callbacks: the `EarlyStopping` and `ReduceLROnPlateau` callbacks
            whose state to save and restore. Defaults to `()`.
        resume: at the start of `fit`, put the saved callback state and
            history back (after the callbacks' own `on_train_begin` reset
            them), provided a checkpoint exists. Call `restore_checkpoint`
            on the model first. Defaults to `False`.

    Attributes:
        history: the logs of every completed epoch, including those before
            a restart (`model.fit`'s own history starts at the restart).
    """

    def __init__(self, directory, callbacks=(), resume=False):
        super().__init__()
        for callback in callbacks:
            if not isinstance(callback, tuple(CALLBACK_STATE)):
                raise ConfigError(f"EpochCheckpoint saves the state of "
                                  f"{', '.join(kind.__name__ for kind in CALLBACK_STATE)} only. "
                                  f"Received: {type(callback).__name__}")
        self.directory = pathlib.Path(directory)
        self.stateful_callbacks = list(callbacks)
        self.resume = resume
        self.history = {}
        self._last_epoch = None

    def _fields(self, callback):
        return next(fields for kind, fields in CALLBACK_STATE.items() if isinstance(callback, kind))

    def on_train_begin(self, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        state = read_checkpoint(self.directory) if self.resume else None
        if state is None:
            self.history, self._last_epoch = {}, None
            return
        if state["finished"]:
            raise ConfigError(f"The run checkpointed in {self.directory} already finished; "
                              "restore_checkpoint(model, directory) holds its final weights, no fit needed.")
        iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if iterations != state["optimizer_iterations"]:
            raise ConfigError(
                f"Resuming from {self.directory} (epoch {state['epoch']}, optimizer step "
                f"{state['optimizer_iterations']}) but the optimizer is at step {iterations}: call "
                "restore_checkpoint(model, directory) before fit(initial_epoch=last_epoch + 1)."
            )
        saved_classes = [saved["class"] for saved in state["callbacks"]]
        if saved_classes != [type(callback).__name__ for callback in self.stateful_callbacks]:
            raise ConfigError(f"Checkpoint {self.directory} saved the state of {saved_classes}; received "
                              f"{[type(callback).__name__ for callback in self.stateful_callbacks]}. "
                              "Pass the same callbacks in the same order.")
        self.history = {key: list(values) for key, values in state["history"].items()}
        self._last_epoch = state["epoch"]
        with np.load(self.directory / state["file"]) as archive:
            for index, (callback, saved) in enumerate(zip(self.stateful_callbacks, state["callbacks"])):
                for field in self._fields(callback):
                    if field == "best_weights":
                        weights = _arrays(archive, f"callback_{index}/best_weights")
                        callback.best_weights = weights if saved["has_best_weights"] else None
                    else:
                        setattr(callback, field, saved[field])

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(_plain(value))
        self._last_epoch = epoch
        self._save(f"epoch_{epoch:05d}.npz", finished=False)

    def on_train_end(self, logs=None):
        if self._last_epoch is not None:
            self._save("final.npz", finished=True)

    def _save(self, name, finished):
        arrays = {f"model/{index:05d}": keras.ops.convert_to_numpy(variable)
                  for index, variable in enumerate(self.model.variables)}
        arrays.update({f"optimizer/{index:05d}": keras.ops.convert_to_numpy(variable)
                       for index, variable in enumerate(self.model.optimizer.variables)})
        callback_states = []
        for index, callback in enumerate(self.stateful_callbacks):
            saved = {"class": type(callback).__name__}
            for field in self._fields(callback):
                value = getattr(callback, field, None)
                if field == "best_weights":
                    saved["has_best_weights"] = value is not None
                    arrays.update({f"callback_{index}/best_weights/{position:05d}": weight
                                   for position, weight in enumerate(value or [])})
                else:
                    saved[field] = _plain(value)
            callback_states.append(saved)
        directory = self.directory
        _write_atomically(directory / name, lambda handle: np.savez(handle, **arrays))
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": int(self._last_epoch),
            "finished": finished,
            "file": name,
            "optimizer_iterations": int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)),
            "callbacks": callback_states,
            "history": self.history,
        }
        _write_atomically(directory / CHECKPOINT_FILE,
                          lambda handle: handle.write(json.dumps(state, indent=1).encode()))
        for stale in directory.glob("*.npz"):
            if stale.name != name:
                stale.unlink()
