"""The live strategy runner: bars in, predictions, target weights, orders out, everything journaled first.

One `LiveRunner` trades one registered model as an independent strategy with
its own book: its positions are the fills of its own orders (whatever else
the account holds), sized on its own allocation. Per bar:

1. the new bars go through the streaming predictor (features updated on each
   symbol's rolling buffer; a symbol whose bars or model call fail gets the
   neutral score, with the reason);
2. the bars and predictions are journaled (`journal.Journal`);
3. at a rebalance the targets come from the backtest's own rules
   (`decisions.decide`), scaled by the allocation ramp, and the orders that
   reach them are journaled as intents, sent with client order ids derived
   from the strategy, symbol and bar, and their answers journaled;
4. the bar is marked processed, and `status.json` (what the dashboard shows)
   is replaced atomically.

Failures fall back to a safe state, each with its reason journaled and
logged: a data failure (the source cannot be read) holds the book and tries
again at the next poll; a transient broker failure (HTTP 429, 5xx) is
retried, then left to the next bar (the order keeps its id, so it is never
doubled); a broker refusal of one order (HTTP 422) leaves that symbol where
it is; a refusal of the keys (HTTP 401/403) stops the runner; a symbol whose
journal and broker positions disagree after a restart gets no more orders
until a person looks (`reconcile`).
"""

import dataclasses
import json
import logging
import time

import numpy as np
import pandas as pd

from keras_synapse.data.panel import Panel
from keras_synapse.errors import BrokerError, DataError, SynapseError
from keras_synapse.evaluation.trading_rules import BacktestRules
from keras_synapse.trading.brokers import OPEN
from keras_synapse.trading.decisions import (DEFAULT_RAMP, DEFAULT_RAMP_PERIODS, SCORE_COLUMN, Decision,
                                             client_order_id, decide, prediction_frame, ramp_fraction,
                                             target_quantities)
from keras_synapse.trading.journal import Journal, bar_rows, bars_frame
from keras_synapse.trading.status import write_status

logger = logging.getLogger("keras_synapse.trading")

BROKER_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class LiveSettings:
    """How the runner trades.

    Args:
        strategy_id: names the strategy in client order ids (letters, digits,
            dashes; short).
        horizon: bars a position is held (the model's label horizon).
        rules: the `BacktestRules` (the experiment's `strategy`). Defaults
            to the default rules (sign of the score, one slot per symbol).
        cost_bps: the commission the backtest charges, basis points (the
            breakers read net returns). Defaults to `0.0`.
        capital: the strategy's allocation, in the account's currency.
            Defaults to `100000.0`.
        ramp: shares of the allocation traded as the strategy proves itself
            (seed 003). Defaults to `(0.25, 0.5, 1.0)`.
        ramp_periods: clean rebalances per ramp stage. Defaults to `20`.
        fractional: trade fractional shares (to 1e-4). Defaults to `False`.
        monitor_window: realized predictions the rolling IC and accuracy
            cover, in bars. Defaults to `60`.
        drift_window: bars of each symbol's newest feature rows compared with
            the training rows for drift. Rolling features move slowly, so a
            short window is one regime, not a sample of the present: PSI
            then flags drift that is not there. Defaults to `250`.
        min_ic: the rolling IC under which the live model counts as degraded
            (with at least `min_realized` realized predictions). Defaults to `0.0`.
        min_realized: realized predictions before degradation is judged.
            Defaults to `100`.
        retry_wait: seconds before a transient broker failure is retried
            (doubling). Defaults to `1.0`.
    """

    strategy_id: str
    horizon: int
    rules: BacktestRules = BacktestRules()
    cost_bps: float = 0.0
    capital: float = 100000.0
    ramp: tuple = DEFAULT_RAMP
    ramp_periods: int = DEFAULT_RAMP_PERIODS
    fractional: bool = False
    monitor_window: int = 60
    drift_window: int = 250
    min_ic: float = 0.0
    min_realized: int = 100
    retry_wait: float = 1.0


