"""Trading a registered model live: brokers, the crash-safe journal, the strategy runner, the dashboard.

The runner (`keras_synapse.trading.runner`) turns each new bar into predictions
through the streaming predictor, into target weights by exactly the rules the
backtest trades by (`keras_synapse.evaluation.backtest`), and into orders
through a `Broker` (`brokers.SimulatedBroker`, or Alpaca's paper API through
alpaca-py in `alpaca_broker`). Everything it decides is written first to its
journal (`journal`), so a restart after `kill -9` carries on where it stopped
and never sends an order twice.
"""
