"""Experiment configuration: one frozen dataclass, loaded from a Python file.

An experiment file (see `experiments/`) defines `get_config(quick=False)`
returning an `ExperimentConfig`. The command line may then override any field
with `--set key=value`; values are parsed to the field's type.
"""

import dataclasses
import difflib
import importlib.util
import math
import re
import sys
import typing
from pathlib import Path

from keras_synapse.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run needs, with the shared-backbone design's defaults; `CONFIG_GROUPS` groups them."""

    name: str = "shared_backbone"
    model: str = "shared_backbone"
    # Data: a --data spec, a feature set and a label, see keras_synapse.features/labels.
    data: str = "sample"
    sample_signal_strength: float = 0.0
    # The model's bars from the source's: "" (as loaded), "time:1W" (coarser
    # time bars), "volume:2e6" or "dollar:5e8" (a bar per that much traded).
    bars: str = ""
    # The user's own files (keras_synapse.data.files): the date column's name
    # ("": timestamp/datetime/date/time/index or an unnamed first column), the
    # files' own names for OHLCV columns ("close=Close Price;volume=Vol"; keys
    # open, high, low, close, volume, value, adj_close, symbol), bars failing
    # a check ("error": all listed in one error; "drop": dropped, said), and
    # whether an adjusted-close column rescales the prices (said).
    date_column: str = ""
    columns: str = ""
    bad_bars: str = "error"
    adjust_prices: bool = True
    features: str = "core"
    # Cross-sectional inputs: `universe_features` adds log_return_1, log_return_20 and volume_zscore_20 minus
    # the date's mean over the symbols; `feature_cross_section` ("rank" or "zscore") replaces every sequence
    # feature by its rank or z-score across the date's symbols.
    universe_features: bool = False
    feature_cross_section: str = ""
    # Static (last-bar) features for hybrid models, e.g. "technical"; "" for none.
    static_features: str = ""
    # Reference series for cross-asset features (pattern17), by symbol in the data.
    market_symbol: str = "SP500"
    sector_symbol: str = ""
    vix_symbol: str = ""
    vix3m_symbol: str = ""
    label: str = "forward_return"
    label_scaling: str = "volatility"
    # "rank" or "zscore": each date's targets normalized across its symbols (labels.cross_section); "none": kept.
    label_cross_section: str = "none"
    # Options of the label, "name=value;name=value" (see keras_synapse.labels.label_options).
    label_options: str = ""
    # Multi-task heads, "head=label;head=label" (the head whose label is `label`
    # is primary: it drives the headline metrics), and their loss weights.
    heads: str = ""
    loss_weights: str = ""
    horizon: int = 5
    # Bars from the signal bar to the trade: labels and the backtest enter at
    # the open of bar t + execution_lag and leave at the open one horizon
    # later (0: at the signal bar's own close; closes-only bars: at closes).
    execution_lag: int = 0
    # Windows (seed 004: 20 bars, stride 5).
    sequence_length: int = 20
    stride: int = 5
    batch_size: int = 64
    # Windows never span a gap longer than this multiple of the median bar spacing (0: off).
    max_gap_factor: float = 5.0
    # Daily bars' gaps counted in an exchange's trading sessions, so its holidays are no outage: "" (calendar
    # time), "XNYS", or per symbol "XNYS;7203.T=XTKS" (keras_synapse.windows.exchange_calendar).
    exchange_calendar: str = ""
    # Gapped walk-forward CV (seed 004: 3 folds, test 0.2, gap 5), expanding
    # (`train_bars` 0) or sliding over the last `train_bars` bars before each
    # gap (seed 000's walk-forward); the early stopping carve-out is the last
    # `validation_size` of each training fold.
    n_splits: int = 3
    test_size: float = 0.2
    gap: int = 5
    validation_size: float = 0.15
    train_bars: int = 0
    # The splitter: "walk_forward" (the gapped CV above), "purged_kfold"
    # (`n_splits` blocks, each tested once, training on both sides of it) or
    # "cpcv" (combinatorial purged CV: every choice of `cv_test_groups` of
    # `cv_groups` blocks, whose backtest paths give a distribution). Purged
    # splitters drop training windows whose label overlaps a test label, then
    # the `embargo` bars after each test block.
    cv: str = "walk_forward"
    embargo: int = 5
    cv_groups: int = 6
    cv_test_groups: int = 2
    # The statistic the verdict reads, fixed before any number is seen: "auto" (the per-date rank IC when a
    # top_k book or a cross-sectional label ranks 5+ symbols a date, the within-fold rank IC otherwise),
    # "per_date_rank_ic" or "within_fold_rank_ic"; see evaluation.summary.choose_primary_statistic.
    primary_statistic: str = "auto"
    # Model hyperparameters (seed 004's shared backbone).
    lstm_units: tuple = (64, 32)
    dense_units: int = 16
    dropout: float = 0.45
    dense_dropout: float = 0.36
    recurrent_dropout: float = 0.3
    l2: float = 0.006
    head_activation: str = "tanh"
    # A linear highway: a ridge on the last `highway_bars` bars, fitted in closed form and frozen, added to the
    # network's score before the head's activation (0: none); see keras_synapse.models.highway.
    highway_bars: int = 0
    # Attention models (transformer, lstm_attention).
    num_heads: int = 4
    model_dim: int = 32
    num_blocks: int = 2
    ff_dim: int = 64
    positional_encoding: str = "learned"
    causal_mask: bool = False
    pooling: str = "last"
    # Permutation feature importance on the test folds (one more prediction
    # per feature per fold; see keras_synapse.evaluation.importance).
    feature_importance: bool = True
    # IC decay: the test predictions against forward returns over these
    # horizons, in bars (empty: off), e.g. --set horizons=1,3,5,20.
    horizons: tuple = ()
    # Fine-tuning (seed 004's stock-specific adaptation): after the shared
    # backbone is trained on all symbols, freeze it and train a new head on
    # this symbol only. `base_model` (`EXPERIMENT/VERSION` inside --registry,
    # or a version directory) supplies the backbone of the final model instead
    # of a fresh refit.
    finetune_symbol: str = ""
    base_model: str = ""
    # Fitting.
    epochs: int = 25
    learning_rate: float = 0.0008
    clipnorm: float = 1.0
    patience: int = 15
    # What early stopping (and reduce-on-plateau) watches on the validation
    # carve-out, see keras_synapse.training.callbacks.MONITORS: "val_loss" includes
    # the L2 penalty, so it keeps falling while the fit stops improving.
    monitor: str = "val_loss"
    # "auto": MSE for regression labels, cross-entropy for class labels; see
    # keras_synapse.training.losses.get_loss (e.g. "correlation_aware:0.5", "focal").
    loss: str = "auto"
    learning_rate_schedule: str = "reduce_on_plateau"
    sample_weighting: str = "none"
    seed: int = 42
    # A seed ensemble: each fit trains this many networks (seeds differ) and
    # averages them into one model; their spread and agreement are reported.
    ensemble_seeds: int = 1
    # Backtest: costs and slippage per unit of turnover, in basis points.
    cost_bps: float = 5.0
    # Every run's A/B: each classical strategy (RSI, MACD, Bollinger, VWAP,
    # momentum) alone and filtered by the model's confidence above
    # `filter_confidence` (seed 004's meta-labeling), with Sharpe-difference intervals.
    ab_test: bool = True
    filter_confidence: float = 0.6
    # The traded strategy, `BacktestRules` settings as "name=value;...", e.g.
    # "signal=meta_label;primary_side_column=rsi_reversion;sizing=kelly;drawdown_limit=0.2"
    # (a classical strategy filtered by the model, quarter-Kelly, a 20% stop). Empty: sign of the score.
    strategy: str = ""
    # A cross-sectional long-short book beside the per-symbol one: long the
    # `top_k` highest scores, short the `top_k` lowest (0: off).
    top_k: int = 0
    # --- Scale-out (keras_synapse.training.distribute, keras_synapse.features.cache) ---
    # "none" or "mirrored" (tf.distribute.MirroredStrategy over the local
    # devices); "multi_worker" is refused, see keras_synapse.training.distribute.
    distribute: str = "none"
    # Directory of the per-symbol feature cache; "" disables it, "auto" is
    # $KERAS_SYNAPSE_CACHE/features (default ~/.cache/keras_synapse/features).
    feature_cache: str = ""

    def __post_init__(self):
        # Every value is checked here, when the config is built, so a bad `--set` stops before any run
        # directory exists rather than as a Keras traceback minutes later. Nothing here imports
        # TensorFlow: a typo costs a second (tests/test_config.py checks).
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            _require(not isinstance(value, float) or math.isfinite(value), field.name, value, "a finite number")
        _require(_PLAIN_NAME.fullmatch(self.name) is not None and ".." not in self.name, "name", self.name,
                 "a plain name (letters, digits, '.', '_', '-'; it names the run and registry directories)")
        _require(self.horizon >= 1, "horizon", self.horizon, ">= 1")
        _require(self.execution_lag >= 0, "execution_lag", self.execution_lag, ">= 0")
        _require(self.top_k >= 0, "top_k", self.top_k, ">= 0 (0: no long-short book)")
        from keras_synapse.labels.cross_section import CROSS_SECTIONS
        _require(self.label_cross_section in CROSS_SECTIONS, "label_cross_section", self.label_cross_section,
                 f"one of {CROSS_SECTIONS}")
        _require(all(isinstance(horizon, int) and horizon >= 1 for horizon in self.horizons), "horizons",
                 self.horizons, "bar counts, each >= 1 (e.g. 1,3,5,20)")
        _require(self.sequence_length >= 1, "sequence_length", self.sequence_length, ">= 1")
        _require(self.stride >= 1, "stride", self.stride, ">= 1")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        _require(self.n_splits >= 1, "n_splits", self.n_splits, ">= 1")
        _require(0 < self.test_size < 1, "test_size", self.test_size, "in (0, 1)")
        _require(0 < self.validation_size < 1, "validation_size", self.validation_size, "in (0, 1)")
        _require(self.train_bars >= 0, "train_bars", self.train_bars, ">= 0 (0: an expanding window)")
        from keras_synapse.data.bars import parse_bar_spec
        from keras_synapse.windows.splitters import SPLITTERS

        parse_bar_spec(self.bars)  # a malformed spec is refused before any data is loaded
        from keras_synapse.windows.exchange_calendar import ExchangeCalendars

        ExchangeCalendars.parse(self.exchange_calendar)
        from keras_synapse.data.bad_bars import BAD_BARS
        from keras_synapse.data.columns import column_mapping

        _require(self.bad_bars in BAD_BARS, "bad_bars", self.bad_bars, f"one of {BAD_BARS}")
        column_mapping(self.columns)  # a malformed mapping is refused before any file is read
        from keras_synapse.features.cross_section import FEATURE_CROSS_SECTIONS

        _require(self.feature_cross_section in FEATURE_CROSS_SECTIONS, "feature_cross_section",
                 self.feature_cross_section, f"one of {FEATURE_CROSS_SECTIONS}")
        _require(self.cv in SPLITTERS, "cv", self.cv, f"one of {SPLITTERS}")
        from keras_synapse.evaluation.summary import PRIMARY_STATISTICS

        _require(self.primary_statistic in ("auto", *PRIMARY_STATISTICS), "primary_statistic",
                 self.primary_statistic, f"one of {('auto', *PRIMARY_STATISTICS)}")
        _require(self.embargo >= 0, "embargo", self.embargo, ">= 0")
        _require(1 <= self.cv_test_groups < self.cv_groups, "cv_test_groups", self.cv_test_groups,
                 f"in [1, cv_groups={self.cv_groups})")
        _require(self.cv != "purged_kfold" or self.n_splits >= 2, "n_splits", self.n_splits,
                 ">= 2 for cv='purged_kfold'")
        _require(self.epochs >= 1, "epochs", self.epochs, ">= 1")
        _require(self.ensemble_seeds >= 1, "ensemble_seeds", self.ensemble_seeds, ">= 1")
        _require(self.ensemble_seeds == 1 or not self.finetune_symbol, "ensemble_seeds", self.ensemble_seeds,
                 "1 with finetune_symbol (a new head on one frozen backbone)")
        _require(self.cost_bps >= 0, "cost_bps", self.cost_bps, ">= 0")
        _require(0 <= self.filter_confidence < 1, "filter_confidence", self.filter_confidence, "in [0, 1)")
        strategy_rules(self)  # an unknown setting or a bad value is refused before any data is loaded
        self._check_model_values()
        from keras_synapse.training.choices import MONITORS

        _require(self.monitor in MONITORS, "monitor", self.monitor, f"one of {tuple(MONITORS)}")
        # Scale-out: refuses "multi_worker" with the reason.
        from keras_synapse.training.distribute import check_distribute

        check_distribute(self.distribute)
        # A gap shorter than the label horizon lets a training label overlap
        # the test fold: refuse it rather than report leaked numbers.
        from keras_synapse.labels.heads import head_horizons

        longest = max([self.horizon, *head_horizons(self).values()])
        if self.gap < longest + self.execution_lag:
            which = "`horizon`" if longest == self.horizon else "the longest head horizon"
            raise ConfigError(
                f"`gap` must be >= {which} ({longest}) + `execution_lag` ({self.execution_lag}) so training "
                f"labels end before the test fold starts. Received: gap={self.gap}"
            )

    def _check_model_values(self):
        from keras_synapse.models import HEAD_ACTIVATIONS, MODEL_NAMES, POOLINGS, POSITIONAL_ENCODINGS
        from keras_synapse.models.trees import TREE_MODELS
        from keras_synapse.training.choices import LEARNING_RATE_SCHEDULES, LOSS_NAMES
        from keras_synapse.training.stacking import is_stack, stack_members
        from keras_synapse.windows.weights import WEIGHTINGS

        stack_members(self.model) if is_stack(self.model) else _require(
            self.model in MODEL_NAMES + TREE_MODELS, "model", self.model, f"one of {MODEL_NAMES + TREE_MODELS} or "
            "stack:A+B+...")
        _require(len(self.lstm_units) > 0 and all(isinstance(units, int) and units >= 1 for units in self.lstm_units),
                 "lstm_units", self.lstm_units, "one or more layer sizes, each >= 1 (e.g. 64,32)")
        for name in ("dense_units", "num_heads", "model_dim", "num_blocks", "ff_dim"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), ">= 1")
        for name in ("dropout", "dense_dropout", "recurrent_dropout"):
            _require(0 <= getattr(self, name) < 1, name, getattr(self, name), "in [0, 1)")
        _require(self.l2 >= 0, "l2", self.l2, ">= 0")
        bars = self.highway_bars
        _require(0 <= bars <= self.sequence_length and not (bars and "multitask" in self.model), "highway_bars", bars,
                 f"in [0, {self.sequence_length}] (sequence_length; 0 for multitask)")
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        _require(self.clipnorm > 0, "clipnorm", self.clipnorm, "> 0")
        _require(self.patience >= 0, "patience", self.patience, ">= 0")
        _require(self.head_activation in HEAD_ACTIVATIONS, "head_activation", self.head_activation,
                 f"one of {HEAD_ACTIVATIONS} (a regression head's output; classifiers use sigmoid/softmax)")
        _require(self.pooling in POOLINGS, "pooling", self.pooling, f"one of {POOLINGS}")
        _require(self.positional_encoding in POSITIONAL_ENCODINGS, "positional_encoding", self.positional_encoding,
                 f"one of {POSITIONAL_ENCODINGS}")
        _require(self.learning_rate_schedule in LEARNING_RATE_SCHEDULES, "learning_rate_schedule",
                 self.learning_rate_schedule, f"one of {LEARNING_RATE_SCHEDULES}")
        _require(self.sample_weighting in WEIGHTINGS, "sample_weighting", self.sample_weighting, f"one of {WEIGHTINGS}")
        # Whether the loss fits the label's task is checked where the task is known (losses.get_loss).
        losses = sorted({name.partition(":")[0] for names in LOSS_NAMES.values() for name in names} | {"auto"})
        _require(str(self.loss).partition(":")[0] in losses, "loss", self.loss,
                 f"one of {tuple(losses)}, optionally with ':VALUE'")


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# Every field in one group, so a new field must say what it belongs to (a
# test checks). `--set group.field=value` names the group; tuning prepares
# data once for every trial that differs only outside `PREPARED_DATA_GROUPS`.
CONFIG_GROUPS = {
    "data": ("data", "sample_signal_strength", "bars", "date_column", "columns", "bad_bars", "adjust_prices",
             "features", "universe_features", "feature_cross_section", "static_features", "market_symbol",
             "sector_symbol", "vix_symbol", "vix3m_symbol"),
    "labels": ("label", "label_scaling", "label_cross_section", "label_options", "heads", "horizon",
               "execution_lag"),
    "windows": ("sequence_length", "max_gap_factor", "exchange_calendar"),
    "validation": ("n_splits", "test_size", "gap", "validation_size", "train_bars", "cv", "embargo", "cv_groups",
                   "cv_test_groups", "primary_statistic", "feature_importance", "horizons"),
    "model": ("model", "lstm_units", "dense_units", "dropout", "dense_dropout", "recurrent_dropout", "l2",
              "head_activation", "highway_bars", "num_heads", "model_dim", "num_blocks", "ff_dim",
              "positional_encoding", "causal_mask", "pooling"),
    # `stride` picks which training windows a fit sees; it does not change the windows themselves.
    "fitting": ("stride", "batch_size", "epochs", "learning_rate", "clipnorm", "patience", "monitor", "loss",
                "loss_weights", "learning_rate_schedule", "sample_weighting", "seed", "ensemble_seeds",
                "finetune_symbol", "base_model"),
    "backtest": ("cost_bps", "top_k", "ab_test", "filter_confidence", "strategy"),
    "runtime": ("name", "distribute", "feature_cache"),
}
# The groups that decide what `keras_synapse.training.preparation.prepare_data` returns.
PREPARED_DATA_GROUPS = ("data", "labels", "windows")


