"""Fitting one model per fold and the final refit, checkpointed every epoch, and scoring windows."""

import sys
from pathlib import Path

import numpy as np

from keras_synapse.errors import ConfigError
from keras_synapse.training.preparation import fold_windows, symbol_split
from keras_synapse.windows.splitters import iso_utc

# Weight histograms every few epochs: each one costs a pass over every weight.
HISTOGRAM_EVERY = 5


def check_fit_settings(config, data):
    """Refuses settings that only the label's task shows to be impossible; call it before writing anything.

    Raises:
        ConfigError: for a `monitor` the model does not log.
    """
    if config.monitor != "val_loss" and data.head_tasks:
        raise ConfigError(f"Multi-task models log only `val_loss` for early stopping. Received: "
                          f"monitor={config.monitor!r}")
    from keras_synapse.models.trees import TREE_MODELS

    # Trees have no highway to refuse (their own check names what they cannot do).
    if config.highway_bars and data.task.kind != "regression" and config.model not in TREE_MODELS:
        raise ConfigError(f"A linear highway adds a ridge to a regression head's score; '{data.task.label}' is "
                          f"{data.task.kind}: set highway_bars=0. Received: highway_bars={config.highway_bars}")
    if config.monitor == "val_mse" and data.task.kind != "regression":
        raise ConfigError(f"`val_mse` exists only for regression labels; '{data.task.label}' is "
                          f"{data.task.kind}. Received: monitor='val_mse'")


