"""A search's driver: the keras-tuner oracle held here, its trials scored on an executor, several at once.

The oracle (random, Bayesian or Hyperband, over the experiment's
`search_space`) decides every trial, through keras-tuner's public oracle API
only: `create_trial`, `update_trial`, `end_trial`. Each trial is one task,
`keras_synapse.tuning.scoring.score_trial` on its config and the shared
prepared data, run by the executor (`keras_synapse.training.executors`):
one after another in this process (`local`), or as Ray tasks spread over a
cluster (`ray`), up to as many at once as the cluster's CPUs allow. As each
ends, its score goes to the oracle, the trial is ended, and the next one is
created in the freed slot, so a Bayesian oracle sees every result that has
come in before it proposes. Each concurrent slot is a keras-tuner tuner id
(`tuner0`, `tuner1`, ...; `oracle.json` records each trial's), and each
trial's report names the node and host that ran it.

Ray retries a task whose worker dies (`executors.MAX_RETRIES`); a task that
raises, or whose retries all died, is ended as a failed trial with its
traceback, and the search goes on (keras-tuner stops it after three
consecutive failures). Nodes may join or leave while it runs: the number of
slots is read again before each new trial.
"""

import itertools
import json
import time
import traceback
from pathlib import Path

import keras_tuner

from keras_synapse.errors import ConfigError, SynapseError
from keras_synapse.tuning.results import TRIAL_REPORT, format_interval
from keras_synapse.tuning.scoring import score_trial, trial_metrics
from keras_synapse.tuning.search_space import data_key

# In the project directory: the executor's record and where each trial of this run ran.
EXECUTOR_REPORT = "executor.json"

# Hyperband answers IDLE until a round's trials have all ended; with none running, wait this long and ask again.
IDLE_SECONDS = 1.0

RUNNING, STOPPED = keras_tuner.engine.trial.TrialStatus.RUNNING, keras_tuner.engine.trial.TrialStatus.STOPPED


def run_search(tuner, executor, max_concurrent_trials=None, score=score_trial):
    """Runs the oracle's trials on `executor` until the oracle stops, ending each as it completes.

    Trials an interrupted search left running (resuming a project) are run
    again first. Each completed trial's `synapse_trial.json` is written in
    its trial directory (with the TensorBoard logs a remote task sent back),
    its metrics go to `oracle.update_trial`, and it is ended with
    `oracle.end_trial` and the project saved, as keras-tuner's own loop does.

    Args:
        tuner: the `ExperimentTuner` (its oracle, hypermodel, project
            directory and prepared data).
        executor: a `LocalExecutor` or `RayExecutor`.
        max_concurrent_trials: at most this many trials at once, or `None`
            for the executor's `capacity()` (1 locally; on Ray the cluster's
            CPUs per task, read again before each new trial). Defaults to
            `None`.
        score: the module-level function scoring one trial, called as
            `score(config, data, objective, trial_dir)` and returning a
            `score_trial` report. Defaults to `score_trial`.

    Returns:
        The record written to `EXECUTOR_REPORT` in the project: the
        executor's `record()`, `max_concurrent_trials` (the most that ran at
        once) and `trials` (trial id -> `tuner_id`, `node`, `host`,
        `status`), for this run's trials.

    Raises:
        ConfigError: for `max_concurrent_trials` < 1.
        SynapseError: when keras-tuner stops the search after consecutive
            failed trials (the last one's error is in the message).
    """
    if max_concurrent_trials is not None and (not isinstance(max_concurrent_trials, int) or max_concurrent_trials < 1):
        raise ConfigError(f"`--max-concurrent-trials` must be an integer >= 1. Received: {max_concurrent_trials!r}")
    oracle = tuner.oracle
    shared = {}  # data key -> what the executor shared of that prepared data
    running = {}  # handle -> (trial, tuner id)
    ran = {}
    most_at_once = 0

    def start(trial, tuner_id):
        nonlocal most_at_once
        config = tuner.hypermodel.build(trial.hyperparameters)
        key = data_key(config)
        if key not in shared:
            shared[key] = executor.share(tuner.prepared_data(config))
        # A remote task may run where this directory does not exist: its logs come back as bytes.
        trial_dir = None if executor.remote else tuner.get_trial_dir(trial.trial_id)
        running[executor.submit(score, (config, shared[key], tuner.objective_name, trial_dir))] = (trial, tuner_id)
        most_at_once = max(most_at_once, len(running))

    def fill():
        """Creates trials into the free slots; returns the oracle's last answer (RUNNING if all slots filled)."""
        capacity = executor.capacity()
        limit = capacity if max_concurrent_trials is None else min(max_concurrent_trials, capacity)
        while len(running) < limit:
            busy = {tuner_id for _, tuner_id in running.values()}
            tuner_id = next(f"tuner{index}" for index in itertools.count() if f"tuner{index}" not in busy)
            trial = oracle.create_trial(tuner_id)
            if trial.status != RUNNING:
                return trial.status
            start(trial, tuner_id)
        return RUNNING

    for tuner_id in sorted(oracle.ongoing_trials):
        start(oracle.create_trial(tuner_id), tuner_id)  # the oracle hands a tuner id its unfinished trial back
    while True:
        status = fill()
        if not running:
            if status == STOPPED:
                break
            time.sleep(IDLE_SECONDS)
            continue
        handle, outcome = executor.wait_any(list(running))
        trial, tuner_id = running.pop(handle)
        finish_trial(tuner, trial, tuner_id, outcome)
        ran[trial.trial_id] = {"tuner_id": tuner_id, "node": outcome.node,
                               "host": None if outcome.error else outcome.value["host"],
                               "status": oracle.get_trial(trial.trial_id).status}
    record = {**executor.record(), "max_concurrent_trials": most_at_once, "trials": ran}
    (Path(tuner.project_dir) / EXECUTOR_REPORT).write_text(json.dumps(record, indent=2))
    return record


