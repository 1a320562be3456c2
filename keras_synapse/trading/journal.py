"""The runner's crash-safe journal: every bar, decision and order, appended and flushed to disk before it acts.

One JSON record per line in `<live_dir>/journal.jsonl`, each written with
`write`, `flush` and `fsync` before the runner goes on, so that what the
journal says happened is on disk whatever kills the process next. A record
cut short by `kill -9` (or a full disk) in the middle of a write is the last
line; it does not parse, is dropped on reading, and is cut off before the next
append, so the journal never holds half a record in its middle.

The order of records for one bar is what makes a restart safe:

1. `bar`: the bars of that timestamp and the predictions made from them;
2. `decision`: the target weights (only at a rebalance);
3. `intent` for each order, *before* it is sent, with its client order id;
4. `order`: what the broker answered;
5. `processed`: the bar is done.

A restart replays the journal: a bar without `processed` is taken up again,
an `intent` without a final `order` is looked up at the broker by its client
order id (sent or not, it is never sent twice), and the history of bars,
predictions, fills and breaker states is as it was.

Secrets never reach the journal: records hold bars, numbers, symbols and
order ids only.
"""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from keras_synapse.data.panel import OHLCV_COLUMNS
from keras_synapse.errors import SynapseError

JOURNAL_FILE = "journal.jsonl"


class Journal:
    """An append-only, fsynced JSON-lines file.

    Args:
        live_dir: the runner's directory (created if missing).
    """

    def __init__(self, live_dir):
        self.path = Path(live_dir) / JOURNAL_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records = read_records(self.path)
        self._truncate_torn_tail()
        self._handle = open(self.path, "a", encoding="utf-8")

    def append(self, kind, **fields):
        """Writes one record and returns it once it is on disk."""
        record = {"type": kind, **fields}
        self._handle.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.records.append(record)
        return record

    def of_type(self, kind):
        return [record for record in self.records if record["type"] == kind]

    def close(self):
        self._handle.close()

    def _truncate_torn_tail(self):
        # Keep exactly the bytes of the records that parsed, so the next append starts on a fresh line.
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        good = sum(len(line) for line in data.splitlines(keepends=True)[:len(self.records)])
        if good != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(good)
                os.fsync(handle.fileno())


def read_records(path):
    """The records of a journal file; a last line cut short by a crash is dropped.

    Raises:
        SynapseError: when a line other than the last does not parse (the file
            was edited or damaged, not merely cut short).
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines(keepends=True)
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("no line end")
            records.append(json.loads(line))
        except ValueError:
            if number == len(lines):
                break  # a write cut short by the crash
            raise SynapseError(f"{path}: line {number} is not a journal record (the file was damaged or edited); "
                               f"received: {line[:80]!r}") from None
    return records


def bar_rows(frame):
    """Bars as the journal keeps them: `[[iso UTC timestamp, open, high, low, close, volume], ...]`."""
    index = pd.DatetimeIndex(frame.index)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    values = frame[list(OHLCV_COLUMNS)].to_numpy(dtype=np.float64)
    return [[timestamp.isoformat(), *map(float, row)] for timestamp, row in zip(index, values)]


def bars_frame(rows):
    """The OHLCV frame of journaled bar rows."""
    index = pd.DatetimeIndex([row[0] for row in rows]).rename("timestamp")
    return pd.DataFrame([row[1:] for row in rows], index=index, columns=list(OHLCV_COLUMNS))
