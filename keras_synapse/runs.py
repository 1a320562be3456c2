"""Run directories and their JSON files, written atomically.

A run writes `runs/<experiment>/<run-id>/`; each file is written to a hidden
partial file first and renamed into place, so a crash never leaves a
half-written `metrics.json` behind.
"""

import json
import os
import time
from pathlib import Path

import numpy as np


def new_run_dir(output, experiment):
    """Creates and returns `output/<experiment>/<UTC time>-<pid>/`."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = Path(output) / experiment / f"{stamp}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    return run_dir


def json_ready(value):
    """Converts NumPy scalars to Python ones and NaN/inf to `None` (valid JSON)."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(path, content):
    """Writes `content` as indented JSON to `path`, atomically."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(json.dumps(json_ready(content), indent=2, allow_nan=False))
    os.replace(staging, path)
