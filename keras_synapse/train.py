"""The main command: config -> data -> folds -> fit -> evaluate -> register -> export.

    python -m keras_synapse.train experiments/shared_backbone.py [--quick] [--data SPEC] ...

Reads top to bottom as the phases of one run. Every number it prints is from
test folds the model never saw, gapped and purged by the label horizon, beside
baselines on the same windows and 95% block-bootstrap intervals.
"""

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError, DataError, SynapseError
from keras_synapse.windows.splitters import iso_utc


DESCRIPTION = """Train an experiment with gapped time-series cross-validation.

Writes runs/<experiment>/<run-id>/ (metrics.json, config.json, report.html,
test_predictions.csv, tensorboard/) and registers the final model in
saved_models/<experiment>/<version>/ (model.keras, model.onnx, metadata.json).
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m keras_synapse.train", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("experiment", help="experiment file defining get_config(quick=False), e.g. "
                        "experiments/shared_backbone.py")
    parser.add_argument("--data", help="bars to train on: 'sample' (offline default), a directory of per-symbol "
                        "CSV/Parquet files, one long CSV/Parquet with a symbol column, 'yfinance:SYM,SYM' or "
                        "'alpaca:SYM,SYM'. Defaults to the experiment's `data` field.")
    parser.add_argument("--epochs", type=int, help="maximum epochs per fold (early stopping may end sooner)")
    parser.add_argument("--seed", type=int, help="random seed; same seed and data give identical predictions")
    parser.add_argument("--quick", action="store_true", help="smoke-sized run: small data, few epochs")
    parser.add_argument("--output", default="runs", help="run directory root. Defaults to runs/")
    parser.add_argument("--registry", default="saved_models", help="model registry root. Defaults to saved_models/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set lstm_units=32,16 (repeatable)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (e.g. after kill -9) from "
                        "its last completed epoch, with its own config.json; completed folds are not retrained")
    return parser.parse_args(argv)


def resolve_config(args):
    from keras_synapse.config import apply_overrides, config_from_dict, load_experiment

    if args.resume:
        config_path = Path(args.resume) / "config.json"
        if not config_path.is_file():
            raise SynapseError(f"--resume {args.resume}: no config.json there; is it a run directory?")
        return config_from_dict(json.loads(config_path.read_text()))
    config = load_experiment(args.experiment, quick=args.quick)
    overrides = list(args.overrides)
    for key in ("data", "epochs", "seed"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    return apply_overrides(config, overrides)


def main(argv=None):
    from keras_synapse.cli import run_command

    return run_command(run, parse_args(sys.argv[1:] if argv is None else argv))


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """The validated panel, its stacked windows, and the label's task.

    For multi-task models, `head_tasks` maps each head to its task and
    `primary_head` names the head whose label is the config's `label`.
    """

    panel: object
    windowed: object
    task: object
    head_tasks: dict = None
    primary_head: str = None


def run(args):
    """Runs one experiment end to end and returns the run directory."""
    started = time.time()
    # --- Config -------------------------------------------------------------
    config = resolve_config(args)

    # --- Data: bars -> features + labels -> stacked windows -------------------
    data = prepare_data(config, args.quick)
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from keras_synapse.config import config_to_dict
    from keras_synapse.runs import new_run_dir, write_json
    from keras_synapse.windows.splitters import GappedTimeSeriesCV

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    if args.resume:
        run_dir = Path(args.resume)
        print(f"resuming run directory: {run_dir}")
    else:
        run_dir = new_run_dir(args.output, config.name)
        write_json(run_dir / "config.json", config_to_dict(config))
        print(f"run directory: {run_dir}")
    trainer = FoldTrainer(config, data, run_dir, resume=bool(args.resume))

    # --- Folds: gapped CV on the shared calendar ------------------------------
    calendar = data.windowed.calendar
    folds = GappedTimeSeriesCV(config.n_splits, config.test_size, config.gap).split(calendar)

    # --- Model, callbacks, fit, evaluate: once per fold -------------------------
    fold_results, histories, predictions, fold_models = [], {}, [], []
    for fold in tqdm(folds, desc="folds", unit="fold"):
        split = fold_windows(data.windowed, calendar, fold, config)
        model, history = trainer.fit(split, f"fold_{fold.index}")
        shared_model = None
        if config.finetune_symbol:
            shared_model, split = model, symbol_split(data.windowed, split, config.finetune_symbol)
            model, history = trainer.fit(split, f"fold_{fold.index}_finetune", base_model=shared_model)
        histories[f"fold {fold.index}"] = history
        frame = predict_windows(model, data, split["test"], config.batch_size)
        frame = frame.assign(fold=fold.index, **_baselines(data, split, config.seed + fold.index))
        if shared_model is not None:
            # The same windows scored by the shared backbone before fine-tuning.
            frame["baseline_shared_backbone"] = predict_windows(shared_model, data, split["test"],
                                                                config.batch_size)["prediction"].to_numpy()
        predictions.append(frame)
        fold_models.append(model)
        fold_results.append(_fold_record(fold, split, frame, history, data.task, data.head_tasks))
    test_predictions = pd.concat(predictions, ignore_index=True)

    # --- Evaluate: summary with intervals, baselines, backtest ------------------
    metrics, equity = evaluate_run(config, data, run_dir, fold_results, test_predictions, calendar)

    # --- Register: refit on all data up to the last test fold, export, save ----
    final_model, final_history, final_split = refit_final(trainer, calendar, folds[-1])
    histories["final refit"] = final_history
    # Parity is checked on the most recent windows the refit held back for early stopping.
    parity_inputs = data.windowed.gather(final_split["validation"][-256:])
    version_dir = register_model(config, args.registry, final_model, data, metrics, parity_inputs,
                                 drift_rows=data.windowed.timestamps <= final_split["fit_end"], fold_models=fold_models)
    metrics["model"] = {
        "keras": str(version_dir / "model.keras"),
        "onnx": str(version_dir / "model.onnx"),
        "version": int(version_dir.name),
        "final_refit_epochs": len(final_history.get("loss", [])),
    }

    # --- Report -------------------------------------------------------------
    from keras_synapse.evaluation.report import format_summary, write_report

    write_json(run_dir / "metrics.json", metrics)
    test_predictions.to_csv(run_dir / "test_predictions.csv", index=False)
    write_report(run_dir / "report.html", metrics, histories, test_predictions, equity)
    print()
    print(format_summary(metrics))
    print(f"model: {metrics['model']['keras']} (+ model.onnx)")
    print(f"run: {run_dir} ({time.time() - started:.0f} s)")
    return run_dir


def prepare_data(config, quick):
    """Loads and validates the bars, computes features and labels, stacks the windows.

    Runs before TensorFlow is imported, so bad input fails fast with a clear
    message and leaves no run directory behind.
    """
    from tqdm import tqdm

    from keras_synapse.config import head_labels, label_options, reference_symbols
    from keras_synapse.data import load_panel
    from keras_synapse.features import get_feature_set
    from keras_synapse.labels import compute_labels
    from keras_synapse.labels.tasks import Task

    with tqdm(total=3, desc="data", unit="step") as progress:
        panel = load_panel(config.data, quick=quick, sample_signal_strength=config.sample_signal_strength)
        progress.update()
        warmup = max(get_feature_set(name).warmup for name in (config.features, config.static_features) if name)
        panel.require_history(
            warmup + config.sequence_length + config.horizon,
            f"feature warm-up {warmup} + sequence_length {config.sequence_length} + horizon {config.horizon}",
        )
        references = reference_symbols(config)
        # Per symbol, in parallel for large panels, through the on-disk cache when `feature_cache` is set.
        from keras_synapse.features.cache import compute_features_cached

        features = compute_features_cached(panel, config.features, references, config.feature_cache)
        static = (compute_features_cached(panel, config.static_features, references, config.feature_cache)
                  if config.static_features else None)
        labels = compute_labels(panel, config.label, config.horizon, config.label_scaling, **label_options(config))
        heads, primary_head = head_labels(config)
        per_head = {head: labels if name == config.label else compute_labels(panel, name, config.horizon,
                                                                            config.label_scaling)
                    for head, name in heads.items()}
        progress.update()
        _quiet_tensorflow()
        from keras_synapse.windows.dataset import build_windowed_panel

        windowed = build_windowed_panel(features, labels, config.sequence_length, config.horizon, static,
                                        config.max_gap_factor, head_labels=per_head or None)
        progress.update()
    task = Task.from_labels(config.label, labels)
    head_tasks = {head: Task.from_labels(heads[head], head_label) for head, head_label in per_head.items()}
    print(f"data: {panel!r}; {len(windowed.feature_names)} sequence features"
          + (f" + {len(windowed.static_feature_names)} static" if static else "")
          + f"; label {config.label} ({task.kind}, {config.horizon}-bar horizon)")
    return PreparedData(panel=panel, windowed=windowed, task=task, head_tasks=head_tasks or None,
                        primary_head=primary_head)


def _quiet_tensorflow():
    # TensorFlow's C++ start-up chatter (CUDA probing on CPU machines, oneDNN
    # notes) and tf2onnx's per-pass INFO lines bury the fold table.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)


def fold_windows(windowed, calendar, fold, config):
    """The fit, validation and test window ends of one fold, purged by label end time.

    Only the fit windows are thinned to `config.stride`: validation and test
    windows end at every bar, so early stopping and the verdict see all the
    data there is (overlapping labels are handled by the bootstrap's blocks).
    """
    from keras_synapse.windows.splitters import carve_validation
    from keras_synapse.windows.dataset import select_ends

    labelled = windowed.labelled_ends()
    fit_end, validation_start = carve_validation(calendar, fold, config.validation_size, config.gap)
    split = {
        "fit": select_ends(windowed, labelled, stride=config.stride, end=fit_end, label_before=validation_start),
        "validation": select_ends(windowed, labelled, start=validation_start, end=fold.train_end,
                                  label_before=fold.test_start),
        "test": select_ends(windowed, labelled, start=fold.test_start, end=fold.test_end)
        if fold.test_start is not None else np.array([], dtype=np.int64),
        "fit_end": fit_end,
        "validation_start": validation_start,
    }
    for part in ("fit", "validation") + (("test",) if fold.test_start is not None else ()):
        if len(split[part]) == 0:
            raise DataError(
                f"Fold {fold.index} has no {part} windows (stride {config.stride}, sequence_length "
                f"{config.sequence_length}). Use more data, fewer folds or a smaller test_size."
            )
    return split


# Weight histograms every few epochs: each one costs a pass over every weight.
HISTOGRAM_EVERY = 5

def symbol_split(windowed, split, symbol):
    """The fold's windows restricted to one symbol (for fine-tuning and its evaluation)."""
    if symbol not in windowed.symbol_names:
        raise DataError(f"`finetune_symbol` {symbol!r} is not in the data. Symbols: {list(windowed.symbol_names)}")
    code = windowed.symbol_names.index(symbol)
    restricted = {part: ends[windowed.symbol_codes[ends] == code] for part, ends in split.items()
                  if part in ("fit", "validation", "test")}
    for part, ends in restricted.items():
        if len(ends) == 0 and (part != "test" or len(split["test"])):
            raise DataError(f"Symbol '{symbol}' has no {part} windows in this fold.")
    return {**split, **restricted}


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
    """

    def __init__(self, config, data, run_dir, resume=False):
        self.config, self.data, self.run_dir, self.resume = config, data, Path(run_dir), resume
        self.num_fits = 0
        if config.monitor != "val_loss" and data.head_tasks:
            raise ConfigError(f"Multi-task models log only `val_loss` for early stopping. Received: "
                              f"monitor={config.monitor!r}")
        if config.monitor == "val_mse" and data.task.kind != "regression":
            raise ConfigError(f"`val_mse` exists only for regression labels; '{data.task.label}' is "
                              f"{data.task.kind}. Received: monitor='val_mse'")

    def spec(self):
        """The `ModelSpec` of this data and label."""
        from keras_synapse.models import ModelSpec

        config, windowed, task = self.config, self.data.windowed, self.data.task
        heads = tuple((head, head_task.kind, head_task.num_classes)
                      for head, head_task in (self.data.head_tasks or {}).items())
        return ModelSpec(config.sequence_length, len(windowed.feature_names), len(windowed.static_feature_names),
                         task.kind, task.num_classes, heads)

    def build(self, split):
        """A fresh model for the task, its normalization adapted on the fit rows only."""
        from keras_synapse.models import fit_normalization, get_model_builder

        config, windowed = self.config, self.data.windowed
        model = get_model_builder(config.model)(config, self.spec())
        fit_rows = windowed.timestamps <= split["fit_end"]
        fit_normalization(model, windowed.features[fit_rows],
                          None if windowed.static_features is None else windowed.static_features[fit_rows])
        return model

    def compile(self, model, learning_rate):
        import keras

        from keras_synapse.config import parse_pairs
        from keras_synapse.training.metrics import DirectionalAccuracy, PearsonCorrelation

        config, data = self.config, self.data
        if data.head_tasks:
            weights = {head: float(weight) for head, weight in parse_pairs(config.loss_weights, "loss_weights").items()}
            loss = {head: head_task.loss(config.loss) for head, head_task in data.head_tasks.items()}
            loss_weights, metrics = {head: weights.get(head, 1.0) for head in data.head_tasks}, None
        else:
            loss, loss_weights = data.task.loss(config.loss), None
            # Plain MSE beside the loss: `val_loss` carries the L2 penalty, `val_mse` does not.
            metrics = ([DirectionalAccuracy(), PearsonCorrelation(), keras.metrics.MeanSquaredError(name="mse")]
                       if data.task.kind == "regression" else None)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=config.clipnorm), loss=loss,
                      loss_weights=loss_weights, metrics=metrics)

    def fit(self, split, name, base_model=None):
        """Trains a model on `split` (or a new head on `base_model`'s frozen backbone).

        Returns:
            `(model, history)`; the history covers every epoch, including
            those before a resume.
        """
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
        from keras_synapse.windows.weights import sample_weights
        from keras_synapse.windows.dataset import make_dataset

        config, windowed = self.config, self.data.windowed
        self.num_fits += 1
        keras.utils.clear_session()
        keras.utils.set_random_seed(config.seed + self.num_fits)
        from keras_synapse.training.distribute import distribution_scope

        # Build, adapt and compile under the config's tf.distribute strategy (a no-op for distribute="none").
        with distribution_scope(config.distribute):
            if base_model is None:
                model = self.build(split)
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
        return model, checkpoint.history


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


def _baselines(data, split, seed):
    from keras_synapse.evaluation.baselines import baseline_predictions
    from keras_synapse.windows.dataset import select_ends

    # The linear baselines learn from every bar of the fit period (whatever
    # the network's stride), purged before the carve-out like the fit windows.
    windowed = data.windowed
    fit = select_ends(windowed, windowed.labelled_ends(), end=split["fit_end"], label_before=split["validation_start"])
    predictions = baseline_predictions(windowed, fit, split["validation"], split["test"], seed)
    # The ridge regresses class indices for class labels; centre it on the
    # middle of the class range so its sign reads like the model's score.
    if data.task.kind != "regression":
        predictions["ridge"] = predictions["ridge"] - (len(data.task.classes) - 1) / 2
    return {f"baseline_{name}": values for name, values in predictions.items()}


def fold_metrics(frame, task, column="prediction"):
    """Test-fold metrics of one prediction column: the headline set plus the task's own."""
    from keras_synapse.evaluation.summary import classification_metrics, regression_metrics

    metrics = regression_metrics(frame[column], frame["target"], frame["reference"])
    if task.kind == "regression":
        return metrics
    del metrics["mse"]  # a cross-entropy model is judged by its classification report instead
    if column == "prediction":
        probabilities = frame[[f"probability_{name}" for name in task.classes]].to_numpy()
        metrics.update(classification_metrics(probabilities, frame["target"], task.classes))
    return metrics


def head_metrics(frame, head_tasks):
    """Per-head test metrics of a multi-task model, on the windows where each head's label is known."""
    from keras_synapse.evaluation.summary import regression_metrics

    results = {}
    for head, head_task in head_tasks.items():
        known = np.isfinite(frame[f"head_target_{head}"].to_numpy(dtype=float))
        score, target = frame[f"head_{head}"][known], frame[f"head_target_{head}"][known]
        if head_task.kind == "regression":
            metrics = regression_metrics(score, target, target)
            results[head] = {"n": int(known.sum()), "mse": metrics["mse"], "ic": metrics["ic"],
                             "rank_ic": metrics["rank_ic"]}
        else:
            centred = target - (len(head_task.classes) - 1) / 2
            metrics = regression_metrics(score, target, centred)
            results[head] = {"n": int(known.sum()), "directional_accuracy": metrics["directional_accuracy"],
                             "ic": metrics["ic"], "balance": head_task.balance(target)}
    return results


def _fold_record(fold, split, frame, history, task, head_tasks=None):
    return {
        "index": fold.index,
        **fold.as_dict(),
        "validation": [iso_utc(split["validation_start"]), iso_utc(fold.train_end)],
        "n_train": int(len(split["fit"])),
        "n_validation": int(len(split["validation"])),
        "n_test": int(len(split["test"])),
        "epochs_trained": len(history.get("loss", [])),
        "metrics": fold_metrics(frame, task),
        **({"heads": head_metrics(frame, head_tasks)} if head_tasks else {}),
    }


def evaluate_run(config, data, run_dir, fold_results, test_predictions, calendar):
    """Summary with intervals, baselines on the same folds, and the backtest.

    Returns:
        The `metrics.json` content (without `model`) and the equity curves
        (`None` when the backtest does not apply).
    """
    from keras_synapse.evaluation.backtest import backtest
    from keras_synapse.evaluation.summary import (
        best_baseline,
        edge_verdict,
        metric_intervals,
        summarize,
        versus_baselines,
    )
    from keras_synapse.evaluation.intervals import bootstrap_metrics
    from keras_synapse.training.metrics import information_coefficients, per_symbol_metrics

    task = data.task
    baseline_columns = [column for column in test_predictions.columns if column.startswith("baseline_")]
    # One set of bootstrap draws for the model and every baseline, so their
    # differences get paired intervals. Blocks hold at least one label horizon.
    bootstrap = bootstrap_metrics(test_predictions, ["prediction", *baseline_columns], min_block_length=config.horizon,
                                  num_resamples=BOOTSTRAP_RESAMPLES, seed=config.seed)
    summary = summarize([fold["metrics"] for fold in fold_results], test_predictions, "prediction", bootstrap)
    for name in ("accuracy", "f1", "balanced_accuracy"):
        if name in fold_results[0]["metrics"]:
            summary[name] = {"mean": float(np.mean([fold["metrics"][name] for fold in fold_results]))}
    for fold, (_, group) in zip(fold_results, test_predictions.groupby("fold", sort=True)):
        intervals = metric_intervals(group, "prediction", config.horizon, FOLD_RESAMPLES, config.seed)
        fold["intervals"] = {name: list(intervals[name]) for name in fold["metrics"] if name in intervals}
    baselines = {}
    for column in baseline_columns:
        per_fold = [fold_metrics(group, task, column) for _, group in test_predictions.groupby("fold")]
        baselines[column.removeprefix("baseline_")] = {"folds": per_fold,
                                                       "summary": summarize(per_fold, test_predictions, column,
                                                                            bootstrap)}
    summary["versus_baselines"] = versus_baselines(bootstrap, "prediction", baseline_columns)
    summary["best_baseline"] = best_baseline(baselines)
    summary["verdict"] = edge_verdict(summary, summary["versus_baselines"], baselines)
    if task.kind != "regression":
        majority = np.bincount(test_predictions["target"].astype(int)).argmax()
        baselines["majority_class"] = {"accuracy": float(np.mean(test_predictions["target"] == majority)),
                                       "class": task.classes[majority]}
    metrics = {
        "experiment": config.name,
        "run_id": run_dir.name,
        "label": {"name": task.label, "kind": task.kind, "classes": list(task.classes), "horizon": config.horizon,
                  "scored_against": "forward return" if task.directional else "event outcome"},
        "label_balance": task.balance(data.windowed.targets[data.windowed.labelled_ends()]),
        "folds": fold_results,
        "summary": summary,
        # IC within each date across symbols (seed 004's ranking view), and each symbol's own metrics over time.
        "cross_sectional": information_coefficients(test_predictions, "prediction", "reference"),
        "per_symbol": per_symbol_metrics(test_predictions, "prediction", "reference", target_column="target"
                                         if task.kind == "regression" else None).to_dict(orient="index"),
        "baselines": baselines,
        "bootstrap": {"method": "stationary bootstrap over timestamps, Politis-White mean block length",
                      "block_length_timestamps": bootstrap.block_length, "num_timestamps": bootstrap.num_timestamps,
                      "resamples": BOOTSTRAP_RESAMPLES, "fold_resamples": FOLD_RESAMPLES, "level": bootstrap.level},
    }
    equity = None
    if task.directional:
        # The baselines trade under the same rules, so the strategy is judged against them, not only the market.
        results, equity = backtest(test_predictions, "prediction", config.horizon, config.cost_bps, calendar,
                                   _bars_per_year(calendar), score_columns=baseline_columns)
        metrics["backtest"] = {**results, "cost_bps": config.cost_bps,
                               "rule": "sign(score), equal weight, held one horizon, non-overlapping"}
    else:
        metrics["backtest"] = {"cost_bps": config.cost_bps, "skipped": (
            f"'{task.label}' predicts whether an event resolves, not a direction; trade it as a meta-label filter "
            "on a primary signal instead")}
    return metrics, equity


BOOTSTRAP_RESAMPLES = 1000
# Single folds' intervals are context, not the verdict: fewer resamples keep runs short.
FOLD_RESAMPLES = 300


def _bars_per_year(calendar):
    years = (calendar[-1] - calendar[0]) / np.timedelta64(1, "D") / 365.25
    return float(len(calendar) / years) if years > 0 else 252.0


def refit_final(trainer, calendar, last_fold):
    """Refits on all windows up to the last test fold's end, with the same carve-out."""
    from keras_synapse.windows.splitters import Fold

    config, data = trainer.config, trainer.data
    final = Fold(index=len(calendar), train_start=calendar[0], train_end=last_fold.test_end,
                 test_start=None, test_end=None)
    split = fold_windows(data.windowed, calendar, final, config)
    print(f"final refit: {len(split['fit'])} fit windows, {len(split['validation'])} validation windows "
          f"up to {iso_utc(last_fold.test_end)}")
    if config.finetune_symbol and config.base_model:
        model, history = load_base_model(config, data, last_fold), {}
    else:
        model, history = trainer.fit(split, "final")
    if config.finetune_symbol:
        split = symbol_split(data.windowed, split, config.finetune_symbol)
        model, history = trainer.fit(split, "final_finetune", base_model=model)
    return model, history, split


def load_base_model(config, data, last_fold):
    """The registered shared backbone to fine-tune, refused if it saw data past the final refit's end."""
    import keras

    from keras_synapse.serving.registry import read_metadata, resolve

    metadata = read_metadata(config.base_model)
    base_end = np.datetime64(metadata["metrics"]["folds"][-1]["test"][1].replace("+00:00", ""))
    if base_end > last_fold.test_end:
        raise DataError(f"`base_model` {config.base_model} was trained on data up to {base_end}, after this run's "
                        f"last test fold ends ({iso_utc(last_fold.test_end)}): fine-tuning it would leak.")
    if metadata["feature_names"] != list(data.windowed.feature_names):
        raise DataError(f"`base_model` {config.base_model} was trained on features {metadata['feature_names']}, "
                        f"this run computes {list(data.windowed.feature_names)}.")
    return keras.models.load_model(resolve(config.base_model) / "model.keras")


def register_model(config, registry_dir, model, data, metrics, parity_inputs, drift_rows, fold_models=()):
    """Saves `model.keras`, exports `model.onnx` through the parity gate, writes the metadata.

    `drift_rows` selects the feature rows the model was fitted on; their
    per-feature distributions go into the metadata as the drift reference.
    The fold models go to `folds/fold_<k>.keras`, so `predict --fold k`
    reproduces the run's test-fold predictions.
    """
    import keras

    from keras_synapse.config import config_to_dict
    from keras_synapse.serving.drift import training_distributions
    from keras_synapse.serving.onnx_export import export_onnx
    from keras_synapse.serving.registry import register
    from keras_synapse.runs import json_ready

    windowed, panel = data.windowed, data.panel

    def write_files(directory):
        # An uncompiled copy (same layers and weights): a compiled model would
        # carry keras_synapse's custom loss and metrics, and plain
        # keras.models.load_model could not open it without our package.
        inference_model = keras.Model(model.input, model.output, name=model.name)
        inference_model.save(directory / "model.keras")
        (directory / "folds").mkdir()
        for index, fold_model in enumerate(fold_models):
            keras.Model(fold_model.input, fold_model.output, name=fold_model.name).save(
                directory / "folds" / f"fold_{index}.keras")
        # register() writes metadata.json after this returns, so the export figures land in it.
        metadata["onnx"] = json_ready(export_onnx(inference_model, directory / "model.onnx", parity_inputs))

    def statistics(layer_name):
        layer = model.get_layer(layer_name)
        return {"mean": np.asarray(layer.mean).ravel().tolist(), "variance": np.asarray(layer.variance).ravel().tolist()}

    inputs = {"sequence": {"shape": [None, config.sequence_length, len(windowed.feature_names)],
                           "feature_set": config.features, "feature_names": list(windowed.feature_names)}}
    normalization = {"fitted_on": "the final refit's fit rows (training data only)",
                     "sequence": statistics("feature_normalization")}
    if windowed.static_features is not None:
        inputs["static"] = {"shape": [None, len(windowed.static_feature_names)], "feature_set": config.static_features,
                            "feature_names": list(windowed.static_feature_names)}
        normalization["static"] = statistics("static_normalization")
    metadata = {
        "experiment": config.name,
        "config": config_to_dict(config),
        "feature_set": config.features,
        "feature_names": list(windowed.feature_names),
        "inputs": inputs,
        "raw_features": True,
        "label": metrics["label"],
        "normalization": normalization,
        "data": {"spec": config.data, "symbols": list(panel.symbols), "fingerprint": panel.fingerprint(),
                 "start": str(panel.start), "end": str(panel.end)},
        "metrics": {"folds": metrics["folds"], "summary": metrics["summary"]},
        "packages": _package_versions(),
        "parameters": int(model.count_params()),
    }
    rows, names = windowed.features[drift_rows], list(windowed.feature_names)
    if windowed.static_features is not None:  # the same columns as Predictor.feature_rows
        extra = [index for index, name in enumerate(windowed.static_feature_names) if name not in names]
        rows = np.concatenate([rows, windowed.static_features[drift_rows][:, extra]], axis=1)
        names += [windowed.static_feature_names[index] for index in extra]
    metadata["drift_reference"] = training_distributions(rows, names)
    metadata = json_ready(metadata)
    return register(registry_dir, config.name, write_files, metadata)


def _package_versions():
    from importlib import metadata

    versions = {}
    for name in ("keras_synapse", "tensorflow", "keras", "tf2onnx", "onnxruntime", "numpy", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


if __name__ == "__main__":
    sys.exit(main())
