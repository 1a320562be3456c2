"""Bars -> features + labels -> stacked windows, and each fold's fit, validation and test windows.

Runs before TensorFlow is imported, so bad input fails fast with a clear
message and leaves no run directory behind.
"""

import dataclasses

import numpy as np

from keras_synapse.data.plausibility import calendar_summary, symbols_text
from keras_synapse.errors import DataError


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


def warmup_bars(config):
    """Bars of history the config's feature sets need before their first valid row."""
    from keras_synapse.features import get_feature_set

    return max(get_feature_set(name).warmup for name in (config.features, config.static_features) if name)


def require_columns_for_features(panel, config):
    """Refuses a feature set that reads open, high, low or volume on symbols that hold closes only.

    Raises:
        DataError: naming the symbols and suggesting `--set features=close`.
    """
    from keras_synapse.features import get_feature_set

    close_only = panel.close_only_symbols
    if not close_only:
        return
    for name in filter(None, (config.features, config.static_features)):
        other_columns = [column for column in get_feature_set(name).columns if column != "close"]
        if other_columns:
            raise DataError(f"{len(close_only)} symbol(s) hold closes only ({symbols_text(close_only)}: open = high "
                            f"= low = close on every bar); feature set '{name}' also reads "
                            f"{', '.join(other_columns)}, which would be constant there. Use the set that reads "
                            "closes alone: --set features=close")


# What `--quick` trains on whatever the data's size (the sample's own quick panel is this size), so that a
# smoke run stays under a minute on a 2-core CPU: 20 stocks x 5,000 bars took 14 minutes when only epochs
# were bounded.
QUICK_MAX_SYMBOLS, QUICK_MAX_BARS = 6, 1500


def quick_panel(panel, config):
    """The smoke run's slice of `panel`, said on screen: its first symbols over their last bars.

    The first `QUICK_MAX_SYMBOLS` symbols are kept, plus every symbol the
    config names as a reference series (the market, a sector, the VIX), over
    one span of time: from the latest of each kept symbol's
    `QUICK_MAX_BARS`-th last bar, so that no symbol has more bars than that
    and symbols on different calendars still share their dates.
    """
    from keras_synapse.config import reference_symbols

    # A reference value may be one symbol or SYMBOL=REFERENCE pairs (`sector_symbol`): every name counts.
    named = {token.strip() for value in reference_symbols(config).values()
             for pair in str(value).split(";") for token in pair.split("=")}
    traded = [symbol for symbol in panel.symbols if symbol not in named][:QUICK_MAX_SYMBOLS]
    kept = [symbol for symbol in panel.symbols if symbol in traded or symbol in named]
    longest = max(len(panel[symbol]) for symbol in kept)
    start = max(panel[symbol].index[-min(QUICK_MAX_BARS, len(panel[symbol]))] for symbol in kept)
    sliced = type(panel)({symbol: panel[symbol].loc[start:] for symbol in kept}, validate=False)
    most = max(len(frame) for frame in sliced.values())
    print(f"quick: {len(kept)} of {len(panel.symbols)} symbol(s), the last {most} of up to {longest} bars each, "
          f"from {start.date()} (a smoke run; without --quick every bar trains)")
    return sliced


