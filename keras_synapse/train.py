"""The main command: config -> data -> folds -> fit -> evaluate -> register -> export.

    python -m keras_synapse.train experiments/shared_backbone.py [--quick] [--data SPEC] ...

Reads top to bottom as the phases of one run. Every number it prints is from
test folds the model never saw, gapped and purged by the label horizon, beside
baselines on the same windows and 95% block-bootstrap intervals.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from keras_synapse.cli import add_executor_arguments, describe_request, resolve_config
from keras_synapse.config import load_experiment
from keras_synapse.errors import DataError
from keras_synapse.evaluation.importance import importance_of_run, permuted_scores
from keras_synapse.evaluation.run_metrics import BOOTSTRAP_RESAMPLES, baseline_columns, evaluate_run, fold_record
from keras_synapse.console import phase
from keras_synapse.serving.registration import register_model
from keras_synapse.training.preparation import fold_windows, make_folds, prepare_data, symbol_split
from keras_synapse.training.seed_ensemble import member_columns
from keras_synapse.training.trainer import (
    FoldTrainer,
    check_fit_settings,
    check_remote_fits,
    fit_remotely,
    input_feature_names,
    predict_windows,
    refit_final,
    window_scores,
)
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
    parser.add_argument("--quick", action="store_true", help="smoke-sized run (under a minute): the first 6 symbols "
                        "and their last 1500 bars, the experiment's quick settings; registers a challenger and never "
                        "moves saved_models/<experiment>/latest")
    parser.add_argument("--output", default="runs", help="run directory root. Defaults to runs/")
    parser.add_argument("--registry", default="saved_models", help="model registry root. Defaults to saved_models/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set lstm_units=32,16 (repeatable)")
    parser.add_argument("--no-promote", dest="promote", action="store_false",
                        help="register the model without pointing saved_models/<experiment>/latest at it (a "
                        "challenger: python -m keras_synapse.registry promote, or keras_synapse.retrain, moves it)")
    add_executor_arguments(parser, "folds and the final refit (each an independent task)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (e.g. after kill -9) from "
                        "its last completed epoch, with its own config.json; completed folds are not retrained")
    return parser.parse_args(argv)


def main(argv=None):
    from keras_synapse.cli import run_command

    return run_command(run, parse_args(sys.argv[1:] if argv is None else argv))


def run(args):
    """Runs one experiment end to end and returns the run directory."""
    started = time.time()
    # --- Config -------------------------------------------------------------
    config = resolve_config(args)
    print(describe_request(args), flush=True)

    # A smoke run registers a challenger: it never moves `latest`, the model `live` and `serve ... latest` use.
    promote = getattr(args, "promote", True) and not args.quick

    # --- Data: bars -> features + labels -> stacked windows -------------------
    # A smoke run bounds the user's data; the experiment's own quick data is sized by its quick settings.
    own_quick_data = args.quick and config.data == load_experiment(args.experiment, quick=True).data
    data = prepare_data(config, args.quick, bound_quick_data=args.quick and not own_quick_data)
    check_fit_settings(config, data)  # before the run directory exists, so a refusal leaves nothing behind
    from keras_synapse.training.tree_trainer import check_tree_settings, is_tree

    if is_tree(config):
        check_tree_settings(config, data)
    from keras_synapse.training.stacking import check_stack_settings, is_stack

    if is_stack(config):
        check_stack_settings(config, data)
    from keras_synapse.training.executors import make_executor

    executor = make_executor(getattr(args, "executor", "local"), getattr(args, "cpus_per_task", None))
    if executor.remote:
        check_remote_fits(config)
    import keras
    import tensorflow as tf

    from keras_synapse.config import config_to_dict
    from keras_synapse.runs import new_run_dir, write_json

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    if args.resume:
        run_dir = Path(args.resume)
        check_same_data(run_dir, data.panel)
        print(f"resuming run directory: {run_dir}")
    else:
        run_dir = new_run_dir(args.output, config.name)
        write_json(run_dir / "config.json", config_to_dict(config))
        write_json(run_dir / DATA_RECORD, data_record(data.panel))
        print(f"run directory: {run_dir}")
    from keras_synapse.training.stacking import StackTrainer, is_stack
    from keras_synapse.training.tree_trainer import TreeTrainer, is_tree

    trainer_class = TreeTrainer if is_tree(config) else StackTrainer if is_stack(config) else FoldTrainer
    trainer = trainer_class(config, data, run_dir, resume=bool(args.resume))

    # --- Folds: the experiment's splitter on the shared calendar ------------------
    calendar = data.windowed.calendar
    folds = make_folds(config, calendar)

    # --- Model, callbacks, fit, evaluate: once per fold -------------------------
    fold_results, histories, predictions, fold_models, permuted, stack_records = [], {}, [], [], [], []
    # On a cluster every fold and the final refit are fitted at once, as independent tasks, before evaluation.
    fitted = fit_remotely(executor, trainer, calendar, folds) if executor.remote else {}
    for position, fold in enumerate(folds, start=1):
        where = f"fold {position}/{len(folds)}"
        split = fold_windows(data.windowed, calendar, fold, config)
        print(f"{where}: fit on {len(split['fit'])} windows to {iso_utc(fold.train_end)[:10]}, "
              f"test {iso_utc(fold.test_start)[:10]}..{iso_utc(fold.test_end)[:10]}", flush=True)
        model, history = fitted.get(f"fold_{fold.index}") or trainer.fit(split, f"fold_{fold.index}")
        shared_model = None
        if config.finetune_symbol:
            shared_model, split = model, symbol_split(data.windowed, split, config.finetune_symbol)
            model, history = trainer.fit(split, f"fold_{fold.index}_finetune", base_model=shared_model)
        histories[f"fold {fold.index}"] = history
        frame = predict_windows(model, data, split["test"], config.batch_size)
        with phase(f"{where}: baselines on the same windows"):
            baselines = baseline_columns(data, split, config.seed + fold.index)
        frame = frame.assign(fold=fold.index, **baselines, **member_columns(model, lambda member: predict_windows(
            member, data, split["test"], config.batch_size)["prediction"]))
        if shared_model is not None:
            # The same windows scored by the shared backbone before fine-tuning.
            frame["baseline_shared_backbone"] = predict_windows(shared_model, data, split["test"],
                                                                config.batch_size)["prediction"].to_numpy()
        predictions.append(frame)
        if config.feature_importance:
            with phase(f"{where}: feature importance"):
                permuted.append(pd.DataFrame(permuted_scores(
                    lambda inputs: window_scores(model, data, inputs), data.windowed.gather(split["test"]),
                    input_feature_names(data), seed=config.seed + fold.index)))
        fold_models.append(model)
        if getattr(model, "record", None):  # a stack: its members' weights and out-of-fold ICs
            stack_records.append({"fold": fold.index, **model.record})
        fold_results.append(fold_record(fold, split, frame, history, data.task, data.head_tasks))
    fold_predictions = test_predictions = pd.concat(predictions, ignore_index=True)
    masks = None
    if config.cv == "cpcv":  # a window is tested by several splits: the pooled figures are one backtest path's
        from keras_synapse.evaluation.cpcv_paths import path_masks

        masks = path_masks(fold_predictions, config.cv_groups, config.cv_test_groups, folds)
        test_predictions = fold_predictions[masks[0]].reset_index(drop=True)
        permuted = [pd.concat(permuted, ignore_index=True)[masks[0]].reset_index(drop=True)] if permuted else []

    # --- Evaluate: summary with intervals, baselines, backtest ------------------
    with phase("evaluation: intervals, baselines, backtest and A/B"):
        metrics, equity = evaluate_run(config, data, run_dir, fold_results, test_predictions, calendar,
                                       fold_predictions, masks)
    from keras_synapse.training.callbacks import log_test_metrics

    for fold in metrics["folds"]:  # beside each fold's training curves
        log_test_metrics(run_dir, f"fold_{fold['index']}", fold["metrics"], fold["intervals"], fold["epochs_trained"])
    if stack_records:
        metrics["stack"] = {"folds": stack_records}
    if config.ensemble_seeds > 1:
        from keras_synapse.evaluation.agreement import agreement_record

        metrics["ensemble"] = agreement_record(test_predictions, config.horizon, BOOTSTRAP_RESAMPLES, config.seed)
    if permuted:
        with phase("feature importance: intervals"):
            metrics["feature_importance"] = importance_of_run(
                test_predictions, pd.concat(permuted, ignore_index=True), config.horizon, BOOTSTRAP_RESAMPLES,
                config.seed, statistic=metrics["summary"]["primary"]["statistic"])

    # --- Register: refit on all data up to the last test fold, export, save ----
    base_model = (load_base_model(config, args.registry, data, folds[-1])
                  if config.finetune_symbol and config.base_model else None)
    print("final model: refit on every window up to the last test fold's end", flush=True)
    final_model, final_history, final_split = refit_final(trainer, calendar, folds[-1], base_model,
                                                          fitted.get("final"))
    histories["final refit"] = final_history
    if (run_dir / REGISTERED_RECORD).is_file():
        # A resumed run that had registered its model before it stopped registers nothing new.
        version_dir = Path(json.loads((run_dir / REGISTERED_RECORD).read_text())["version_dir"])
        print(f"already registered: {version_dir}")
    else:
        # Parity is checked on the most recent windows the refit held back for early stopping.
        parity_inputs = data.windowed.gather(final_split["validation"][-256:])
        with phase("register: model.keras, ONNX export and its parity check, model card"):
            version_dir = register_model(config, args.registry, final_model, data, metrics, parity_inputs,
                                         drift_rows=data.windowed.timestamps <= final_split["fit_end"],
                                         fold_models=fold_models, promote=promote)
        write_json(run_dir / REGISTERED_RECORD, {"version_dir": str(version_dir)})
        if not promote:
            print(f"registered {version_dir} as a challenger{' (a --quick run)' if args.quick else ''}: `latest` "
                  f"is unchanged. To serve it: python -m keras_synapse.registry promote {config.name} {version_dir.name} "
                  f"--registry {args.registry}")
    onnx_only = is_tree(config) or is_stack(config)
    if is_stack(config):
        metrics["stack"]["final"] = final_model.record
    metrics["executor"] = executor.record()
    metrics["model"] = {
        # A tree has no Keras file, its ONNX graph is the model; a stack's members are in members/.
        **({} if onnx_only else {"keras": str(version_dir / "model.keras")}),
        "onnx": str(version_dir / ("members" if is_stack(config) else "model.onnx")),
        "version": int(version_dir.name),
        "final_refit_epochs": len(final_history.get("loss", [])),
    }

    # --- Report -------------------------------------------------------------
    from keras_synapse.evaluation.report import format_summary, write_report

    write_json(run_dir / "metrics.json", metrics)
    test_predictions.to_csv(run_dir / "test_predictions.csv", index=False)
    with phase("report.html"):
        write_report(run_dir / "report.html", metrics, histories, test_predictions, equity, config_to_dict(config))
    print()
    print(format_summary(metrics))
    print(f"model: {metrics['model']['onnx']}" if onnx_only
          else f"model: {metrics['model']['keras']} (+ model.onnx)")
    print(f"run: {run_dir} ({time.time() - started:.0f} s)")
    return run_dir


# What a run records so that `--resume` continues only the same run.
DATA_RECORD, REGISTERED_RECORD = "data.json", "registered.json"


def data_record(panel):
    """The run's data: the panel's fingerprint and each symbol's, so a resume can name what changed."""
    return {"fingerprint": panel.fingerprint(), "symbols": panel.symbol_fingerprints()}


