"""Hyperparameter search over an experiment's declared search space, scored on gapped CV folds.

    python -m keras_synapse.tune experiments/shared_backbone.py --max-trials 20
    python -m keras_synapse.tune experiments/shared_backbone.py --max-trials 2 --quick --epochs 1   # smoke run

The experiment file declares its search space next to its defaults, as a
function of a `keras_tuner.HyperParameters` returning config field -> value:

    def search_space(hp):
        return {"lstm_units": (hp.Choice("lstm_units_0", [32, 64]), hp.Choice("lstm_units_1", [16, 32])),
                "dropout": hp.Float("dropout", 0.1, 0.5),
                "learning_rate": hp.Float("learning_rate", 1e-4, 3e-3, sampling="log")}

How a trial is scored. The search sees only the bars before the first test
fold of the experiment's own cross-validation (less the gap), so the test folds
that `keras_synapse.train` later reports for the tuned experiment are untouched
by the search (with expanding-window folds, a later fold trains on the earlier
folds' test blocks; scoring trials on those folds would let the search look at
test data). That search period is split into the experiment's gapped folds
(`n_splits`, `test_size`, `gap`); in each, `FoldTrainer` fits on the fit part
with early stopping on the validation carve-out, exactly as in training. A
fold's score is the objective (`--objective`, default `val_ic`, the IC of the
validation predictions) at the epoch early stopping kept (the first best
`config.monitor`); the trial's score is the mean over folds. Never a test
fold, never a random split.

How noisy a score is. The restored model of each fold scores its validation
windows once more, and a stationary bootstrap over timestamps
(`keras_synapse.evaluation.intervals`, blocks of at least one label horizon) gives the
standard error of the fold's IC (rank IC, ...; for `val_loss`, of the plain
validation MSE, as no resampling reproduces the L2 penalty). The table shows
each trial's 95% interval, mean +- 1.96 sqrt(sum of fold SE^2) / folds, and
its validation windows, and below it how far the best of N equally good
trials would beat the truth by chance: about E[max of N normals] standard
errors (1.87 for 20 trials). The tuned run's test folds are not part of
that selection.

What it writes: the search in `--directory` (default `tuning/`), one
keras-tuner project per experiment, tuner and objective (re-running the same
command resumes it; `--overwrite` starts afresh), with each trial's
TensorBoard logs and `synapse_trial.json` (tuner id, host, per-fold scores
and standard errors); `results.csv` and the printed table of every trial; the
best configuration as a ready-to-run experiment file (default
`tuned_<experiment>.py` beside the experiment); and, unless `--no-train`, a
normal `keras_synapse.train` run of that file (full CV, baselines, backtest,
registration as `<experiment>_tuned`), its test IC printed beside the best
trial's validation score.

Distributed tuning (keras-tuner's chief/worker mode over gRPC): run the same
command on every machine, with the same `--directory` layout, and

    KERASTUNER_ORACLE_IP=<chief address> KERASTUNER_ORACLE_PORT=8000

plus `KERASTUNER_TUNER_ID=chief` on the chief and a distinct
`KERASTUNER_TUNER_ID=tuner0`, `tuner1`, ... on each worker. The chief only
serves the oracle (it trains nothing) and, when every worker has finished,
prints the table, writes the tuned experiment and trains it; workers run
trials until the oracle has handed out `--max-trials`. Start the chief first
(workers wait for it, up to keras-tuner's one-hour timeout) and start every
worker before the first one finishes its last trial: the chief exits once no
worker is busy, and a worker that connects after that waits in vain.
`oracle.json` records which tuner ran each trial (`trial_tuners`).

Hyperband trains each trial from scratch for the `tuner/epochs` budget the
oracle assigns (no warm start from the previous round); its `max_epochs` is the
config's `epochs`, and its brackets repeat until `--max-trials`. `bayesian`
needs scikit-learn (`pip install scikit-learn`).
"""

import argparse
import csv
import dataclasses
import importlib.util
import json
import os
import shutil
import socket
import sys
import textwrap
import time
from pathlib import Path

import keras_tuner  # imports TensorFlow
import numpy as np

from keras_synapse.errors import ConfigError, SynapseError

DESCRIPTION = """Tune an experiment's search space with keras-tuner, scored on gapped CV folds.

Trials are scored on the validation carve-outs of the experiment's folds, inside
the period before its first test fold; the best configuration is written as an
experiment file and trained with keras_synapse.train (full CV, registration).
Distributed: set KERASTUNER_TUNER_ID (chief, tuner0, tuner1, ...),
KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT and run the same command on
each machine (see the module docstring).
"""

TUNERS = ("random", "bayesian", "hyperband")
# Objective -> direction. Each is logged per epoch on the validation carve-out.
OBJECTIVES = {"val_ic": "max", "val_rank_ic": "max", "val_directional_accuracy": "max",
              "val_pearson_correlation": "max", "val_loss": "min", "val_mse": "min"}