class LiveRunner:
    """Trades one model on a bar source through a broker, from a journal in `live_dir`.

    Args:
        predictor: a `keras_synapse.serving.inference.Predictor`.
        broker: a `keras_synapse.trading.brokers.Broker`.
        source: a bar source (`keras_synapse.trading.bar_sources`).
        live_dir: the journal's and status file's directory; an existing
            journal is resumed.
        settings: the `LiveSettings`.
        sleep: the function that waits between polls and retries.
            Defaults to `time.sleep`.
    """

    def __init__(self, predictor, broker, source, live_dir, settings, sleep=time.sleep):
        self.predictor, self.broker, self.source, self.settings = predictor, broker, source, settings
        self.live_dir = live_dir
        self.sleep = sleep
        self.journal = Journal(live_dir)
        self.bars = {}  # symbol -> list of (timestamp, open, high, low, close, volume)
        self.predictions = []  # dicts: symbol, timestamp, prediction, probabilities
        self.decisions = []
        self.orders = {}  # client order id -> dict (intent and latest broker answer)
        self.fallbacks = []
        self.blocked = {}  # symbol -> why no orders are sent for it
        self.last_processed = None
        self.stream = None
        self.stopped_reason = None
        self.monitor_cache, self.drift = {}, None  # the status file's, kept between bars

    # --- Starting and resuming ---------------------------------------------------------

    def start(self):
        """Resumes from the journal (or journals the warm-up history), then reconciles with the broker.

        Raises:
            SynapseError: when the journal was started with other settings
                (its decisions would not be this strategy's).
        """
        history = self.journal.of_type("history")
        settings = _settings_record(self.settings)
        if history:
            _check_same_settings(self.journal.of_type("session")[0]["settings"], settings, self.journal.path)
        self.journal.append("session", experiment=self.predictor.experiment, version=self.predictor.version,
                            broker=self.broker.name, strategy_id=self.settings.strategy_id, settings=settings,
                            resumed=bool(history))
        if not history:
            warmup = self.source.history()
            history = [self.journal.append("history", bars={symbol: bar_rows(frame)
                                                            for symbol, frame in warmup.items()})]
        unfinished = self._replay(history[0])
        self.stream = self.predictor.stream(self._panel())
        self._resolve_orders()  # an order sent just before the stop may have filled since
        self._reconcile()
        if unfinished is not None:
            logger.info("Resuming the bar at %s, journaled before the stop.", unfinished["timestamp"])
            self._trade(unfinished)

    def _replay(self, history):
        for symbol, rows in history["bars"].items():
            self.bars[symbol] = [tuple(row) for row in rows]
        unfinished = None
        for record in self.journal.records:
            kind = record["type"]
            if kind == "bar":
                self._remember_bar(record)
                unfinished = record
            elif kind == "decision":
                self.decisions.append(_decision_of(record))
            elif kind in ("intent", "order"):
                self.orders.setdefault(record["client_order_id"], {}).update(_without_type(record))
            elif kind == "fallback":
                self.fallbacks.append(_without_type(record))
            elif kind == "processed":
                self.last_processed, unfinished = record["timestamp"], None
        return unfinished

    def _reconcile(self):
        """Checks the broker holds what the journal says this strategy holds; blocks symbols where it does not."""
        own = self.positions()
        if not own and not self.orders:
            return
        try:
            held = self.broker.positions()
        except BrokerError as error:
            self._fallback(None, f"broker: positions unreadable at start ({error})", "hold")
            return
        mismatches = {}
        for symbol, quantity in own.items():
            at_broker = held.get(symbol, 0.0)
            # Other strategies may hold the same symbol: the broker must hold at least ours, on our side.
            if quantity and (np.sign(at_broker) != np.sign(quantity) or abs(at_broker) + 1e-9 < abs(quantity)):
                mismatches[symbol] = {"journal": quantity, "broker": at_broker}
        self.journal.append("reconcile", own=own, broker=held, mismatches=mismatches)
        for symbol, numbers in mismatches.items():
            reason = (f"reconcile: the journal holds {numbers['journal']:g} {symbol}, the broker {numbers['broker']:g};"
                      " no orders for it until resolved")
            self.blocked[symbol] = reason
            self._fallback(None, reason, "block")

    # --- The loop ----------------------------------------------------------------------

    def run(self, poll_interval=60.0, max_idle_polls=None, max_bars=None, on_bar=None):
        """Polls the source and trades each new bar until it is exhausted or stopped.

        Args:
            poll_interval: seconds between polls. Defaults to `60.0`.
            max_idle_polls: stop after this many polls in a row with no new
                bar (`None`: never). Defaults to `None`.
            max_bars: stop after this many bars this session (`None`: never).
                Defaults to `None`.
            on_bar: called with the runner after every traded bar (e.g. a
                `retrain_hook.RetrainHook`). Defaults to `None`.

        Returns:
            The number of bars traded this session.
        """
        if self.stream is None:
            self.start()
        traded, idle = 0, 0
        while self.stopped_reason is None and (max_bars is None or traded < max_bars):
            try:
                new_bars = self.source.poll(self._last_bar_time())
            except (DataError, BrokerError) as error:
                self._fallback(None, f"data: {error}", "hold")
                new_bars = {}
            timestamps = sorted({timestamp for frame in new_bars.values() for timestamp in frame.index})
            for timestamp in timestamps:
                self.process_bar(timestamp, {symbol: frame.loc[[timestamp]] for symbol, frame in new_bars.items()
                                             if timestamp in frame.index})
                traded += 1
                if on_bar is not None:
                    on_bar(self)
                if self.stopped_reason is not None or (max_bars is not None and traded >= max_bars):
                    break
            idle = 0 if timestamps else idle + 1
            if (max_idle_polls is not None and idle >= max_idle_polls) or getattr(self.source, "exhausted", False):
                break
            if not timestamps:
                self.sleep(poll_interval)
        return traded

    def process_bar(self, timestamp, bars):
        """Predicts, decides and trades one bar time (`bars`: symbol -> a one-row OHLCV frame)."""
        timestamp = pd.Timestamp(timestamp)
        if self.last_processed is not None and timestamp <= pd.Timestamp(self.last_processed):
            return  # already traded before a restart
        scored = self.stream.update(bars)
        predictions = {}
        for symbol, row in scored.iterrows():
            values = {name: float(row[name]) for name in row.index if name == "score" or name.startswith("probability_")}
            values[SCORE_COLUMN] = values.pop("score")
            predictions[symbol] = {**values, "fallback": bool(row["fallback"]), "reason": str(row["reason"])}
        self._warn_if_in_sample(timestamp)
        record = self.journal.append("bar", timestamp=timestamp.isoformat(),
                                     bars={symbol: bar_rows(frame)[-1] for symbol, frame in bars.items()},
                                     predictions=predictions)
        self._remember_bar(record)
        self._trade(record)

    def _warn_if_in_sample(self, timestamp):
        end = self.predictor.metadata.get("data", {}).get("end")
        if end is not None and timestamp <= pd.Timestamp(end) and not getattr(self, "_warned_in_sample", False):
            logger.warning("Trading bars the model was trained on (its data end %s): these trades are in sample and "
                           "no evidence of an edge.", end)
            self._warned_in_sample = True

    def _trade(self, record):
        timestamp = pd.Timestamp(record["timestamp"])
        self._resolve_orders()
        decision = None
        if self.predictions:
            frame = prediction_frame(self._panel(), pd.DataFrame(self.predictions), self.settings.horizon,
                                     self.settings.rules.execution_lag, self.settings.rules)
            decision = decide(frame, self._calendar(), self.settings.horizon, self.settings.cost_bps,
                              self.settings.rules)
        if decision is not None and decision.timestamp == timestamp:
            if not self.decisions or self.decisions[-1].timestamp != timestamp:
                self.decisions.append(decision)
                self.journal.append("decision", **_decision_record(decision))
            self._rebalance(decision, record)
        self.last_processed = record["timestamp"]
        self.journal.append("processed", timestamp=record["timestamp"])
        write_status(self)

    def _rebalance(self, decision, record):
        ramp = ramp_fraction(self.decisions, self.settings.ramp, self.settings.ramp_periods)
        closes = {symbol: bar[4] for symbol, bar in record["bars"].items()}
        weights = {symbol: weight for symbol, weight in decision.weights.items() if symbol in closes}
        # Symbols held but without a target (no bar, no prediction) are closed.
        weights.update({symbol: 0.0 for symbol in self.positions() if symbol not in weights and symbol in closes})
        targets = target_quantities(weights, closes, self.settings.capital, ramp, self.settings.fractional)
        committed = self.committed()
        for symbol in sorted(targets):
            quantity = targets[symbol] - committed.get(symbol, 0.0)
            if abs(quantity) < 1e-9:
                continue
            if symbol in self.blocked:
                logger.warning("No order for %s: %s", symbol, self.blocked[symbol])
                continue
            order_id = client_order_id(self.settings.strategy_id, symbol, decision.timestamp)
            self._send(order_id, symbol, quantity, closes[symbol], record["timestamp"], ramp)
            if self.stopped_reason is not None:
                return

    def _send(self, order_id, symbol, quantity, price, timestamp, ramp):
        if order_id in self.orders:
            return  # decided before a restart: `_resolve_orders` follows it up
        self.orders[order_id] = _without_type(self.journal.append(
            "intent", client_order_id=order_id, symbol=symbol, quantity=quantity, reference_price=price,
            timestamp=timestamp, ramp=ramp))
        answered, status = self._ask(lambda: self.broker.submit(order_id, symbol, quantity, price), symbol, timestamp)
        if answered:
            self._record_answer(status, timestamp)

    def _ask(self, call, symbol, timestamp):
        """Calls the broker, retrying transient failures: `(True, answer)`, or `(False, None)` after a failure
        (journaled as a fallback)."""
        wait = self.settings.retry_wait
        for attempt in range(1, BROKER_ATTEMPTS + 1):
            try:
                return True, call()
            except BrokerError as error:
                if error.transient and attempt < BROKER_ATTEMPTS:
                    logger.warning("Broker failed (%s); retrying in %.1f s.", error, wait)
                    self.sleep(wait)
                    wait *= 2
                    continue
                if error.status in (401, 403):
                    self.stopped_reason = f"broker refused the keys: {error}"
                    self._fallback(timestamp, self.stopped_reason, "stop")
                elif error.transient:
                    self._fallback(timestamp, f"broker: {error}; the order keeps its id and is retried at the next "
                                              "bar", "hold")
                else:
                    self.blocked[symbol] = f"broker refused an order: {error}"
                    self._fallback(timestamp, f"broker refused the order for {symbol}: {error}", "hold")
                return False, None

    def _record_answer(self, status, timestamp):
        record = self.journal.append("order", client_order_id=status.client_order_id, symbol=status.symbol,
                                     state=status.state, filled_quantity=status.filled_quantity,
                                     filled_price=status.filled_price, broker_order_id=status.broker_order_id,
                                     answered_at=timestamp)
        self.orders.setdefault(status.client_order_id, {}).update(_without_type(record))

    def _resolve_orders(self):
        """Follows up orders without a final answer: open ones, and intents whose answer the stop (or a broker
        failure) cut off, which are looked up by their client order id and sent only if the broker never got them."""
        for order_id, order in list(self.orders.items()):
            state, symbol, timestamp = order.get("state"), order["symbol"], order.get("timestamp")
            if state not in (None, OPEN) or self.stopped_reason is not None:
                continue
            answered, status = self._ask(lambda: self.broker.order(order_id), symbol, timestamp)
            if answered and status is None and state is None:
                answered, status = self._ask(lambda: self.broker.submit(order_id, symbol, order["quantity"],
                                                                        order["reference_price"]), symbol, timestamp)
            if answered and status is not None and status.state != state:
                self._record_answer(status, timestamp)

    def switch_model(self, predictor):
        """Trades `predictor` from the next bar on (a promoted retrain), its stream seeded with the bars so far."""
        previous = self.predictor.version
        self.predictor, self.stream = predictor, predictor.stream(self._panel())
        self.journal.append("model", experiment=predictor.experiment, version=predictor.version, previous=previous,
                            at_bar=self.last_processed)
        logger.info("Switched from v%s to v%s of %s.", previous, predictor.version, predictor.experiment)

    # --- State ----------------------------------------------------------------------------

    def positions(self):
        """The strategy's own filled positions, `{symbol: signed shares}`."""
        held = {}
        for order in self.orders.values():
            if order.get("filled_quantity"):
                held[order["symbol"]] = held.get(order["symbol"], 0.0) + order["filled_quantity"]
        return {symbol: quantity for symbol, quantity in held.items() if abs(quantity) > 1e-9}

    def committed(self):
        """Positions plus what open (and unanswered) orders will still fill."""
        held = self.positions()
        for order in self.orders.values():
            state = order.get("state")
            if state in (None, OPEN) and "quantity" in order:
                remaining = order["quantity"] - (order.get("filled_quantity") or 0.0)
                held[order["symbol"]] = held.get(order["symbol"], 0.0) + remaining
        return held

    def _remember_bar(self, record):
        for symbol, bar in record["bars"].items():
            self.bars.setdefault(symbol, []).append(tuple(bar))
        for symbol, values in record["predictions"].items():
            self.predictions.append({"symbol": symbol, "timestamp": pd.Timestamp(record["timestamp"]),
                                     **{name: value for name, value in values.items()
                                        if name not in ("fallback", "reason")}})
            if values.get("fallback"):
                logger.warning("%s at %s: neutral score (%s)", symbol, record["timestamp"], values.get("reason"))

    def _last_bar_time(self):
        """The newest bar journaled (traded or warm-up): the source is asked for bars after it."""
        return max((rows[-1][0] for rows in self.bars.values() if rows), key=pd.Timestamp, default=None)

    def _panel(self):
        # Journaled bars were validated on the way in (the stream rejects bad ones).
        return Panel({symbol: bars_frame(rows) for symbol, rows in self.bars.items()}, validate=False)

    def _calendar(self):
        return pd.DatetimeIndex(sorted({pd.Timestamp(row[0]) for rows in self.bars.values() for row in rows}))

    def _fallback(self, timestamp, reason, action):
        logger.warning("Fallback (%s): %s", action, reason)
        self.fallbacks.append(_without_type(self.journal.append(
            "fallback", timestamp=str(timestamp) if timestamp is not None else None, reason=reason, action=action)))

    def close(self):
        self.journal.close()


