"""Every module of the package imports with the base install alone (`pip install -e .`, no extras).

The suite runs with the test extras installed, which once hid that the
LightGBM baseline needs scikit-learn: every new user's first run crashed.
Here a fresh interpreter refuses to import any package that the base
install would not bring (the closure of `install_requires`), then imports
every module of keras_synapse.
"""

import subprocess
import sys

# Runs in a fresh interpreter: blocks every top-level package whose distribution is outside the base closure.
_IMPORT_EVERY_MODULE = r'''
import importlib
import importlib.metadata as metadata
import pkgutil
import re
import sys

from packaging.requirements import Requirement


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def base_closure(distribution):
    closure, pending = set(), [distribution]
    while pending:
        name = normalized(pending.pop())
        if name in closure:
            continue
        closure.add(name)
        for text in metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            # No extra is asked for: a requirement behind an `extra == ...` marker is not installed.
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return closure


allowed = base_closure("keras_synapse")
owners = {module: {normalized(name) for name in names} for module, names in metadata.packages_distributions().items()}
blocked = {module for module, names in owners.items() if module != "keras_synapse" and not names & allowed}


class OnlyTheBaseInstall:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the base install)", name=name)
        return None


sys.meta_path.insert(0, OnlyTheBaseInstall())
import keras_synapse

failures = []
for module in pkgutil.walk_packages(keras_synapse.__path__, "keras_synapse."):
    if module.name.endswith("__main__"):
        continue  # `python -m` entry points run their command when imported
    try:
        importlib.import_module(module.name)
    except Exception as error:
        failures.append(f"{module.name}: {type(error).__name__}: {error}")
# What every run does beyond importing: the LightGBM baseline's fit (LightGBM's scikit-learn API raises
# "scikit-learn is required" at fit time, not at import).
import numpy as np
from keras_synapse.models.trees import tree_regressor

rows = np.random.default_rng(0).normal(size=(200, 3))
try:
    tree_regressor("lightgbm", n_estimators=5).fit(rows, rows[:, 0])
except Exception as error:
    failures.append(f"the LightGBM baseline's fit: {type(error).__name__}: {error}")
print("blocked:", ", ".join(sorted(blocked)))
print("\n".join(failures) or "every module imported")
'''


def test_every_module_imports_and_the_lightgbm_baseline_fits_with_only_the_base_install():
    result = subprocess.run([sys.executable, "-c", _IMPORT_EVERY_MODULE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    blocked, _, outcome = result.stdout.partition("\n")
    # The guard is live: the test extras installed here are refused (else this test would prove nothing).
    for extra_only in ("fastapi", "skfolio", "xgboost", "ray", "hypothesis"):
        assert extra_only in blocked.split(": ", 1)[1].split(", "), blocked
    assert outcome.strip() == "every module imported", outcome

