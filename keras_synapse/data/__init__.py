"""Data sources, all ending in a validated `Panel`.

`load_panel(spec)` reads the `--data` option of the command-line tools:

- `sample`: the offline default (real index data shipped with `arch` plus a
  seeded synthetic universe; see `keras_synapse.data.sample`);
- `sample:references`: the sample's synthetic universe with its reference
  series (`MARKET`, `SECTOR-0..2`, `VIX`, `VIX3M`) for cross-asset features;
- `yfinance:AAPL,MSFT`: Yahoo Finance daily bars, cached on disk;
- `alpaca:AAPL,BTC/USD`: Alpaca bars (stock keys from `APCA_API_KEY_ID` and
  `APCA_API_SECRET_KEY`; crypto needs none), cached on disk;
- `synthetic:num_symbols=12,num_bars=2520,signal=ar1,oracle_ic=0.05,seed=0`:
  a seeded synthetic universe with an optional planted, documented edge of a
  chosen kind and size (see `keras_synapse.data.synthetic` and
  `keras_synapse.data.planted`), to check the pipeline finds a signal when
  one exists and none when none does;
- anything else: a path to a directory of per-symbol files or one long file
  (see `keras_synapse.data.files`; `date_column`, `columns`, `bad_bars` and
  `adjust_prices` say how to read them).
"""

from keras_synapse.data.panel import OHLCV_COLUMNS, Panel, validate_bars
from keras_synapse.errors import DataError

NETWORK_SOURCES = ("yfinance", "alpaca")
# The keyword arguments of `load_panel` for the user's own files, each a config field of the data group.
FILE_OPTIONS = {"date_column": "", "columns": "", "bad_bars": "error", "adjust_prices": True}
SYNTHETIC_OPTIONS = {"num_symbols": int, "num_bars": int, "signal": str, "signal_strength": float, "oracle_ic": float,
                     "seed": int, "horizon": int, "turbulent_volatility_ratio": float}


def load_panel(spec, *, quick=False, sample_signal_strength=0.0, date_column="", columns="", bad_bars="error",
               adjust_prices=True):
    """Loads the bars named by a `--data` spec.

    Args:
        spec: `"sample"`, `"sample:references"`, `"yfinance:SYM,SYM"`, `"alpaca:SYM,SYM"` (either
            with an `@INTERVAL` suffix for intraday or weekly bars:
            `yfinance:AAPL@1h`, `alpaca:AAPL,MSFT@15Min`) or a path.
        quick: for `sample`, return the small smoke-run panel. Defaults to
            `False`.
        sample_signal_strength: for `sample`, the strength of the planted,
            documented predictable component in the synthetic symbols (0 means
            none). Defaults to `0.0`.
        date_column: for a path, the name of the date/time column; `""`
            finds a usual one. Defaults to `""`.
        columns: for a path, the files' own names for OHLCV columns,
            `"close=Close Price;volume=Vol"`. Defaults to `""`.
        bad_bars: for a path, `"error"` lists every bad bar in one error,
            `"drop"` drops them (said). Defaults to `"error"`.
        adjust_prices: for a path, rescale prices by an adjusted-close
            column when there is one. Defaults to `True`.

    Returns:
        A validated `Panel`.

    Raises:
        DataError: for an unknown source, missing symbols, invalid bars, or
            symbols of different bar frequencies.
    """
    from keras_synapse.data.plausibility import check_one_frequency

    spec = str(spec).strip()
    if _is_path(spec):
        from keras_synapse.data.files import load_files

        panel = load_files(spec, date_column=date_column, columns=columns, bad_bars=bad_bars,
                           adjust_prices=adjust_prices)
    else:
        panel = _load(spec, quick, sample_signal_strength)
    check_one_frequency(panel)
    return panel


def file_options(config):
    """The `load_panel` keyword arguments for the user's own files, from a config or its dict (a model card's).

    A dict written before a field existed gives that field's default.
    """
    if isinstance(config, dict):
        return {name: config.get(name, default) for name, default in FILE_OPTIONS.items()}
    return {name: getattr(config, name, default) for name, default in FILE_OPTIONS.items()}


def _is_path(spec):
    source, separator, _ = spec.partition(":")
    if spec == "sample" or spec.startswith("sample:") or source == "synthetic":
        return False
    return not (separator and source in NETWORK_SOURCES)


def _load(spec, quick, sample_signal_strength):
    if spec in ("sample", "sample:references"):
        from keras_synapse.data.sample import load_sample

        return load_sample(quick=quick, signal_strength=sample_signal_strength, references=spec != "sample")
    if spec.startswith("sample:"):
        raise DataError(f"`--data {spec}`: the sample is `sample` or `sample:references`.")
    source, separator, symbol_list = spec.partition(":")
    if source == "synthetic":
        from keras_synapse.data.synthetic import generate_universe

        return generate_universe(**parse_synthetic_options(symbol_list)).panel
    source, symbols, interval = network_spec(spec)
    from keras_synapse.data.cache import BarCache

    if source == "yfinance":
        from keras_synapse.data.yahoo import load_yfinance

        return load_yfinance(symbols, interval=interval, cache=BarCache())
    from keras_synapse.data.alpaca import load_alpaca

    return load_alpaca(symbols, timeframe=interval, cache=BarCache())


def network_spec(spec):
    """`"yfinance:AAPL,MSFT@1h"` -> `("yfinance", ["AAPL", "MSFT"], "1h")`; the interval defaults to daily bars.

    Raises:
        DataError: for no symbols, an empty or (for yfinance) unknown interval.
    """
    source, _, symbol_list = spec.partition(":")
    symbol_list, at, interval = symbol_list.partition("@")
    symbols = [symbol.strip() for symbol in symbol_list.split(",") if symbol.strip()]
    example = "1h" if source == "yfinance" else "1Hour"
    if not symbols:
        raise DataError(f"`--data {spec}` names no symbols. Example: --data {source}:AAPL,MSFT@{example}")
    interval = interval.strip()
    if at and not interval:
        raise DataError(f"`--data {spec}` names no bar interval after '@'. Example: --data {source}:AAPL@{example}")
    if source == "yfinance":
        from keras_synapse.data.yahoo import check_interval

        return source, symbols, check_interval(interval or "1d")
    return source, symbols, interval or "1Day"


def parse_synthetic_options(text):
    """Parses `num_symbols=12,num_bars=2520,...` for the `synthetic:` data spec.

    Raises:
        DataError: for an unknown option or an unparsable value.
    """
    options = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = pair.partition("=")
        key = key.strip()
        if key not in SYNTHETIC_OPTIONS:
            raise DataError(f"`--data synthetic:` has no option {key!r}. Options: {', '.join(SYNTHETIC_OPTIONS)}")
        try:
            options[key] = SYNTHETIC_OPTIONS[key](value)
        except ValueError:
            raise DataError(f"`--data synthetic:` option `{key}` expects a {SYNTHETIC_OPTIONS[key].__name__}. "
                            f"Received: {key}={value!r}") from None
    return options


__all__ = ["OHLCV_COLUMNS", "Panel", "file_options", "load_panel", "validate_bars"]