# Fields that change the model or its fitting, not the prepared data: trials
# differing only in these share one `prepare_data`. Anything else (sequence
# length, features, label, ...) prepares its own.
MODEL_AND_FITTING_FIELDS = frozenset({
    "name", "model", "batch_size", "stride", "n_splits", "test_size", "gap", "validation_size", "loss_weights",
    "lstm_units", "dense_units", "dropout", "dense_dropout", "recurrent_dropout", "l2", "head_activation",
    "num_heads", "model_dim", "num_blocks", "ff_dim", "positional_encoding", "causal_mask", "pooling",
    "finetune_symbol", "base_model", "epochs", "learning_rate", "clipnorm", "patience", "loss",
    "learning_rate_schedule", "sample_weighting", "seed", "cost_bps", "distribute",
})
TRIAL_REPORT = "synapse_trial.json"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m keras_synapse.tune", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="experiment file defining get_config(quick=False) and search_space(hp)")
    parser.add_argument("--max-trials", type=int, default=10, help="trials to run in all (over every worker). "
                        "Defaults to 10")
    parser.add_argument("--tuner", choices=TUNERS, default="random", help="search algorithm. Defaults to random")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default="val_ic",
                        help="validation metric averaged over the folds (val_loss and val_mse are minimized, "
                        "the others maximized). Defaults to val_ic")
    parser.add_argument("--quick", action="store_true", help="smoke-sized data and the experiment's quick settings")
    parser.add_argument("--data", help="bars to tune on (as for keras_synapse.train). Defaults to the experiment's")
    parser.add_argument("--epochs", type=int, help="maximum epochs per fold (early stopping may end sooner)")
    parser.add_argument("--seed", type=int, help="random seed of the fits and of the search")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field for every trial, e.g. --set stride=10 (repeatable)")
    parser.add_argument("--directory", default="tuning", help="keras-tuner directory (trials, oracle state, "
                        "TensorBoard logs). Defaults to tuning/")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing search in --directory "
                        "instead of resuming it (ignored by distributed workers)")
    parser.add_argument("--tuned-file", help="where to write the best configuration as an experiment file. "
                        "Defaults to tuned_<experiment>.py beside the experiment")
    parser.add_argument("--no-train", action="store_true", help="write the tuned experiment file but do not train "
                        "and register it")
    parser.add_argument("--output", default="runs", help="run directory root of the final training. Defaults to runs/")
    parser.add_argument("--registry", default="saved_models", help="model registry root. Defaults to saved_models/")
    args = parser.parse_args(argv)
    if args.max_trials < 1:
        parser.error(f"--max-trials must be >= 1. Received: {args.max_trials}")
    args.resume = None  # keras_synapse.cli.resolve_config reads it
    return args


def main(argv=None):
    from keras_synapse.cli import run_command

    return run_command(run, parse_args(sys.argv[1:] if argv is None else argv))


def role():
    """`"chief"`, `"worker"` or `"standalone"`, from keras-tuner's environment variables."""
    if not os.environ.get("KERASTUNER_ORACLE_IP"):
        return "standalone"
    for name in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if not os.environ.get(name):
            raise ConfigError(f"KERASTUNER_ORACLE_IP is set but {name} is not: set KERASTUNER_TUNER_ID=chief on the "
                              "chief, tuner0, tuner1, ... on the workers, and the same KERASTUNER_ORACLE_PORT on all.")
    # keras-tuner's own test: a tuner id containing "chief" serves the oracle.
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def run(args):
    """Runs the search (or this machine's part of it); returns the tuned experiment file, or `None` on a worker."""
    from keras_synapse.cli import resolve_config
    from keras_synapse.training.preparation import quiet_tensorflow

    # --- Config: the experiment, its overrides and its search space ----------
    config = resolve_config(args)
    search_space = load_search_space(args.experiment)
    this_role = role()
    quiet_tensorflow()
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()

    # --- Search: trials here, or the oracle served to the workers ------------
    tuner = build_tuner(config, search_space, args.tuner, args.objective, args.max_trials, args.quick,
                        directory=args.directory, overwrite=args.overwrite and this_role != "worker")
    print(f"tuning {config.name} ({this_role}{'' if this_role == 'standalone' else ' ' + tuner.tuner_id}): "
          f"{args.tuner} search, {args.max_trials} trials, objective {args.objective} "
          f"({OBJECTIVES[args.objective]}imized), in {tuner.project_dir}")
    started = time.time()
    tuner.search()
    if this_role == "worker":
        ran = sorted(path.parent.name for path in Path(tuner.project_dir).glob(f"trial_*/{TRIAL_REPORT}")
                     if json.loads(path.read_text()).get("tuner_id") == tuner.tuner_id)
        print(f"{tuner.tuner_id}: the oracle has no more trials; this worker ran {len(ran)} "
              f"({', '.join(ran) or 'none'}) in {time.time() - started:.0f} s")
        return None

    # --- Results: the table, results.csv, the best configuration -------------
    rows = trial_rows(tuner.oracle, tuner.hypermodel, args.objective)
    print()
    print(format_results(rows, args.objective))
    print(selection_bias_line(rows, args.objective))
    write_results_csv(Path(tuner.project_dir) / "results.csv", rows)
    best = best_row(rows, args.objective)
    if best is None:
        raise SynapseError(f"No trial completed; see the messages above and the trials in {tuner.project_dir}.")
    base_config = resolve_config(argparse.Namespace(**{**vars(args), "overrides": [], "data": None, "epochs": None,
                                                       "seed": None}))
    overrides = _changed_fields(base_config, config)
    tuned_file = Path(args.tuned_file) if args.tuned_file else (
        Path(args.experiment).resolve().parent / f"tuned_{Path(args.experiment).stem}.py")
    write_tuned_experiment(tuned_file, args.experiment, f"{config.name}_tuned", best["values"], overrides,
                           summary=_summary_line(best, args), command=_command_line(args))
    tuned = _check_tuned_file(tuned_file, args.quick, config, best["values"])
    print(f"\nbest trial {best['trial']}: mean {args.objective} {best['objective']:+.4f}; "
          f"tuned experiment: {tuned_file} (name {tuned.name})")

    # --- Register: the tuned experiment trained as any other ----------------
    if args.no_train:
        print(f"train and register it with: python -m keras_synapse.train {_display_path(tuned_file)}")
        return tuned_file
    from keras_synapse import train

    tuner.release_data()
    train_args = [str(tuned_file), "--output", args.output, "--registry", args.registry] + (
        ["--quick"] if args.quick else [])
    print(f"\ntraining the tuned experiment: python -m keras_synapse.train {' '.join(train_args)}")
    run_dir = train.run(train.parse_args(train_args))
    print(search_versus_test_line(best, args.objective, len(_completed(rows)), run_dir))
    return tuned_file


