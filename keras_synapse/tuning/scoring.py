"""A trial's score: the objective's best epoch on each search fold, averaged, with the interval of that mean."""

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from keras_synapse.errors import ConfigError
from keras_synapse.tuning.search_space import search_folds

# Objective -> direction. Each is logged per epoch on the validation carve-out.
OBJECTIVES = {"val_ic": "max", "val_rank_ic": "max", "val_directional_accuracy": "max",
              "val_pearson_correlation": "max", "val_loss": "min", "val_mse": "min"}


def fold_score(history, objective, monitor):
    """The objective at the epoch early stopping kept, and that epoch.

    Early stopping restores the weights of the first epoch with the best
    `monitor` (strictly better only, so ties keep the earliest), in the
    direction `keras_synapse.training.choices.MONITORS` gives; the fold's score must
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
    from keras_synapse.training.choices import MONITORS

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
    from keras_synapse.models.highway import highway_heads
    from keras_synapse.training.preparation import fold_windows
    from keras_synapse.training.trainer import FoldTrainer
    from keras_synapse.windows.splitters import iso_utc

    from keras_synapse.training.tree_trainer import is_tree

    if is_tree(config):
        raise ConfigError(f"`tune` searches a network's settings; model={config.model!r} is a tree, whose number of "
                          "trees every run already chooses on the validation windows. Train it with "
                          "python -m keras_synapse.train.")
    calendar = data.windowed.calendar
    # The carve-out scores each fit, so a highway's ridge is not refitted with it.
    trainer = FoldTrainer(config, data, run_dir, refit_highway=False)
    records = []
    for fold in search_folds(calendar, config):
        split = fold_windows(data.windowed, calendar, fold, config)
        model, history = trainer.fit(split, f"fold_{fold.index}")
        shutil.rmtree(Path(run_dir) / "checkpoints" / f"fold_{fold.index}", ignore_errors=True)
        if not any((Path(run_dir) / "checkpoints").iterdir()):
            (Path(run_dir) / "checkpoints").rmdir()
        score, epoch = fold_score(history, objective, config.monitor)
        uncertainty = validation_uncertainty(model, data, split["validation"], objective, config)
        if highway_heads(model):
            # Choosing the network's share changed the model after its epoch was kept: score the model kept.
            score = kept_model_score(model, data, split, objective, config, uncertainty)
        records.append({"index": fold.index, "objective": score, "selected_epoch": epoch,
                        "epochs_trained": len(history.get("loss", [])),
                        "fit": [iso_utc(calendar[0]), iso_utc(split["fit_end"])],
                        "validation": [iso_utc(split["validation_start"]), iso_utc(fold.train_end)],
                        "n_fit": int(len(split["fit"])), "n_validation": int(len(split["validation"])),
                        **uncertainty})
    return records


def kept_model_score(model, data, split, objective, config, uncertainty):
    """`objective` of `model` as it now is, on the fold's validation windows.

    The bootstrap's point value is that score for every objective but
    `val_loss` (its interval is of the MSE, without the weights' penalty),
    which Keras evaluates.

    Args:
        model: the fold's model.
        data: the `PreparedData`.
        split: the fold's windows (`validation`).
        objective: the objective's name.
        config: the trial's `ExperimentConfig` (`batch_size`).
        uncertainty: what `validation_uncertainty` returned for this model.

    Returns:
        The score, a float.
    """
    if objective != "val_loss" and uncertainty["interval_metric"] is not None:
        return float(uncertainty["interval_value"])
    from keras_synapse.windows.dataset import make_dataset

    evaluated = model.evaluate(make_dataset(data.windowed, split["validation"], config.batch_size),
                               return_dict=True, verbose=0)
    return float(evaluated[objective.removeprefix("val_")])


def score_trial(config, data, objective, trial_dir=None):
    """Scores one trial's config on its search folds: the task a search runs, here or on a Ray worker.

    A module-level function of picklable arguments, so an executor can run
    it anywhere (`keras_synapse.training.executors`). TensorFlow runs
    deterministic ops, as in the command's own process, so a trial scores
    the same wherever it runs (given the same TensorFlow threads).

    Args:
        config: the trial's `ExperimentConfig` (the search space's values
            applied).
        data: its `PreparedData` (or what the executor shared of it).
        objective: the objective's name (a key of `OBJECTIVES`).
        trial_dir: the trial's directory, where the folds' TensorBoard logs
            go; `None` on a machine that may not see it: the fits then run in
            a temporary directory and the logs come back in `files`.
            Defaults to `None`.

    Returns:
        A dict: `objective`, `mean` (the trial's score, the mean over folds),
        `interval` (see `score_interval`), `n_validation`, `epochs`,
        `folds` (see `score_folds`), `host`, `pid`, `seconds` and `files`
        (relative path -> bytes of what the fits wrote, empty when
        `trial_dir` was given).
    """
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    started = time.time()
    files = {}
    if trial_dir is not None:
        records = score_folds(config, data, trial_dir, objective)
    else:
        with tempfile.TemporaryDirectory(prefix="synapse_trial_") as directory:
            records = score_folds(config, data, directory, objective)
            files = {str(path.relative_to(directory)): path.read_bytes()
                     for path in sorted(Path(directory).rglob("*")) if path.is_file()}
    return {"objective": objective, "mean": float(np.mean([record["objective"] for record in records])),
            "interval": score_interval(records, objective),
            "n_validation": int(sum(record["n_validation"] for record in records)), "epochs": config.epochs,
            "folds": records, "host": socket.gethostname(), "pid": os.getpid(),
            "seconds": round(time.time() - started, 1), "files": files}


def trial_metrics(report):
    """What the oracle stores of a `score_trial` report: numbers only (`trial_rows` rebuilds the table from them).

    Args:
        report: from `score_trial`.

    Returns:
        A dict metric name -> float: the objective (the mean), each fold's
        score (`fold_<i>_<objective>`), the interval's `score_ci_low`,
        `score_ci_high` and `score_standard_error` where finite,
        `n_validation` and `epochs_trained` (the folds' mean).
    """
    objective, records, interval = report["objective"], report["folds"], report["interval"]
    uncertainty = {"score_ci_low": interval["low"], "score_ci_high": interval["high"],
                   "score_standard_error": interval["standard_error"]}
    return {objective: report["mean"],
            **{f"fold_{record['index']}_{objective}": record["objective"] for record in records},
            **{key: value for key, value in uncertainty.items() if np.isfinite(value)},
            "n_validation": float(report["n_validation"]),
            "epochs_trained": float(np.mean([record["epochs_trained"] for record in records]))}


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
        `interval_note` (why there is none, or `""`), and `date_scores`
        (ISO timestamp -> that date's share of the metric, when there is one).
    """
    from keras_synapse.evaluation.intervals import bootstrap_metrics
    from keras_synapse.evaluation.overfitting import date_scores
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
    # Per date, for the probability of backtest overfitting over the trials (`keras_synapse.evaluation.overfitting`).
    scores = date_scores(frame, metric)
    return {"interval_metric": metric, "interval_value": result.point["prediction"][metric],
            "standard_error": result.standard_error("prediction", metric), "interval_note": "",
            "date_scores": {timestamp.isoformat(): float(value) for timestamp, value in scores.items()}}


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