class FoldTrainer:
    """Fits one model per fold (and the final refit), checkpointing every epoch.

    Each fit gets its own checkpoint directory under `run_dir/checkpoints/`
    and its own seed (`config.seed` + a stable offset), so a run resumed
    after `kill -9` restores the last completed epoch (weights, optimizer,
    early-stopping and learning-rate state, history), sees the same batch
    order, and skips fits that had finished: it ends with the same metrics as
    an uninterrupted run.

    Args:
        config: the `ExperimentConfig`.
        data: the `PreparedData`.
        run_dir: the run directory.
        resume: continue from the checkpoints in `run_dir`. Defaults to
            `False`.
        refit_highway: after the network's share is chosen, refit a
            highway's ridge with the carve-out (`choose_network_share`).
            `False` where the carve-out then scores the model, as a tuner's
            trial does. Defaults to `True`.
    """

    def __init__(self, config, data, run_dir, resume=False, refit_highway=True):
        self.config, self.data, self.run_dir, self.resume = config, data, Path(run_dir), resume
        self.refit_highway = refit_highway
        self.num_fits = 0
        check_fit_settings(config, data)

    def spec(self):
        """The `ModelSpec` of this data and label."""
        from keras_synapse.models import ModelSpec

        config, windowed, task = self.config, self.data.windowed, self.data.task
        heads = tuple((head, head_task.kind, head_task.num_classes)
                      for head, head_task in (self.data.head_tasks or {}).items())
        return ModelSpec(config.sequence_length, len(windowed.feature_names), len(windowed.static_feature_names),
                         task.kind, task.num_classes, heads)

    def build(self, split, name=None):
        """A fresh model for the task (named `name`, default the config's), normalization adapted on fit rows only."""
        import dataclasses

        from keras_synapse.models import fit_normalization, get_model_builder

        config, windowed = self.config, self.data.windowed
        model = get_model_builder(config.model)(dataclasses.replace(config, name=name or config.name), self.spec())
        fit_rows = split["fit_rows"]
        fit_normalization(model, windowed.features[fit_rows],
                          None if windowed.static_features is None else windowed.static_features[fit_rows])
        from keras_synapse.models.highway import fit_highways

        for head, penalty in fit_highways(model, windowed, split).items():
            print(f"highway {head}: a ridge on the last {config.highway_bars} bar(s) (penalty {penalty:g} x fit "
                  "windows), frozen; the network learns what it leaves")
        return model

    def compile(self, model, learning_rate):
        import keras

        from keras_synapse.config import parse_pairs
        from keras_synapse.training.losses import task_loss
        from keras_synapse.training.metrics import DirectionalAccuracy, PearsonCorrelation

        config, data = self.config, self.data
        if data.head_tasks:
            weights = {head: float(weight) for head, weight in parse_pairs(config.loss_weights, "loss_weights").items()}
            loss = {head: task_loss(config.loss, head_task.kind) for head, head_task in data.head_tasks.items()}
            loss_weights, metrics = {head: weights.get(head, 1.0) for head in data.head_tasks}, None
        else:
            loss, loss_weights = task_loss(config.loss, data.task.kind), None
            # Plain MSE beside the loss: `val_loss` carries the L2 penalty, `val_mse` does not.
            metrics = ([DirectionalAccuracy(), PearsonCorrelation(), keras.metrics.MeanSquaredError(name="mse")]
                       if data.task.kind == "regression" else None)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=config.clipnorm), loss=loss,
                      loss_weights=loss_weights, metrics=metrics)

    def fit(self, split, name, base_model=None):
        """Trains a model on `split` (or a new head on `base_model`'s frozen backbone).

        With `ensemble_seeds` K > 1, K members are trained (each its own
        checkpoints and seed) and averaged into one model
        (`keras_synapse.training.seed_ensemble`).

        Returns:
            `(model, history)`; the history covers every epoch, including
            those before a resume (the first member's, for an ensemble).
        """
        if self.config.ensemble_seeds == 1 or base_model is not None:
            return self._fit_one(split, name, base_model)
        from keras_synapse.training.seed_ensemble import average_members, member_name

        members, histories = [], []
        for member in range(self.config.ensemble_seeds):
            model, history = self._fit_one(split, f"{name}_member_{member}",
                                           model_name=member_name(self.config.name, member))
            members.append(model)
            histories.append(history)
        return average_members(members, self.config.name), histories[0]

    def _fit_one(self, split, name, base_model=None, model_name=None):
        import keras
        import pandas as pd

        from keras_synapse.training.callbacks import (
            MONITORS,
            EpochCheckpoint,
            InformationCoefficientCallback,
            LearningRateLogger,
            learning_rate_schedule,
            read_checkpoint,
            restore_checkpoint,
        )
        from keras_synapse.windows.dataset import make_dataset
        from keras_synapse.windows.weights import sample_weights

        config, windowed = self.config, self.data.windowed
        self.num_fits += 1
        if model_name is None:  # an ensemble's members must outlive the next member's fit
            keras.utils.clear_session()
        keras.utils.set_random_seed(config.seed + self.num_fits)
        from keras_synapse.training.distribute import distribution_scope

        # Build, adapt and compile under the config's tf.distribute strategy (a no-op for distribute="none").
        with distribution_scope(config.distribute):
            if base_model is None:
                model = self.build(split, model_name)
            else:
                from keras_synapse.models import get_head_layers
                from keras_synapse.models.finetuning import frozen_backbone_copy

                model = frozen_backbone_copy(base_model, get_head_layers(config.model, self.spec()))
            steps_per_epoch = int(np.ceil(len(split["fit"]) / config.batch_size))
            learning_rate, schedule_callbacks = learning_rate_schedule(
                config.learning_rate_schedule, config.learning_rate, config.epochs, steps_per_epoch,
                monitor=config.monitor)
            self.compile(model, learning_rate)
        checkpoint_dir = self.run_dir / "checkpoints" / name
        log_dir = self.run_dir / "tensorboard" / name
        log_dir.mkdir(parents=True, exist_ok=True)
        state = read_checkpoint(checkpoint_dir) if self.resume else None
        initial_epoch = 0 if state is None else restore_checkpoint(model, checkpoint_dir) + 1
        if state is not None and state["finished"]:
            self.choose_network_share(model, split, refit_highway=self.refit_highway and base_model is None)
            return model, state["history"]
        if state is not None:
            # Rewrite the CSV log from the checkpoint so no epoch is lost or repeated.
            frame = pd.DataFrame(state["history"])
            frame.insert(0, "epoch", range(len(frame)))
            frame.to_csv(log_dir / "training_log.csv", index=False)
        validation = make_dataset(windowed, split["validation"], config.batch_size)
        early_stopping = keras.callbacks.EarlyStopping(monitor=config.monitor, mode=MONITORS[config.monitor],
                                                       patience=config.patience, restore_best_weights=True)
        stateful = [early_stopping] + [callback for callback in schedule_callbacks
                                       if isinstance(callback, keras.callbacks.ReduceLROnPlateau)]
        checkpoint = EpochCheckpoint(checkpoint_dir, callbacks=stateful, resume=state is not None)
        ic_callbacks = [] if self.data.head_tasks else [InformationCoefficientCallback(
            validation, self.data.task.reference(windowed.window_frame(split["validation"])),
            score_fn=self.data.task.scores)]
        model.fit(
            make_dataset(windowed, split["fit"], config.batch_size, shuffle=True, seed=config.seed,
                         sample_weights=sample_weights(windowed, split["fit"], config.sample_weighting),
                         initial_epoch=initial_epoch),
            steps_per_epoch=steps_per_epoch,
            shuffle=False,  # the dataset shuffles itself, reproducibly per epoch (Keras would only warn)
            validation_data=validation,
            initial_epoch=initial_epoch,
            epochs=config.epochs,
            callbacks=[*ic_callbacks, *schedule_callbacks, LearningRateLogger(), early_stopping, checkpoint,
                       keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=HISTOGRAM_EVERY),
                       keras.callbacks.CSVLogger(str(log_dir / "training_log.csv"), append=state is not None)],
            verbose=1 if sys.stdout.isatty() else 2,
        )
        self.choose_network_share(model, split, refit_highway=self.refit_highway and base_model is None)
        return model, checkpoint.history

    def choose_network_share(self, model, split, refit_highway=True):
        """With a highway, keeps the share of the network's score that ranks the carve-out best (0: the ridge)."""
        from keras_synapse.models.highway import choose_network_share

        config = self.config
        for head, chosen in choose_network_share(model, self.data.windowed, split, config.batch_size,
                                                 config.horizon, refit_highway).items():
            print(f"highway {head}: network share {chosen['share']:g} by the one-standard-error rule (carve-out "
                  f"rank IC: ridge alone {chosen['ridge_rank_ic']:+.4f}, kept {chosen['rank_ic']:+.4f}, best "
                  f"{chosen['best_rank_ic']:+.4f})" + ("; ridge refitted with the carve-out" if refit_highway else ""))


