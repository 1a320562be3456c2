"""`python -m keras_synapse.live`: paper-trade a registered model as its own strategy, from a crash-safe journal.

    python -m keras_synapse.live saved_models/shared_backbone/latest --broker simulated --replay sample --quick
    python -m keras_synapse.live saved_models/shared_backbone/latest --broker alpaca-paper --symbols AAPL,MSFT

Bars come from Alpaca's market data API (polled; a bar is traded once it is
complete) or, with `--replay DATA`, from stored bars replayed one bar time per
poll (any `--data` spec: `sample`, a directory, ...). Each bar goes through
the streaming predictor, the experiment's strategy (the rules its backtest
traded by: signal, sizing, risk limits, circuit breakers) and, at each
rebalance, into market orders: `--broker simulated` fills them at the close;
`--broker alpaca-paper` sends them through alpaca-py's `TradingClient(paper=True)`
with the keys in `APCA_API_KEY_ID` and `APCA_API_SECRET_KEY`.

Everything is journaled in `--live-dir` (default `live/<experiment>`) before
it is acted on: run the same command again after a crash or `kill -9` and it
resumes, never sending an order twice. `python -m keras_synapse.serve MODEL
--live-dir DIR` shows the session at `/dashboard`. A replay shows a progress
bar over its bars on stderr; stdout keeps only the closing summary.
"""

import argparse
import contextlib
import logging
import sys
from pathlib import Path

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m keras_synapse.live", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a registry version: saved_models/<experiment>/<version|latest>")
    parser.add_argument("--broker", choices=("simulated", "alpaca-paper"), default="simulated",
                        help="where orders go. Defaults to simulated")
    parser.add_argument("--symbols", help="comma-separated symbols to trade (with --replay: a subset of its "
                        "symbols; defaults to all of them)")
    parser.add_argument("--replay", metavar="DATA", help="replay stored bars (a --data spec) instead of polling "
                        "Alpaca's market data")
    parser.add_argument("--quick", action="store_true", help="with --replay sample: the small smoke-run panel")
    parser.add_argument("--replay-bars", type=int, default=250,
                        help="with --replay: trade the last N bars (the ones before are warm-up). Defaults to 250")
    parser.add_argument("--warmup-bars", type=int,
                        help="bars of history before the first traded bar. Defaults to the model's stream buffer")
    parser.add_argument("--strategy", metavar="EXPERIMENT.py",
                        help="trade this experiment's `strategy` and `cost_bps` instead of the model's own")
    parser.add_argument("--strategy-id", help="names the strategy in client order ids. Defaults to the experiment")
    parser.add_argument("--live-dir", help="journal and status directory. Defaults to live/<experiment>")
    parser.add_argument("--capital", type=float, default=100000.0,
                        help="the strategy's allocation (its own book, not the account). Defaults to 100000")
    parser.add_argument("--ramp", default="0.25,0.5,1.0",
                        help="shares of the allocation traded as the strategy proves itself. Defaults to 0.25,0.5,1.0")
    parser.add_argument("--ramp-periods", type=int, default=20,
                        help="rebalances without a breaker per ramp stage. Defaults to 20")
    parser.add_argument("--fractional", action="store_true", help="trade fractional shares (Alpaca allows them "
                        "for market day orders)")
    parser.add_argument("--timeframe", default="1Day", help="Alpaca bar timeframe. Defaults to 1Day")
    parser.add_argument("--poll-interval", type=float, default=60.0,
                        help="seconds between polls for a new bar. Defaults to 60")
    parser.add_argument("--max-idle-polls", type=int, help="stop after N polls in a row without a new bar")
    parser.add_argument("--max-bars", type=int, help="stop after trading N bars this session")
    parser.add_argument("--history-start", help="with Alpaca bars: look for the warm-up history from this date. "
                        "Defaults to far enough back for --warmup-bars")
    parser.add_argument("--retrain", metavar="EXPERIMENT.py", help="every --retrain-every bars, run `python -m "
                        "keras_synapse.retrain EXPERIMENT.py --live-dir ...` (it retrains when a trigger fires and "
                        "promotes only a better model) and switch to a promoted `latest`")
    parser.add_argument("--retrain-every", type=int, default=5, help="traded bars between retrain checks. "
                        "Defaults to 5 (a week of daily bars)")
    parser.add_argument("--retrain-data", help="the --data spec the retrain trains on. Defaults to --replay, or "
                        "alpaca:SYMBOLS")
    parser.add_argument("--retrain-args", default="", help="more retrain options, e.g. \"--holdout-bars 250 "
                        "--every 7d\"")
    parser.add_argument("--trading-url", help="Alpaca trading API base URL (a proxy or test server). Defaults to "
                        "Alpaca's paper API")
    parser.add_argument("--data-url", help="Alpaca market data API base URL. Defaults to Alpaca's")
    return parser.parse_args(argv)


def main(argv=None):
    from keras_synapse.cli import run_command

    return run_command(run, parse_args(sys.argv[1:] if argv is None else argv), logging.INFO)