def search_versus_test_line(best, objective, num_trials, run_dir):
    """One line: the best trial's validation score beside the tuned run's test IC and verdict.

    Args:
        best: the best trial's row (see `trial_rows`).
        objective: the objective's name.
        num_trials: the completed trials it was the best of.
        run_dir: the tuned experiment's training run (its `metrics.json`).
    """
    summary = json.loads((Path(run_dir) / "metrics.json").read_text())["summary"]
    ic = summary["ic"]
    return (f"search vs test: best of {num_trials} trials, mean validation {objective} {best['objective']:+.4f} "
            f"(selected, so optimistic); test IC of the tuned run {ic['pooled']:+.4f} "
            f"[95% CI {ic['ci_low']:+.4f}, {ic['ci_high']:+.4f}] on folds the search never saw, "
            f"edge_significant {summary['edge_significant']}")


# --- The experiment's search space ---------------------------------------------------


def load_search_space(path):
    """The `search_space(hp)` function of an experiment file.

    Raises:
        ConfigError: when the file defines none.
    """
    from keras_synapse.config import import_experiment

    module = import_experiment(path, suffix="_search_space")
    if not callable(getattr(module, "search_space", None)):
        raise ConfigError(f"{path} defines no `search_space(hp)` function returning config field -> value, e.g. "
                          "{'dropout': hp.Float('dropout', 0.1, 0.5)}. See experiments/shared_backbone.py.")
    return module.search_space