def finish_trial(tuner, trial, tuner_id, outcome):
    """Reports one ended task to the oracle: the trial's report and metrics, or its error; then ends the trial.

    Args:
        tuner: the `ExperimentTuner`.
        trial: the oracle's `Trial`.
        tuner_id: the slot it ran in.
        outcome: the executor's `TaskOutcome` (`value` a `score_trial`
            report).

    Raises:
        SynapseError: when the oracle stops the search after consecutive
            failures.
    """
    objective = tuner.objective_name
    if outcome.error is None:
        report = dict(outcome.value)
        trial_dir = Path(tuner.get_trial_dir(trial.trial_id))
        for relative, data in report.pop("files", {}).items():
            (trial_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            (trial_dir / relative).write_bytes(data)
        values = {key: list(value) if isinstance(value, tuple) else value
                  for key, value in tuner.hypermodel.values(trial.hyperparameters).items()}
        report = {"trial_id": trial.trial_id, "tuner_id": tuner_id, "node": outcome.node, **report,
                  "values": values}
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / TRIAL_REPORT).write_text(json.dumps(report, indent=2, default=str))
        folds = ", ".join(f"{record['objective']:+.4f}" for record in report["folds"])
        print(f"{tuner_id}: trial {trial.trial_id} mean {objective} {report['mean']:+.4f} (folds {folds}; "
              f"{format_interval(report['interval'], objective)} on {report['n_validation']} validation windows) "
              f"in {report['seconds']:.0f} s on {report['host']}")
        tuner.oracle.update_trial(trial.trial_id, trial_metrics(report))
        trial.status = keras_tuner.engine.trial.TrialStatus.COMPLETED
    else:
        error = outcome.error
        if isinstance(error, keras_tuner.errors.FatalError):
            raise error
        # As keras-tuner's loop: a FailedTrialError is final, anything else INVALID (retried if the oracle allows).
        failed = isinstance(error, keras_tuner.errors.FailedTrialError)
        trial.status = keras_tuner.engine.trial.TrialStatus.FAILED if failed else \
            keras_tuner.engine.trial.TrialStatus.INVALID
        trial.message = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        last_line = (str(error).strip().splitlines() or [""])[-1]
        print(f"{tuner_id}: trial {trial.trial_id} failed: {type(error).__name__}: {last_line}")
    try:
        tuner.oracle.end_trial(trial)
    except RuntimeError as error:  # keras-tuner's "Number of consecutive failures exceeded the limit"
        raise SynapseError(f"The search stopped: {error}".strip()) from None
    tuner.save()
