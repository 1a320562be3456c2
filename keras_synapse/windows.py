"""The tf.data windowing pipeline: windows gathered by index, never stored.

All symbols' feature rows are stacked once into one `[rows, features]` matrix
(O(rows x features) memory). A window is named by the row of its last bar; the
dataset maps batches of those end rows to `[batch, sequence_length, features]`
tensors with one `tf.gather`, so no window is ever materialized ahead of time.
Windows never cross symbols: an end row is valid only when the
`sequence_length - 1` rows before it belong to the same symbol.
"""

import dataclasses

import numpy as np
import pandas as pd
import tensorflow as tf

from keras_synapse.errors import DataError


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
        window_ok: bool `[rows]`, true where a full window of one symbol ends.
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

    @property
    def calendar(self):
        """Sorted unique timestamps of all rows."""
        return np.unique(self.timestamps)

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
        """Materializes the windows ending at `ends` as NumPy (small sets only)."""
        offsets = np.arange(-self.sequence_length + 1, 1)
        return self.features[np.asarray(ends)[:, None] + offsets]


def build_windowed_panel(feature_frames, labels, sequence_length, horizon):
    """Stacks per-symbol features and labels into a `WindowedPanel`.

    Args:
        feature_frames: dict symbol -> feature frame (warm-up dropped).
        labels: dict symbol -> `Label` (see `keras_synapse.labels`).
        sequence_length: bars per window.
        horizon: the label horizon, for the momentum baseline's past return.

    Returns:
        A `WindowedPanel`.

    Raises:
        DataError: when a symbol's features hold NaN or infinite values after
            the warm-up (naming the symbol, feature and first timestamp), or
            when no symbol has enough rows for one window.
    """
    parts = []
    for code, (symbol, frame) in enumerate(feature_frames.items()):
        _check_finite(frame, symbol)
        label = labels[symbol]
        # The forward return known at t - horizon is the past return at t.
        past = label.forward_return.shift(horizon).reindex(frame.index)
        parts.append(
            {
                "features": frame.to_numpy(dtype=np.float32),
                "targets": label.values.reindex(frame.index).to_numpy(dtype=np.float32),
                "forward_returns": label.forward_return.reindex(frame.index).to_numpy(dtype=np.float64),
                "past_returns": past.to_numpy(dtype=np.float64),
                "timestamps": frame.index.tz_convert("UTC").tz_localize(None).to_numpy(dtype="datetime64[ns]"),
                "label_end_times": pd.DatetimeIndex(label.end_time.reindex(frame.index))
                .tz_convert("UTC")
                .tz_localize(None)
                .to_numpy(dtype="datetime64[ns]"),
                "symbol_codes": np.full(len(frame), code, dtype=np.int32),
                "window_ok": np.arange(len(frame)) >= sequence_length - 1,
            }
        )
    stacked = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    if not stacked["window_ok"].any():
        raise DataError(
            f"No symbol has enough rows after the feature warm-up for one window of {sequence_length} bars."
        )
    return WindowedPanel(
        symbol_names=tuple(feature_frames),
        feature_names=tuple(next(iter(feature_frames.values())).columns),
        sequence_length=sequence_length,
        **stacked,
    )


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


def make_dataset(windowed, ends, batch_size=64, shuffle=False, seed=None, with_targets=True):
    """A `tf.data.Dataset` of `({"sequence": windows}, targets)` batches.

    Windows are gathered from the stacked feature matrix inside the pipeline
    (parallel `map` after `batch`, then `prefetch`), so memory stays
    O(rows x features) whatever the number of windows.

    Args:
        windowed: a `WindowedPanel`.
        ends: window end rows.
        batch_size: windows per batch. Defaults to `64`.
        shuffle: shuffle the windows each epoch (training only). Defaults to
            `False`.
        seed: the shuffle seed. Defaults to `None`.
        with_targets: yield `(inputs, targets)` pairs rather than inputs only.
            Defaults to `True`.

    Returns:
        A batched, prefetched `tf.data.Dataset`; targets are `[batch, 1]`.
    """
    features = tf.constant(windowed.features)
    targets = tf.constant(np.nan_to_num(windowed.targets)[:, None])
    offsets = tf.range(-windowed.sequence_length + 1, 1, dtype=tf.int64)
    dataset = tf.data.Dataset.from_tensor_slices(np.asarray(ends, dtype=np.int64))
    if shuffle:
        dataset = dataset.shuffle(len(ends), seed=seed, reshuffle_each_iteration=True)

    def gather(end_rows):
        inputs = {"sequence": tf.gather(features, end_rows[:, None] + offsets)}
        if with_targets:
            return inputs, tf.gather(targets, end_rows)
        return inputs

    dataset = dataset.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)
