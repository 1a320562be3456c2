"""Streaming predictions: a rolling buffer of each symbol's last bars, recomputed only for symbols that got bars."""

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from keras_synapse.data.panel import OHLCV_COLUMNS, validate_bars
from keras_synapse.errors import DataError, SynapseError
from keras_synapse.serving.model_inputs import FeatureMismatchError
from keras_synapse.windows.sessions import outages

# One logger for the whole inference path, whichever module speaks.
logger = logging.getLogger("keras_synapse.serving.inference")


class PredictionStream:
    """Per-symbol rolling buffers of raw bars, scored as new bars arrive.

    Each symbol keeps its last `buffer_length` bars. `update(new_bars)`
    appends bars (a bar stamped like the buffer's last bar replaces it, a
    correction of a still-forming bar; older bars are ignored with a
    warning), recomputes the features of the updated symbols on their
    buffers only, and scores each one's newest window in one model call.
    Stackable feature sets (`FeatureSet.stackable`) are computed for all updated
    symbols in one vectorized call on their buffers laid end to end (see the
    module docstring for why that is exact); others symbol by symbol.

    Not thread-safe: give each thread its own stream.

    Args:
        predictor: a `Predictor`.
        panel: a `Panel` whose last bars seed the buffers, or `None`.
            Defaults to `None`.
        buffer_length: bars kept per symbol. Defaults to the predictor's
            `sequence_length + 3 * warmup - 1`.

    Raises:
        ConfigError: when `buffer_length` is shorter than one window needs.
    """

    def __init__(self, predictor, panel=None, buffer_length=None):
        from keras_synapse.errors import ConfigError

        self.predictor = predictor
        inputs = predictor.inputs
        self.buffer_length = int(buffer_length or inputs.default_buffer_length())
        if self.buffer_length < inputs.required_bars:
            raise ConfigError(
                f"`buffer_length` must be >= {inputs.required_bars} (feature warm-up {inputs.warmup} - 1 + "
                f"sequence_length {inputs.sequence_length}). Received: buffer_length={self.buffer_length}")
        self._timestamps = {}
        self._values = {}
        if inputs.history_dependent_sets:
            logger.warning("Feature set(s) %s refit a GARCH model on the history they are given: streaming values "
                           "on a %d-bar buffer differ from full-history (batch) values; pass a buffer_length that "
                           "covers the whole history for exact agreement.",
                           inputs.history_dependent_sets, self.buffer_length)
        if panel is not None:
            for symbol, frame in panel.items():
                tail = frame.iloc[-self.buffer_length:]
                self._timestamps[symbol] = tail.index.tz_convert("UTC").as_unit("ns").asi8.copy()
                self._values[symbol] = tail[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64, copy=True)

    @property
    def symbols(self):
        return tuple(self._timestamps)

    def bars(self, symbol):
        """The buffered bars of `symbol` as a canonical OHLCV frame."""
        index = pd.DatetimeIndex(self._timestamps[symbol]).tz_localize("UTC").rename("timestamp")
        return pd.DataFrame(self._values[symbol], index=index, columns=list(OHLCV_COLUMNS))

    # --- Appending bars ---------------------------------------------------------------

    def update(self, new_bars, on_invalid="neutral"):
        """Appends new bars and returns the newest window's prediction of each symbol that got bars.

        Args:
            new_bars: a `Panel`, a dict symbol -> frame of bars (a
                `DatetimeIndex` or a `timestamp` column), or one long frame
                with a `symbol` column. Bars are validated like
                `keras_synapse.data.validate_bars` (one vectorized pass; the
                validator itself only runs to explain a failure).
            on_invalid: `"neutral"`: a symbol whose bars fail gets the
                neutral signal with the validation message, and its buffer is
                left as it was; `"raise"`: raise the `DataError` instead,
                before any buffer changes. Defaults to `"neutral"`.

        Returns:
            A frame like `Predictor.predict_latest`, one row per symbol in
            `new_bars` but the model's reference series (the market, sector
            or VIX a cross-asset feature reads: inputs, not predicted).

        Raises:
            DataError: for unparsable input, or invalid bars with
                `on_invalid="raise"`.
        """
        if on_invalid not in ("neutral", "raise"):
            raise SynapseError(f"`on_invalid` must be 'neutral' or 'raise'. Received: on_invalid={on_invalid!r}")
        arrays, suspicious = _bars_as_arrays(new_bars)
        rejected = {}
        for symbol in suspicious:
            problem = _validation_message(symbol, *arrays[symbol])
            if problem and on_invalid == "raise":
                raise DataError(problem)
            if problem:
                rejected[symbol] = problem
        for symbol, (timestamps, values) in arrays.items():
            if symbol not in rejected:
                self._append(symbol, timestamps, values)
        references = set(self.predictor.inputs.reference_inputs(tuple(self._timestamps)))
        rows = self.latest([symbol for symbol in arrays if symbol not in rejected and symbol not in references])
        if rejected:
            neutral = self._neutral_rows(list(rejected), [f"invalid bars: {reason}" for reason in rejected.values()])
            rows = pd.concat([rows, neutral]).loc[list(arrays)]
        return rows

    def _append(self, symbol, timestamps, values):
        if symbol not in self._timestamps:
            self._keep_tail(symbol, timestamps, values)
            return
        old_timestamps, old_values = self._timestamps[symbol], self._values[symbol]
        last = old_timestamps[-1]
        stale = timestamps < last
        if stale.any():
            logger.warning("Symbol '%s': %d bar(s) at or before %s ignored (the buffer already ends at %s).",
                           symbol, int(stale.sum()), pd.Timestamp(int(timestamps[stale][0]), tz="UTC"),
                           pd.Timestamp(int(last), tz="UTC"))
            timestamps, values = timestamps[~stale], values[~stale]
        if len(timestamps) and timestamps[0] == last:  # a correction of the still-forming last bar
            old_timestamps, old_values = old_timestamps[:-1], old_values[:-1]
        keep = self.buffer_length - len(timestamps)
        if keep <= 0:
            self._keep_tail(symbol, timestamps, values)
        else:
            self._timestamps[symbol] = np.concatenate([old_timestamps[-keep:], timestamps])
            self._values[symbol] = np.concatenate([old_values[-keep:], values])

    def _keep_tail(self, symbol, timestamps, values):
        self._timestamps[symbol] = timestamps[-self.buffer_length:]
        self._values[symbol] = values[-self.buffer_length:]

    # --- Scoring the newest windows ------------------------------------------------------

    def latest(self, symbols=None):
        """The newest window's prediction of `symbols` (default: every buffered symbol).

        Returns:
            A frame indexed by `symbol` with `timestamp`, `score`,
            probabilities for classifiers, `fallback` and `reason`.
        """
        inputs = self.predictor.inputs
        if symbols is None:  # the reference series are inputs, not predicted
            references = set(inputs.reference_inputs(tuple(self._timestamps)))
            symbols = [symbol for symbol in self._timestamps if symbol not in references]
        symbols = list(symbols)
        length = inputs.sequence_length
        reasons = {}
        ready = []
        for symbol in symbols:
            if symbol not in self._timestamps:
                reasons[symbol] = "no bars for this symbol"
            elif len(self._timestamps[symbol]) < inputs.required_bars:
                reasons[symbol] = (f"needs {inputs.required_bars} bars (feature warm-up {inputs.warmup} - 1 + "
                                   f"sequence_length {length}), has {len(self._timestamps[symbol])}")
            else:
                ready.append(symbol)
        ready = self._without_gaps(ready, reasons)
        sequence, static, names = self._last_windows(ready, reasons)
        columns, predicted = None, []
        if names:
            model_inputs = {"sequence": sequence}
            if static is not None:
                model_inputs["static"] = static
            try:
                columns = self.predictor.output_columns(self.predictor.run(model_inputs))
                predicted = names
            except Exception as error:  # any model failure must end in the neutral signal, not a crash
                logger.error("Model failed on %d window(s): %s", len(names), error)
                reasons.update({symbol: f"model failed: {error}" for symbol in names})
        frames = []
        if predicted:
            last_bars = pd.DatetimeIndex([self._timestamps[symbol][-1] for symbol in predicted]).tz_localize("UTC")
            frames.append(pd.DataFrame({
                "timestamp": last_bars,
                **columns, "fallback": False, "reason": ""}, index=pd.Index(predicted, name="symbol")))
        failed = [symbol for symbol in symbols if symbol in reasons]
        if failed:
            frames.append(self._neutral_rows(failed, [reasons[symbol] for symbol in failed]))
        if not frames:
            return self._neutral_rows([], [])
        return pd.concat(frames).loc[symbols]

    def _neutral_rows(self, symbols, reasons):
        for symbol, reason in zip(symbols, reasons):
            logger.warning("Symbol '%s': neutral signal (%s).", symbol, reason)
        timestamps = [pd.Timestamp(int(self._timestamps[symbol][-1]), tz="UTC") if symbol in self._timestamps
                      else pd.NaT for symbol in symbols]
        return pd.DataFrame({"timestamp": pd.DatetimeIndex(timestamps, tz="UTC") if symbols else
                             pd.DatetimeIndex([], tz="UTC"), **self.predictor.neutral_columns(len(symbols)),
                             "fallback": True, "reason": list(reasons)}, index=pd.Index(symbols, name="symbol"))

    def _without_gaps(self, symbols, reasons):
        """Drops symbols whose newest window spans a data gap (the training rule), noting why."""
        factor, length = self.predictor.inputs.max_gap_factor, self.predictor.inputs.sequence_length
        if factor <= 0 or length < 2 or not symbols:
            return symbols
        if len({len(self._timestamps[symbol]) for symbol in symbols}) == 1:  # the usual case: one matrix
            spacings = np.diff(np.stack([self._timestamps[symbol] for symbol in symbols]), axis=1)
        else:
            spacings = [np.diff(self._timestamps[symbol]) for symbol in symbols]
        kept = []
        for symbol, spacing, median in zip(symbols, spacings, _medians(spacings)):
            window = self._timestamps[symbol][-length:]
            broken = outages(window[:-1], window[1:], factor * median, self.predictor.inputs.sessions)
            if len(spacing) >= 2 and broken.any():
                reasons[symbol] = self._gap_reason(window, int(np.argmax(broken)), median, factor)
            else:
                kept.append(symbol)
        return kept

    @staticmethod
    def _gap_reason(window, position, median, factor):
        return (f"data gap in the newest window: {pd.Timestamp(int(window[position]), tz='UTC')} to "
                f"{pd.Timestamp(int(window[position + 1]), tz='UTC')} is more than {factor:g} x the median "
                f"bar spacing {pd.Timedelta(int(median))} and not a regular session closure")

    def _last_windows(self, symbols, reasons):
        """The newest window of each symbol: `(sequence [S, L, F], static [S, Fs] or None, symbols kept)`."""
        if not symbols:
            return None, None, []
        inputs = self.predictor.inputs
        try:
            if inputs.stackable:
                sequence, static, timestamps = self._stacked_features(symbols)
            else:
                sequence, static, timestamps = self._per_symbol_features(symbols, reasons)
        except SynapseError:
            raise
        except Exception as error:  # a feature function failing on odd bars: neutral for these symbols
            logger.error("Feature computation failed: %s", error)
            reasons.update({symbol: f"feature computation failed: {error}" for symbol in symbols})
            return None, None, []
        kept = [symbol for symbol in symbols if symbol in sequence]
        if not kept:
            return None, None, []
        sequence_stack = np.stack([sequence[symbol] for symbol in kept])
        static_stack = None if static is None else np.stack([static[symbol] for symbol in kept])
        finite = np.isfinite(sequence_stack).all(axis=(1, 2))
        if static_stack is not None:
            finite &= np.isfinite(static_stack).all(axis=1)
        for position in np.flatnonzero(~finite):
            symbol = kept[position]
            reasons[symbol] = self._non_finite_reason(symbol, sequence_stack[position],
                                                      None if static_stack is None else static_stack[position],
                                                      timestamps[symbol])
        kept = [symbol for symbol, ok in zip(kept, finite) if ok]
        return (sequence_stack[finite].astype(np.float32),
                None if static_stack is None else static_stack[finite].astype(np.float32), kept)

    def _non_finite_reason(self, symbol, window, static_row, timestamps):
        inputs = self.predictor.inputs
        bad = ~np.isfinite(window)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            name, when = inputs.feature_names[column], timestamps[row]
        else:
            column = int(np.argmax(~np.isfinite(static_row)))
            name, when = inputs.static_feature_names[column], timestamps[-1]
        return f"feature '{name}' is NaN or infinite at {pd.Timestamp(int(when), tz='UTC')}"

    def _stacked_features(self, symbols):
        """Features of all `symbols` in one call on their buffers laid end to end (stackable sets only)."""
        from keras_synapse.features import get_feature_set

        inputs = self.predictor.inputs
        length = inputs.sequence_length
        lengths = np.array([len(self._timestamps[symbol]) for symbol in symbols])
        ends = np.cumsum(lengths) - 1
        bars = pd.DataFrame(np.concatenate([self._values[symbol] for symbol in symbols]), columns=list(OHLCV_COLUMNS))
        rows = ends[:, None] + np.arange(-length + 1, 1)
        frame = get_feature_set(inputs.feature_set).compute(bars, {})
        values = frame[inputs.check_columns(frame.columns, "sequence")].to_numpy(dtype=np.float64)[rows]
        sequence = dict(zip(symbols, values))
        static = None
        if inputs.static_feature_set:
            static_frame = get_feature_set(inputs.static_feature_set).compute(bars, {})
            static_values = static_frame[inputs.check_columns(static_frame.columns, "static")].to_numpy(
                dtype=np.float64)[ends]
            static = dict(zip(symbols, static_values))
        timestamps = {symbol: self._timestamps[symbol][-length:] for symbol in symbols}
        return sequence, static, timestamps

    def _per_symbol_features(self, symbols, reasons):
        """Features symbol by symbol on each buffer, with reference series from the buffers."""
        from keras_synapse.features import get_feature_set
        from keras_synapse.features.references import resolve_references, symbol_roles

        inputs = self.predictor.inputs
        length = inputs.sequence_length
        names = {name for symbol in symbols for name in symbol_roles(inputs.references, symbol).values()}
        frames = {name: self.bars(name) for name in names if name in self._timestamps}
        sets = [(get_feature_set(inputs.feature_set), "sequence")]
        if inputs.static_feature_set:
            sets.append((get_feature_set(inputs.static_feature_set), "static"))
        # A missing reference fails the call, not one symbol: no symbol could be served without it.
        references = {(feature_set.name, symbol): resolve_references(feature_set, frames, inputs.references, symbol)
                      for feature_set, _ in sets for symbol in symbols}
        sequence, static, timestamps = {}, {} if inputs.static_feature_set else None, {}
        for symbol in symbols:
            bars = frames.get(symbol)
            if bars is None:
                bars = self.bars(symbol)
            try:
                computed = []
                for feature_set, part in sets:
                    frame = feature_set.compute(bars, references[feature_set.name, symbol])
                    computed.append(frame[inputs.check_columns(frame.columns, part)])
            except SynapseError as error:
                if isinstance(error, FeatureMismatchError):
                    raise
                reasons[symbol] = str(error)
                continue
            frame = computed[0]
            if len(computed) > 1:
                common = frame.index.intersection(computed[1].index)
                frame, static_frame = frame.loc[common], computed[1].loc[common]
                static[symbol] = static_frame.to_numpy(dtype=np.float64)[-1]
            if len(frame) < length:
                reasons[symbol] = f"only {len(frame)} aligned feature rows, the window needs {length}"
                static.pop(symbol, None) if static is not None else None
                continue
            sequence[symbol] = frame.to_numpy(dtype=np.float64)[-length:]
            timestamps[symbol] = frame.index[-length:].as_unit("ns").asi8
        return sequence, static, timestamps


