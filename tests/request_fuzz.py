"""Requests generated from the service's schema, valid and invalid, for the fuzz test of `test_serve`.

Each request starts valid (an endpoint, a symbol and real bars) and gets zero
to three mutations drawn from what clients actually send wrong: values of
the wrong type or absurd size, missing and extra fields, times out of range
or unparseable, bars out of order or repeated, too few or no bars, symbols
that are not tickers, bodies that are not the expected JSON at all. Seeded,
so a failure reproduces.
"""

import copy
import json
import math

import numpy as np

ENDPOINTS = ("/predict/pattern_confidence", "/predict/signals", "/predict/multi_ticker")
FIELDS = ("open", "high", "low", "close", "volume")
ODD_NUMBERS = (0, -1, 1e300, -1e300, 1e-300, 10 ** 400, math.nan, math.inf, -math.inf, "1.5", "abc", None, True, [],
               {}, "")
ODD_TIMES = ("", "2024-13-01", "2024-02-30", "0001-01-01T00:00:00", "9999-12-31T23:59:59", "2300-01-01",
             "1899-12-31", 1_700_000_000, 1e20, -1, "2024-01-02T00:00:00+25:00", "2024-01-02T00:00:00Z", "now",
             "\u00e9t\u00e9", None, [], "2024-01-02 09:30", "20240102")
ODD_SYMBOLS = ("", " ", "A" * 33, "A" * 5000, "A\u0000B", "\u00c4PFEL", "BRK.B", "^VIX", "BTC/USD", "a b", 123, None,
               "-X", "\n", "\U0001f680")


class RequestFuzzer:
    """Yields `(endpoint, body bytes, mutations)`; `mutations == []` marks a request that must succeed.

    Args:
        bars: dict symbol -> list of valid bar records (each long enough for a window).
        seed: the generator's seed. Defaults to `0`.
    """

    def __init__(self, bars, seed=0):
        self.bars = bars
        self.symbols = sorted(bars)
        self.rng = np.random.default_rng(seed)
        self.mutations = [getattr(self, name) for name in sorted(dir(self)) if name.startswith("_mutate_")]

    def requests(self, count):
        for _ in range(count):
            endpoint = ENDPOINTS[self.rng.integers(len(ENDPOINTS))]
            body = self._valid_body(endpoint)
            applied = []
            for _ in range(self.rng.choice([0, 1, 1, 2, 3])):
                mutation = self.mutations[self.rng.integers(len(self.mutations))]
                body = mutation(body)
                applied.append(mutation.__name__[len("_mutate_"):])
            yield endpoint, body if isinstance(body, bytes) else json.dumps(body).encode(), applied

    def _valid_body(self, endpoint):
        if endpoint == "/predict/multi_ticker":
            chosen = self.rng.choice(self.symbols, size=self.rng.integers(1, len(self.symbols) + 1), replace=False)
            return {"bars": {str(symbol): [dict(bar) for bar in self.bars[symbol]] for symbol in chosen}}
        symbol = str(self.rng.choice(self.symbols))
        return {"symbol": symbol, "bars": [dict(bar) for bar in self.bars[symbol]]}

    def _pick(self, values):
        return values[self.rng.integers(len(values))]

    def _bar_lists(self, body):
        if not isinstance(body, dict):
            return []
        bars = body.get("bars")
        if isinstance(bars, dict):
            return [value for value in bars.values() if isinstance(value, list)]
        return [bars] if isinstance(bars, list) else []

    def _some_bar(self, body):
        lists = [bars for bars in self._bar_lists(body) if bars and isinstance(bars[0], dict)]
        if not lists:
            return None
        bars = lists[self.rng.integers(len(lists))]
        return bars[self.rng.integers(len(bars))]

    # --- Mutations (each takes a body and returns one; a body may already be bytes) --------

    def _mutate_odd_number(self, body):
        bar = self._some_bar(body)
        if bar is not None:
            bar[self._pick(FIELDS)] = self._pick(ODD_NUMBERS)
        return body

    def _mutate_odd_time(self, body):
        bar = self._some_bar(body)
        if bar is not None:
            bar["timestamp"] = self._pick(ODD_TIMES)
        return body

    def _mutate_missing_field(self, body):
        bar = self._some_bar(body)
        if bar is not None:
            bar.pop(self._pick(("timestamp",) + FIELDS), None)
        return body

    def _mutate_extra_field(self, body):
        bar = self._some_bar(body)
        if bar is not None:
            bar["vwap"] = 1.0
        elif isinstance(body, dict):
            body["extra"] = 1
        return body

    def _mutate_high_below_low(self, body):
        bar = self._some_bar(body)
        if bar is not None and isinstance(bar.get("low"), float):
            bar["high"] = bar["low"] / 2
        return body

    def _mutate_reorder(self, body):
        for bars in self._bar_lists(body):
            how = self.rng.integers(3)
            if how == 0:
                bars.reverse()
            elif how == 1 and bars:
                bars.insert(self.rng.integers(len(bars)), copy.deepcopy(bars[self.rng.integers(len(bars))]))  # a duplicate
            else:
                self.rng.shuffle(bars)
        return body

    def _mutate_truncate(self, body):
        for bars in self._bar_lists(body):
            del bars[int(self.rng.integers(0, len(bars) + 1)):]
        return body

    def _mutate_symbol(self, body):
        if isinstance(body, dict) and isinstance(body.get("bars"), dict) and body["bars"]:
            bars = body["bars"]
            old = next(iter(bars))
            new = self._pick(ODD_SYMBOLS)
            bars[new if isinstance(new, str) else str(new)] = bars.pop(old)
        elif isinstance(body, dict):
            body["symbol"] = self._pick(ODD_SYMBOLS)
        return body

    def _mutate_bars_shape(self, body):
        if isinstance(body, dict):
            body["bars"] = self._pick((None, [], {}, "bars", 7, [[1, 2, 3]], [None], {"X": None}, {"X": {}}))
        return body

    def _mutate_whole_body(self, body):
        return self._pick((b"", b"{", b"null", b"[]", b'"text"', b"42", b"{\"bars\": NaN}", b"\xff\xfe\x00",
                           b"[" * 5000 + b"]" * 5000, b'{"symbol": "X", "bars": ' + b"[" * 3000 + b"]" * 3000 + b"}"))
