"""What every command-line entry point shares: logging set-up and clean errors.

A `SynapseError` (bad data, an impossible setting, a missing file) is the
user's to fix, so it ends the command with its message and exit status 2
instead of a traceback.
"""

import logging
import sys

from keras_synapse.errors import SynapseError


def run_command(body, args, log_level=logging.INFO):
    """Runs `body(args)`; returns the process exit status.

    Args:
        body: the command's work, a callable taking the parsed arguments.
        args: the parsed arguments.
        log_level: the root logging level. Defaults to `logging.INFO`.

    Returns:
        0 on success, 2 after printing `error: <message>` for a
        `SynapseError`.
    """
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    from keras_synapse.console import quiet_tensorflow

    quiet_tensorflow()  # imports nothing: TensorFlow's first import, whenever it comes, is silent
    try:
        body(args)
    except SynapseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def resolve_config(args):
    """The run's `ExperimentConfig` from parsed `train`/`tune` arguments (or a resumed run's config.json).

    Raises:
        SynapseError: when resuming with a command whose config differs from
            the interrupted run's (the fields that differ are named).
    """
    import dataclasses
    import json
    from pathlib import Path

    from keras_synapse.config import config_from_dict

    requested = _requested_config(args)
    if not getattr(args, "resume", None):
        return requested
    config_path = Path(args.resume) / "config.json"
    if not config_path.is_file():
        raise SynapseError(f"--resume {args.resume}: no config.json there; is it a run directory?")
    stored = config_from_dict(json.loads(config_path.read_text()))
    differing = [field.name for field in dataclasses.fields(stored)
                 if getattr(stored, field.name) != getattr(requested, field.name)]
    if differing:
        changes = ", ".join(f"{name}={getattr(stored, name)!r} (now {getattr(requested, name)!r})" for name in differing)
        raise SynapseError(f"--resume {args.resume}: the run was started with another config: {changes}. Resume "
                           "with the command that started it, or start a new run.")
    return stored


def _requested_config(args):
    from keras_synapse.config import apply_overrides, load_experiment

    config = load_experiment(args.experiment, quick=args.quick)
    return apply_overrides(config, command_overrides(args))


def command_overrides(args):
    """The `key=value` overrides of parsed `train`/`tune` arguments: every `--set`, then `--data`/`--epochs`/`--seed`."""
    return list(args.overrides) + [f"{key}={getattr(args, key)}" for key in ("data", "epochs", "seed")
                                   if getattr(args, key) is not None]


def describe_request(args):
    """One line echoing what was asked: the experiment, `--quick`, and each override as it was given."""
    overrides = command_overrides(args)
    return (f"experiment: {args.experiment}{' --quick' if args.quick else ''}"
            + (f" with {', '.join(overrides)}" if overrides else " with its own settings"))


def add_executor_arguments(parser, units):
    """`--executor` and `--cpus-per-task`, as `train`, `tune` and `bench edge power` take them.

    Args:
        parser: the command's `ArgumentParser`.
        units: what the executor runs, e.g. `"folds and the final refit"`.
    """
    parser.add_argument("--executor", default="local", help=f"where the {units} run: 'local' (here, one after "
                        "another), 'ray' (Ray tasks on the cluster in RAY_ADDRESS, or a new one here) or "
                        "'ray://HOST:PORT'. Defaults to local")
    parser.add_argument("--cpus-per-task", type=int, help="CPUs (TensorFlow intra-op threads) per task; give local "
                        "and ray runs the same value for the same figures. Defaults to TensorFlow's own locally, 1 on "
                        "Ray")