def _medians(spacings):
    if isinstance(spacings, np.ndarray):
        return np.median(spacings, axis=1) if spacings.shape[1] else np.zeros(len(spacings))
    return [np.median(spacing) if len(spacing) else 0 for spacing in spacings]


def _bars_as_arrays(new_bars):
    """Parses new bars to dict symbol -> (int64 ns UTC timestamps, float64 [n, 5] OHLCV), sorted by time.

    Returns:
        The dict and the set of symbols whose bars fail a fast vectorized
        check (to be confirmed, and explained, by `validate_bars`).
    """
    if isinstance(new_bars, pd.DataFrame):
        if "symbol" not in new_bars.columns:
            raise DataError(f"New bars as one frame need a 'symbol' column. Received columns: {list(new_bars.columns)}")
        frame = new_bars
        if "timestamp" in frame.columns:
            stamps = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"].to_numpy(), utc=False))
        elif isinstance(frame.index, pd.DatetimeIndex):
            stamps = frame.index
        else:
            raise DataError("New bars need a 'timestamp' column or a DatetimeIndex.")
        missing = [name for name in OHLCV_COLUMNS if name not in frame.columns]
        if missing:
            raise DataError(f"New bars: missing required column(s) {missing}. Received columns: {list(frame.columns)}")
        timestamps = _utc_nanoseconds(stamps, "new bars")
        values = _numeric(frame)
        symbols = frame["symbol"].astype(str).to_numpy()
        order = np.lexsort((timestamps, symbols))
        symbols, timestamps, values = symbols[order], timestamps[order], values[order]
        names, starts = np.unique(symbols, return_index=True)
        bounds = np.append(starts[1:], len(symbols))
        bad_rows = _suspicious_rows(values)
        same_symbol = symbols[1:] == symbols[:-1]
        bad_rows[1:] |= same_symbol & ((np.diff(timestamps) <= 0) | _absurd_jumps(values))
        suspicious = set(symbols[bad_rows])
        parts = {name: (timestamps[start:end], values[start:end]) for name, start, end in zip(names, starts, bounds)}
        # Keep the symbols in their order of first appearance.
        return {name: parts[name] for name in dict.fromkeys(frame["symbol"].astype(str))}, suspicious
    if isinstance(new_bars, Mapping):
        arrays, suspicious = {}, set()
        for symbol, frame in new_bars.items():
            symbol = str(symbol)
            if not isinstance(frame.index, pd.DatetimeIndex):
                from keras_synapse.data.panel import standardize_columns

                frame = standardize_columns(frame, f"new bars of '{symbol}'")
            missing = [name for name in OHLCV_COLUMNS if name not in frame.columns]
            if missing:
                raise DataError(f"Symbol '{symbol}': missing required column(s) {missing}. "
                                f"Received columns: {list(frame.columns)}")
            timestamps, values = _utc_nanoseconds(frame.index, f"symbol '{symbol}'"), _numeric(frame)
            if _suspicious_rows(values).any() or (np.diff(timestamps) <= 0).any() or _absurd_jumps(values).any():
                suspicious.add(symbol)
            arrays[symbol] = (timestamps, values)
        return arrays, suspicious
    raise DataError(f"New bars must be a Panel, a dict symbol -> frame or a long frame with a 'symbol' column. "
                    f"Received: {type(new_bars).__name__}")