def group_fields(*groups):
    """The config field names of `groups`, e.g. `group_fields("data", "labels")`."""
    unknown = [group for group in groups if group not in CONFIG_GROUPS]
    if unknown:
        raise ConfigError(f"Unknown config group(s) {unknown}. Groups: {', '.join(CONFIG_GROUPS)}")
    return tuple(name for group in groups for name in CONFIG_GROUPS[group])


def _require(condition, name, value, expectation):
    if not condition:
        raise ConfigError(f"`{name}` must be {expectation}. Received: {name}={value!r}")


def import_experiment(path, suffix=""):
    """Imports an experiment file as a module.

    A variant imports its base experiment by name (`import shared_backbone`),
    so the experiment's own directory is importable while it loads.

    Raises:
        ConfigError: when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Experiment file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"experiment_{path.stem}{suffix}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def load_experiment(path, quick=False):
    """Imports an experiment file and returns its `get_config(quick)`.

    Args:
        path: path to a Python file defining `get_config(quick=False)`.
        quick: ask the experiment for its smoke-sized variant. Defaults to
            `False`.

    Returns:
        The `ExperimentConfig`.

    Raises:
        ConfigError: when the file is missing or defines no `get_config`.
    """
    path = Path(path)
    module = import_experiment(path)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path} defines no `get_config(quick=False)` function.")
    config = module.get_config(quick=quick)
    if not isinstance(config, ExperimentConfig):
        raise ConfigError(f"{path}: get_config() must return an ExperimentConfig. Received: {type(config).__name__}")
    return config


def apply_overrides(config, overrides):
    """Returns `config` with `key=value` strings applied, each parsed to its field's type.

    Args:
        config: an `ExperimentConfig`.
        overrides: strings such as `"epochs=3"`, `"lstm_units=32,16"` or,
            naming the field's group, `"fitting.stride=1"`.

    Raises:
        ConfigError: for malformed pairs, unknown keys or unparsable values.
    """
    fields = {field.name: field for field in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    changes = {}
    for override in overrides:
        key, separator, text = override.partition("=")
        key = key.strip()
        if not separator:
            raise ConfigError(f"`--set` expects key=value. Received: {override!r}")
        group, dot, name = key.rpartition(".")
        if dot:
            if group not in CONFIG_GROUPS:
                raise ConfigError(f"Unknown config group {group!r}. Groups: {', '.join(CONFIG_GROUPS)}. "
                                  f"Received: {override!r}")
            if name not in CONFIG_GROUPS[group]:
                owner = next((other for other, names in CONFIG_GROUPS.items() if name in names), None)
                where = f"`{name}` is in the `{owner}` group" if owner else f"no group has a field {name!r}"
                raise ConfigError(f"{where}; `{group}` holds {', '.join(CONFIG_GROUPS[group])}. "
                                  f"Received: {override!r}")
            key = name
        if key not in fields:
            raise ConfigError(_unknown_field_message(key, fields))
        changes[key] = _parse(text.strip(), hints[key], key)
    try:
        return dataclasses.replace(config, **changes)
    except TypeError as error:
        raise ConfigError(str(error)) from None


def _parse(text, kind, key):
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind is tuple:
            return tuple(int(part) for part in text.split(",") if part.strip())
        return kind(text)
    except ValueError:
        expected = {tuple: "whole numbers separated by commas, e.g. 64,32", bool: "true or false",
                    int: "a whole number", float: "a number"}.get(kind, f"a {kind.__name__}")
        raise ConfigError(f"`{key}` expects {expected}. Received: {key}={text!r}") from None


def _unknown_field_message(key, fields):
    close = difflib.get_close_matches(key, fields, n=3, cutoff=0.6)
    owner_groups = {name: group for group, names in CONFIG_GROUPS.items() for name in names}
    if close:
        suggestions = " or ".join(f"`{name}` ({owner_groups.get(name, '?')} group)" for name in close)
        return f"Unknown config field {key!r}: did you mean {suggestions}? Received: {key}"
    return (f"Unknown config field {key!r}. Groups and their fields: "
            + "; ".join(f"{group}: {', '.join(names)}" for group, names in CONFIG_GROUPS.items()))


def reference_symbols(config):
    """The config's reference symbols by role, for `keras_synapse.features.compute_features`."""
    return {"market": config.market_symbol, "sector": config.sector_symbol, "vix": config.vix_symbol,
            "vix3m": config.vix3m_symbol}