def check_same_data(run_dir, panel):
    """Refuses to resume a run on data other than the data it started on, naming the symbols that differ."""
    path = Path(run_dir) / DATA_RECORD
    if not path.is_file():
        print(f"warning: {run_dir} records no data fingerprint (started by an older keras_synapse); "
              "cannot check that the data are unchanged", file=sys.stderr)
        return
    recorded, current = json.loads(path.read_text()), data_record(panel)
    if recorded["fingerprint"] == current["fingerprint"]:
        return
    before, after = recorded["symbols"], current["symbols"]
    differences = [f"{sorted(set(after) - set(before))} added" if set(after) - set(before) else "",
                   f"{sorted(set(before) - set(after))} removed" if set(before) - set(after) else "",
                   f"bars of {sorted(s for s in set(before) & set(after) if before[s] != after[s])} changed"
                   if any(before[s] != after[s] for s in set(before) & set(after)) else ""]
    raise DataError(f"--resume {run_dir}: the data differ from those the run started on "
                    f"({'; '.join(item for item in differences if item)}). Resuming would continue checkpoints "
                    "trained on other bars; start a new run instead.")


def load_base_model(config, registry, data, last_fold):
    """The registered shared backbone to fine-tune, or `None` (said) when it is not registered.

    `config.base_model` is `EXPERIMENT/VERSION` (or `EXPERIMENT/latest`) inside
    `registry`, or a path to a version directory.

    Raises:
        DataError: when the backbone saw data past the final refit's end, or
            other features.
    """
    import keras

    from keras_synapse.serving.registry import read_metadata, resolve

    candidates = [Path(registry) / config.base_model, Path(config.base_model)]
    found = next((path for path in candidates if (path / "metadata.json").is_file()), None)
    if found is None:
        print(f"final model: `base_model` {config.base_model} is not registered in {registry} (nor a version "
              "directory); the backbone is refit before the head. Register one with: python -m keras_synapse.train "
              f"experiments/{config.base_model.split('/')[0]}.py --registry {registry}")
        return None
    metadata = read_metadata(found)
    base_end = np.datetime64(metadata["metrics"]["folds"][-1]["test"][1].replace("+00:00", ""))
    if base_end > last_fold.test_end:
        raise DataError(f"`base_model` {found} was trained on data up to {base_end}, after this run's "
                        f"last test fold ends ({iso_utc(last_fold.test_end)}): fine-tuning it would leak.")
    if metadata["feature_names"] != list(data.windowed.feature_names):
        raise DataError(f"`base_model` {found} was trained on features {metadata['feature_names']}, "
                        f"this run computes {list(data.windowed.feature_names)}.")
    metadata.verify_file(found, "model.keras")
    print(f"final model: a new head on the frozen backbone of {resolve(found)}")
    return keras.models.load_model(resolve(found) / "model.keras")


if __name__ == "__main__":
    sys.exit(main())
