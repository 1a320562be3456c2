"""Tests for `AlpacaBroker`: the real alpaca-py client against `FakeAlpaca`, a local server answering like Alpaca."""

import datetime
import json
import logging
import math
import time
import traceback

import pytest
import requests
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderStatus as AlpacaOrderStatus
from alpaca.trading.models import Order
from alpaca.trading.requests import GetOrdersRequest
from conftest import make_bars
from fake_alpaca import RECORDINGS, FakeAlpaca

from keras_synapse.data.alpaca import KEY_ID_VARIABLE, SECRET_KEY_VARIABLE, load_alpaca
from keras_synapse.errors import BrokerError
from keras_synapse.trading import alpaca_broker
from keras_synapse.trading.alpaca_broker import LIVE_URL, PAPER_URL, AlpacaBroker
from keras_synapse.trading.brokers import FILLED, OPEN, REJECTED

FAKE_KEY_ID = "PKFAKEKEYID7Q3Z9X2M4"
FAKE_SECRET_KEY = "fakeSecretKey9w8V7u6T5s4R3q2P1o0N"
NUM_BARS, REVEALED = 12, 5


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv(KEY_ID_VARIABLE, FAKE_KEY_ID)
    monkeypatch.setenv(SECRET_KEY_VARIABLE, FAKE_SECRET_KEY)


@pytest.fixture
def market():
    return {"AAPL": make_bars(NUM_BARS, seed=1), "MSFT": make_bars(NUM_BARS, seed=2)}


@pytest.fixture
def fake(market):
    fake = FakeAlpaca(market, revealed=REVEALED, cash=100000.0)
    yield fake
    fake.stop()


@pytest.fixture
def broker(fake, keys):
    return AlpacaBroker(url_override=fake.url, timeout=5.0)


def trading_client(fake):
    return TradingClient(FAKE_KEY_ID, FAKE_SECRET_KEY, url_override=fake.url)


def close_at(market, symbol, bar):
    return float(market[symbol]["close"].iloc[bar])


def test_buy_and_short_fill_at_the_latest_revealed_close_and_positions_are_signed(fake, broker, market):
    assert broker.equity() == 100000.0
    assert broker.positions() == {}

    bought = broker.submit("run-AAPL-1", "AAPL", 5, reference_price=close_at(market, "AAPL", REVEALED - 1))
    shorted = broker.submit("run-MSFT-1", "MSFT", -3, reference_price=close_at(market, "MSFT", REVEALED - 1))

    aapl_close, msft_close = close_at(market, "AAPL", REVEALED - 1), close_at(market, "MSFT", REVEALED - 1)
    assert (bought.client_order_id, bought.symbol, bought.state) == ("run-AAPL-1", "AAPL", FILLED)
    assert (bought.quantity, bought.filled_quantity, bought.filled_price) == (5.0, 5.0, aapl_close)
    assert (shorted.quantity, shorted.filled_quantity, shorted.filled_price) == (-3.0, -3.0, msft_close)
    assert shorted.state == FILLED and shorted.broker_order_id == fake.orders[1]["id"]
    assert broker.positions() == fake.positions() == {"AAPL": 5.0, "MSFT": -3.0}
    assert [(order["symbol"], order["qty"], order["bar_timestamp"]) for order in fake.orders] == [
        ("AAPL", 5.0, market["AAPL"].index[REVEALED - 1]), ("MSFT", -3.0, market["MSFT"].index[REVEALED - 1])]
    # Alpaca itself reports the short with a negative qty and side "short".
    short = [position for position in trading_client(fake).get_all_positions() if position.symbol == "MSFT"][0]
    assert (short.qty, short.side.value) == ("-3", "short")
    # What went to Alpaca: market orders, DAY, the runner's ids, abs(quantity) on the sign's side.
    sent = trading_client(fake).get_orders(GetOrdersRequest(status="all", direction="asc"))
    assert [(o.client_order_id, o.side.value, float(o.qty), o.type.value, o.time_in_force.value) for o in sent] == [
        ("run-AAPL-1", "buy", 5.0, "market", "day"), ("run-MSFT-1", "sell", 3.0, "market", "day")]

    fake.advance()  # marked to the next close
    expected = 100000.0 + 5 * (close_at(market, "AAPL", REVEALED) - aapl_close) \
        - 3 * (close_at(market, "MSFT", REVEALED) - msft_close)
    assert broker.equity() == pytest.approx(expected, rel=1e-12)
    assert broker.equity() == pytest.approx(fake.equity(), rel=1e-12)


