"""The tf.data windowing pipeline: windows gathered by index, never stored.

All symbols' feature rows are stacked once into one `[rows, features]` matrix
(O(rows x features) memory). A window is named by the row of its last bar; the
dataset maps batches of those end rows to `[batch, sequence_length, features]`
tensors with one `tf.gather`, so no window is ever materialized ahead of time.
Windows never cross symbols or gaps in the data: an end row is valid only
when the `sequence_length - 1` rows before it belong to the same symbol and no
two consecutive rows in it are further apart than `max_gap_factor` times the
symbol's median bar spacing, unless that spacing is one of the market's
regular closures (nights, weekends, holidays of intraday bars; see
`keras_synapse.windows.sessions`).

For hybrid models (seed 002) a second matrix of `static` features is gathered
at each window's last bar, giving inputs `{"sequence": [L, F_seq], "static":
[F_static]}`.
"""

import dataclasses
import logging
import math

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError, DataError
from keras_synapse.windows.sessions import SessionHours, gap_breaks, learn_session_hours

logger = logging.getLogger("keras_synapse.windows")


@dataclasses.dataclass(frozen=True)
class WindowedPanel:
    """Feature rows of all symbols, stacked, with what each window needs.

    Row i holds the features of `symbol_names[symbol_codes[i]]` at
    `timestamps[i]`; rows of one symbol are contiguous and in time order.

    Attributes:
        features: float32 `[rows, features]`.
        targets: float32 `[rows]` training targets (NaN where unknown).
        forward_returns: float64 `[rows]` raw forward log returns.
        past_returns: float64 `[rows]` log return over the `horizon` bars up to
            and including each row (for the momentum baseline).
        timestamps: `datetime64[ns]` `[rows]` (UTC, tz dropped).
        label_end_times: `datetime64[ns]` `[rows]` (NaT where unknown).
        symbol_codes: int32 `[rows]`.
        symbol_names: tuple of symbols.
        feature_names: tuple of feature names.
        sequence_length: bars per window.
        window_ok: bool `[rows]`, true where a full window of one symbol,
            free of data gaps, ends.
        static_features: float32 `[rows, static features]` or `None`.
        static_feature_names: tuple of static feature names.
        head_targets: for multi-task models, dict head name -> float32
            `[rows]` targets (NaN where a head's label is unknown; such
            windows get weight 0 for that head), or `None`.
        sessions: the `SessionHours` the gap rule used.
    """

    features: np.ndarray
    targets: np.ndarray
    forward_returns: np.ndarray
    past_returns: np.ndarray
    timestamps: np.ndarray
    label_end_times: np.ndarray
    symbol_codes: np.ndarray
    symbol_names: tuple
    feature_names: tuple
    sequence_length: int
    window_ok: np.ndarray
    static_features: np.ndarray = None
    static_feature_names: tuple = ()
    head_targets: dict = None
    sessions: SessionHours = SessionHours()

    @property
    def calendar(self):
        """Sorted unique timestamps of all rows."""
        return np.unique(self.timestamps)

    def symbol_calendars(self):
        """Each symbol's own bar times (its feature rows), a dict symbol -> `DatetimeIndex` (UTC)."""
        return {symbol: pd.DatetimeIndex(self.timestamps[self.symbol_codes == code], tz="UTC")
                for code, symbol in enumerate(self.symbol_names)}

    def labelled_ends(self):
        """Rows that end a full window and have a known label."""
        return np.flatnonzero(self.window_ok & np.isfinite(self.targets))

    def window_frame(self, ends):
        """Returns (symbol, timestamp, target, forward_return) for window ends."""
        return pd.DataFrame(
            {
                "symbol": np.asarray(self.symbol_names)[self.symbol_codes[ends]],
                "timestamp": pd.to_datetime(self.timestamps[ends], utc=True),
                "target": self.targets[ends],
                "forward_return": self.forward_returns[ends],
                "past_return": self.past_returns[ends],
            }
        )

    def gather(self, ends):
        """Materializes the inputs of the windows ending at `ends` as NumPy (small sets only).

        Returns:
            A dict with `"sequence"` (and `"static"` for hybrid panels).
        """
        ends = np.asarray(ends)
        inputs = {"sequence": self.features[ends[:, None] + np.arange(-self.sequence_length + 1, 1)]}
        if self.static_features is not None:
            inputs["static"] = self.static_features[ends]
        return inputs


