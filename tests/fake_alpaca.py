"""A fake Alpaca on 127.0.0.1: its trading API and its stock bars API, for tests that run the real alpaca-py.

`FakeAlpaca(bars, revealed=N)` serves the bars it is given as a market that
unfolds one bar per poll: the first bars request answers the first `N` bars of
the calendar (the union of every symbol's timestamps), each later one (a new
request, not the next page of the same one) reveals one bar more, until the
bars run out. Market orders fill at once, in full, at the close of the latest
revealed bar of their symbol: the bar the client last saw, so a strategy that
sizes at that close fills there. An order for a symbol with no bar revealed
yet is accepted and stays open (`accepted`), as a market order sent while the
market is closed does.

Every answer is built from a recorded Alpaca response in tests/fixtures
(`alpaca_account.json`, `alpaca_position.json`, `alpaca_order_filled.json`,
`alpaca_clock.json`, and Alpaca's error bodies in `alpaca_errors.json`) with
the fake's values filled in, so alpaca-py's pydantic models parse them as they
parse Alpaca's. Like Alpaca, it answers 403 (`{"message": "forbidden."}`) to
a request without both key headers, 422 to a client order id it has seen
before ("client_order_id must be unique") and to a fractional order that
would open or grow a short ("fractional orders cannot be sold short").

Usage (both alpaca-py clients take `url_override=fake.url`):

    fake = FakeAlpaca({"AAPL": bars}, revealed=30, cash=100000.0)
    broker = AlpacaBroker(url_override=fake.url)
    ...
    fake.stop()

Endpoints: GET /v2/account, GET /v2/positions, GET /v2/positions/{symbol},
POST /v2/orders, GET /v2/orders (status=open|closed|all, limit, direction,
symbols), GET /v2/orders/{id}, GET /v2/orders:by_client_order_id,
GET /v2/clock, GET /v2/stocks/bars.
"""

import base64
import copy
import datetime
import http
import http.server
import json
import threading
import urllib.parse
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

RECORDINGS = Path(__file__).resolve().parent / "fixtures"
BAR_COLUMNS = ("open", "high", "low", "close", "volume")
KEY_HEADERS = ("APCA-API-KEY-ID", "APCA-API-SECRET-KEY")
# Alpaca's largest bars page.
MAX_BARS_PAGE = 10000


def _recording(name):
    return json.loads((RECORDINGS / name).read_text())


def _number(value):
    """A number as Alpaca writes it in JSON: a decimal string, no exponent; exact, so it parses back to `value`."""
    text = np.format_float_positional(float(value), trim="-")
    return "0" if text == "-0" else text


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rfc3339(timestamp):
    return timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _asset_id(symbol):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"alpaca-asset:{symbol}"))


