"""`python -m keras_synapse.registry`: list an experiment's versions, promote one, roll back.

    python -m keras_synapse.registry list shared_backbone [--registry saved_models]
    python -m keras_synapse.registry promote shared_backbone 4 [--reason "beats v3 on the holdout"]
    python -m keras_synapse.registry rollback shared_backbone [VERSION]

`promote` points `saved_models/NAME/latest` at VERSION; `rollback` points it
back at the version that was latest before the current one (or at VERSION),
as recorded in `saved_models/NAME/promotions.jsonl`; `list` prints every
version, which one is latest, its training run's test IC and verdict, and
why it was made latest. The logic is `keras_synapse.serving.registry`'s.
"""

import argparse
import sys
from pathlib import Path

DESCRIPTION = __doc__.split("\n\n", 1)[1] if __doc__ else ""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m keras_synapse.registry", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("list", "promote", "rollback"), help="what to do")
    parser.add_argument("experiment", help="the experiment name, a directory of the registry")
    parser.add_argument("version", nargs="?", type=int, help="the version (promote: required; rollback: "
                        "optional, instead of the previous latest)")
    parser.add_argument("--registry", default="saved_models", help="model registry root. Defaults to saved_models/")
    parser.add_argument("--reason", default="", help="why, kept in promotions.jsonl")
    return parser.parse_args(argv)


def main(argv=None):
    from keras_synapse.cli import run_command

    return run_command(run, parse_args(sys.argv[1:] if argv is None else argv))


def run(args):
    """Lists, promotes or rolls back; prints what it did."""
    from keras_synapse.errors import SynapseError
    from keras_synapse.serving import registry

    experiment_dir = Path(args.registry) / args.experiment
    if args.action == "list":
        print(registry.format_version_summaries(experiment_dir, registry.version_summaries(experiment_dir)))
        return
    if args.action == "promote":
        if args.version is None:
            raise SynapseError(f"promote needs the VERSION to make latest (registered versions of {experiment_dir}: "
                               f"{', '.join(map(str, registry.versions(experiment_dir))) or 'none'}).")
        previous = registry.set_latest(experiment_dir, args.version, args.reason or "promoted by hand")
        print(f"{args.experiment}: latest {previous} -> {args.version}")
        return
    previous, restored = registry.rollback(experiment_dir, args.version, args.reason)
    print(f"{args.experiment}: latest {previous} -> {restored} (rolled back)")


if __name__ == "__main__":
    sys.exit(main())
