"""Shared fixtures: small, valid bar frames to corrupt one way at a time; the `slow` marker."""

import contextlib
import os

import numpy as np
import pandas as pd
import pytest

# Two workers share two cores: with one TensorFlow thread each (set before any worker imports TensorFlow, and
# inherited by the runs they start) two quick runs at once took 54 s against 62 s oversubscribing both cores.
for _variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# Modules whose tests run whole training runs (the command line, tuning,
# resuming); with the tests that use the trained registry they make up most of
# the suite's time. `python -m pytest -m "not slow"` is the inner loop.
SLOW_MODULES = {"test_bench_inference", "test_distribute", "test_edge_truth",
                "test_experiments", "test_export_cli", "test_resume", "test_train", "test_tune"}


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.path.stem  # doctest items of keras_synapse's modules have no `module`
        if module in SLOW_MODULES or "trained_registry" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def make_bars(num_bars=60, seed=0, start="2024-01-01", tz="UTC", freq="B"):
    """Valid random-walk OHLCV bars on a UTC business-day index."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(start, periods=num_bars, freq=freq, tz=tz, name="timestamp")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, num_bars)))
    open_ = close * np.exp(rng.normal(0, 0.003, num_bars))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, num_bars))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, num_bars))
    volume = rng.integers(100_000, 1_000_000, num_bars).astype(float)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


@pytest.fixture
def bars():
    return make_bars()


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory):
    """A real registry version from one quick shared-backbone training run, shared by the session (~45 s).

    Trained once for the whole session: under pytest-xdist the workers share
    one directory of the session's temporary root, the first to need it
    trains while holding a lock and the others wait for it (each training its
    own cost a minute of both cores' time per worker).

    Returns the version directory (`.../saved_models/shared_backbone/1`).
    Tests that modify it must copy it first (see `copy_version`).
    """
    import fcntl
    import subprocess
    import sys
    from pathlib import Path

    # The session's root: each xdist worker's base directory sits in it; without xdist it is the base directory.
    session_root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        session_root = session_root.parent
    root = session_root / "trained_registry"
    version = root / "saved_models" / "shared_backbone" / "1"
    with open(session_root / "trained_registry.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if not (root / "ready").exists():
            repository = Path(__file__).resolve().parents[1]
            command = [sys.executable, "-m", "keras_synapse.train", "experiments/shared_backbone.py", "--quick",
                       "--output", str(root / "runs"), "--registry", str(root / "saved_models")]
            result = subprocess.run(command, cwd=repository, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr[-3000:]
            # A quick run registers a challenger; the tests that serve `latest` need it promoted, as a user would.
            from keras_synapse.serving.registry import set_latest

            set_latest(version.parent, 1, reason="test fixture")
            (root / "ready").touch()
    assert (version.parent / "latest").resolve() == version.resolve()
    return version.resolve()


def copy_version(version_dir, destination):
    """Copies a registry version to `destination/<experiment>/<version>` and returns the copy."""
    import shutil
    from pathlib import Path

    version_dir = Path(version_dir)
    target = Path(destination) / version_dir.parent.name / version_dir.name
    shutil.copytree(version_dir, target)
    return target


def flip_bytes(path, offset, count=64):
    """Damages `count` bytes of a file from `offset` on (XOR 0x5A), in place."""
    from pathlib import Path

    data = bytearray(Path(path).read_bytes())
    data[offset:offset + count] = bytes(byte ^ 0x5A for byte in data[offset:offset + count])
    Path(path).write_bytes(bytes(data))


def damage_onnx_weights(path):
    """Flips the bytes of the middle value of every float weight tensor of an ONNX file, as a bad disk would.

    Every tensor, not only the largest: a highway model whose network share is 0 computes the same outputs
    whatever its recurrent weights are. The file still loads and passes `onnx.checker`.
    """
    import onnx

    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.raw_data) >= 4:
            data = bytearray(tensor.raw_data)
            middle = len(data) // 8 * 4
            data[middle:middle + 4] = bytes(byte ^ 0x5A for byte in data[middle:middle + 4])
            tensor.raw_data = bytes(data)
    onnx.save(model, str(path))
    onnx.checker.check_model(onnx.load(str(path)))


MODEL_CARD_NAMES = ["log_return_1", "volume_zscore_20", "log_range"]


def model_card_fields(**changes):
    """A valid model card's fields (see keras_synapse.serving.model_card), with `changes`."""
    fields = {"format_version": 1, "version": 3, "experiment": "shared_backbone", "config": {},
              "feature_names": list(MODEL_CARD_NAMES),
              "inputs": {"sequence": {"shape": [None, 20, 3], "feature_set": "core",
                                      "feature_names": list(MODEL_CARD_NAMES)}},
              "label": {"name": "forward_return", "kind": "regression", "classes": [], "horizon": 5},
              "normalization": {"sequence": {"mean": [0.0, 0.1, 0.2], "variance": [1.0, 2.0, 3.0]}},
              "metrics": {"summary": {}}}
    fields.update(changes)
    return fields


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(version, log_path, extra_args=()):
    """Runs `python -m keras_synapse.serve version --port FREE *extra_args`; yields `(url, process)` once it answers."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    port = _free_port()
    log = Path(log_path).open("w")
    command = [sys.executable, "-m", "keras_synapse.serve", str(version), "--port", str(port), *map(str, extra_args)]
    # A file, not a pipe: a pipe nobody reads would block the server once full.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.time() > deadline:
                pytest.fail(f"server did not start: {Path(log_path).read_text()}")
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def bar_records(frame):
    """Bars as the service takes them: `[{"timestamp", "open", ...}, ...]`."""
    return [{"timestamp": timestamp.isoformat(), **{key: float(value) for key, value in row.items()}}
            for timestamp, row in frame.iterrows()]