def build_windowed_panel(feature_frames, labels, sequence_length, horizon, static_frames=None, max_gap_factor=5.0,
                         head_labels=None, sessions=None, exchange_calendars=None):
    """Stacks per-symbol features and labels into a `WindowedPanel`.

    Args:
        feature_frames: dict symbol -> sequence feature frame (warm-up dropped).
        labels: dict symbol -> `Label` (see `keras_synapse.labels`).
        sequence_length: bars per window.
        horizon: the label horizon, for the momentum baseline's past return.
        static_frames: dict symbol -> static feature frame for hybrid inputs,
            or `None`. Rows are aligned to `feature_frames`; a bar missing from
            either is dropped from both. Defaults to `None`.
        head_labels: for multi-task models, dict head name -> (dict symbol
            -> `Label`). `labels` stays the primary label (it decides which
            windows are labelled); a window's label end time, used for
            purging, is the latest end time over the primary label and every
            head. Defaults to `None`.
        max_gap_factor: a window is invalid when two consecutive bars in it
            are further apart than this multiple of the symbol's median bar
            spacing (a data outage); `0` disables the check. Defaults to `5.0`.
        sessions: `SessionHours` of the market's regular closures, which are
            not outages. Defaults to `None`: learned from the feature rows'
            times (`learn_session_hours`).
        exchange_calendars: an `ExchangeCalendars` whose sessions the gap
            rule counts daily bars in (a holiday is then no outage), or
            `None` for calendar time. Defaults to `None`.

    Returns:
        A `WindowedPanel`.

    Raises:
        DataError: when a symbol's features hold NaN or infinite values after
            the warm-up (naming the symbol, feature and first timestamp), or
            when no symbol has enough rows for one window.
    """
    if sessions is None:
        sessions = learn_session_hours([frame.index for frame in feature_frames.values()], max_gap_factor)
    parts = []
    for code, (symbol, frame) in enumerate(feature_frames.items()):
        static = None
        if static_frames is not None:
            common = frame.index.intersection(static_frames[symbol].index)
            frame, static = frame.loc[common], static_frames[symbol].loc[common]
            _check_finite(static, symbol)
        _check_finite(frame, symbol)
        label = labels[symbol]
        # The forward return known at t - horizon is the past return at t (with an execution lag, the one
        # labelled at t - horizon - lag: the label at t is that of bar t + lag).
        past = label.forward_return.shift(horizon + label.execution_lag).reindex(frame.index)
        part = {
            "features": frame.to_numpy(dtype=np.float32),
            "targets": label.values.reindex(frame.index).to_numpy(dtype=np.float32),
            "forward_returns": label.forward_return.reindex(frame.index).to_numpy(dtype=np.float64),
            "past_returns": past.to_numpy(dtype=np.float64),
            "timestamps": _naive_utc(frame.index),
            "label_end_times": _naive_utc(pd.DatetimeIndex(label.end_time.reindex(frame.index))),
            "symbol_codes": np.full(len(frame), code, dtype=np.int32),
            "window_ok": window_ok(symbol, frame.index, sequence_length, max_gap_factor, sessions, exchange_calendars),
        }
        if static is not None:
            part["static_features"] = static.to_numpy(dtype=np.float32)
        for head, head_label in (head_labels or {}).items():
            part[f"head:{head}"] = head_label[symbol].values.reindex(frame.index).to_numpy(dtype=np.float32)
            head_end = _naive_utc(pd.DatetimeIndex(head_label[symbol].end_time.reindex(frame.index)))
            # Purge on whichever label becomes known last (NaT compares as missing).
            part["label_end_times"] = np.where(np.isnat(head_end), part["label_end_times"],
                                               np.where(np.isnat(part["label_end_times"]), head_end,
                                                        np.maximum(part["label_end_times"], head_end)))
        parts.append(part)
    _say_symbols_without_windows(feature_frames, parts, sequence_length)
    _say_windows_lost_to_gaps(feature_frames, parts, sequence_length, max_gap_factor)
    stacked = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    head_targets = {key.partition(":")[2]: stacked.pop(key) for key in list(stacked) if key.startswith("head:")}
    if not stacked["window_ok"].any():
        raise DataError(
            f"No symbol has enough rows after the feature warm-up for one window of {sequence_length} bars."
        )
    return WindowedPanel(
        symbol_names=tuple(feature_frames),
        feature_names=tuple(next(iter(feature_frames.values())).columns),
        static_feature_names=tuple(next(iter(static_frames.values())).columns) if static_frames else (),
        sequence_length=sequence_length,
        head_targets=head_targets or None,
        sessions=sessions,
        **stacked,
    )