def test_fractional_shares_and_going_through_zero(fake, broker):
    broker.submit("a", "AAPL", 2.5, reference_price=100.0)
    assert broker.positions() == {"AAPL": 2.5}
    broker.submit("b", "AAPL", -2.5, reference_price=100.0)
    assert broker.positions() == {}
    broker.submit("c", "AAPL", 4, reference_price=100.0)
    broker.submit("d", "AAPL", -7, reference_price=100.0)  # whole shares may be sold short
    assert broker.positions() == {"AAPL": -3.0}
    assert [order["qty"] for order in fake.orders] == [2.5, -2.5, 4.0, -7.0]


def test_fractional_short_is_refused_as_alpaca_refuses_it(fake, broker):
    with pytest.raises(BrokerError, match="fractional orders cannot be sold short") as error:
        broker.submit("frac-short", "MSFT", -0.5, reference_price=100.0)

    assert error.value.status == 422 and not error.value.transient
    assert fake.orders == [] and broker.positions() == {}


def test_a_client_order_id_sent_twice_returns_the_first_order_and_trades_once(fake, broker):
    first = broker.submit("run-AAPL-7", "AAPL", 4, reference_price=100.0)
    fake.advance()  # a later bar: a second fill would be at another price

    again = broker.submit("run-AAPL-7", "AAPL", 4, reference_price=101.0)

    assert again == first
    assert fake.duplicate_attempts == ["run-AAPL-7"]
    assert len(fake.orders) == 1
    assert broker.positions() == {"AAPL": 4.0}
    posts = [request for request in fake.requests if request[0] == "POST"]
    lookups = [request for request in fake.requests if request[1] == "/v2/orders:by_client_order_id"]
    assert len(posts) == 2 and lookups[-1][2] == {"client_order_id": ["run-AAPL-7"]}


def test_a_reply_lost_mid_request_is_transient_and_the_resend_finds_the_order(fake, keys):
    broker = AlpacaBroker(url_override=fake.url, timeout=0.3)
    fake.hold_order_replies(1.5)
    started = time.monotonic()

    with pytest.raises(BrokerError, match="no answer") as error:
        broker.submit("run-MSFT-3", "MSFT", 2, reference_price=100.0)

    assert time.monotonic() - started < 1.4  # the timeout took effect
    assert error.value.transient
    assert [order["client_order_id"] for order in fake.orders] == ["run-MSFT-3"]  # Alpaca has it all the same
    fake.hold_order_replies(0)
    status = broker.submit("run-MSFT-3", "MSFT", 2, reference_price=100.0)
    assert status.state == FILLED and status.broker_order_id == fake.orders[0]["id"]
    assert broker.positions() == {"MSFT": 2.0}


def test_a_taken_id_without_an_order_behind_it_is_transient(fake, broker):
    broker.submit("run-AAPL-9", "AAPL", 1, reference_price=100.0)
    fake.fail_next(404, path_prefix="/v2/orders:by_client_order_id")

    with pytest.raises(BrokerError, match="taken") as error:
        broker.submit("run-AAPL-9", "AAPL", 1, reference_price=100.0)

    assert error.value.transient
    assert broker.positions() == {"AAPL": 1.0}


def test_an_order_for_a_symbol_without_a_revealed_bar_stays_open(market, keys):
    with FakeAlpaca(market, revealed=0) as fake:
        status = AlpacaBroker(url_override=fake.url).submit("early", "AAPL", 3, reference_price=100.0)
        assert (status.state, status.quantity, status.filled_quantity, status.filled_price) == (OPEN, 3.0, 0.0, None)
        assert AlpacaBroker(url_override=fake.url).positions() == {}


def test_order_of_an_unknown_id_is_none_and_of_a_known_one_its_status(fake, broker):
    assert broker.order("never-sent") is None
    sent = broker.submit("run-AAPL-2", "AAPL", -2, reference_price=100.0)
    assert broker.order("run-AAPL-2") == sent


def test_403_is_not_transient_and_names_the_variables_without_the_keys(fake, broker):
    fake.fail_next(403, path_prefix="/v2/account")

    with pytest.raises(BrokerError) as error:
        broker.equity()

    message = str(error.value)
    assert not error.value.transient and error.value.status == 403
    assert KEY_ID_VARIABLE in message and SECRET_KEY_VARIABLE in message and "forbidden." in message
    assert FAKE_KEY_ID not in message and FAKE_SECRET_KEY not in message


