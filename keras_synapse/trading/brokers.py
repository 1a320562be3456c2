"""What the runner needs of a broker (`Broker`), and a simulated one that fills at the bar's close.

A broker takes market orders keyed by a client order id the runner derives
from the strategy, the symbol and the bar: sending the same id twice never
makes a second order (the broker refuses the duplicate and the runner looks
the first one up), which is what makes a restart after a crash safe.
"""

import dataclasses
import json
import os
import uuid
from pathlib import Path

from keras_synapse.errors import BrokerError

FILLED = "filled"
OPEN = "open"  # accepted, not (fully) filled yet
REJECTED = "rejected"  # refused or cancelled: nothing more will fill


@dataclasses.dataclass(frozen=True)
class OrderStatus:
    """What the broker says of one order.

    Attributes:
        client_order_id: the runner's id for the order.
        symbol: the traded symbol.
        quantity: signed shares ordered (> 0 buys, < 0 sells).
        filled_quantity: signed shares filled so far.
        filled_price: average fill price, or `None` before any fill.
        state: `FILLED`, `OPEN` or `REJECTED`.
        broker_order_id: the broker's own id. Defaults to `None`.
    """

    client_order_id: str
    symbol: str
    quantity: float
    filled_quantity: float
    filled_price: float | None
    state: str
    broker_order_id: str | None = None


class Broker:
    """The protocol every broker honours (one per family, as splitters and models have)."""

    name = "broker"

    def positions(self):
        """The account's signed share positions, `{symbol: quantity}` (zero positions left out)."""
        raise NotImplementedError

    def equity(self):
        """The account's equity in its currency."""
        raise NotImplementedError

    def submit(self, client_order_id, symbol, quantity, reference_price):
        """Sends a market order for `quantity` signed shares; returns its `OrderStatus`.

        `reference_price` is the price the runner sized the order at (the
        bar's close); a simulated broker fills there, a real one ignores it.
        A `client_order_id` already used returns the first order's status.
        """
        raise NotImplementedError

    def order(self, client_order_id):
        """The `OrderStatus` of an order sent earlier, or `None` if the broker never received it."""
        raise NotImplementedError


class SimulatedBroker(Broker):
    """Fills every market order at once, in full, at its reference price; no costs.

    For demos and tests without an account; `--broker simulated` on the
    command line. With `account_path` the account is kept in a JSON file,
    replaced atomically after every order, so a restarted runner finds the
    account it left (as it would find a real broker's).

    Args:
        cash: starting cash. Defaults to `100000.0`.
        account_path: the account's file, or `None` to keep it in memory.
            Defaults to `None`.
    """

    name = "simulated"

    def __init__(self, cash=100000.0, account_path=None):
        self.cash = float(cash)
        self._positions = {}
        self._orders = {}
        self._prices = {}
        self.account_path = Path(account_path) if account_path is not None else None
        if self.account_path is not None and self.account_path.exists():
            stored = json.loads(self.account_path.read_text())
            self.cash, self._positions, self._prices = stored["cash"], stored["positions"], stored["prices"]
            self._orders = {order_id: OrderStatus(**order) for order_id, order in stored["orders"].items()}

    def positions(self):
        return {symbol: quantity for symbol, quantity in self._positions.items() if quantity != 0}

    def equity(self):
        return self.cash + sum(quantity * self._prices.get(symbol, 0.0) for symbol, quantity in self._positions.items())

    def submit(self, client_order_id, symbol, quantity, reference_price):
        if client_order_id in self._orders:
            return self._orders[client_order_id]
        if not quantity or not reference_price or reference_price <= 0:
            raise BrokerError(f"simulated broker: an order needs a non-zero quantity and a positive price. "
                              f"Received: quantity={quantity}, reference_price={reference_price} for {symbol}")
        self._positions[symbol] = self._positions.get(symbol, 0.0) + quantity
        self._prices[symbol] = float(reference_price)
        self.cash -= quantity * reference_price
        status = OrderStatus(client_order_id, symbol, float(quantity), float(quantity), float(reference_price), FILLED,
                             broker_order_id=f"sim-{len(self._orders) + 1}")
        self._orders[client_order_id] = status
        self._save()
        return status

    def _save(self):
        if self.account_path is None:
            return
        temporary = self.account_path.with_name(f".{self.account_path.name}-{uuid.uuid4().hex}")
        temporary.write_text(json.dumps({"cash": self.cash, "positions": self._positions, "prices": self._prices,
                                         "orders": {order_id: dataclasses.asdict(order)
                                                    for order_id, order in self._orders.items()}}))
        os.replace(temporary, self.account_path)

    def order(self, client_order_id):
        return self._orders.get(client_order_id)