def _without_type(record):
    return {key: value for key, value in record.items() if key != "type"}


def _decision_record(decision):
    return {"timestamp": decision.timestamp.isoformat(), "weights": decision.weights, "period": decision.period,
            **decision.breakers}


def _decision_of(record):
    return Decision(pd.Timestamp(record["timestamp"]), record["weights"], record["halted"], record["stopped"],
                    record["flattened"], record["cut"], record["period"])


def _settings_record(settings):
    record = dataclasses.asdict(settings)
    record["ramp"] = list(settings.ramp)
    return record


# What the decisions depend on: a journal resumed with any of these changed would not be the same strategy.
DECISION_SETTINGS = ("strategy_id", "horizon", "rules", "cost_bps", "capital", "ramp", "ramp_periods", "fractional")


def _check_same_settings(journaled, current, path):
    # Tuples come back from JSON as lists: compare both as JSON writes them.
    journaled, current = json.loads(json.dumps(journaled)), json.loads(json.dumps(current))
    differing = [name for name in DECISION_SETTINGS if journaled.get(name) != current.get(name)]
    if differing:
        changes = ", ".join(f"{name}={journaled.get(name)!r} (now {current.get(name)!r})" for name in differing)
        raise SynapseError(f"{path} was started with other settings: {changes}. Resume with the settings it was "
                           "started with, or trade the new ones in a new --live-dir.")


def check_strategy_id(strategy_id):
    """Refuses a strategy id that would not make a valid client order id."""
    if not strategy_id or len(strategy_id) > 40 or not all(c.isalnum() or c == "-" for c in strategy_id):
        raise SynapseError(f"`strategy_id` must be 1-40 letters, digits or dashes. Received: {strategy_id!r}")
    return strategy_id