def prepare_data(config, quick, bound_quick_data=None):
    """Loads and validates the bars, computes features and labels, stacks the windows.

    Runs before TensorFlow is imported, so bad input fails fast with a clear
    message and leaves no run directory behind.

    Args:
        config: the `ExperimentConfig`.
        quick: a smoke run: the sample's small panel.
        bound_quick_data: cut the bars to `quick_panel`. Defaults to `quick`;
            `train` passes false for the experiment's own quick data, which
            its quick settings already size.
    """
    from tqdm import tqdm

    from keras_synapse.config import label_options, reference_symbols
    from keras_synapse.labels.heads import head_labels, split_head_horizon
    from keras_synapse.data import file_options, load_panel
    from keras_synapse.data.bars import build_bars
    from keras_synapse.labels import compute_labels
    from keras_synapse.labels.cross_section import cross_sectional_labels
    from keras_synapse.labels.tasks import Task

    with tqdm(total=3, desc="data", unit="step") as progress:
        panel = load_panel(config.data, quick=quick, sample_signal_strength=config.sample_signal_strength,
                           **file_options(config))
        if config.bars:
            source_bars = sum(len(frame) for frame in panel.values())
            panel = build_bars(panel, config.bars)
            print(f"bars: {config.bars} built from the source's {source_bars} bars: "
                  f"{sum(len(frame) for frame in panel.values())} bars")
        if quick if bound_quick_data is None else bound_quick_data:
            panel = quick_panel(panel, config)
        elif quick:
            print(f"quick: the experiment's own smoke-sized data, {len(panel.symbols)} symbol(s), {panel.num_bars} "
                  "bars")
        progress.update()
        require_columns_for_features(panel, config)
        warmup = warmup_bars(config)
        panel.require_history(
            warmup + config.sequence_length + config.horizon,
            f"feature warm-up {warmup} + sequence_length {config.sequence_length} + horizon {config.horizon}",
        )
        references = reference_symbols(config)
        sources = panel
        panel, inputs_only = split_reference_inputs(panel, config)
        # Per symbol, in parallel for large panels, through the on-disk cache when `feature_cache` is set.
        from keras_synapse.features.cache import compute_features_cached
        from keras_synapse.features.cross_section import cross_sectional_inputs

        features = compute_features_cached(panel, config.features, references, config.feature_cache, sources=sources)
        features = cross_sectional_inputs(features, config.universe_features, config.feature_cross_section)
        static = (compute_features_cached(panel, config.static_features, references, config.feature_cache,
                                          sources=sources) if config.static_features else None)
        labels = cross_sectional_labels(
            compute_labels(panel, config.label, config.horizon, config.label_scaling, config.execution_lag,
                           **label_options(config)), config.label_cross_section)
        heads, primary_head = head_labels(config)
        # A head's label may have its own horizon (`forward_return@1`): a head per horizon, one backbone.
        per_head = {}
        for head, spec in heads.items():
            name, horizon = split_head_horizon(spec, config.horizon, head)
            per_head[head] = labels if head == primary_head else compute_labels(
                panel, name, horizon, config.label_scaling, config.execution_lag)
        progress.update()
        from keras_synapse.console import quiet_tensorflow

        quiet_tensorflow()
        from keras_synapse.windows.dataset import build_windowed_panel
        from keras_synapse.windows.exchange_calendar import ExchangeCalendars

        windowed = build_windowed_panel(features, labels, config.sequence_length, config.horizon, static,
                                        config.max_gap_factor, head_labels=per_head or None,
                                        exchange_calendars=ExchangeCalendars.parse(config.exchange_calendar))
        progress.update()
    task = Task.from_labels(config.label, labels)
    require_strategy_for_task(config, task)
    head_tasks = {head: Task.from_labels(split_head_horizon(heads[head], config.horizon)[0], head_label)
                  for head, head_label in per_head.items()}
    print(f"data: {panel!r}; {len(windowed.feature_names)} sequence features"
          + (f" + {len(windowed.static_feature_names)} static" if static else "")
          + f"; label {config.label} ({task.kind}, {config.horizon}-bar horizon)")
    if inputs_only:
        print(f"references (inputs only, not trained, scored or traded): {', '.join(inputs_only)}")
    from keras_synapse.evaluation.calendars import calendar_groups

    print(calendar_summary(panel, len(calendar_groups({symbol: frame.index for symbol, frame in panel.items()}))))
    return PreparedData(panel=panel, windowed=windowed, task=task, head_tasks=head_tasks or None,
                        primary_head=primary_head)


def require_strategy_for_task(config, task):
    """Refuses a strategy that reads an event model's score as a direction.

    An event model's score (seed 004's pattern validation, a meta-label)
    says whether an event resolves, not which way the price goes: its filter
    must calibrate it against the primary side winning.

    Raises:
        ConfigError: for an event label traded by sign or top-k, or filtered
            with `confidence_target=direction`.
    """
    from keras_synapse.config import strategy_rules
    from keras_synapse.errors import ConfigError

    if task.directional or not config.strategy:
        return
    rules = strategy_rules(config)
    if rules.signal != "meta_label" or rules.confidence_target != "event":
        raise ConfigError(
            f"Label '{config.label}' predicts whether an event resolves, not a direction, so it can only filter a "
            f"primary side: strategy needs signal=meta_label and confidence_target=event (the probability that the "
            f"primary side wins). Received: strategy={config.strategy!r} (signal={rules.signal}, "
            f"confidence_target={rules.confidence_target})")


def split_reference_inputs(panel, config):
    """The panel without the series the feature sets read as references, and those series' symbols.

    A symbol named by a reference role the run's feature sets use (the
    market, a sector, the VIX) is an input only (see
    `keras_synapse.features.references`); a role no feature set reads leaves
    its symbol an ordinary one.

    Raises:
        DataError: when every symbol is a reference.
    """
    from keras_synapse.config import reference_symbols
    from keras_synapse.features import get_feature_set
    from keras_synapse.features.references import reference_inputs

    roles = {role for name in (config.features, config.static_features) if name
             for role in get_feature_set(name).references}
    inputs_only = reference_inputs(roles, reference_symbols(config), panel.symbols)
    traded = [symbol for symbol in panel.symbols if symbol not in inputs_only]
    if not traded:
        raise DataError(f"Every symbol of the data is a reference series of feature set(s) "
                        f"'{config.features}' ({symbols_text(inputs_only)}): there is nothing to train on. Add the "
                        "symbols to trade to --data.")
    return (panel.select(traded) if inputs_only else panel), inputs_only