def run(args):
    """Builds the runner from the arguments and trades until the source is exhausted or the runner stops."""
    from keras_synapse.errors import ConfigError
    from keras_synapse.serving.inference import Predictor
    from keras_synapse.trading.runner import LiveRunner

    predictor = Predictor.from_registry(args.model)
    settings = _settings(args, predictor)
    symbols = [symbol.strip() for symbol in args.symbols.split(",") if symbol.strip()] if args.symbols else None
    warmup = args.warmup_bars or predictor.inputs.default_buffer_length()
    source = _source(args, symbols, warmup)
    live_dir = Path(args.live_dir or Path("live") / predictor.experiment)
    broker = _broker(args, live_dir)
    runner = LiveRunner(predictor, broker, source, live_dir, settings)
    traded, progress = 0, None
    try:
        runner.start()
        progress = _replay_progress(source, runner, args.max_bars) if args.replay else None
        with _logs_above(progress):
            traded = runner.run(args.poll_interval, args.max_idle_polls, args.max_bars,
                                _on_bar(progress, _retrain_hook(args, symbols)))
    except KeyboardInterrupt:  # a stop by hand: the journal holds everything done so far
        print("stopped by the user; run the same command to resume", file=sys.stderr)
    finally:
        if progress is not None:
            progress.close()
        runner.close()
    positions = ", ".join(f"{symbol} {quantity:g}" for symbol, quantity in sorted(runner.positions().items()))
    print(f"{predictor.experiment} v{predictor.version} on {broker.name}: {traded} bar(s) traded this session, "
          f"{len(runner.orders)} order(s) in the journal; positions: {positions or 'none'}; journal {live_dir}")
    if runner.stopped_reason:
        raise ConfigError(f"stopped: {runner.stopped_reason}")


def _settings(args, predictor):
    from keras_synapse.config import config_from_dict, load_experiment, strategy_rules
    from keras_synapse.errors import ConfigError
    from keras_synapse.trading.runner import LiveSettings, check_strategy_id

    config = load_experiment(args.strategy) if args.strategy else config_from_dict(dict(predictor.metadata["config"]))
    try:
        ramp = tuple(float(share) for share in args.ramp.split(","))
    except ValueError:
        raise ConfigError(f"`--ramp` must be comma-separated shares, e.g. 0.25,0.5,1.0. Received: {args.ramp!r}") \
            from None
    if not ramp or any(not 0 < share <= 1 for share in ramp) or list(ramp) != sorted(ramp) or ramp[-1] != 1.0:
        raise ConfigError(f"`--ramp` must rise in (0, 1] to 1.0. Received: {args.ramp!r}")
    if args.capital <= 0 or args.ramp_periods < 1:
        raise ConfigError(f"`--capital` must be > 0 and `--ramp-periods` >= 1. Received: --capital {args.capital}, "
                          f"--ramp-periods {args.ramp_periods}")
    strategy_id = check_strategy_id(args.strategy_id or predictor.experiment.replace("_", "-")[:40])
    return LiveSettings(strategy_id=strategy_id, horizon=int(predictor.metadata["label"]["horizon"]),
                        rules=strategy_rules(config), cost_bps=float(config.cost_bps), capital=args.capital,
                        ramp=ramp, ramp_periods=args.ramp_periods, fractional=args.fractional)


def _source(args, symbols, warmup):
    from keras_synapse.errors import ConfigError
    from keras_synapse.trading.bar_sources import AlpacaBars, ReplayBars

    if args.replay:
        from keras_synapse.data import load_panel

        panel = load_panel(args.replay, quick=args.quick)
        chosen = symbols or list(panel)
        unknown = sorted(set(chosen) - set(panel))
        if unknown:
            raise ConfigError(f"`--symbols` {unknown} are not in --replay {args.replay} (it has {sorted(panel)})")
        panel = {symbol: panel[symbol] for symbol in chosen}
        num_bars = max(len(frame) for frame in panel.values())
        return ReplayBars({symbol: frame.iloc[-(args.replay_bars + warmup):] for symbol, frame in panel.items()},
                          min(warmup, num_bars - 1))
    if not symbols:
        raise ConfigError("`--symbols` is needed to trade Alpaca's bars, e.g. --symbols AAPL,MSFT")
    return AlpacaBars(symbols, warmup, args.timeframe, url_override=args.data_url,
                      history_start=args.history_start)


def _replay_progress(source, runner, max_bars=None):
    """A tqdm bar over the bars a replay trades, on stderr; a resumed replay starts at the bars already traded."""
    from tqdm import tqdm

    remaining_in_source = len(source.calendar) - source.warmup_bars
    done = min(len({row["timestamp"] for row in runner.predictions}), remaining_in_source)
    total = remaining_in_source if max_bars is None else min(remaining_in_source, done + max_bars)
    return tqdm(total=total, initial=done, desc="replay", unit="bar", file=sys.stderr, dynamic_ncols=True)


def _logs_above(progress):
    """Log lines printed above the progress bar instead of through it."""
    if progress is None:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def _on_bar(progress, hook):
    """What the runner calls after each traded bar: the progress bar's step, then the retrain hook."""
    if progress is None:
        return hook

    def on_bar(runner):
        progress.update(1)
        if hook is not None:
            hook(runner)

    return on_bar


def _retrain_hook(args, symbols):
    import shlex

    from keras_synapse.errors import ConfigError
    from keras_synapse.trading.retrain_hook import RetrainHook

    if not args.retrain:
        return None
    if args.retrain_every < 1:
        raise ConfigError(f"`--retrain-every` must be >= 1. Received: {args.retrain_every}")
    data = args.retrain_data or args.replay or (f"alpaca:{','.join(symbols)}" if symbols else None)
    return RetrainHook(args.retrain, args.model, data, args.retrain_every, shlex.split(args.retrain_args))


def _broker(args, live_dir):
    if args.broker == "simulated":
        from keras_synapse.trading.brokers import SimulatedBroker

        live_dir.mkdir(parents=True, exist_ok=True)
        return SimulatedBroker(cash=args.capital, account_path=live_dir / "simulated_account.json")
    from keras_synapse.trading.alpaca_broker import AlpacaBroker

    return AlpacaBroker(url_override=args.trading_url)


if __name__ == "__main__":
    sys.exit(main())
