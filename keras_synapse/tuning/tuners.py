"""keras-tuner's hypermodel, tuner and oracle for an experiment, standalone or distributed (chief and workers over gRPC).
"""

import dataclasses
import importlib.util
import json
import os
import socket
import time
from pathlib import Path

import keras_tuner  # imports TensorFlow
import numpy as np

from keras_synapse.errors import ConfigError
from keras_synapse.tuning.results import TRIAL_REPORT, format_interval
from keras_synapse.tuning.scoring import OBJECTIVES, score_folds, score_interval
from keras_synapse.tuning.search_space import data_key, search_values

TUNERS = ("random", "bayesian", "hyperband")




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
              f"{format_interval(interval, self.objective_name)} on {n_validation} validation windows) "
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
