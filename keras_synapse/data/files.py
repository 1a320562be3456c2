"""Bars from the user's own files: per-symbol CSV/Parquet, or one long file.

Accepted layouts:

- a directory with one file per symbol (`AAPL.csv`, `MSFT.parquet`, ...); the
  symbol is the file name without its extension;
- one long-format file with a `symbol` column (any case);
- one file without a `symbol` column, taken as a single symbol named after it.

Column names are matched case-insensitively; the date column may be called
`timestamp`, `datetime`, `date`, `time` or `index`, or anything named by
`date_column`, and `columns` maps the file's own names for the others
(`"close=Close Price;volume=Vol;adj_close=Adj Close"`). A traded value
(`value`, `turnover`, `amount`) stands in for a missing volume, and an
adjusted-close column (`Adj Close`) rescales the prices unless
`adjust_prices=False`: each said once per load. Bars failing a check are
listed all in one error, or dropped with `bad_bars="drop"` (see
`keras_synapse.data.bad_bars`).
"""

import logging
from pathlib import Path

import pandas as pd

from keras_synapse.data.columns import column_mapping, standardize_columns
from keras_synapse.data.panel import Panel
from keras_synapse.errors import DataError

BAR_FILE_SUFFIXES = (".csv", ".parquet", ".pq")

logger = logging.getLogger(__name__)


def load_files(path, *, date_column="", columns="", bad_bars="error", adjust_prices=True):
    """Reads a directory of per-symbol files or one (long-format) file.

    Args:
        path: a directory or a `.csv` / `.parquet` file.
        date_column: the name of the date/time column (any case); `""` finds
            `timestamp`, `datetime`, `date`, `time`, `index` or an unnamed
            first column of dates. Defaults to `""`.
        columns: the files' own names for OHLCV columns,
            `"close=Close Price;volume=Vol"` (keys `open`, `high`, `low`,
            `close`, `volume`, `value`, `adj_close`, `symbol`) or a dict.
            Defaults to `""`.
        bad_bars: `"error"` refuses bars failing a check, all listed in one
            error; `"drop"` drops them, said per symbol and problem. Defaults
            to `"error"`.
        adjust_prices: rescale prices by an adjusted-close column when there
            is one. Defaults to `True`.

    Returns:
        A validated `Panel`.

    Raises:
        DataError: when the path does not exist, holds no bar files, or any
            file is empty or holds invalid bars (one message for every file
            and symbol, naming the column and the bad timestamps).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"Data path does not exist: {path}")
    mapping = column_mapping(columns)  # a malformed mapping is refused before any file is read

    def read(file):
        return standardize_columns(_read_table(file), where=str(file), date_column=date_column, columns=mapping)

    checks = {"bad_bars": bad_bars, "adjust_prices": adjust_prices}
    if path.is_dir():
        frames, failures = {}, []
        for file in _symbol_files(path):
            try:
                frames[file.stem] = _checked_symbol_file(read(file), file)
            except DataError as error:
                failures.append(str(error))
        if not failures:
            return Panel(frames, **checks)
        summary = [f"{len(failures)} of {len(failures) + len(frames)} files could not be read (above)."]
        try:  # the readable files' bad bars in the same message, so one pass fixes everything
            Panel(frames, **checks) if frames else None
        except DataError as error:
            summary.insert(0, str(error))
        raise DataError(failures[0] if len(failures) == 1 and len(summary) == 1 else "\n".join(failures + summary))
    frame = read(path)
    if "symbol" not in frame.columns:
        return Panel({path.stem: frame}, **checks)
    return Panel({str(symbol): group.drop(columns="symbol") for symbol, group in frame.groupby("symbol", sort=False)},
                 **checks)


def _symbol_files(directory):
    """The directory's bar files, one per symbol; hidden files (editor and OS leftovers) are skipped, said once."""
    candidates = sorted(child for child in directory.iterdir() if child.suffix.lower() in BAR_FILE_SUFFIXES)
    hidden = [child.name for child in candidates if child.name.startswith(".")]
    if hidden:
        logger.info("%s: skipped hidden file(s) %s.", directory, hidden)
    files = [child for child in candidates if not child.name.startswith(".")]
    if not files:
        raise DataError(f"Directory {directory} holds no bar files ({', '.join(BAR_FILE_SUFFIXES)}).")
    by_symbol = {}
    for file in files:
        by_symbol.setdefault(file.stem, []).append(file.name)
    doubled = {symbol: names for symbol, names in by_symbol.items() if len(names) > 1}
    if doubled:
        symbol, names = next(iter(doubled.items()))
        raise DataError(f"Directory {directory} holds {len(names)} files for symbol '{symbol}' ({', '.join(names)}); "
                        "keep one, so it is clear which bars are used.")
    return files


def _checked_symbol_file(frame, path):
    if "symbol" in frame.columns:
        symbols = frame["symbol"].astype(str).unique()
        if len(symbols) > 1 or symbols[0] != path.stem:
            raise DataError(
                f"{path}: a per-symbol file named '{path.stem}' holds symbol(s) {list(symbols[:5])}. "
                "Rename the file, or pass a single long-format file instead of the directory."
            )
    return frame


def _read_table(path):
    if path.suffix.lower() not in BAR_FILE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{path.suffix}'. Use one of {list(BAR_FILE_SUFFIXES)}.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty.")
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty.") from None
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise DataError(f"{path}: could not be read ({error}).") from None
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no rows.")
    return frame