def predict_windows(model, data, ends, batch_size):
    """Scores (and class probabilities) for the windows ending at `ends`, with their symbol and time."""
    from keras_synapse.windows.dataset import make_dataset

    outputs = model.predict(make_dataset(data.windowed, ends, batch_size, with_targets=False), verbose=0)
    frame = data.windowed.window_frame(ends)
    if data.head_tasks:
        # Each head's score and target ride along; the primary head is the prediction.
        for head, head_task in data.head_tasks.items():
            frame[f"head_{head}"] = head_task.scores(outputs[head])
            frame[f"head_target_{head}"] = data.windowed.head_targets[head][ends]
        outputs = outputs[data.primary_head]
    outputs = np.asarray(outputs)
    frame = frame.assign(prediction=data.task.scores(outputs))
    if data.task.kind != "regression":
        probabilities = outputs.reshape(len(outputs), -1)
        if data.task.kind == "binary":
            probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
        frame = frame.assign(**{f"probability_{name}": probabilities[:, index]
                                for index, name in enumerate(data.task.classes)})
    return frame.assign(reference=data.task.reference(frame))


def window_scores(model, data, inputs, batch_size=2048):
    """The primary head's scores of materialized window inputs (as `predict_windows` scores them)."""
    outputs = model.predict(inputs, batch_size=batch_size, verbose=0)
    if data.head_tasks:
        outputs = outputs[data.primary_head]
    return data.task.scores(np.asarray(outputs))


