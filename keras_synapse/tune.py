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
TensorBoard logs and `synapse_trial.json` (tuner id, node, host, per-fold
scores and standard errors); `executor.json` (where this run's trials ran);
`results.csv` and the printed table of every trial; the best configuration
as a ready-to-run experiment file (default `tuned_<experiment>.py` beside the
experiment); and, unless `--no-train`, a normal `keras_synapse.train` run of
that file (full CV, baselines, backtest, registration as
`<experiment>_tuned`), its test IC printed beside the best trial's
validation score.

Where trials run (`--executor`): `local` (the default) scores them one after
another in this process. `ray` runs each trial as a Ray task on the cluster
in `RAY_ADDRESS` (or a new one on this machine), `ray://HEAD:10001` through
Ray Client; this command holds the oracle and keeps up to the cluster's CPUs
/ `--cpus-per-task` trials running (`--max-concurrent-trials` caps it),
creating the next trial as each one ends. Workers may join or leave while it
runs; a trial whose worker dies is retried. Each task runs TensorFlow with
`--cpus-per-task` intra-op threads: with the same seeds and the same
`--cpus-per-task`, `--executor ray` and `--executor local` give the same
trials and scores (random search, tested in `tests/tuning/test_tune_ray.py`;
a Bayesian oracle proposes from the trials ended so far, which concurrency
changes). It needs
`pip install -e ".[ray]"`; see `keras_synapse.tuning.search`.

Hyperband trains each trial from scratch for the `tuner/epochs` budget the
oracle assigns (no warm start from the previous round); its `max_epochs` is the
config's `epochs`, and its brackets repeat until `--max-trials`. `bayesian`
needs scikit-learn (`pip install scikit-learn`).
"""

import argparse
import json
import sys
import time
from pathlib import Path

from keras_synapse.cli import add_executor_arguments
from keras_synapse.errors import SynapseError
from keras_synapse.tuning.results import (
    best_row,
    completed_rows,
    format_results,
    overfitting,
    search_versus_test_line,
    selection_bias_line,
    trial_rows,
    write_results_csv,
)
from keras_synapse.tuning.scoring import OBJECTIVES
from keras_synapse.tuning.search_space import load_search_space
from keras_synapse.tuning.tuned_file import (
    changed_fields,
    check_tuned_file,
    command_line,
    display_path,
    summary_line,
    write_tuned_experiment,
)
from keras_synapse.tuning.tuners import TUNERS, build_tuner

DESCRIPTION = """Tune an experiment's search space with keras-tuner, scored on gapped CV folds.

Trials are scored on the validation carve-outs of the experiment's folds, inside
the period before its first test fold; the best configuration is written as an
experiment file and trained with keras_synapse.train (full CV, registration).
On a Ray cluster: --executor ray (the cluster in RAY_ADDRESS) or
--executor ray://HEAD:10001; this command holds the search, the cluster's
workers run the trials, several at once (see the module docstring).
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m keras_synapse.tune", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="experiment file defining get_config(quick=False) and search_space(hp)")
    parser.add_argument("--max-trials", type=int, default=10, help="trials to run in all. Defaults to 10")
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
                        "instead of resuming it")
    add_executor_arguments(parser, "trials")
    parser.add_argument("--max-concurrent-trials", type=int, help="at most this many trials at once. Defaults "
                        "to as many as the cluster's CPUs allow (1 locally)")
    parser.add_argument("--tuned-file", help="where to write the best configuration as an experiment file. "
                        "Defaults to tuned_<experiment>.py beside the experiment")
    parser.add_argument("--no-train", action="store_true", help="write the tuned experiment file but do not train "
                        "and register it")
    parser.add_argument("--output", default="runs", help="run directory root of the final training. Defaults to runs/")
    parser.add_argument("--registry", default="saved_models", help="model registry root. Defaults to saved_models/")
    args = parser.parse_args(argv)
    if args.max_trials < 1:
        parser.error(f"--max-trials must be >= 1. Received: {args.max_trials}")
    if args.max_concurrent_trials is not None and args.max_concurrent_trials < 1:
        parser.error(f"--max-concurrent-trials must be >= 1. Received: {args.max_concurrent_trials}")
    args.resume = None  # keras_synapse.cli.resolve_config reads it
    return args