def _numeric(frame):
    """The OHLCV columns as float64; non-numeric values become NaN (and fail the check with their message)."""
    try:
        return frame[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        return frame[list(OHLCV_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)


def _utc_nanoseconds(index, where):
    if index.tz is None:
        logger.warning("%s: naive timestamps taken as UTC.", where[0].upper() + where[1:])
        index = index.tz_localize("UTC")
    return index.tz_convert("UTC").as_unit("ns").asi8


def _suspicious_rows(values):
    """Rows failing a check stricter than `validate_bars` (no rounding slack): NaN, prices <= 0, ranges."""
    opens, highs, lows, closes, volumes = values.T
    with np.errstate(invalid="ignore"):
        return (~np.isfinite(values).all(axis=1) | (values[:, :4] <= 0).any(axis=1) | (volumes < 0) | (highs < lows)
                | (opens > highs) | (opens < lows) | (closes > highs) | (closes < lows))


def _absurd_jumps(values):
    """Per row after the first: a price over `ABSURD_FACTOR` times (or under 1/x of) the previous row's close.

    Such rows go through `validate_bars`, whose plausibility check judges them against the symbol's own moves.
    """
    from keras_synapse.data.plausibility import ABSURD_FACTOR

    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.abs(np.log(values[1:, :4] / values[:-1, 3:4]))
    return (ratios > np.log(ABSURD_FACTOR)).any(axis=1)


def _validation_message(symbol, timestamps, values):
    """`None` when `validate_bars` accepts the bars, else its message."""
    index = pd.DatetimeIndex(timestamps).tz_localize("UTC").rename("timestamp")
    try:
        validate_bars(pd.DataFrame(values, index=index, columns=list(OHLCV_COLUMNS)), symbol)
    except DataError as error:
        return str(error)
    return None
