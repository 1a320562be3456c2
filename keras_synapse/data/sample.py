"""The offline sample: two real index series plus a synthetic universe.

`load_sample` needs no network: the real bars ship inside the `arch` package
and the synthetic ones are generated from a seed. It is what
`--data sample` loads and what smoke runs (`--quick`) use.
"""

import importlib
import logging

import numpy as np

from keras_synapse.data.panel import Panel, standardize_columns, validate_bars
from keras_synapse.data.reference_series import sector_symbol
from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

# symbol -> the `arch.data` module holding its daily bars.
_REAL_SOURCES = {"SP500": "sp500", "NASDAQ": "nasdaq"}
_QUICK_NUM_BARS = 1500
_QUICK_NUM_SYNTHETIC = 4
_NUM_SECTORS = 3  # generate_universe's default


def load_sample(*, num_synthetic=10, signal_strength=0.0, seed=7, quick=False, references=False):
    """Loads the offline sample panel: real S&P 500 and NASDAQ bars plus synthetic ones.

    Real bars: the daily OHLCV of the S&P 500 (`SP500`) and the NASDAQ
    Composite (`NASDAQ`) indexes that ship with the `arch` package
    (`arch.data.sp500`, `arch.data.nasdaq`): 5031 trading days each, on the
    same dates, 1999-01-04 .. 2018-12-31, stamped at 00:00 UTC of the trading
    day. Their `Adj Close` equals `Close` (indexes pay no dividends) and is
    dropped.

    One known defect is repaired, not dropped: the NASDAQ file reports a
    volume of 0 on 2015-05-12 and 2018-01-09, a missing value from the vendor
    (the composite trades ~1.7-2.1 billion shares a day around both dates, and
    the prices that day are normal). Dropping the rows would put a hole in the
    calendar the two indexes share, and a zero would make log volume -inf, so
    each such bar takes the previous bar's volume: only past data, never the
    next day's, so the repair cannot leak the future. The repair is logged
    (INFO) with its dates. Every other row passes `validate_bars` as is.

    Synthetic bars: `generate_universe(num_synthetic, num_bars=5031,
    seed=seed, signal_strength=signal_strength)` (symbols `SYN-00`, ...),
    placed bar for bar on the real trading dates, so all symbols share one
    calendar. With the default `signal_strength=0.0` the sample holds no
    planted edge: a model that claims one on it is fitting noise (the real
    series carry whatever the market did).

    Args:
        num_synthetic: how many synthetic symbols to add. Defaults to `10`.
        signal_strength: the planted edge of the synthetic symbols (see
            `keras_synapse.data.synthetic`). Defaults to `0.0`.
        seed: the seed of the synthetic universe. Defaults to `7`.
        quick: return a small panel for smoke runs: the last 1500 bars
            (2013-01 .. 2018-12) of the two real series and of the first
            `min(num_synthetic, 4)` synthetic ones. These are the same bars
            as in the full sample. Defaults to `False`.
        references: the sample for cross-asset features (`--data
            sample:references`): the synthetic symbols with the universe's
            reference series `MARKET`, `SECTOR-0` .. `SECTOR-2`, `VIX` and
            `VIX3M` (`keras_synapse.data.reference_series`; the sector of
            `SYN-i` is `SECTOR-(i % 3)`, see `sample_sector_symbols`), and
            without the real indexes: no VIX, VIX3M or sector series ship
            for their dates (`arch` has the VIX from 2014 only). Defaults to
            `False`.

    Returns:
        A `Panel`: `SP500`, `NASDAQ`, then `SYN-00` ... in that order (with
        `references`: `SYN-00` ..., then the reference series).

    Raises:
        ConfigError: for `num_synthetic` < 0 or a bad `signal_strength`.
        DataError: if the bundled data is missing or fails validation.

    Example:

    >>> panel = load_sample(quick=True)
    >>> panel.symbols
    ('SP500', 'NASDAQ', 'SYN-00', 'SYN-01', 'SYN-02', 'SYN-03')
    """
    if isinstance(num_synthetic, bool) or not isinstance(num_synthetic, (int, np.integer)) or num_synthetic < 0:
        raise ConfigError(f"`num_synthetic` must be an integer >= 0. Received: num_synthetic={num_synthetic!r}")
    # With references the real series only lend their trading dates.
    frames = {symbol: _load_real(symbol, module) for symbol, module in _REAL_SOURCES.items()
              if not references or symbol == "SP500"}
    dates = frames["SP500"].index
    if references:
        frames = {}
    if quick:
        num_synthetic = min(num_synthetic, _QUICK_NUM_SYNTHETIC)
    if num_synthetic:
        # Generated at full length even when quick, so that the quick panel is
        # a slice of the full one rather than a different universe.
        universe = generate_universe(
            num_symbols=num_synthetic,
            num_bars=len(dates),
            seed=seed,
            signal_strength=signal_strength,
            start=dates[0],
            num_sectors=_NUM_SECTORS,
        )
        for symbol, frame in universe.panel.items():
            frames[symbol] = frame.set_axis(dates, axis=0)
        if references:
            frames.update({symbol: frame.set_axis(dates, axis=0) for symbol, frame in universe.references.items()})
    if quick:
        frames = {symbol: frame.iloc[-_QUICK_NUM_BARS:] for symbol, frame in frames.items()}
    return Panel(frames, validate=True)


def sample_sector_symbols(num_synthetic=10, quick=False):
    """The `sector_symbol` pairs of `--data sample:references`: `"SYN-00=SECTOR-0;SYN-01=SECTOR-1;..."`."""
    count = min(num_synthetic, _QUICK_NUM_SYNTHETIC) if quick else num_synthetic
    return ";".join(f"SYN-{position:02d}={sector_symbol(position % _NUM_SECTORS)}" for position in range(count))


def _load_real(symbol, module_name):
    where = f"arch.data.{module_name}"
    try:
        module = importlib.import_module(where)
        raw = module.load()
    except (ImportError, OSError) as error:
        raise DataError(f"Symbol '{symbol}': the bundled sample {where} cannot be loaded ({error}).") from None
    frame = standardize_columns(raw, where)
    # The files hold plain trading dates; they are taken as UTC midnight
    # explicitly so validation has no naive timestamps to warn about.
    frame.index = frame.index.tz_localize("UTC")
    frame = _repair_zero_volume(frame, symbol)
    return validate_bars(frame, symbol)


def _repair_zero_volume(frame, symbol):
    """Gives bars with zero volume the previous bar's volume (see `load_sample`)."""
    zero = frame["volume"] <= 0
    if not zero.any():
        return frame
    dates = ", ".join(str(timestamp.date()) for timestamp in frame.index[zero])
    volume = frame["volume"].astype("float64").mask(zero).ffill()
    leading = volume.isna()
    if leading.any():
        # No earlier bar to borrow from: those first bars go.
        logger.info("Symbol '%s': dropped %d leading bar(s) with zero volume.", symbol, int(leading.sum()))
    logger.info(
        "Symbol '%s': %d bar(s) with zero volume (%s), a vendor gap; took the previous bar's volume.",
        symbol,
        int(zero.sum() - leading.sum()),
        dates,
    )
    return frame.assign(volume=volume)[~leading]