def main(argv=None):
    from keras_synapse.cli import run_command

    return run_command(run, parse_args(sys.argv[1:] if argv is None else argv))


def run(args):
    """Runs the search; returns the tuned experiment file."""
    from keras_synapse.cli import resolve_config
    from keras_synapse.training.executors import make_executor
    from keras_synapse.console import quiet_tensorflow

    # --- Config: the experiment, its overrides and its search space ----------
    config = resolve_config(args)
    search_space = load_search_space(args.experiment)
    quiet_tensorflow()
    # Before TensorFlow starts here: the local executor sets its thread counts.
    executor = make_executor(args.executor, args.cpus_per_task)
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()

    # --- Search: the oracle here, its trials on the executor -----------------
    tuner = build_tuner(config, search_space, args.tuner, args.objective, args.max_trials, args.quick,
                        directory=args.directory, overwrite=args.overwrite)
    where = "here" if executor.kind == "local" else (
        f"on Ray ({executor.record()['address']}, {executor.capacity()} trial(s) at once at "
        f"{executor.cpus_per_task} CPU(s) each)")
    print(f"tuning {config.name}: {args.tuner} search, {args.max_trials} trials, objective {args.objective} "
          f"({OBJECTIVES[args.objective]}imized), {where}, in {tuner.project_dir}")
    started = time.time()
    record = tuner.search(executor, args.max_concurrent_trials)
    nodes = sorted({trial["node"] for trial in record["trials"].values() if trial["node"]})
    print(f"{len(record['trials'])} trial(s) in {time.time() - started:.0f} s on {len(nodes)} node(s), "
          f"up to {record['max_concurrent_trials']} at once")

    # --- Results: the table, results.csv, the best configuration -------------
    rows = trial_rows(tuner.oracle, tuner.hypermodel, args.objective)
    print()
    print(format_results(rows, args.objective))
    print(selection_bias_line(rows, args.objective))
    overfitting_line, pbo = overfitting(tuner.project_dir, rows, args.objective)
    print(overfitting_line)
    write_results_csv(Path(tuner.project_dir) / "results.csv", rows)
    if pbo is not None:
        (Path(tuner.project_dir) / "pbo.json").write_text(json.dumps(pbo, indent=2))
    best = best_row(rows, args.objective)
    if best is None:
        raise SynapseError(f"No trial completed; see the messages above and the trials in {tuner.project_dir}.")
    base_config = resolve_config(argparse.Namespace(**{**vars(args), "overrides": [], "data": None, "epochs": None,
                                                       "seed": None}))
    overrides = changed_fields(base_config, config)
    tuned_file = Path(args.tuned_file) if args.tuned_file else (
        Path(args.experiment).resolve().parent / f"tuned_{Path(args.experiment).stem}.py")
    write_tuned_experiment(tuned_file, args.experiment, f"{config.name}_tuned", best["values"], overrides,
                           summary=summary_line(best, args), command=command_line(args))
    tuned = check_tuned_file(tuned_file, args.quick, config, best["values"])
    print(f"\nbest trial {best['trial']}: mean {args.objective} {best['objective']:+.4f}; "
          f"tuned experiment: {tuned_file} (name {tuned.name})")

    # --- Register: the tuned experiment trained as any other ----------------
    if args.no_train:
        print(f"train and register it with: python -m keras_synapse.train {display_path(tuned_file)}")
        return tuned_file
    from keras_synapse import train

    tuner.release_data()
    # The tuned experiment's folds run where the trials ran.
    train_args = [str(tuned_file), "--output", args.output, "--registry", args.registry,
                  "--executor", args.executor] + (["--quick"] if args.quick else []) + (
        ["--cpus-per-task", str(args.cpus_per_task)] if args.cpus_per_task else [])
    print(f"\ntraining the tuned experiment: python -m keras_synapse.train {' '.join(train_args)}")
    run_dir = train.run(train.parse_args(train_args))
    print(search_versus_test_line(best, args.objective, len(completed_rows(rows)), run_dir))
    return tuned_file


if __name__ == "__main__":
    sys.exit(main())