def _say_symbols_without_windows(feature_frames, parts, sequence_length):
    """One warning naming the symbols that give no complete window (they are then unused), and why."""
    unused = [f"{symbol} ({len(part['timestamps'])} feature rows" + (
        ")" if len(part["timestamps"]) < sequence_length else ", but none of its windows is free of data gaps)")
        for symbol, part in zip(feature_frames, parts) if not part["window_ok"].any()]
    if unused:
        logger.warning("%d symbol(s) give no complete window of %d bars and are not used: %s.", len(unused),
                       sequence_length, ", ".join(unused))


def _say_windows_lost_to_gaps(feature_frames, parts, sequence_length, max_gap_factor):
    """One warning with how many windows the gap rule skipped, and where most of them were."""
    lost = {symbol: int(((np.arange(len(part["window_ok"])) >= sequence_length - 1) & ~part["window_ok"]).sum())
            for symbol, part in zip(feature_frames, parts)}
    total = sum(lost.values())
    if total == 0:
        return
    possible = sum(max(0, len(part["window_ok"]) - sequence_length + 1) for part in parts)
    worst = max(lost, key=lost.get)
    logger.warning("%d of %d windows (%.1f%%) span a data outage (a spacing over %g x their symbol's median bar "
                   "spacing that is not one of the market's regular closures) and are skipped (%d symbol(s); most "
                   "in %s: %d). --set max_gap_factor=0 keeps every window, a larger factor keeps longer outages; for daily "
                   "bars, --set exchange_calendar=XNYS (or XSHG, XKRX, ...) counts the exchange's holidays as closures.",
                   total, possible, 100 * total / max(possible, 1), max_gap_factor,
                   sum(count > 0 for count in lost.values()), worst, lost[worst])


def _naive_utc(index):
    return index.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]")


def window_ok(symbol, index, sequence_length, max_gap_factor, sessions, exchange_calendars=None):
    """`complete_windows` of one symbol's rows, its time counted in its exchange's sessions where it has a calendar.

    Shared by training and inference, so both drop exactly the same windows.
    """
    if exchange_calendars and exchange_calendars.code_for(symbol):
        return complete_windows(exchange_calendars.gap_times(symbol, index), sequence_length, max_gap_factor)
    return complete_windows(index.as_unit("ns").asi8, sequence_length, max_gap_factor, sessions)