def make_folds(config, calendar):
    """The folds of the experiment's splitter (`config.cv`) on the panel calendar."""
    from keras_synapse.windows.splitters import CombinatorialPurgedCV, GappedTimeSeriesCV, PurgedKFold

    if config.cv == "purged_kfold":
        return PurgedKFold(config.n_splits, config.embargo).calendar_folds(calendar)
    if config.cv == "cpcv":
        return CombinatorialPurgedCV(config.cv_groups, config.cv_test_groups, config.embargo).calendar_folds(calendar)
    return GappedTimeSeriesCV(config.n_splits, config.test_size, config.gap, config.train_bars).split(calendar)


def fold_windows(windowed, calendar, fold, config):
    """The fit, validation and test window ends of one fold, purged by label end time.

    Only the fit windows are thinned to `config.stride`: validation and test
    windows end at every bar, so early stopping and the verdict see all the
    data there is (overlapping labels are handled by the bootstrap's blocks).
    """
    from keras_synapse.windows.dataset import select_ends
    from keras_synapse.windows.splitters import carve_validation

    labelled = windowed.labelled_ends()
    if fold.test_blocks:
        return _purged_fold_windows(windowed, calendar, fold, config, labelled)
    fit_end, validation_start = carve_validation(calendar, fold, config.validation_size, config.gap)
    split = {
        "fit": select_ends(windowed, labelled, stride=config.stride, start=fold.train_start, end=fit_end,
                           label_before=validation_start),
        "validation": select_ends(windowed, labelled, start=validation_start, end=fold.train_end,
                                  label_before=fold.test_start),
        "test": select_ends(windowed, labelled, start=fold.test_start, end=fold.test_end)
        if fold.test_start is not None else np.array([], dtype=np.int64),
        "fit_end": fit_end,
        "validation_start": validation_start,
        "validation_end": fold.train_end,
        # The linear baselines learn from every bar of the fit period, whatever the network's stride.
        "baseline_fit": select_ends(windowed, labelled, end=fit_end, label_before=validation_start),
        # The feature rows the normalization is fitted on.
        "fit_rows": windowed.timestamps <= fit_end,
    }
    for part in ("fit", "validation") + (("test",) if fold.test_start is not None else ()):
        if len(split[part]) == 0:
            raise DataError(
                f"Fold {fold.index} has no {part} windows (stride {config.stride}, sequence_length "
                f"{config.sequence_length}). Use more data, fewer folds or a smaller test_size."
            )
    return split


def _purged_fold_windows(windowed, calendar, fold, config, labelled):
    """A purged fold: test windows in its blocks; training on both sides, purged and embargoed around each block.

    Early stopping holds back the latest `validation_size` of the training
    bars, `gap` bars after the fit part, whose labels end before it starts.
    """
    from keras_synapse.windows.dataset import select_ends
    from keras_synapse.windows.splitters import purge_and_embargo

    times, end_times = windowed.timestamps, windowed.label_end_times
    tested_rows = np.zeros(len(times), dtype=bool)
    for first, last in fold.test_blocks:
        tested_rows |= (times >= first) & (times <= last)
    in_test = tested_rows[labelled]
    train = purge_and_embargo(labelled[~in_test], times, end_times, fold.test_blocks, calendar, config.embargo)
    if len(train) == 0:
        raise DataError(f"Fold {fold.index} keeps no training windows after purging and an embargo of "
                        f"{config.embargo} bars. Use more data or fewer test groups.")
    train_times = np.unique(times[train])
    validation_start = train_times[min(int(len(train_times) * (1 - config.validation_size)), len(train_times) - 1)]
    fit_end = calendar[max(0, int(np.searchsorted(calendar, validation_start)) - config.gap - 1)]
    split = {
        "fit": select_ends(windowed, train, stride=config.stride, end=fit_end, label_before=validation_start),
        "validation": train[times[train] >= validation_start],
        "test": np.sort(labelled[in_test]),
        "fit_end": fit_end,
        "validation_start": validation_start,
        "validation_end": train_times[-1],
        "baseline_fit": select_ends(windowed, train, end=fit_end, label_before=validation_start),
        # Test bars before the fit end are test inputs: the normalization never sees them.
        "fit_rows": (times <= fit_end) & ~tested_rows,
    }
    for part in ("fit", "validation", "test"):
        if len(split[part]) == 0:
            raise DataError(f"Fold {fold.index} has no {part} windows (test blocks {len(fold.test_blocks)}, embargo "
                            f"{config.embargo}, sequence_length {config.sequence_length}). Use more data or fewer "
                            "groups.")
    return split


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