def test_wrong_keys_are_refused_and_not_transient(market, monkeypatch):
    monkeypatch.setenv(KEY_ID_VARIABLE, "PKWRONGKEY000000")
    monkeypatch.setenv(SECRET_KEY_VARIABLE, "wrongSecret000000")
    with FakeAlpaca(market, key_id=FAKE_KEY_ID, secret_key=FAKE_SECRET_KEY) as fake:
        with pytest.raises(BrokerError, match=f"HTTP 401.*{KEY_ID_VARIABLE}") as error:
            AlpacaBroker(url_override=fake.url).positions()
    assert not error.value.transient


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_transient_and_not_retried_inside_the_call(fake, broker, status):
    fake.fail_next(status, method="POST")
    started = time.monotonic()

    with pytest.raises(BrokerError, match=f"HTTP {status}") as error:
        broker.submit("run-AAPL-4", "AAPL", 1, reference_price=100.0)

    assert error.value.transient and error.value.status == status
    assert time.monotonic() - started < 2.0  # alpaca-py's own 3 s retry sleep is off
    assert [request[0] for request in fake.requests] == ["POST"]
    assert fake.orders == []
    assert broker.submit("run-AAPL-4", "AAPL", 1, reference_price=100.0).state == FILLED  # the retry goes through


def test_an_unreachable_server_is_transient(fake, broker):
    fake.stop()
    for call in (broker.equity, broker.positions, lambda: broker.order("x"),
                 lambda: broker.submit("x", "AAPL", 1, reference_price=100.0)):
        with pytest.raises(BrokerError, match="no answer") as error:
            call()
        assert error.value.transient


def test_a_refused_order_is_not_transient_and_quotes_alpaca(fake, broker):
    with pytest.raises(BrokerError, match='HTTP 422: asset "ZZZZ" not found') as error:
        broker.submit("run-ZZZZ-1", "ZZZZ", 1, reference_price=100.0)
    assert not error.value.transient


@pytest.mark.parametrize("quantity", [0, 0.0, math.nan, math.inf, "5", None, True])
def test_an_order_without_a_usable_quantity_is_refused_before_sending(fake, broker, quantity):
    with pytest.raises(BrokerError, match="Received: quantity="):
        broker.submit("bad", "AAPL", quantity, reference_price=100.0)
    assert fake.requests == []


@pytest.mark.parametrize("client_order_id", ["", None, "x" * 129])
def test_a_malformed_client_order_id_is_refused_before_sending(fake, broker, client_order_id):
    with pytest.raises(BrokerError, match="Received: client_order_id="):
        broker.submit(client_order_id, "AAPL", 1, reference_price=100.0)
    assert fake.requests == []


@pytest.mark.parametrize("missing", [[KEY_ID_VARIABLE], [SECRET_KEY_VARIABLE], [KEY_ID_VARIABLE, SECRET_KEY_VARIABLE]])
def test_missing_keys_raise_a_clear_error_naming_the_variables(keys, monkeypatch, missing):
    for name in missing:
        monkeypatch.delenv(name)

    with pytest.raises(BrokerError) as error:
        AlpacaBroker(url_override="http://127.0.0.1:9")

    message = str(error.value)
    assert KEY_ID_VARIABLE in message and SECRET_KEY_VARIABLE in message
    assert f"not set: {', '.join(missing)}" in message
    assert FAKE_KEY_ID not in message and FAKE_SECRET_KEY not in message


def test_paper_unless_live_is_asked_for(keys):
    assert AlpacaBroker().url == PAPER_URL
    assert AlpacaBroker()._client._base_url == PAPER_URL
    assert AlpacaBroker(live=True).url == LIVE_URL
    assert repr(AlpacaBroker()) == f"AlpacaBroker(live=False, url='{PAPER_URL}')"


def test_keys_never_appear_in_logs_errors_or_repr(fake, broker, caplog):
    caplog.set_level(logging.DEBUG)
    broker.submit("run-AAPL-5", "AAPL", 2, reference_price=100.0)
    broker.submit("run-AAPL-5", "AAPL", 2, reference_price=100.0)
    broker.positions(), broker.equity(), broker.order("run-AAPL-5"), broker.order("unknown")
    failures = []
    for status, call in [(401, broker.equity), (403, broker.positions), (429, lambda: broker.order("run-AAPL-5")),
                         (500, lambda: broker.submit("run-AAPL-6", "AAPL", 1, reference_price=1.0))]:
        fake.fail_next(status, path_prefix="/v2")
        with pytest.raises(BrokerError) as error:
            call()
        failures.append(error.value)
    fake.stop()
    with pytest.raises(BrokerError) as error:
        broker.equity()
    failures.append(error.value)

    # The keys did reach the server, so their absence below means something.
    assert fake.requests[0][3]["APCA-API-KEY-ID"] == FAKE_KEY_ID
    assert fake.requests[0][3]["APCA-API-SECRET-KEY"] == FAKE_SECRET_KEY
    assert "alpaca: sending order run-AAPL-5" in caplog.text
    texts = [caplog.text, repr(broker), str(vars(broker))] + [
        "".join(traceback.format_exception(failure)) for failure in failures]
    for secret in (FAKE_KEY_ID, FAKE_SECRET_KEY):
        for text in texts:
            assert secret not in text


