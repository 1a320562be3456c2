"""Alpaca's trading API as a `Broker`, through alpaca-py's `TradingClient`.

Paper trading by default: the client talks to `paper-api.alpaca.markets`
unless `live=True` is passed explicitly. The keys are read from the
environment variables `APCA_API_KEY_ID` and `APCA_API_SECRET_KEY` (the same
ones the Alpaca data source reads) and go to Alpaca in request headers and
nowhere else: not into messages, logs or the broker's repr.

Orders are market orders, time in force DAY, for `abs(quantity)` shares
(whole or fractional, as given) on the side the sign says. Every order carries
the runner's client order id; Alpaca refuses an id it has seen before (HTTP
422, "client_order_id must be unique"), and `submit` then looks the first order
up and returns its status, so sending an order again after a crash or a lost
reply never trades twice.

Failures become `BrokerError`s: HTTP 429, 5xx, timeouts and dropped
connections are `transient` (worth retrying later, with the same client order
id); 401/403 (keys wrong, or a paper key used against the live API) and 422
(an order Alpaca will never take) are not. alpaca-py's own retry loop, which
sleeps inside a call, is switched off: retrying is the runner's decision.
"""

import logging
import math
import re

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus as AlpacaOrderStatus, PositionSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from keras_synapse.data.alpaca import KEY_ID_VARIABLE, SECRET_KEY_VARIABLE, keys_from_environment
from keras_synapse.errors import BrokerError
from keras_synapse.trading.brokers import FILLED, OPEN, REJECTED, Broker, OrderStatus

logger = logging.getLogger(__name__)

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
# Alpaca's limit on client order ids.
MAX_CLIENT_ORDER_ID_LENGTH = 128
# How much of Alpaca's own message a `BrokerError` quotes.
MAX_QUOTED_MESSAGE_LENGTH = 200

# Alpaca has worded this as "client_order_id must be unique" and "client order id must be unique".
_DUPLICATE_CLIENT_ORDER_ID = re.compile(r"client[\s_-]?order[\s_-]?id must be unique", re.IGNORECASE)

# Alpaca's order statuses by what they mean for the runner. Anything not listed
# as finished is taken as still open: an order that might still fill must never
# be sent again under a new id.
_STATES = {
    AlpacaOrderStatus.FILLED: FILLED,
    # Nothing more will fill: refused, cancelled, expired, or (a DAY order)
    # done for the day; replaced orders live on under another id this runner never sends.
    AlpacaOrderStatus.CANCELED: REJECTED,
    AlpacaOrderStatus.EXPIRED: REJECTED,
    AlpacaOrderStatus.REJECTED: REJECTED,
    AlpacaOrderStatus.DONE_FOR_DAY: REJECTED,
    AlpacaOrderStatus.REPLACED: REJECTED,
    # new, accepted, pending_new, partially_filled, pending_cancel, pending_replace,
    # pending_review, accepted_for_bidding, stopped, suspended, calculated, held: OPEN.
}