def _plain(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        # hp.Float(step=0.05) yields 0.30000000000000004; trials and the tuned file use 0.3.
        return float(f"{value:.12g}")
    if isinstance(value, (list, tuple)):
        return tuple(_plain(item) for item in value)
    return value


def search_values(search_space, hyperparameters, base_config):
    """`search_space(hp)` checked against the config's fields, with plain Python values.

    Raises:
        ConfigError: for a non-dict result or unknown fields.
    """
    values = search_space(hyperparameters)
    if not isinstance(values, dict):
        raise ConfigError(f"search_space(hp) must return a dict of config field -> value. Received: "
                          f"{type(values).__name__}")
    fields = {field.name for field in dataclasses.fields(base_config)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"search_space(hp) returned unknown config field(s) {unknown}. Fields: {', '.join(fields)}")
    return {key: _plain(value) for key, value in values.items()}


def search_folds(calendar, config):
    """The folds a trial is scored on: the config's gapped folds of the bars before its first test fold.

    Args:
        calendar: the panel's sorted unique timestamps.
        config: the trial's `ExperimentConfig`.

    Returns:
        A list of `Fold`s, all ending at least `gap` bars before the first
        test fold of `GappedTimeSeriesCV(n_splits, test_size, gap)` on the
        full calendar.

    Raises:
        ConfigError: when that period is too short for the folds.
    """
    from keras_synapse.windows.splitters import GappedTimeSeriesCV

    splitter = GappedTimeSeriesCV(config.n_splits, config.test_size, config.gap)
    first_test = splitter.split(calendar)[0]
    search_calendar = calendar[calendar <= first_test.train_end]
    try:
        return splitter.split(search_calendar)
    except ConfigError as error:
        raise ConfigError(f"The search period (the {len(search_calendar)} bars before the first test fold) is too "
                          f"short: {error} Use more data, or fewer folds.") from None


def fold_score(history, objective, monitor):
    """The objective at the epoch early stopping kept, and that epoch.

    Early stopping restores the weights of the first epoch with the best
    `monitor` (strictly better only, so ties keep the earliest), in the
    direction `keras_synapse.training.callbacks.MONITORS` gives; the fold's score must
    describe that model, not the best objective of any epoch.

    Args:
        history: dict metric -> one value per epoch (the fit's history).
        objective: the metric to report, e.g. `"val_ic"`.
        monitor: what early stopping watched (`config.monitor`), a key of
            `MONITORS`.

    Returns:
        `(score, epoch)`; the score is NaN when no epoch has a finite
        `monitor` value (then the epoch is -1) or the objective is missing.

    Raises:
        ConfigError: for a `monitor` that is not a key of `MONITORS`.
    """
    from keras_synapse.training.callbacks import MONITORS

    if monitor not in MONITORS:
        raise ConfigError(f"`monitor` must be one of {', '.join(MONITORS)}. Received: {monitor!r}")
    watched = np.asarray(history.get(monitor, []), dtype=float)
    if not np.isfinite(watched).any():
        return float("nan"), -1
    # nanargmin / nanargmax return the first of equal values, as early stopping keeps.
    epoch = int(np.nanargmin(watched) if MONITORS[monitor] == "min" else np.nanargmax(watched))
    values = history.get(objective)
    if values is None or epoch >= len(values):
        return float("nan"), epoch
    return float(values[epoch]), epoch


def data_key(config):
    """The fields that decide `prepare_data`'s result (all but the model and fitting fields)."""
    return tuple((field.name, getattr(config, field.name)) for field in dataclasses.fields(config)
                 if field.name not in MODEL_AND_FITTING_FIELDS)


def score_folds(config, data, run_dir, objective):
    """Fits every search fold of `config` and returns one record per fold.

    Each fit keeps its TensorBoard logs under `run_dir/tensorboard/fold_<i>`;
    its resume checkpoints are deleted once it ends. The restored model (the
    epoch early stopping kept) then scores the fold's validation windows once
    more, for the bootstrap standard error of the fold's score.

    Args:
        config: the trial's `ExperimentConfig`.
        data: its `PreparedData`.
        run_dir: the trial's directory.
        objective: the objective's name (a key of `OBJECTIVES`).

    Returns:
        A list of dicts, one per search fold: `index`, `objective` (the
        score), `selected_epoch`, `epochs_trained`, the `fit` and
        `validation` periods, `n_fit`, `n_validation`, and the bootstrap's
        `interval_metric`, `interval_value` and `standard_error` (see
        `validation_uncertainty`).
    """
    from keras_synapse.training.preparation import fold_windows
    from keras_synapse.training.trainer import FoldTrainer
    from keras_synapse.windows.splitters import iso_utc

    calendar = data.windowed.calendar
    trainer = FoldTrainer(config, data, run_dir)
    records = []
    for fold in search_folds(calendar, config):
        split = fold_windows(data.windowed, calendar, fold, config)
        model, history = trainer.fit(split, f"fold_{fold.index}")
        shutil.rmtree(Path(run_dir) / "checkpoints" / f"fold_{fold.index}", ignore_errors=True)
        if not any((Path(run_dir) / "checkpoints").iterdir()):
            (Path(run_dir) / "checkpoints").rmdir()
        score, epoch = fold_score(history, objective, config.monitor)
        records.append({"index": fold.index, "objective": score, "selected_epoch": epoch,
                        "epochs_trained": len(history.get("loss", [])),
                        "fit": [iso_utc(calendar[0]), iso_utc(split["fit_end"])],
                        "validation": [iso_utc(split["validation_start"]), iso_utc(fold.train_end)],
                        "n_fit": int(len(split["fit"])), "n_validation": int(len(split["validation"])),
                        **validation_uncertainty(model, data, split["validation"], objective, config)})
    return records


# Per objective: the `keras_synapse.evaluation.intervals` metric whose bootstrap standard
# error sizes a fold's noise, and what the trial's interval is then an
# interval of. `val_loss` carries the L2 penalty (and for correlation-aware
# losses a correlation term) that no resampling of predictions reproduces,
# so its trials get the interval of the plain validation MSE, named as such.
SCORE_INTERVALS = {
    "val_ic": ("ic", "mean val_ic"),
    "val_rank_ic": ("rank_ic", "mean val_rank_ic"),
    "val_directional_accuracy": ("directional_accuracy", "mean val_directional_accuracy"),
    # PearsonCorrelation correlates with the (scaled) label, not the forward
    # return: the bootstrap's IC is taken against the target for it.
    "val_pearson_correlation": ("ic", "mean val_pearson_correlation"),
    "val_mse": ("mse", "mean val_mse"),
    "val_loss": ("mse", "mean val MSE"),
}
INTERVAL_LEVEL = 0.95
INTERVAL_Z = 1.96
# Resamples per fold: the standard error only sizes the noise (it decides
# nothing), and 300 keep it within ~4% at a fraction of a second per fold.
INTERVAL_RESAMPLES = 300


def validation_uncertainty(model, data, ends, objective, config):
    """The point value and bootstrap standard error, on the validation windows, of what sizes `objective`.

    The stationary bootstrap of `keras_synapse.evaluation.intervals` resamples whole
    timestamps in blocks of at least one label horizon, since validation
    windows at every bar share most of their label with their neighbours.

    Args:
        model: the fold's restored model.
        data: the `PreparedData`.
        ends: the fold's validation window ends.
        objective: the objective's name (a key of `SCORE_INTERVALS`).
        config: the trial's `ExperimentConfig` (`horizon`, `seed`,
            `batch_size`).

    Returns:
        A dict with `interval_metric` (the metric's name, `None` when none
        applies), `interval_value` and `standard_error` (NaN then), and
        `interval_note` (why there is none, or `""`).
    """
    from keras_synapse.evaluation.intervals import bootstrap_metrics
    from keras_synapse.training.trainer import predict_windows

    metric, note = SCORE_INTERVALS.get(objective, (None, ""))[0], ""
    if data.head_tasks:
        metric, note = None, f"a multi-task {objective} mixes the heads' losses; no bootstrap reproduces it"
    elif metric == "mse" and data.task.kind != "regression":
        metric, note = None, (f"val_loss of a {data.task.kind} label is a cross-entropy, not an MSE"
                              if objective == "val_loss" else f"a {data.task.kind} label logs no {objective}")
    elif metric is None:
        note = f"no bootstrap metric stands for {objective}"
    if metric is None:
        return {"interval_metric": None, "interval_value": float("nan"), "standard_error": float("nan"),
                "interval_note": note}
    frame = predict_windows(model, data, ends, config.batch_size)
    if objective == "val_pearson_correlation":
        frame = frame.assign(reference=frame["target"])
    result = bootstrap_metrics(frame, ["prediction"], min_block_length=config.horizon,
                               num_resamples=INTERVAL_RESAMPLES, seed=config.seed)
    return {"interval_metric": metric, "interval_value": result.point["prediction"][metric],
            "standard_error": result.standard_error("prediction", metric), "interval_note": ""}


def score_interval(records, objective):
    """The 95% interval of a trial's score (the mean over folds) from its folds' standard errors.

    The folds' validation periods are disjoint, so their errors are taken as
    independent (neighbouring periods may share a regime, which this
    ignores): the mean's standard error is `sqrt(sum SE^2) / folds`.
    The interval is centred on the mean score, or for `val_loss` on the mean
    validation MSE it is an interval of (see `SCORE_INTERVALS`).

    Args:
        records: the trial's fold records from `score_folds`.
        objective: the objective's name.

    Returns:
        A dict `of` (what it is an interval of), `level`, `low`, `high`,
        `standard_error` (NaN where any fold lacks one) and `note`.
    """
    label = SCORE_INTERVALS.get(objective, (None, f"mean {objective}"))[1]
    errors = np.array([record["standard_error"] for record in records], dtype=float)
    of_objective = objective != "val_loss"
    centres = [record["objective"] if of_objective else record["interval_value"] for record in records]
    centre = float(np.mean(centres)) if records else float("nan")
    standard_error = float(np.sqrt(np.sum(errors**2)) / len(errors)) if len(errors) else float("nan")
    notes = sorted({record.get("interval_note", "") for record in records} - {""})
    return {"of": label, "level": INTERVAL_LEVEL, "low": centre - INTERVAL_Z * standard_error,
            "high": centre + INTERVAL_Z * standard_error, "standard_error": standard_error,
            "note": "; ".join(notes)}


# --- keras-tuner: hypermodel, oracle, tuner --------------------------------------------


class ExperimentHyperModel(keras_tuner.HyperModel):
    """Builds a trial's `ExperimentConfig`: the base config replaced with `search_space(hp)`.

    Args:
        base_config: the experiment's config (with command-line overrides).
        search_space: the experiment's `search_space(hp)`.
    """

    def __init__(self, base_config, search_space):
        super().__init__(name=base_config.name)
        self.base_config = base_config
        self.search_space = search_space

    def values(self, hp):
        return search_values(self.search_space, hp, self.base_config)

    def build(self, hp):
        config = dataclasses.replace(self.base_config, **self.values(hp))
        if "tuner/epochs" in hp.values:  # Hyperband's budget for this trial
            config = dataclasses.replace(config, epochs=int(hp.values["tuner/epochs"]))
        return config


class _TunerRecordingOracle:
    """Oracle mixin: records which tuner ran each trial, saved in `oracle.json` as `trial_tuners`."""

    def __init__(self, *args, **kwargs):
        self.trial_tuners = {}
        super().__init__(*args, **kwargs)

    @keras_tuner.synchronized
    def create_trial(self, tuner_id):
        trial = super().create_trial(tuner_id)
        if trial.status == "RUNNING":
            self.trial_tuners[trial.trial_id] = tuner_id
        return trial

    def get_state(self):
        return {**super().get_state(), "trial_tuners": dict(self.trial_tuners)}

    def set_state(self, state):
        super().set_state(state)
        self.trial_tuners = dict(state.get("trial_tuners", {}))


def build_oracle(tuner, objective, max_trials, max_epochs, seed):
    """A keras-tuner oracle for `tuner` (random, bayesian, hyperband) that records trial tuners."""
    oracles = keras_tuner.oracles
    objective = keras_tuner.Objective(objective, OBJECTIVES[objective])
    if tuner == "random":
        kind, options = oracles.RandomSearchOracle, {"max_trials": max_trials}
    elif tuner == "bayesian":
        if importlib.util.find_spec("sklearn") is None:
            raise ConfigError("`--tuner bayesian` needs scikit-learn (keras-tuner's Gaussian process): "
                              "pip install scikit-learn. Or use --tuner random or hyperband.")
        kind, options = oracles.BayesianOptimizationOracle, {"max_trials": max_trials}
    elif tuner == "hyperband":
        # Brackets repeat until --max-trials (one iteration of a small max_epochs is only a trial or two).
        kind, options = oracles.HyperbandOracle, {"max_epochs": max_epochs, "factor": 3, "hyperband_iterations": None}
    else:
        raise ConfigError(f"`--tuner` must be one of {', '.join(TUNERS)}. Received: {tuner!r}")
    recording = type(f"Recording{kind.__name__}", (_TunerRecordingOracle, kind), {})
    oracle = recording(objective=objective, seed=seed, **options)
    oracle.max_trials = max_trials  # Hyperband has no such argument; cap it all the same
    return oracle


class ExperimentTuner(keras_tuner.Tuner):
    """Runs trials: each fits the search folds of its config and reports the mean validation objective.

    Args:
        oracle: from `build_oracle`.
        hypermodel: an `ExperimentHyperModel`.
        objective: the objective's name (a key of `OBJECTIVES`).
        quick: prepare the smoke-sized data. Defaults to `False`.
        **kwargs: `directory`, `project_name`, `overwrite` for `keras_tuner.Tuner`.
    """

    def __init__(self, oracle, hypermodel, objective, quick=False, **kwargs):
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)
        self.objective_name = objective
        self.quick = quick
        self._prepared = {}
        self._asked_without_trial = False

    def release_data(self):
        """Drops the prepared data sets (kept between trials)."""
        self._prepared.clear()

    def prepared_data(self, config):
        """`prepare_data` once per distinct data setting (sequence length, features, label, ...)."""
        from keras_synapse.training.preparation import prepare_data

        key = data_key(config)
        if key not in self._prepared:
            self._prepared[key] = prepare_data(config, self.quick)
        return self._prepared[key]

    def pre_create_trial(self):
        # Hyperband and Bayesian oracles answer IDLE while other workers' trials
        # must finish first; keras-tuner's loop would ask again at once, forever.
        if self._asked_without_trial:
            time.sleep(1.0)
        self._asked_without_trial = True

    def on_trial_begin(self, trial):
        self._asked_without_trial = False
        super().on_trial_begin(trial)

    def run_trial(self, trial, *args, **kwargs):
        started = time.time()
        try:
            config = self.hypermodel.build(trial.hyperparameters)
            trial_dir = Path(self.get_trial_dir(trial.trial_id))
            records = score_folds(config, self.prepared_data(config), trial_dir, self.objective_name)
        except Exception as error:
            # keras-tuner records the traceback in the trial and moves on; say so here too.
            print(f"{self.tuner_id}: trial {trial.trial_id} failed: {type(error).__name__}: {error}")
            raise
        scores = [record["objective"] for record in records]
        mean = float(np.mean(scores))
        interval = score_interval(records, self.objective_name)
        n_validation = int(sum(record["n_validation"] for record in records))
        report = {"trial_id": trial.trial_id, "tuner_id": self.tuner_id, "host": socket.gethostname(),
                  "pid": os.getpid(), "objective": self.objective_name, "mean": mean, "interval": interval,
                  "n_validation": n_validation,
                  "values": {key: list(value) if isinstance(value, tuple) else value
                             for key, value in self.hypermodel.values(trial.hyperparameters).items()},
                  "epochs": config.epochs, "folds": records, "seconds": round(time.time() - started, 1)}
        (trial_dir / TRIAL_REPORT).write_text(json.dumps(report, indent=2, default=str))
        folds = ", ".join(f"{score:+.4f}" for score in scores)
        print(f"{self.tuner_id}: trial {trial.trial_id} mean {self.objective_name} {mean:+.4f} (folds {folds}; "
              f"{_format_interval(interval, self.objective_name)} on {n_validation} validation windows) "
              f"in {report['seconds']:.0f} s")
        # The oracle stores numbers only; `trial_rows` rebuilds the table from them.
        uncertainty = {"score_ci_low": interval["low"], "score_ci_high": interval["high"],
                       "score_standard_error": interval["standard_error"]}
        return {self.objective_name: mean,
                **{f"fold_{record['index']}_{self.objective_name}": record["objective"] for record in records},
                **{key: value for key, value in uncertainty.items() if np.isfinite(value)},
                "n_validation": float(n_validation),
                "epochs_trained": float(np.mean([record["epochs_trained"] for record in records]))}

    def search(self, *args, **kwargs):
        if role() == "chief":
            # keras-tuner's chief loop re-checks for idle workers every 20 s; this one every second.
            self.save()
            serve_oracle(self.oracle)
            return
        super().search(*args, **kwargs)