@pytest.mark.parametrize("status", list(AlpacaOrderStatus))
def test_every_alpaca_order_status_maps_to_filled_open_or_rejected(status):
    finished = {AlpacaOrderStatus.CANCELED, AlpacaOrderStatus.EXPIRED, AlpacaOrderStatus.REJECTED,
                AlpacaOrderStatus.DONE_FOR_DAY, AlpacaOrderStatus.REPLACED}
    recording = json.loads((RECORDINGS / "alpaca_order_filled.json").read_text())
    recording.update({"status": status.value, "side": "sell", "qty": "5", "filled_qty": "2",
                      "filled_avg_price": "187.5"})

    order_status = alpaca_broker._order_status(Order(**recording))

    expected = FILLED if status == AlpacaOrderStatus.FILLED else REJECTED if status in finished else OPEN
    assert order_status.state == expected
    assert (order_status.quantity, order_status.filled_quantity, order_status.filled_price) == (-5.0, -2.0, 187.5)


def test_stock_bars_client_sees_one_more_bar_per_request(fake, market):
    client = StockHistoricalDataClient(FAKE_KEY_ID, FAKE_SECRET_KEY, url_override=fake.url)
    request = StockBarsRequest(symbol_or_symbols=["AAPL", "MSFT"], timeframe=TimeFrame.Day,
                               start=datetime.datetime(2023, 12, 1))

    seen = []
    for _ in range(NUM_BARS - REVEALED + 2):  # two polls past the end
        bar_set = client.get_stock_bars(request)
        seen.append({symbol: len(bars) for symbol, bars in bar_set.data.items()})

    assert seen == [{"AAPL": count, "MSFT": count} for count in
                    list(range(REVEALED, NUM_BARS + 1)) + [NUM_BARS]]
    last = bar_set.data["AAPL"][-1]
    assert last.timestamp == market["AAPL"].index[-1].to_pydatetime()
    assert (last.open, last.close, last.volume) == tuple(market["AAPL"][["open", "close", "volume"]].iloc[-1])
    assert fake.cursor == NUM_BARS


def test_the_next_page_of_a_poll_keeps_its_cursor(fake, market):
    headers = {"APCA-API-KEY-ID": FAKE_KEY_ID, "APCA-API-SECRET-KEY": FAKE_SECRET_KEY}
    url = f"{fake.url}/v2/stocks/bars"
    query = {"symbols": "AAPL,MSFT", "timeframe": "1Day", "limit": 4}

    pages = [requests.get(url, params=query, headers=headers, timeout=5).json()]
    while pages[-1]["next_page_token"]:
        pages.append(requests.get(url, params={**query, "page_token": pages[-1]["next_page_token"]},
                                  headers=headers, timeout=5).json())

    assert [sum(len(bars) for bars in page["bars"].values()) for page in pages] == [4, 4, 2]
    assert fake.cursor == REVEALED
    first_page = pages[0]["bars"]["AAPL"]
    assert first_page[0]["t"] == market["AAPL"].index[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert requests.get(url, params=query, headers={}, timeout=5).status_code == 403


def test_load_alpaca_polls_the_fake_bar_by_bar(fake, keys, market):
    first = load_alpaca(["AAPL"], start="2023-12-01", url_override=fake.url)
    second = load_alpaca(["AAPL"], start="2023-12-01", url_override=fake.url)

    assert len(first["AAPL"]) == REVEALED and len(second["AAPL"]) == REVEALED + 1
    assert list(second["AAPL"]["close"]) == list(market["AAPL"]["close"].iloc[:REVEALED + 1])


def test_fail_next_on_bars_does_not_reveal_a_bar(fake, market):
    client = StockHistoricalDataClient(FAKE_KEY_ID, FAKE_SECRET_KEY, url_override=fake.url)
    request = StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=datetime.datetime(2023, 12, 1))
    client.get_stock_bars(request)
    fake.fail_next(500, path_prefix="/v2/stocks/bars")
    with pytest.raises(Exception):
        client.get_stock_bars(request)
    assert len(client.get_stock_bars(request).data["AAPL"]) == REVEALED + 1