def input_feature_names(data):
    """Model input name -> the feature names along its last axis."""
    names = {"sequence": list(data.windowed.feature_names)}
    if data.windowed.static_features is not None:
        names["static"] = list(data.windowed.static_feature_names)
    return names


def final_split(trainer, calendar, last_fold):
    """The final refit's windows: all up to the last test fold's end (the last `train_bars` with a sliding window)."""
    from keras_synapse.windows.splitters import Fold, sliding_start

    config = trainer.config
    # A sliding window slides on: the final model sees the last `train_bars` bars, as each fold did.
    start = sliding_start(int(np.searchsorted(calendar, last_fold.test_end)), config.train_bars)
    final = Fold(index=len(calendar), train_start=calendar[start], train_end=last_fold.test_end,
                 test_start=None, test_end=None)
    return fold_windows(trainer.data.windowed, calendar, final, config)


def refit_final(trainer, calendar, last_fold, base_model=None, fitted=None):
    """Refits on all windows up to the last test fold's end (the last `train_bars` with a sliding window), with the
    same carve-out.

    With `base_model` (a registered shared backbone, for `finetune_symbol`), only
    its new head is trained; `fitted` is a `(model, history)` fitted elsewhere
    on the same split (an executor's task).
    """
    config, data = trainer.config, trainer.data
    split = final_split(trainer, calendar, last_fold)
    print(f"final refit: {len(split['fit'])} fit windows, {len(split['validation'])} validation windows "
          f"up to {iso_utc(last_fold.test_end)}")
    if fitted is not None:
        model, history = fitted
    elif base_model is not None:
        model, history = base_model, {}
    else:
        model, history = trainer.fit(split, "final")
    if config.finetune_symbol:
        split = symbol_split(data.windowed, split, config.finetune_symbol)
        model, history = trainer.fit(split, "final_finetune", base_model=model)
    return model, history, split


def check_remote_fits(config):
    """Refuses what an executor's tasks cannot fit yet: trees and stacks (fitted here, they are quick) and
    fine-tuning (its second fit needs the first's model)."""
    from keras_synapse.errors import ConfigError
    from keras_synapse.training.stacking import is_stack
    from keras_synapse.training.tree_trainer import is_tree

    if is_tree(config) or is_stack(config) or config.finetune_symbol:
        raise ConfigError(f"`--executor ray` fits neural models' folds and seeds; model={config.model!r}"
                          f"{f', finetune_symbol={config.finetune_symbol!r}' if config.finetune_symbol else ''} "
                          "runs with --executor local.")


def fit_remotely(executor, trainer, calendar, folds):
    """Fits every fold and the final refit as independent executor tasks; returns `{name: (model, history)}`.

    Each task gets the seed offset the local loop would give it (fits are
    numbered fold by fold, `ensemble_seeds` per fold, the final refit last),
    so the same seeds give the same models as a local run.
    """
    members = trainer.config.ensemble_seeds
    data = executor.share(trainer.data)
    splits = [(f"fold_{fold.index}", fold_windows(trainer.data.windowed, calendar, fold, trainer.config))
              for fold in folds]
    splits.append(("final", final_split(trainer, calendar, folds[-1])))
    tasks = [(trainer.config, data, str(trainer.run_dir), trainer.resume, split, name, number * members)
             for number, (name, split) in enumerate(splits)]
    return {name: tuple(result) for (name, _), result in zip(splits, executor.map(fit_split, tasks))}


def fit_split(config, data, run_dir, resume, split, name, first_fit):
    """One executor task: `FoldTrainer.fit` of one split, numbered as the local loop numbers it."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    trainer = FoldTrainer(config, data, run_dir, resume)
    trainer.num_fits = first_fit
    return trainer.fit(split, name)