class AlpacaBroker(Broker):
    """Alpaca's paper (or, explicitly, live) trading account as a `Broker`.

    Example:

    ```python
    # export APCA_API_KEY_ID=... APCA_API_SECRET_KEY=...  (paper account keys)
    broker = AlpacaBroker()
    broker.equity()
    broker.submit("strategy-AAPL-20240102", "AAPL", 5, reference_price=186.91)
    broker.positions()  # {"AAPL": 5.0}
    ```

    Args:
        live: trade the live account, with real money. Defaults to `False`
            (the paper account).
        url_override: the base URL of the trading API, e.g. a proxy or a test
            server. Defaults to `None` (Alpaca's paper or live API).
        timeout: seconds to wait for each HTTP answer before giving up with a
            transient `BrokerError`. Defaults to `30.0`.

    Raises:
        BrokerError: when `APCA_API_KEY_ID` or `APCA_API_SECRET_KEY` is not set,
            or for a `timeout` that is not a positive number.
    """

    name = "alpaca"

    def __init__(self, live=False, url_override=None, timeout=30.0):
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise BrokerError(f"alpaca: `timeout` must be a positive number of seconds. Received: timeout={timeout!r}")
        key_id, secret_key = _trading_keys()
        self.live = bool(live)
        self.url = (url_override or (LIVE_URL if self.live else PAPER_URL)).rstrip("/")
        self._client = TradingClient(key_id, secret_key, paper=not self.live, url_override=self.url)
        _take_over_retries_and_timeouts(self._client, timeout)
        self._redact = _redactor(key_id, secret_key)

    def __repr__(self):
        return f"AlpacaBroker(live={self.live}, url={self.url!r})"

    def positions(self):
        """The account's signed share positions, `{symbol: quantity}`; a short position is negative.

        Returns:
            A dict of symbol to shares, zero positions left out.

        Raises:
            BrokerError: when Alpaca refuses the request or cannot be reached.
        """
        positions = self._call("GET /v2/positions", self._client.get_all_positions)
        signed = {position.symbol: _signed_position_quantity(position) for position in positions}
        return {symbol: quantity for symbol, quantity in signed.items() if quantity != 0}

    def equity(self):
        """The account's equity (cash plus positions at their last price), in the account's currency.

        Raises:
            BrokerError: when Alpaca refuses the request or cannot be reached.
        """
        account = self._call("GET /v2/account", self._client.get_account)
        return float(account.equity)

    def submit(self, client_order_id, symbol, quantity, reference_price):
        """Sends a DAY market order for `quantity` signed shares and returns its `OrderStatus`.

        Args:
            client_order_id: the runner's id for the order (at most 128
                characters). An id Alpaca has seen before returns the status of
                the order first sent with it; nothing new is traded.
            symbol: the stock to trade.
            quantity: signed shares, whole or fractional: > 0 buys, < 0 sells.
            reference_price: the price the runner sized the order at; Alpaca
                fills at the market, so it is only logged.

        Returns:
            The order's `OrderStatus`; a market order can still be `OPEN` when
            the market is closed.

        Raises:
            BrokerError: for a zero or non-finite quantity, an empty symbol or a malformed id,
                or when Alpaca refuses the order or cannot be reached
                (`transient` says whether sending it again may work).
        """
        _check_client_order_id(client_order_id)
        if not isinstance(symbol, str) or not symbol.strip():
            raise BrokerError(f"alpaca: an order needs a symbol. Received: symbol={symbol!r} ({client_order_id})")
        if isinstance(quantity, bool) or not isinstance(quantity, (int, float)) or not math.isfinite(quantity) \
                or quantity == 0:
            raise BrokerError(f"alpaca: an order needs a non-zero, finite quantity. "
                              f"Received: quantity={quantity!r} for {symbol!r} ({client_order_id})")
        side = OrderSide.BUY if quantity > 0 else OrderSide.SELL
        request = MarketOrderRequest(symbol=symbol, qty=abs(float(quantity)), side=side,
                                     time_in_force=TimeInForce.DAY, client_order_id=client_order_id)
        description = f"order {client_order_id} ({side.value} {abs(quantity):g} {symbol})"
        logger.info("alpaca: sending %s, sized at %s", description, reference_price)
        try:
            order = self._client.submit_order(request)
        except APIError as error:
            if error.status_code != 422 or not _DUPLICATE_CLIENT_ORDER_ID.search(_alpaca_message(error)):
                raise self._broker_error(error, f"POST /v2/orders for {description}") from None
            # Sent before (a restart, or a reply lost on the way): the first order stands.
            existing = self.order(client_order_id)
            if existing is None:
                raise BrokerError(f"alpaca: Alpaca says client order id {client_order_id} is taken but has no order "
                                  "under it; try again later.", transient=True, status=422) from None
            if existing.symbol != symbol or existing.quantity != float(quantity):
                logger.warning("alpaca: client order id %s was first used for %g %s, not %g %s; "
                               "returning the first order", client_order_id, existing.quantity, existing.symbol,
                               quantity, symbol)
            logger.info("alpaca: %s was sent before; its order is %s", description, existing.state)
            return existing
        except (requests.RequestException, ValueError) as error:
            raise self._unreachable_or_unreadable(error, f"POST /v2/orders for {description}") from None
        return _order_status(order)

    def order(self, client_order_id):
        """The `OrderStatus` of the order sent with `client_order_id`, or `None` if Alpaca never received it.

        Raises:
            BrokerError: when Alpaca refuses the request or cannot be reached.
        """
        _check_client_order_id(client_order_id)
        try:
            order = self._client.get_order_by_client_id(client_order_id)
        except APIError as error:
            if error.status_code == 404:
                return None
            raise self._broker_error(error, f"GET /v2/orders:by_client_order_id for {client_order_id}") from None
        except (requests.RequestException, ValueError) as error:
            raise self._unreachable_or_unreadable(
                error, f"GET /v2/orders:by_client_order_id for {client_order_id}") from None
        return _order_status(order)

    def _call(self, description, function, *args):
        try:
            return function(*args)
        except APIError as error:
            raise self._broker_error(error, description) from None
        except (requests.RequestException, ValueError) as error:
            raise self._unreachable_or_unreadable(error, description) from None

    def _broker_error(self, error, description):
        status = error.status_code
        quoted = self._redact(_alpaca_message(error))[:MAX_QUOTED_MESSAGE_LENGTH]
        transient = status is None or status == 429 or status >= 500
        message = f"alpaca: {description} refused (HTTP {status}: {quoted})."
        if status in (401, 403):
            account = "live" if self.live else "paper"
            message += (f" Check {KEY_ID_VARIABLE} and {SECRET_KEY_VARIABLE}: they must be the keys of an Alpaca "
                        f"{account} account (paper and live accounts have different keys).")
        elif transient:
            message += " Alpaca is busy or failing; try again later."
        return BrokerError(message, transient=transient, status=status)

    def _unreachable_or_unreadable(self, error, description):
        if isinstance(error, requests.RequestException):
            return BrokerError(f"alpaca: {description} failed: no answer from {self.url} "
                               f"({type(error).__name__}); try again later.", transient=True)
        # pydantic's ValidationError is a ValueError: an answer alpaca-py cannot parse.
        detail = self._redact(str(error))[:MAX_QUOTED_MESSAGE_LENGTH]
        return BrokerError(f"alpaca: {description}: the answer could not be read ({detail}).")


