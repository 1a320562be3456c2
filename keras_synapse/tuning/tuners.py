"""keras-tuner's hypermodel, oracle and project for an experiment; its trials run on an executor (`tuning.search`).
"""

import dataclasses
import importlib.util
import os

import keras_tuner  # imports TensorFlow

from keras_synapse.errors import ConfigError
from keras_synapse.tuning.scoring import OBJECTIVES
from keras_synapse.tuning.search_space import data_key, search_values

TUNERS = ("random", "bayesian", "hyperband")

# keras-tuner's gRPC chief/worker mode reads these; `--executor ray` replaced it.
GRPC_VARIABLES = ("KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


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
    """Oracle mixin: records the tuner id (the slot: `tuner0`, `tuner1`, ...) of each trial, in `oracle.json`.

    Saved as `trial_tuners`; the results table's `tuner` column.
    """

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
    """The search's project: its oracle, hypermodel and directory, and the data its trials share.

    keras-tuner's constructor gives the project its directory, resumes an
    existing one (or, with `overwrite`, discards it) and registers the search
    space with the oracle. The trials do not run through keras-tuner's
    `run_trial` loop: `search` hands them to an executor
    (`keras_synapse.tuning.search.run_search`), here or on a Ray cluster.

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

    def search(self, executor=None, max_concurrent_trials=None):
        """Runs the oracle's trials on `executor` until it stops; see `keras_synapse.tuning.search.run_search`.

        Args:
            executor: from `keras_synapse.training.executors.make_executor`,
                or `None` for this process. Defaults to `None`.
            max_concurrent_trials: at most this many trials at once, or
                `None` for as many as the executor can run. Defaults to `None`.

        Returns:
            `run_search`'s record of where each trial ran.
        """
        from keras_synapse.training.executors import LocalExecutor
        from keras_synapse.tuning.search import run_search

        return run_search(self, executor or LocalExecutor(), max_concurrent_trials)


def build_tuner(config, search_space, tuner, objective, max_trials, quick=False, directory="tuning",
                overwrite=False):
    """The `ExperimentTuner` for a config and its search space.

    Raises:
        ConfigError: when keras-tuner's gRPC variables are set (replaced by
            `--executor ray`).
        ConfigError: for an objective the experiment cannot report, or
            `val_loss` while the loss itself is searched.
    """
    grpc = [name for name in GRPC_VARIABLES if os.environ.get(name)]
    if grpc:
        raise ConfigError(f"{', '.join(grpc)} is set: keras-tuner's gRPC chief/worker mode was replaced by Ray. "
                          "Unset it and run one command, e.g. `python -m keras_synapse.tune EXPERIMENT.py "
                          "--executor ray://HEAD:10001` (or RAY_ADDRESS=HEAD:6379 with --executor ray); the "
                          "cluster's workers run the trials.")
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