def label_options(config):
    """The config's `label_options` string parsed to keyword arguments of its label.

    Values take the type of the option's default, e.g. `"flat_multiple=0.5"`
    for the `direction` label gives `{"flat_multiple": 0.5}`.

    Raises:
        ConfigError: for malformed pairs or unknown options.
    """
    from keras_synapse.labels import label_options as defaults_of

    defaults = defaults_of(config.label)
    options = {}
    for key, text in parse_pairs(config.label_options, "label_options").items():
        if key not in defaults:
            raise ConfigError(f"Label '{config.label}' has no option {key!r}. Options: {', '.join(defaults)}")
        default = defaults[key]
        options[key] = text if isinstance(default, str) or default is None else _parse(text, type(default), key)
    return options


def parse_pairs(text, field):
    """Parses `"name=value;name=value"` into an ordered dict of stripped strings.

    Raises:
        ConfigError: for a pair without `=`.
    """
    pairs = {}
    for pair in filter(None, (part.strip() for part in text.split(";"))):
        key, separator, value = pair.partition("=")
        if not separator:
            raise ConfigError(f"`{field}` expects name=value pairs separated by ';'. Received: {pair!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def strategy_rules(config):
    """The `BacktestRules` of the experiment's `strategy` (the execution lag is the labels')."""
    from keras_synapse.evaluation.trading_rules import rules_from_text

    return rules_from_text(parse_pairs(config.strategy, "strategy"), execution_lag=config.execution_lag)


def config_from_dict(values):
    """Rebuilds an `ExperimentConfig` from `config_to_dict` output (e.g. a run's config.json)."""
    fields = {field.name for field in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ConfigError(f"config.json has fields this version does not know: {unknown}")
    return ExperimentConfig(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})


def config_to_dict(config):
    """Returns the config as a JSON-ready dict."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config).items()}
