"""The tuned experiment file: the base experiment with the best trial's values, checked by loading it back."""

import dataclasses
import os
import textwrap
from pathlib import Path

from keras_synapse.errors import SynapseError
from keras_synapse.tuning.results import interval_header
from keras_synapse.tuning.search_space import plain_value


def changed_fields(base, config):
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config)
            if getattr(config, field.name) != getattr(base, field.name)}


def display_path(path):
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def command_line(args):
    parts = ["python -m keras_synapse.tune", display_path(args.experiment), f"--max-trials {args.max_trials}",
             f"--tuner {args.tuner}", f"--objective {args.objective}"]
    parts += ["--quick"] if args.quick else []
    parts += [f"--{key} {getattr(args, key)}" for key in ("data", "epochs", "seed") if getattr(args, key) is not None]
    parts += [f"--set {override}" for override in args.overrides]
    return " ".join(parts)


def summary_line(best, args):
    folds = ", ".join(f"{value:+.4f}" for value in best["folds"])
    interval = "" if best["ci"] is None else (
        f" ({interval_header(args.objective)} [{best['ci'][0]:+.4f}, {best['ci'][1]:+.4f}])")
    return (f"Best of the search: trial {best['trial']}, mean {args.objective} {best['objective']:+.4f}{interval} "
            f"over {len(best['folds'])} folds ({folds}), scored on the validation carve-outs of the folds before the "
            "first test fold; the test folds keras_synapse.train reports for this file were never seen by the search.")


def write_tuned_experiment(path, base_experiment, name, tuned, overrides, summary="", command=""):
    """Writes an experiment file: the base experiment's config with the tuned values and overrides.

    Next to the base experiment it imports it by name (`import shared_backbone`),
    elsewhere it loads it by its path relative to the new file.

    Args:
        path: the file to write.
        base_experiment: the base experiment file.
        name: the tuned experiment's `name` (its registry entry).
        tuned: dict field -> the search's best value.
        overrides: dict field -> value set on the tune command line.
        summary: a sentence on how the values were found. Defaults to `""`.
        command: the tune command. Defaults to `""`.
    """
    path, base_experiment = Path(path), Path(base_experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    same_directory = path.resolve().parent == base_experiment.resolve().parent
    module = base_experiment.stem
    if same_directory and module.isidentifier():
        imports = f"import dataclasses\n\nimport {module}\n"
        base_call = f"{module}.get_config(quick)"
    else:
        base, directory = base_experiment.resolve(), path.resolve().parent
        common = Path(os.path.commonpath([base, directory]))
        if common == common.parent:  # nothing in common but the root: an absolute path
            location = repr(str(base))
        else:
            location = f"Path(__file__).resolve().parent / {os.path.relpath(base, directory)!r}"
        imports = ("import dataclasses\nfrom pathlib import Path\n\n"
                   f"from keras_synapse.config import load_experiment\n\nBASE_EXPERIMENT = {location}\n")
        base_call = "load_experiment(BASE_EXPERIMENT, quick=quick)"

    def literal(values):
        if not values:
            return "{}"
        return "{\n" + "".join(f"    {key!r}: {plain_value(value)!r},\n" for key, value in values.items()) + "}"

    docstring = "\n".join([
        f'"""{base_experiment.stem} with the hyperparameters found by keras_synapse.tune.',
        "",
        f"    python -m keras_synapse.train {display_path(path)}",
        f"    python -m keras_synapse.train {display_path(path)} --quick   # smoke run",
        "",
        *([textwrap.fill(summary, 100), ""] if summary else []),
        *([textwrap.fill(f"Written by: {command}", 100, subsequent_indent="    "), ""] if command else []),
        '"""',
    ])
    text = (f"{docstring}\n\n{imports}\n"
            f"# The search's best values.\nTUNED = {literal(tuned)}\n"
            f"# Settings given on the tune command line (--set, --epochs, --data, --seed).\n"
            f"OVERRIDES = {literal(overrides)}\n\n\n"
            "def get_config(quick=False):\n"
            f"    return dataclasses.replace({base_call}, **{{**OVERRIDES, **TUNED, 'name': {name!r}}})\n")
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return path


def check_tuned_file(path, quick, config, tuned):
    """Loads the written file and checks it reproduces the best trial's config (bar its name)."""
    from keras_synapse.config import load_experiment

    loaded = load_experiment(path, quick=quick)
    expected = dataclasses.replace(config, **tuned, name=loaded.name)
    if loaded != expected:
        raise SynapseError(f"{path} does not reproduce the best configuration: "
                           f"{changed_fields(expected, loaded)} (please report this bug)")
    return loaded