def complete_windows(timestamps, sequence_length, max_gap_factor, sessions=None):
    """True where the `sequence_length` rows ending here hold no data gap.

    Shared by training and inference (NumPy only, no TensorFlow), so both
    drop exactly the same windows.

    Args:
        timestamps: int64 nanoseconds of one symbol's rows, increasing.
        sequence_length: bars per window.
        max_gap_factor: a spacing above this multiple of the median spacing
            is a gap; `0` disables the check.
        sessions: `SessionHours` whose regular closures (nights, weekends)
            are not gaps, or `None`. Defaults to `None`.
    """
    positions = np.arange(len(timestamps))
    complete = positions >= sequence_length - 1
    broken = gap_breaks(timestamps, max_gap_factor, sessions)
    # Rows since the last gap: a window is clean when it starts at or after it.
    last_break = np.maximum.accumulate(np.where(broken, positions, 0))
    return complete & (positions - last_break >= sequence_length - 1)


def _check_finite(frame, symbol):
    values = frame.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise DataError(
            f"Symbol '{symbol}', feature '{frame.columns[column]}': NaN or infinite value at "
            f"{frame.index[row]} after the warm-up. Check the bars around that time."
        )


def select_ends(windowed, ends, *, stride=1, start=None, end=None, label_before=None):
    """Filters window end rows by time and thins them to a stride.

    Args:
        windowed: a `WindowedPanel`.
        ends: candidate end rows.
        stride: keep ends whose position on the panel calendar is a multiple
            of `stride` counted back from the calendar's last bar, so all
            symbols share the same end dates. Defaults to `1`.
        start: keep ends at or after this `datetime64`. Defaults to `None`.
        end: keep ends at or before this `datetime64`. Defaults to `None`.
        label_before: keep ends whose label end time is strictly before this
            `datetime64` (purging). Defaults to `None`.

    Returns:
        The selected end rows, sorted.
    """
    timestamps = windowed.timestamps[ends]
    keep = np.ones(len(ends), dtype=bool)
    if stride > 1:
        calendar = windowed.calendar
        position = np.searchsorted(calendar, timestamps)
        keep &= (len(calendar) - 1 - position) % stride == 0
    if start is not None:
        keep &= timestamps >= start
    if end is not None:
        keep &= timestamps <= end
    if label_before is not None:
        label_end = windowed.label_end_times[ends]
        keep &= ~np.isnat(label_end) & (label_end < label_before)
    return np.sort(ends[keep])