class FakeAlpaca:
    """A threaded HTTP server on 127.0.0.1 that answers like Alpaca's trading and stock bars APIs.

    Args:
        bars: dict symbol -> DataFrame with a UTC `DatetimeIndex` and columns
            open, high, low, close, volume (optional: trade_count, vwap).
        revealed: how many calendar bars the first bars request answers.
            Defaults to `1`.
        cash: the account's starting cash. Defaults to `100000.0`.
        key_id: the key id to accept, or `None` to accept any key sent.
            Defaults to `None`.
        secret_key: the secret key to accept, or `None` for any. Defaults to
            `None`.
        auto_advance: whether each new bars request reveals one more bar
            (`advance` does it by hand either way). Defaults to `True`.
        fractional_shorts: accept fractional orders that open or grow a
            short, which Alpaca refuses. Defaults to `False`.

    Attributes:
        url: `"http://127.0.0.1:PORT"`, the base URL of both APIs.
        orders: one dict per accepted order, in arrival order: `id`,
            `client_order_id`, `symbol`, `qty` (signed float), `status`
            (`"filled"` or `"accepted"`), `filled_price` and `bar_timestamp`
            (the bar it filled at; both `None` while unfilled).
        duplicate_attempts: client order ids sent again and refused (422).
        requests: `(method, path, query, headers)` of every request, `query`
            as `urllib.parse.parse_qs` gives it.
        cursor: how many calendar bars are revealed.
        calendar: every symbol's timestamps, merged and sorted.
        cash: the account's cash now.
    """

    def __init__(self, bars, revealed=1, cash=100000.0, key_id=None, secret_key=None, auto_advance=True,
                 fractional_shorts=False):
        self.bars = {symbol: _checked_bars(symbol, frame) for symbol, frame in bars.items()}
        self.calendar = pd.DatetimeIndex(sorted(set().union(*(frame.index for frame in self.bars.values()))),
                                         tz="UTC") if self.bars else pd.DatetimeIndex([], tz="UTC")
        if not isinstance(revealed, int) or revealed < 0:
            raise ValueError(f"`revealed` must be an int >= 0. Received: revealed={revealed!r}")
        self.cursor = min(revealed, len(self.calendar))
        self.cash = float(cash)
        self.key_id, self.secret_key = key_id, secret_key
        self.auto_advance = auto_advance
        self.fractional_shorts = fractional_shorts
        self.orders = []
        self.duplicate_attempts = []
        self.requests = []
        self._lock = threading.RLock()
        self._polled = False
        self._positions = {}  # symbol -> [signed quantity, average entry price]
        self._orders_by_id = {}
        self._order_ids_by_client_id = {}
        self._failures = []  # [status, path_prefix, method, remaining]
        self._hold_seconds = 0.0
        self._stopping = threading.Event()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        """Stops serving; replies held by `hold_order_replies` are dropped."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    # -- what a test controls --------------------------------------------------------------------------

    def fail_next(self, status, path_prefix="/v2/orders", times=1, method=None):
        """Answers the next `times` requests whose path starts with `path_prefix` with Alpaca's error for `status`.

        Args:
            status: the HTTP status (401, 403, 404, 422, 429, 500, 503...).
            path_prefix: which requests fail, e.g. `"/v2/orders"` (which also
                covers `/v2/orders:by_client_order_id`) or `"/v2/stocks/bars"`.
                Defaults to `"/v2/orders"`.
            times: how many matching requests fail. Defaults to `1`.
            method: only requests with this method (`"POST"`), or `None` for
                any. Defaults to `None`.
        """
        with self._lock:
            self._failures.append([int(status), path_prefix, method, int(times)])

    def hold_order_replies(self, seconds):
        """Accepts and records each POST /v2/orders as usual, then waits `seconds` before replying (0 stops holding)."""
        with self._lock:
            self._hold_seconds = float(seconds)

    def advance(self, num_bars=1):
        """Reveals `num_bars` more calendar bars (never past the last)."""
        with self._lock:
            self.cursor = min(self.cursor + num_bars, len(self.calendar))

    def reveal_all(self):
        """Reveals every bar."""
        with self._lock:
            self.cursor = len(self.calendar)

    def positions(self):
        """The account's signed positions, `{symbol: quantity}` (zero positions left out)."""
        with self._lock:
            return {symbol: quantity for symbol, (quantity, _) in self._positions.items() if quantity}

    def latest_close(self, symbol):
        """`(close, timestamp)` of the latest revealed bar of `symbol`, or `(None, None)`."""
        with self._lock:
            frame = self.bars.get(symbol)
            if frame is None or self.cursor == 0:
                return None, None
            visible = frame.loc[:self.calendar[self.cursor - 1]]
            if visible.empty:
                return None, None
            return float(visible["close"].iloc[-1]), visible.index[-1]

    def equity(self):
        """Cash plus every position at its latest revealed close."""
        with self._lock:
            return self.cash + sum(quantity * (self.latest_close(symbol)[0] or average)
                                   for symbol, (quantity, average) in self._positions.items())

    # -- answers ---------------------------------------------------------------------------------------

    def _answer(self, method, path, query, headers, body):
        """`(status, payload, hold_seconds)` for one request."""
        with self._lock:
            self.requests.append((method, path, query, headers))
            key_id, secret_key = ({name.lower(): value for name, value in headers.items()}.get(header.lower())
                                  for header in KEY_HEADERS)
            if not key_id or not secret_key:
                return 403, _error("403"), 0.0
            if self.key_id not in (None, key_id) or self.secret_key not in (None, secret_key):
                return 401, _error("401"), 0.0
            for failure in self._failures:
                status, prefix, failure_method, _ = failure
                if path.startswith(prefix) and failure_method in (None, method):
                    failure[3] -= 1
                    if failure[3] <= 0:
                        self._failures.remove(failure)
                    return status, _error(str(status)), 0.0
            route = (method, path)
            if route == ("GET", "/v2/account"):
                return 200, self._account(), 0.0
            if route == ("GET", "/v2/clock"):
                return 200, self._clock(), 0.0
            if route == ("GET", "/v2/positions"):
                return 200, [self._position(symbol) for symbol in sorted(self.positions())], 0.0
            if method == "GET" and path.startswith("/v2/positions/"):
                symbol = urllib.parse.unquote(path[len("/v2/positions/"):])
                if symbol not in self.positions():
                    return 404, _error("404 position"), 0.0
                return 200, self._position(symbol), 0.0
            if route == ("POST", "/v2/orders"):
                return self._new_order(body)
            if route == ("GET", "/v2/orders"):
                return 200, self._list_orders(query), 0.0
            if route == ("GET", "/v2/orders:by_client_order_id"):
                order_id = self._order_ids_by_client_id.get(query.get("client_order_id", [""])[0])
                if order_id is None:
                    return 404, _error("404 order"), 0.0
                return 200, self._orders_by_id[order_id], 0.0
            if method == "GET" and path.startswith("/v2/orders/"):
                order = self._orders_by_id.get(path[len("/v2/orders/"):])
                if order is None:
                    return 404, _error("404 order"), 0.0
                return 200, order, 0.0
            if route == ("GET", "/v2/stocks/bars"):
                return self._stock_bars(query)
            return 404, _error("404"), 0.0

    def _account(self):
        account = _recording("alpaca_account.json")
        long_value = short_value = 0.0
        for symbol, (quantity, average) in self._positions.items():
            value = quantity * (self.latest_close(symbol)[0] or average)
            if value > 0:
                long_value += value
            else:
                short_value += value
        equity = self.cash + long_value + short_value
        account.update({
            "cash": _number(self.cash), "equity": _number(equity), "last_equity": _number(equity),
            "portfolio_value": _number(equity), "long_market_value": _number(long_value),
            "short_market_value": _number(short_value), "position_market_value": _number(long_value - short_value),
            "buying_power": _number(max(4 * equity - long_value + short_value, 0.0)),
            "regt_buying_power": _number(max(2 * equity - long_value + short_value, 0.0)),
            "non_marginable_buying_power": _number(max(self.cash, 0.0)),
        })
        return account

    def _clock(self):
        clock = _recording("alpaca_clock.json")
        latest = self.calendar[self.cursor - 1] if self.cursor else None
        following = self.calendar[self.cursor] if self.cursor < len(self.calendar) else latest
        clock.update({"timestamp": _now(), "is_open": self.cursor < len(self.calendar)})
        if following is not None:
            clock.update({"next_open": _rfc3339(following), "next_close": _rfc3339(following)})
        return clock

    def _position(self, symbol):
        quantity, average = self._positions[symbol]
        price = self.latest_close(symbol)[0] or average
        frame = self.bars[symbol]
        visible = frame.loc[:self.calendar[self.cursor - 1]] if self.cursor else frame.iloc[:0]
        previous = float(visible["close"].iloc[-2]) if len(visible) > 1 else price
        market_value, cost_basis = quantity * price, quantity * average
        unrealized = market_value - cost_basis
        position = _recording("alpaca_position.json")
        position.update({
            "asset_id": _asset_id(symbol), "symbol": symbol, "qty": _number(quantity),
            "qty_available": _number(quantity), "side": "long" if quantity > 0 else "short",
            "avg_entry_price": _number(average), "market_value": _number(market_value),
            "cost_basis": _number(cost_basis), "unrealized_pl": _number(unrealized),
            "unrealized_plpc": _number(unrealized / abs(cost_basis) if cost_basis else 0.0),
            "unrealized_intraday_pl": _number(quantity * (price - previous)),
            "unrealized_intraday_plpc": _number(price / previous - 1 if previous else 0.0),
            "current_price": _number(price), "lastday_price": _number(previous),
            "change_today": _number(price / previous - 1 if previous else 0.0),
        })
        return position

    def _new_order(self, body):
        client_order_id = body.get("client_order_id") or str(uuid.uuid4())
        if client_order_id in self._order_ids_by_client_id:
            self.duplicate_attempts.append(client_order_id)
            return 422, _error("422 duplicate"), 0.0
        symbol = body.get("symbol")
        if symbol not in self.bars:
            error = _error("422 asset")
            error["message"] = error["message"].replace("{symbol}", str(symbol))
            return 422, error, 0.0
        try:
            quantity = float(body.get("qty"))
        except (TypeError, ValueError):
            quantity = float("nan")
        if body.get("type") != "market" or body.get("side") not in ("buy", "sell") or not quantity > 0 \
                or body.get("time_in_force") is None:
            error = _error("422")
            error["message"] = "the fake Alpaca takes market orders with a qty > 0, a side and a time_in_force"
            return 422, error, 0.0
        signed = quantity if body["side"] == "buy" else -quantity
        held = self._positions.get(symbol, [0.0, 0.0])[0]
        after = round(held + signed, 9)
        if signed < 0 and after < 0 and not self.fractional_shorts and \
                (not float(quantity).is_integer() or not float(after).is_integer()):
            return 422, _error("422 fractional short"), 0.0
        price, bar_timestamp = self.latest_close(symbol)
        now = _now()
        order = _recording("alpaca_order_filled.json")
        order.update({
            "id": str(uuid.uuid4()), "client_order_id": client_order_id, "created_at": now, "updated_at": now,
            "submitted_at": now, "asset_id": _asset_id(symbol), "symbol": symbol, "qty": _number(quantity),
            "side": body["side"], "time_in_force": body["time_in_force"],
            "position_intent": ("buy_to_open" if held >= 0 else "buy_to_close") if signed > 0
            else ("sell_to_close" if held > 0 else "sell_to_open"),
        })
        if price is None:
            order.update({"status": "accepted", "filled_at": None, "filled_qty": "0", "filled_avg_price": None})
        else:
            order.update({"status": "filled", "filled_at": now, "filled_qty": _number(quantity),
                          "filled_avg_price": _number(price)})
            self._fill(symbol, signed, price)
        self._orders_by_id[order["id"]] = order
        self._order_ids_by_client_id[client_order_id] = order["id"]
        self.orders.append({"id": order["id"], "client_order_id": client_order_id, "symbol": symbol, "qty": signed,
                            "status": order["status"], "filled_price": price, "bar_timestamp": bar_timestamp})
        return 200, order, self._hold_seconds

    def _fill(self, symbol, signed, price):
        held, average = self._positions.get(symbol, [0.0, 0.0])
        after = round(held + signed, 9)
        if held == 0 or held * signed > 0:  # opening or growing
            average = (held * average + signed * price) / after
        elif after * held < 0:  # through zero: the rest is a new position
            average = price
        self.cash -= signed * price
        if after == 0:
            self._positions.pop(symbol, None)
        else:
            self._positions[symbol] = [after, average]

    def _list_orders(self, query):
        status = query.get("status", ["open"])[0]
        symbols = set(query["symbols"][0].split(",")) if "symbols" in query else None
        orders = [order for order in self._orders_by_id.values()
                  if (status == "all" or (order["status"] == "filled") == (status == "closed"))
                  and (symbols is None or order["symbol"] in symbols)]
        if query.get("direction", ["desc"])[0] == "desc":
            orders.reverse()
        return orders[:int(query.get("limit", ["50"])[0])]

    def _stock_bars(self, query):
        page_token = query.get("page_token", [None])[0]
        if page_token is None:  # a new poll; the next page of one keeps the cursor it started with
            if self._polled and self.auto_advance:
                self.advance()
            self._polled = True
            cursor, offset = self.cursor, 0
        else:
            cursor, offset = json.loads(base64.b64decode(page_token))
        until = self.calendar[cursor - 1] if cursor else None
        start = pd.Timestamp(query["start"][0]) if "start" in query else None
        end = pd.Timestamp(query["end"][0]) if "end" in query else None
        items = []
        for symbol in sorted(set(query.get("symbols", [""])[0].split(","))):
            frame = self.bars.get(symbol)
            if frame is None or until is None:
                continue
            frame = frame.loc[:until]
            if start is not None:
                frame = frame.loc[start:]
            if end is not None:
                frame = frame.loc[:end]
            items.extend((symbol, timestamp, row) for timestamp, row in frame.iterrows())
        if query.get("sort", ["asc"])[0] == "desc":
            items.sort(key=lambda item: (item[0], -item[1].value))
        limit = min(int(query.get("limit", [MAX_BARS_PAGE])[0]), MAX_BARS_PAGE)
        page = items[offset:offset + limit]
        bars = {}
        for symbol, timestamp, row in page:
            bars.setdefault(symbol, []).append(_bar(timestamp, row))
        more = offset + limit < len(items)
        next_token = base64.b64encode(json.dumps([cursor, offset + limit]).encode()).decode() if more else None
        return 200, {"bars": bars, "next_page_token": next_token}, 0.0