def serve_oracle(oracle, poll_seconds=1.0):
    """Serves `oracle` to the workers over gRPC until every worker has been told to stop and none is busy.

    keras-tuner 1.4's `oracle_chief.start_server`, with a failed bind
    reported and a shorter wait between checks.
    """
    import concurrent.futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise ConfigError(f"The chief cannot listen on {address} (KERASTUNER_ORACLE_IP:KERASTUNER_ORACLE_PORT): "
                          "is the port in use, or the address not this machine's?")
    server.start()
    print(f"chief: serving the oracle on {address}; waiting for workers")
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1).wait()


def build_tuner(config, search_space, tuner, objective, max_trials, quick=False, directory="tuning",
                overwrite=False):
    """The `ExperimentTuner` for a config and its search space.

    Raises:
        ConfigError: for an objective the experiment cannot report, or
            `val_loss` while the loss itself is searched.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"`objective` must be one of {', '.join(OBJECTIVES)}. Received: {objective!r}")
    searched = search_values(search_space, keras_tuner.HyperParameters(), config)
    if objective == "val_loss" and {"loss", "loss_weights"} & set(searched):
        raise ConfigError("The search space varies the loss, so val_loss values of different trials measure "
                          "different things; use --objective val_ic (or another metric) instead.")
    if config.heads and objective != "val_loss":
        raise ConfigError(f"Multi-task models log no {objective}; use --objective val_loss.")
    hypermodel = ExperimentHyperModel(config, search_space)
    oracle = build_oracle(tuner, objective, max_trials, config.epochs, config.seed)
    return ExperimentTuner(oracle, hypermodel, objective, quick=quick, directory=directory,
                           project_name=f"{config.name}_{tuner}_{objective}", overwrite=overwrite)


# --- Results -------------------------------------------------------------------------


def trial_rows(oracle, hypermodel, objective):
    """One dict per trial of the oracle, in trial order.

    Args:
        oracle: the search's oracle (its trials' stored metrics).
        hypermodel: the `ExperimentHyperModel`, to show the config values.
        objective: the objective's name.

    Returns:
        A list of dicts with `trial`, `tuner`, `status`, `objective` (the
        mean score, `None` if absent), `folds` (fold scores), `ci` (`(low,
        high)` or `None`), `standard_error` (`None` if absent),
        `n_validation` (`None` if absent), `values` and `message`.
    """
    rows = []
    tuners = getattr(oracle, "trial_tuners", {})
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        metrics = trial.metrics

        def stored(name):
            return metrics.get_last_value(name) if metrics.exists(name) else None

        folds = []
        while metrics.exists(f"fold_{len(folds)}_{objective}"):
            folds.append(metrics.get_last_value(f"fold_{len(folds)}_{objective}"))
        try:
            values = hypermodel.values(trial.hyperparameters.copy())
        except Exception:  # noqa: BLE001  (a trial whose values no longer build still gets its row)
            values = dict(trial.hyperparameters.values)
        low, high, n_validation = stored("score_ci_low"), stored("score_ci_high"), stored("n_validation")
        rows.append({"trial": trial_id, "tuner": tuners.get(trial_id, ""), "status": trial.status,
                     "objective": stored(objective), "folds": folds,
                     "ci": None if low is None or high is None else (low, high),
                     "standard_error": stored("score_standard_error"),
                     "n_validation": None if n_validation is None else int(n_validation), "values": values,
                     "message": (trial.message or "").strip().splitlines()[-1:] or [""]})
    return rows


def best_row(rows, objective):
    """The completed trial with the best finite mean objective, or `None`."""
    completed = _completed(rows)
    if not completed:
        return None
    sign = 1 if OBJECTIVES[objective] == "max" else -1
    return max(completed, key=lambda row: sign * row["objective"])


def _completed(rows):
    return [row for row in rows if row["status"] == "COMPLETED" and row["objective"] is not None
            and np.isfinite(row["objective"])]


def _format_value(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def _format_interval(interval, objective):
    """`95% CI [low, high]` of a `score_interval` dict (naming what it is of, if not the score), or `n/a (why)`."""
    if not np.isfinite(interval["standard_error"]):
        return f"95% CI n/a ({interval['note'] or 'no standard error'})"
    label = "95% CI" if interval["of"] == f"mean {objective}" else f"95% CI of {interval['of']}"
    return f"{label} [{interval['low']:+.4f}, {interval['high']:+.4f}]"


def interval_header(objective):
    """The header of the interval column, naming what the interval is of.

    Args:
        objective: the objective's name.

    Returns:
        E.g. `"95% CI of mean val_ic"`; for `val_loss`, `"95% CI of mean val
        MSE"` (see `SCORE_INTERVALS`).
    """
    return f"95% CI of {SCORE_INTERVALS.get(objective, (None, 'mean ' + objective))[1]}"


def format_results(rows, objective):
    """The results table: one line per trial, the best marked with `*`.

    Each line shows the trial's mean score, the 95% interval from its
    folds' bootstrap standard errors (`n/a` where there is none, e.g. a
    classifier's `val_loss`; the trial's `synapse_trial.json` says why), the
    validation windows it was scored on (summed over folds), the fold
    scores and the hyperparameters.

    Args:
        rows: from `trial_rows`.
        objective: the objective's name.

    Returns:
        The table as one string, a header line first.
    """
    best = best_row(rows, objective)
    num_folds = max((len(row["folds"]) for row in rows), default=0)
    ci_header = interval_header(objective)
    ci_width = max(len(ci_header), 20) + 2
    header = (f"  {'trial':<6}{'tuner':<8}{'status':<10}{'mean ' + objective:>16}{ci_header:>{ci_width}}"
              f"{'n_val':>8}" + "".join(f"{'fold ' + str(index):>10}" for index in range(num_folds))
              + "  hyperparameters")
    lines = [header]
    for row in rows:
        mark = "*" if best is not None and row["trial"] == best["trial"] else " "
        score = "n/a" if row["objective"] is None else f"{row['objective']:+.4f}"
        ci = "n/a" if row["ci"] is None else f"[{row['ci'][0]:+.4f}, {row['ci'][1]:+.4f}]"
        n_validation = "n/a" if row["n_validation"] is None else str(row["n_validation"])
        folds = "".join(f"{value:>+10.4f}" for value in row["folds"]) + " " * 10 * (num_folds - len(row["folds"]))
        values = " ".join(f"{key}={_format_value(value)}" for key, value in row["values"].items())
        if row["status"] != "COMPLETED" and row["message"][0]:
            values += f"  [{row['message'][0][:120]}]"
        lines.append(f"{mark} {row['trial']:<6}{row['tuner']:<8}{row['status']:<10}{score:>16}{ci:>{ci_width}}"
                     f"{n_validation:>8}{folds}  {values}")
    return "\n".join(lines)


def expected_maximum(num_draws):
    """The expected maximum of `num_draws` independent standard normals (0 for one; ~1.87 for 20).

    Args:
        num_draws: how many draws, >= 1.

    Returns:
        `E[max(Z_1, ..., Z_n)]`, by quadrature of `n x phi(x) Phi(x)^(n-1)`.

    Raises:
        ConfigError: for `num_draws` < 1.
    """
    from scipy import stats

    if num_draws < 1:
        raise ConfigError(f"`num_draws` must be >= 1. Received: {num_draws}")
    grid = np.linspace(-12.0, 12.0, 24001)
    density = num_draws * stats.norm.pdf(grid) * stats.norm.cdf(grid) ** (num_draws - 1)
    return float(np.sum(grid * density) * (grid[1] - grid[0]))


def selection_bias_line(rows, objective):
    """One line: how far the best of the trials is expected to beat the truth by selection alone.

    If every trial were equally good, their mean scores would differ only by
    noise, and the best would lie about `E[max of N normals]` standard
    errors beyond the common truth: an upper bound, since trials scored on
    the same windows have correlated errors (for equicorrelated errors the
    factor shrinks by `sqrt(1 - correlation)`). The typical standard error
    is the median over the completed trials.

    Args:
        rows: from `trial_rows`.
        objective: the objective's name.

    Returns:
        The line, ending with why the tuned run's test verdict is not
        inflated by the selection.
    """
    completed = _completed(rows)
    errors = [row["standard_error"] for row in completed
              if row["standard_error"] is not None and np.isfinite(row["standard_error"])]
    untouched = ("The test folds keras_synapse.train reports were never seen by the search, so the tuned run's "
                 "test verdict is not inflated by it.")
    if len(completed) < 2:
        return f"Selection: {len(completed)} completed trial(s), nothing selected. {untouched}"
    if not errors:
        return (f"Selection: the best of {len(completed)} trials looks better than the truth by chance, by an amount "
                f"not sized here (no standard errors; see the trials' {TRIAL_REPORT}). {untouched}")
    factor, typical = expected_maximum(len(completed)), float(np.median(errors))
    of = " of the val MSE" if objective == "val_loss" else ""
    return (f"Selection: if all {len(completed)} trials were equally good, the best mean {objective} would still "
            f"look better than the truth by about {factor:.2f} x {typical:.4f} = {factor * typical:.4f} by chance "
            f"(E[max of {len(completed)} normals] x the median trial SE{of}; less when the trials' errors are "
            f"correlated). {untouched}")


def write_results_csv(path, rows):
    """Writes the table as CSV.

    Args:
        path: the file to write.
        rows: from `trial_rows`. Columns: trial, tuner, status, mean,
            ci_low, ci_high, standard_error (of the mean), n_validation,
            fold_<i>, then one column per searched field; empty where a
            trial has no value.
    """
    num_folds = max((len(row["folds"]) for row in rows), default=0)
    fields = list(dict.fromkeys(key for row in rows for key in row["values"]))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "tuner", "status", "mean", "ci_low", "ci_high", "standard_error", "n_validation"]
                        + [f"fold_{index}" for index in range(num_folds)] + fields)
        for row in rows:
            ci = row["ci"] or (None, None)
            writer.writerow([row["trial"], row["tuner"], row["status"], row["objective"], *ci, row["standard_error"],
                             row["n_validation"]]
                            + (row["folds"] + [None] * num_folds)[:num_folds]
                            + [_format_value(row["values"].get(field, "")) for field in fields])


def _changed_fields(base, config):
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)
            if getattr(config, field.name) != getattr(base, field.name)}


def _display_path(path):
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _command_line(args):
    parts = ["python -m keras_synapse.tune", _display_path(args.experiment), f"--max-trials {args.max_trials}",
             f"--tuner {args.tuner}", f"--objective {args.objective}"]
    parts += ["--quick"] if args.quick else []
    parts += [f"--{key} {getattr(args, key)}" for key in ("data", "epochs", "seed") if getattr(args, key) is not None]
    parts += [f"--set {override}" for override in args.overrides]
    return " ".join(parts)


def _summary_line(best, args):
    folds = ", ".join(f"{value:+.4f}" for value in best["folds"])
    interval = "" if best["ci"] is None else (
        f" ({interval_header(args.objective)} [{best['ci'][0]:+.4f}, {best['ci'][1]:+.4f}])")
    return (f"Best of the search: trial {best['trial']}, mean {args.objective} {best['objective']:+.4f}{interval} "
            f"over {len(best['folds'])} folds ({folds}), scored on the validation carve-outs of the folds before the "
            "first test fold; the test folds keras_synapse.train reports for this file were never seen by the search.")


def write_tuned_experiment(path, base_experiment, name, tuned, overrides, summary="", command=""):
    """Writes an experiment file: the base experiment's config with the tuned values and overrides.

    Next to the base experiment it imports it by name (`import shared_backbone`),
    elsewhere it loads it by its path relative to the new file.

    Args:
        path: the file to write.
        base_experiment: the base experiment file.
        name: the tuned experiment's `name` (its registry entry).
        tuned: dict field -> the search's best value.
        overrides: dict field -> value set on the tune command line.
        summary: a sentence on how the values were found. Defaults to `""`.
        command: the tune command. Defaults to `""`.
    """
    path, base_experiment = Path(path), Path(base_experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    same_directory = path.resolve().parent == base_experiment.resolve().parent
    module = base_experiment.stem
    if same_directory and module.isidentifier():
        imports = f"import dataclasses\n\nimport {module}\n"
        base_call = f"{module}.get_config(quick)"
    else:
        base, directory = base_experiment.resolve(), path.resolve().parent
        common = Path(os.path.commonpath([base, directory]))
        if common == common.parent:  # nothing in common but the root: an absolute path
            location = repr(str(base))
        else:
            location = f"Path(__file__).resolve().parent / {os.path.relpath(base, directory)!r}"
        imports = ("import dataclasses\nfrom pathlib import Path\n\n"
                   f"from keras_synapse.config import load_experiment\n\nBASE_EXPERIMENT = {location}\n")
        base_call = "load_experiment(BASE_EXPERIMENT, quick=quick)"

    def literal(values):
        if not values:
            return "{}"
        return "{\n" + "".join(f"    {key!r}: {_plain(value)!r},\n" for key, value in values.items()) + "}"

    docstring = "\n".join([
        f'"""{base_experiment.stem} with the hyperparameters found by keras_synapse.tune.',
        "",
        f"    python -m keras_synapse.train {_display_path(path)}",
        f"    python -m keras_synapse.train {_display_path(path)} --quick   # smoke run",
        "",
        *([textwrap.fill(summary, 100), ""] if summary else []),
        *([textwrap.fill(f"Written by: {command}", 100, subsequent_indent="    "), ""] if command else []),
        '"""',
    ])
    text = (f"{docstring}\n\n{imports}\n"
            f"# The search's best values.\nTUNED = {literal(tuned)}\n"
            f"# Settings given on the tune command line (--set, --epochs, --data, --seed).\n"
            f"OVERRIDES = {literal(overrides)}\n\n\n"
            "def get_config(quick=False):\n"
            f"    return dataclasses.replace({base_call}, **{{**OVERRIDES, **TUNED, 'name': {name!r}}})\n")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def _check_tuned_file(path, quick, config, tuned):
    """Loads the written file and checks it reproduces the best trial's config (bar its name)."""
    from keras_synapse.config import load_experiment

    loaded = load_experiment(path, quick=quick)
    expected = dataclasses.replace(config, **tuned, name=loaded.name)
    if loaded != expected:
        raise SynapseError(f"{path} does not reproduce the best configuration: "
                           f"{_changed_fields(expected, loaded)} (please report this bug)")
    return loaded


if __name__ == "__main__":
    sys.exit(main())
