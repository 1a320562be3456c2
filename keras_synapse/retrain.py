"""`python -m keras_synapse.retrain`: retrain when due, and promote the new model only if it beats the incumbent.

    python -m keras_synapse.retrain experiments/shared_backbone.py --data ./bars/ --holdout-bars 250
    python -m keras_synapse.retrain experiments/shared_backbone.py --realized live_realized.csv --min-trades 100
    python -m keras_synapse.retrain experiments/shared_backbone.py --live-dir live/shared_backbone
    python -m keras_synapse.retrain experiments/shared_backbone.py --force --quick

Checks whether a retrain is due (the incumbent, saved_models/<experiment>/latest,
registered longer ago than --every; at least --min-drifted-features of its
features drifted on the held-out bars; or the IC of realized live
predictions below --min-ic over at least --min-trades of them), prints which
trigger fired and its numbers, and if one did (or with --force): trains a
challenger on the bars before the newest --holdout-bars, registers it
without moving `latest`, scores both models on the held-out bars, and
promotes the challenger only when the 95% interval of its IC minus the
incumbent's lies above zero. The decision goes to
runs/<experiment>/retrain-<time>-<pid>/decision.json and, when promoted, to
saved_models/<experiment>/promotions.jsonl (`python -m keras_synapse.registry
rollback <experiment>` undoes it). The logic is
`keras_synapse.serving.retraining`'s.
"""

import argparse
import sys

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m keras_synapse.retrain", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="experiment file, e.g. experiments/shared_backbone.py")
    parser.add_argument("--data", help="bars, as for train (the newest --holdout-bars are held out). Defaults to the "
                        "experiment's `data` field")
    parser.add_argument("--registry", default="saved_models", help="model registry root. Defaults to saved_models/")
    parser.add_argument("--output", default="runs", help="run directory root. Defaults to runs/")
    parser.add_argument("--holdout-bars", type=int, default=250,
                        help="newest bars held out to compare the models on. Defaults to 250")
    due = parser.add_mutually_exclusive_group()
    due.add_argument("--if-due", dest="force", action="store_false", default=False, help="retrain only when a trigger fires "
                     "(the default)")
    due.add_argument("--force", dest="force", action="store_true", help="retrain whatever the triggers say")
    parser.add_argument("--every", default="7d", help="schedule: retrain when the incumbent is this old (7d, 12h, "
                        "2w). Defaults to 7d")
    parser.add_argument("--min-drifted-features", default="25%",
                        help="drift: fire when this many features drift (a count, or a share such as 25%%). "
                        "Defaults to 25%%")
    realized = parser.add_mutually_exclusive_group()
    realized.add_argument("--realized", metavar="FILE.csv", help="realized live predictions (symbol, timestamp, "
                          "score, forward_return) for the degradation check")
    realized.add_argument("--live-dir", help="the live runner's directory: its journal's realized predictions for "
                          "the degradation check")
    parser.add_argument("--min-trades", type=int, default=100,
                        help="degradation: the fewest realized predictions to judge on. Defaults to 100")
    parser.add_argument("--min-ic", type=float, default=0.0,
                        help="degradation: fire when the live IC is below this. Defaults to 0.0")
    parser.add_argument("--degradation-window", type=int, default=250,
                        help="degradation: judge the most recent this many realized predictions. Defaults to 250")
    parser.add_argument("--quick", action="store_true", help="the experiment's smoke-sized config")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field of the challenger's training run (repeatable)")
    return parser.parse_args(argv)


def main(argv=None):
    from keras_synapse.cli import run_command

    return run_command(run, parse_args(sys.argv[1:] if argv is None else argv))


def run(args):
    """Reads the realized predictions (if any) and runs `keras_synapse.serving.retraining.retrain`."""
    from keras_synapse.serving.retrain_triggers import read_realized
    from keras_synapse.serving.retraining import retrain
    from keras_synapse.trading.status import realized_from_journal

    realized = (read_realized(args.realized) if args.realized else realized_from_journal(args.live_dir)
                if args.live_dir else None)

    return retrain(args.experiment, data=args.data, registry=args.registry, output=args.output,
                   holdout_bars=args.holdout_bars, force=args.force, every=args.every,
                   min_drifted_features=args.min_drifted_features,
                   realized=realized, min_trades=args.min_trades,
                   min_ic=args.min_ic, degradation_window=args.degradation_window, quick=args.quick,
                   overrides=args.overrides)


if __name__ == "__main__":
    sys.exit(main())
