"""The package layout as a contract: one package per stage, imports in the direction data flows."""

import ast
from pathlib import Path

import keras_synapse

PACKAGE = Path(keras_synapse.__file__).parent
# Stages in import order: each may import the ones before it, never one after. Evaluation's metric
# functions come before training because training logs the validation IC with them.
STAGES = ["data", "features", "labels", "windows", "models", "evaluation", "training", "serving", "tuning", "trading",
          "bench"]
COMMANDS = {"train", "tune", "predict", "export", "serve", "registry", "retrain", "live"}
# Besides the commands, at most this many top-level modules (the ones every stage shares).
MAX_SHARED_MODULES = 5


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"), path


def imported(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_synapse"):
            yield node.module
            if node.module == "keras_synapse":
                yield from (f"keras_synapse.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("keras_synapse"))


def part(module):
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else None


def test_few_modules_outside_the_stage_packages_and_none_over_500_lines():
    shared = sorted(path.name for path in PACKAGE.glob("*.py") if path.stem not in COMMANDS | {"__init__"})
    assert len(shared) <= MAX_SHARED_MODULES, shared
    long = {module: n for module, path in modules() if (n := len(path.read_text().splitlines())) > 500}
    assert long == {}


def test_no_stage_imports_a_later_stage_or_a_command():
    wrong = []
    for module, path in modules():
        mine = part(module)
        if mine in COMMANDS:
            continue  # the commands tie the stages together
        for name in imported(path):
            theirs = part(name)
            if theirs in COMMANDS:
                wrong.append(f"{module} imports the command {name}")
            elif mine in STAGES and theirs in STAGES and STAGES.index(theirs) > STAGES.index(mine):
                wrong.append(f"{module} ({mine}) imports {name} ({theirs}, a later stage)")
    assert wrong == []


def test_every_stage_is_a_package_with_its_purpose_stated():
    for stage in STAGES:
        init = PACKAGE / stage / "__init__.py"
        assert init.is_file(), stage
        assert ast.get_docstring(ast.parse(init.read_text())), f"{stage}/__init__.py states no purpose"