def _trading_keys():
    return keys_from_environment(lambda missing: BrokerError(
        f"alpaca: trading needs an Alpaca account's API keys in the environment variables {KEY_ID_VARIABLE} "
        f"and {SECRET_KEY_VARIABLE}; not set: {', '.join(missing)}. Create paper keys on "
        "https://app.alpaca.markets (Paper Trading, API Keys) and export both."))


def _redactor(*secrets):
    """A function that blanks out `secrets` in a text (the keys must never reach a message)."""
    secrets = [secret for secret in secrets if secret]

    def redact(text):
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return redact


def _take_over_retries_and_timeouts(client, timeout):
    """Switches off alpaca-py's in-call retries and bounds every request by `timeout`.

    alpaca-py retries HTTP 429 and 504 three times, sleeping 3 s each, inside
    the call, and sends requests without a timeout, so a silent server would
    hang the runner for ever. `TradingClient` takes no arguments for either;
    the tests (`tests/trading/test_alpaca_broker.py`) check that both settings
    take effect, so an alpaca-py upgrade that renames them fails there.
    """
    client._retry = 0
    session = client._session
    send = session.request

    def request_with_timeout(method, url, **options):
        options.setdefault("timeout", timeout)
        return send(method, url, **options)

    session.request = request_with_timeout


def _check_client_order_id(client_order_id):
    if not isinstance(client_order_id, str) or not client_order_id \
            or len(client_order_id) > MAX_CLIENT_ORDER_ID_LENGTH:
        raise BrokerError(f"alpaca: a client order id must be a string of 1 to {MAX_CLIENT_ORDER_ID_LENGTH} "
                          f"characters. Received: client_order_id={client_order_id!r}")


def _alpaca_message(error):
    """Alpaca's `message` from an error body (`{"code": ..., "message": ...}`), or the body itself."""
    try:
        return str(error.message)
    except (ValueError, KeyError, TypeError):
        return str(error)


def _signed_position_quantity(position):
    # Alpaca reports a short's qty as negative with side "short"; the side decides
    # the sign so that either way of writing it gives a negative quantity.
    quantity = abs(float(position.qty))
    return -quantity if position.side == PositionSide.SHORT else quantity


def _order_status(order):
    sign = -1.0 if order.side == OrderSide.SELL else 1.0
    quantity = sign * float(order.qty or 0)
    filled_quantity = sign * float(order.filled_qty or 0)
    filled_price = float(order.filled_avg_price) if order.filled_avg_price and filled_quantity else None
    return OrderStatus(order.client_order_id, order.symbol, quantity, filled_quantity, filled_price,
                       _STATES.get(order.status, OPEN), broker_order_id=str(order.id))
