"""The main command: config -> data -> folds -> fit -> evaluate -> register -> export.

    python -m keras_synapse.train experiments/shared_backbone.py [--quick] [--data SPEC] ...

Reads top to bottom as the phases of one run. Every number it prints is from
test folds the model never saw, gapped and purged by the label horizon, beside
baselines on the same windows and 95% block-bootstrap intervals.
"""

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from keras_synapse.errors import DataError, SynapseError
from keras_synapse.validation import iso_utc

logger = logging.getLogger("keras_synapse.train")

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
    return parser.parse_args(argv)


def resolve_config(args):
    from keras_synapse.config import apply_overrides, load_experiment

    config = load_experiment(args.experiment, quick=args.quick)
    overrides = list(args.overrides)
    for key in ("data", "epochs", "seed"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    return apply_overrides(config, overrides)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run(args)
    except SynapseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def run(args):
    """Runs one experiment end to end and returns the run directory."""
    started = time.time()
    # --- Config -------------------------------------------------------------
    config = resolve_config(args)

    # --- Data: bars -> features + labels -> stacked windows -------------------
    # Loaded and validated before TensorFlow is imported, so bad input fails
    # fast with a clear message and leaves no run directory behind.
    from tqdm import tqdm

    from keras_synapse.data import load_panel
    from keras_synapse.features import compute_features, get_feature_set
    from keras_synapse.labels import compute_labels

    with tqdm(total=3, desc="data", unit="step") as progress:
        panel = load_panel(config.data, quick=args.quick, sample_signal_strength=config.sample_signal_strength)
        progress.update()
        feature_set = get_feature_set(config.features)
        panel.require_history(
            feature_set.warmup + config.sequence_length + config.horizon,
            f"feature warm-up {feature_set.warmup} + sequence_length {config.sequence_length} "
            f"+ horizon {config.horizon}",
        )
        features = compute_features(panel, config.features)
        labels = compute_labels(panel, config.label, config.horizon, config.label_scaling)
        progress.update()
        _quiet_tensorflow()
        import keras
        import tensorflow as tf

        from keras_synapse.config import config_to_dict
        from keras_synapse.validation import GappedTimeSeriesCV
        from keras_synapse.windows import build_windowed_panel

        windowed = build_windowed_panel(features, labels, config.sequence_length, config.horizon)
        progress.update()
    print(f"data: {panel!r}; {len(windowed.feature_names)} features; label {config.label} "
          f"({config.horizon}-bar horizon, scaling {config.label_scaling})")
    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    run_dir = _new_run_dir(Path(args.output), config.name)
    _write_json(run_dir / "config.json", config_to_dict(config))
    print(f"run directory: {run_dir}")

    # --- Folds: gapped CV on the shared calendar ------------------------------
    calendar = windowed.calendar
    folds = GappedTimeSeriesCV(config.n_splits, config.test_size, config.gap).split(calendar)

    # --- Model, callbacks, fit, evaluate: once per fold -------------------------
    fold_results, histories, predictions = [], {}, []
    for fold in tqdm(folds, desc="folds", unit="fold"):
        split = fold_windows(windowed, calendar, fold, config)
        model, history = fit_fold(config, windowed, split, run_dir / "tensorboard" / f"fold_{fold.index}")
        histories[f"fold {fold.index}"] = history
        frame = predict_windows(model, windowed, split["test"], config.batch_size)
        frame = frame.assign(fold=fold.index, **_baselines(windowed, split, config.seed + fold.index))
        predictions.append(frame)
        fold_results.append(_fold_record(fold, split, frame, history))
    test_predictions = pd.concat(predictions, ignore_index=True)

    # --- Evaluate: summary with intervals, baselines, backtest ------------------
    metrics, equity = evaluate_run(config, run_dir, folds, fold_results, test_predictions, calendar)

    # --- Register: refit on all data up to the last test fold, export, save ----
    final_model, final_history, final_split = refit_final(config, windowed, calendar, folds[-1], run_dir)
    histories["final refit"] = final_history
    # Parity is checked on the most recent windows the refit held back for early stopping.
    parity_inputs = {"sequence": windowed.gather(final_split["validation"][-256:])}
    version_dir = register_model(config, args.registry, final_model, windowed, panel, metrics, parity_inputs)
    metrics["model"] = {
        "keras": str(version_dir / "model.keras"),
        "onnx": str(version_dir / "model.onnx"),
        "version": int(version_dir.name),
        "final_refit_epochs": len(final_history.get("loss", [])),
    }

    # --- Report -------------------------------------------------------------
    from keras_synapse.report import write_report

    _write_json(run_dir / "metrics.json", metrics)
    test_predictions.to_csv(run_dir / "test_predictions.csv", index=False)
    write_report(run_dir / "report.html", metrics, histories, test_predictions, equity)
    print_summary(metrics, time.time() - started, run_dir)
    return run_dir


def _quiet_tensorflow():
    # TensorFlow's C++ start-up chatter (CUDA probing on CPU machines, oneDNN
    # notes) and tf2onnx's per-pass INFO lines bury the fold table.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)


def fold_windows(windowed, calendar, fold, config):
    """The fit, validation and test window ends of one fold, purged by label end time."""
    from keras_synapse.validation import carve_validation
    from keras_synapse.windows import select_ends

    labelled = windowed.labelled_ends()
    fit_end, validation_start = carve_validation(calendar, fold, config.validation_size, config.gap)
    split = {
        "fit": select_ends(windowed, labelled, stride=config.stride, end=fit_end, label_before=validation_start),
        "validation": select_ends(windowed, labelled, stride=config.stride, start=validation_start,
                                  end=fold.train_end, label_before=fold.test_start),
        "test": select_ends(windowed, labelled, stride=config.stride, start=fold.test_start, end=fold.test_end)
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


def fit_fold(config, windowed, split, log_dir):
    """Builds, normalizes (fit rows only), compiles and fits a fresh model."""
    import keras

    from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder
    from keras_synapse.windows import make_dataset

    keras.utils.clear_session()
    spec = ModelSpec(config.sequence_length, len(windowed.feature_names))
    model = get_model_builder(config.model)(config, spec)
    fit_normalization(model, windowed.features[windowed.timestamps <= split["fit_end"]])
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm),
        loss=config.loss,
    )
    callbacks = [
        keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True),
        keras.callbacks.TensorBoard(log_dir=str(log_dir)),
        keras.callbacks.CSVLogger(str(log_dir / "training_log.csv")) if _mkdir(log_dir) else None,
    ]
    history = model.fit(
        make_dataset(windowed, split["fit"], config.batch_size, shuffle=True, seed=config.seed),
        validation_data=make_dataset(windowed, split["validation"], config.batch_size),
        epochs=config.epochs,
        shuffle=False,  # the dataset already reshuffles each epoch, seeded
        callbacks=[callback for callback in callbacks if callback is not None],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    return model, history.history


def loss_for(task, regression_loss="mse"):
    """The Keras loss for a task: the configured regression loss, or cross-entropy."""
    if task == "binary":
        return "binary_crossentropy"
    if task == "multiclass":
        return "sparse_categorical_crossentropy"
    return regression_loss


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return True


def predict_windows(model, windowed, ends, batch_size):
    """Predictions for the windows ending at `ends`, with their symbol and time."""
    from keras_synapse.windows import make_dataset

    outputs = model.predict(make_dataset(windowed, ends, batch_size, with_targets=False), verbose=0)
    return windowed.window_frame(ends).assign(prediction=np.asarray(outputs, dtype=np.float64).ravel())


def _baselines(windowed, split, seed):
    from keras_synapse.baselines import baseline_predictions

    train = np.concatenate([split["fit"], split["validation"]])
    return {f"baseline_{name}": values for name, values in baseline_predictions(windowed, train, split["test"], seed).items()}


def _fold_record(fold, split, frame, history):
    from keras_synapse.evaluation import regression_metrics

    return {
        "index": fold.index,
        **fold.as_dict(),
        "validation": [iso_utc(split["validation_start"]), iso_utc(fold.train_end)],
        "n_train": int(len(split["fit"])),
        "n_validation": int(len(split["validation"])),
        "n_test": int(len(split["test"])),
        "epochs_trained": len(history.get("loss", [])),
        "metrics": regression_metrics(frame["prediction"], frame["target"], frame["forward_return"]),
    }


def evaluate_run(config, run_dir, folds, fold_results, test_predictions, calendar):
    """Summary with intervals, baselines on the same folds, and the backtest.

    Returns:
        The `metrics.json` content (without `model`) and the equity curves.
    """
    from keras_synapse.backtest import backtest
    from keras_synapse.baselines import BASELINE_NAMES
    from keras_synapse.evaluation import edge_verdict, regression_metrics, summarize

    # Blocks span at least one label horizon (in window ends, `stride` bars
    # apart), and grow with the sample so slow regimes are kept whole.
    num_ends = test_predictions["timestamp"].nunique()
    block_length = max(int(np.ceil(config.horizon / config.stride)), int(round(num_ends ** (1 / 3))))
    summary = summarize([fold["metrics"] for fold in fold_results], test_predictions, "prediction", block_length,
                        config.seed)
    summary["verdict"] = edge_verdict(summary)
    baselines = {}
    for name in BASELINE_NAMES:
        column = f"baseline_{name}"
        per_fold = [
            regression_metrics(group[column], group["target"], group["forward_return"])
            for _, group in test_predictions.groupby("fold")
        ]
        baselines[name] = {
            "folds": per_fold,
            "summary": summarize(per_fold, test_predictions, column, block_length, config.seed),
        }
    bars_per_year = _bars_per_year(calendar)
    backtest_results, equity = backtest(test_predictions, "prediction", config.horizon, config.cost_bps, calendar,
                                        bars_per_year)
    return {
        "experiment": config.name,
        "run_id": run_dir.name,
        "folds": fold_results,
        "summary": summary,
        "baselines": baselines,
        "backtest": {**backtest_results, "cost_bps": config.cost_bps, "rule": "sign(prediction), equal weight, "
                     "held one horizon, non-overlapping"},
        "bootstrap": {"block_length_timestamps": block_length, "resamples": 1000, "level": 0.95},
    }, equity


def _bars_per_year(calendar):
    years = (calendar[-1] - calendar[0]) / np.timedelta64(365, "D") * 365.25 / 365
    return float(len(calendar) / years) if years > 0 else 252.0


def refit_final(config, windowed, calendar, last_fold, run_dir):
    """Refits on all windows up to the last test fold's end, with the same carve-out."""
    from keras_synapse.validation import Fold

    final = Fold(index=len(calendar), train_start=calendar[0], train_end=last_fold.test_end,
                 test_start=None, test_end=None)
    split = fold_windows(windowed, calendar, final, config)
    print(f"final refit: {len(split['fit'])} fit windows, {len(split['validation'])} validation windows "
          f"up to {iso_utc(last_fold.test_end)}")
    model, history = fit_fold(config, windowed, split, run_dir / "tensorboard" / "final")
    return model, history, split


def register_model(config, registry_dir, model, windowed, panel, metrics, parity_inputs):
    """Saves `model.keras`, exports `model.onnx` through the parity gate, writes the metadata."""
    import keras

    from keras_synapse.config import config_to_dict
    from keras_synapse.export import export_onnx
    from keras_synapse.registry import register

    export_info = {}

    def write_files(directory):
        model.save(directory / "model.keras")
        export_info.update(export_onnx(model, directory / "model.onnx", parity_inputs))

    normalization = model.get_layer("feature_normalization")
    metadata = {
        "experiment": config.name,
        "config": config_to_dict(config),
        "feature_set": config.features,
        "feature_names": list(windowed.feature_names),
        "input": {"name": "sequence", "shape": [None, config.sequence_length, len(windowed.feature_names)],
                  "raw_features": True},
        "label": {"name": config.label, "horizon": config.horizon, "scaling": config.label_scaling},
        "normalization": {
            "fitted_on": "final refit's fit rows (training data only)",
            "mean": np.asarray(normalization.mean).ravel().tolist(),
            "variance": np.asarray(normalization.variance).ravel().tolist(),
        },
        "data": {"spec": config.data, "symbols": list(panel.symbols), "fingerprint": panel.fingerprint(),
                 "start": str(panel.start), "end": str(panel.end)},
        "metrics": {"folds": metrics["folds"], "summary": metrics["summary"]},
        "onnx": export_info,
        "packages": _package_versions(),
        "parameters": int(model.count_params()),
    }
    return register(registry_dir, config.name, write_files, _json_ready(metadata))


def _package_versions():
    from importlib import metadata

    names = ("keras_synapse", "tensorflow", "keras", "tf2onnx", "onnxruntime", "numpy", "pandas")
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _new_run_dir(output, experiment):
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = output / experiment / f"{stamp}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    return run_dir


def _json_ready(value):
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _write_json(path, content):
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(json.dumps(_json_ready(content), indent=2, allow_nan=False))
    os.replace(staging, path)


def _format(value, digits=4):
    return "   n/a" if value is None or not np.isfinite(value) else f"{value:+.{digits}f}"


def print_summary(metrics, seconds, run_dir):
    """Prints the fold table, intervals, baselines, backtest and the verdict."""
    print()
    print(f"{'fold':<5}{'train':<25}{'test':<25}{'n_train':>8}{'n_test':>7}{'dir.acc':>9}{'IC':>9}{'rank IC':>9}")
    for fold in metrics["folds"]:
        fold_metrics = fold["metrics"]
        print(f"{fold['index']:<5}{fold['train'][0][:10] + '..' + fold['train'][1][:10]:<25}"
              f"{fold['test'][0][:10] + '..' + fold['test'][1][:10]:<25}{fold['n_train']:>8}{fold['n_test']:>7}"
              f"{_format(fold_metrics['directional_accuracy']):>9}{_format(fold_metrics['ic']):>9}"
              f"{_format(fold_metrics['rank_ic']):>9}")
    summary = metrics["summary"]
    print("\nmetric (test folds)            fold mean    pooled   95% CI (block bootstrap)")
    for name in ("directional_accuracy", "excess_directional_accuracy", "ic", "rank_ic", "mse"):
        item = summary[name]
        print(f"{name:<30}{_format(item['mean']):>10}{_format(item['pooled']):>10}   "
              f"[{_format(item['ci_low'])}, {_format(item['ci_high'])}]")
    print("\nbaseline (same test windows)    dir.acc   excess        IC   rank IC")
    for name, result in metrics["baselines"].items():
        item = result["summary"]
        print(f"{name:<30}{_format(item['directional_accuracy']['pooled']):>10}"
              f"{_format(item['excess_directional_accuracy']['pooled']):>9}{_format(item['ic']['pooled']):>10}"
              f"{_format(item['rank_ic']['pooled']):>10}")
    backtest = metrics["backtest"]
    print(f"\nbacktest after {backtest['cost_bps']} bps   sharpe  sortino   max_dd  win_rate  profit_f  turnover")
    for name in ("strategy", "buy_and_hold"):
        item = backtest[name]
        print(f"{name:<26}{_format(item['sharpe'], 2):>8}{_format(item['sortino'], 2):>9}"
              f"{_format(item['max_drawdown'], 2):>9}{_format(item['win_rate'], 2):>10}"
              f"{_format(item['profit_factor'], 2):>10}{_format(item['turnover'], 2):>10}")
    print(f"\n{summary['verdict']}")
    print(f"model: {metrics['model']['keras']} (+ model.onnx)")
    print(f"run: {run_dir} ({seconds:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
