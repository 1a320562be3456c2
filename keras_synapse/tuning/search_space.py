"""An experiment's `search_space(hp)`: loading it, drawing config values from it, the folds it is scored on,
and which config fields share one prepared data set.
"""

import dataclasses

import numpy as np

from keras_synapse.errors import ConfigError


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


def plain_value(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        # hp.Float(step=0.05) yields 0.30000000000000004; trials and the tuned file use 0.3.
        return float(f"{value:.12g}")
    if isinstance(value, (list, tuple)):
        return tuple(plain_value(item) for item in value)
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
    return {key: plain_value(value) for key, value in values.items()}


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

    splitter = GappedTimeSeriesCV(config.n_splits, config.test_size, config.gap, config.train_bars)
    first_test = splitter.split(calendar)[0]
    search_calendar = calendar[calendar <= first_test.train_end]
    try:
        return splitter.split(search_calendar)
    except ConfigError as error:
        raise ConfigError(f"The search period (the {len(search_calendar)} bars before the first test fold) is too "
                          f"short: {error} Use more data, or fewer folds.") from None


def data_key(config):
    """What decides `prepare_data`'s result: the fields of the config's `PREPARED_DATA_GROUPS`.

    Trials that differ only in other fields (the model, the fitting, the
    validation split) share one prepared data set.
    """
    from keras_synapse.config import PREPARED_DATA_GROUPS, group_fields

    return tuple((name, getattr(config, name)) for name in group_fields(*PREPARED_DATA_GROUPS))