def _checked_bars(symbol, frame):
    if not isinstance(frame.index, pd.DatetimeIndex) or frame.index.tz is None:
        raise ValueError(f"bars of {symbol!r} need a tz-aware DatetimeIndex. Received: {type(frame.index).__name__}")
    missing = [column for column in BAR_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"bars of {symbol!r} lack the columns {missing}. Received: {list(frame.columns)}")
    frame = frame.copy()
    frame.index = frame.index.tz_convert("UTC")
    return frame.sort_index()


def _bar(timestamp, row):
    volume = float(row["volume"])
    return {
        "t": _rfc3339(timestamp), "o": float(row["open"]), "h": float(row["high"]), "l": float(row["low"]),
        "c": float(row["close"]), "v": int(volume) if volume.is_integer() else volume,
        "n": int(row["trade_count"]) if "trade_count" in row else 1,
        "vw": float(row["vwap"]) if "vwap" in row else round(float(row["high"] + row["low"] + row["close"]) / 3, 4),
    }


def _error(name):
    errors = _recording("alpaca_errors.json")
    if name in errors:
        return copy.deepcopy(errors[name])
    status = int(name.split()[0])
    return {"code": status * 100000, "message": http.HTTPStatus(status).phrase.lower()}


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    def do_PATCH(self):
        self._handle("PATCH")

    def _handle(self, method):
        parts = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        fake = self.server.fake
        status, payload, hold_seconds = fake._answer(method, parts.path, urllib.parse.parse_qs(parts.query),
                                                     dict(self.headers), body)
        if hold_seconds and fake._stopping.wait(hold_seconds):
            return  # stopped while holding: the client never hears back
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (killed, or timed out) before the reply