def make_dataset(windowed, ends, batch_size=64, shuffle=False, seed=None, with_targets=True, sample_weights=None,
                 initial_epoch=0):
    """A `tf.data.Dataset` of `(inputs, targets[, weights])` batches, gathered by index.

    Windows are gathered from the stacked feature matrix inside the pipeline
    (parallel `map` after `batch`, then `prefetch`), so memory stays
    O(rows x features) whatever the number of windows. Inputs are
    `{"sequence": [batch, L, F]}`, plus `"static": [batch, F_static]` for
    hybrid panels.

    A shuffled dataset is an endless stream of epochs whose orders depend on
    `(seed, epoch)` alone (see `shuffled_epoch_batches`), so a run resumed at
    `initial_epoch` sees exactly the batches an uninterrupted run sees; give
    `fit` its `steps_per_epoch = ceil(len(ends) / batch_size)`.

    Args:
        windowed: a `WindowedPanel`.
        ends: window end rows.
        batch_size: windows per batch. Defaults to `64`.
        shuffle: shuffle the windows each epoch (training only). Defaults to
            `False`.
        seed: the shuffle seed (an int). Defaults to `None` (0).
        with_targets: yield `(inputs, targets)` pairs rather than inputs only.
            Defaults to `True`.
        sample_weights: one weight per entry of `ends`, or `None`. Defaults to
            `None`.
        initial_epoch: the first epoch of a shuffled stream. Defaults to `0`.

    Returns:
        A batched, prefetched `tf.data.Dataset`; targets are `[batch, 1]`, or
        for multi-task panels dicts head -> `[batch, 1]` with per-head weights
        that are 0 where a head's label is unknown.
    """
    import tensorflow as tf

    ends = np.asarray(ends, dtype=np.int64)
    weighted = sample_weights is not None or bool(windowed.head_targets)
    weights = np.ones(len(ends), np.float32) if sample_weights is None else np.asarray(sample_weights, np.float32)
    columns = (tf.constant(ends), tf.constant(weights))
    if shuffle:
        index_batches, _ = shuffled_epoch_batches(len(ends), batch_size, seed or 0, initial_epoch)
        dataset = index_batches.map(lambda index: tuple(tf.gather(column, index) for column in columns))
    else:
        dataset = tf.data.Dataset.from_tensor_slices(columns).batch(batch_size)
    gather = _window_gatherer(windowed, with_targets, weighted)
    return dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def _window_gatherer(windowed, with_targets, weighted):
    """The per-batch map from `(end rows, weights)` to model inputs, targets and weights."""
    import tensorflow as tf

    features = tf.constant(windowed.features)
    static = None if windowed.static_features is None else tf.constant(windowed.static_features)
    offsets = tf.range(-windowed.sequence_length + 1, 1, dtype=tf.int64)
    if windowed.head_targets:
        targets = {name: tf.constant(np.nan_to_num(values)[:, None]) for name, values in windowed.head_targets.items()}
        known = {name: tf.constant(np.isfinite(values).astype(np.float32))
                 for name, values in windowed.head_targets.items()}
    else:
        targets = tf.constant(np.nan_to_num(windowed.targets)[:, None])

    def gather(end_rows, weights):
        inputs = {"sequence": tf.gather(features, end_rows[:, None] + offsets)}
        if static is not None:
            inputs["static"] = tf.gather(static, end_rows)
        if not with_targets:
            return inputs
        if windowed.head_targets:
            # A head whose label is unknown for a window learns nothing from it.
            return (inputs, {name: tf.gather(values, end_rows) for name, values in targets.items()},
                    {name: tf.gather(mask, end_rows) * weights for name, mask in known.items()})
        if weighted:
            return inputs, tf.gather(targets, end_rows), weights
        return inputs, tf.gather(targets, end_rows)

    return gather


def shuffled_epoch_batches(num_elements, batch_size, seed, initial_epoch=0):
    """Batches of element indices, shuffled afresh each epoch from `(seed, epoch)` alone.

    Epoch `e`'s order is `tf.random.experimental.stateless_shuffle` of
    `range(num_elements)` with seed `[seed, e]`: the same in any process,
    whatever came before, and independent of the global seed. The stream
    starts at `initial_epoch` and never ends, so `fit` must get
    `steps_per_epoch` (returned here); a resumed run then sees exactly the
    batches an uninterrupted one sees at the same epochs. Each epoch ends
    with its own partial batch; batches never straddle epochs.

    Map the indices to windows and weights, e.g.
    `batches.map(lambda index: (tf.gather(ends, index), tf.gather(weights, index)))`,
    before gathering the inputs.

    Args:
        num_elements: the number of training elements, >= 1.
        batch_size: elements per batch, >= 1.
        seed: the shuffle seed (an int).
        initial_epoch: the first epoch the stream yields. Defaults to `0`.

    Returns:
        `(dataset, steps_per_epoch)`: an infinite `tf.data.Dataset` of int64
        index vectors, and `ceil(num_elements / batch_size)`.
    """
    import tensorflow as tf

    if num_elements < 1 or batch_size < 1:
        raise ConfigError(f"`num_elements` and `batch_size` must be >= 1. Received: num_elements={num_elements}, "
                          f"batch_size={batch_size}")
    seed = tf.constant(int(seed), dtype=tf.int64)
    indices = tf.range(int(num_elements), dtype=tf.int64)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(indices, seed=tf.stack([seed, epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(int(batch_size))

    dataset = tf.data.Dataset.counter(start=int(initial_epoch), dtype=tf.int64).flat_map(epoch_batches)
    return dataset, math.ceil(num_elements / batch_size)
