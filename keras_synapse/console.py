"""What the console shows while a command works, and what it no longer shows.

The phase running and how long it has run: a run spends minutes in places
that print nothing of their own (fitting the baselines, the bootstrap, the
A/B, the ONNX export). `phase` names each on standard error as it starts and
says how long it took, with a clock ticking beside it on a terminal, so a
silence never reads as a hang. Counted work (folds, bars replayed) uses a
tqdm bar instead.

TensorFlow's and ONNX Runtime's start-up chatter: TensorFlow's native
libraries log before Python can configure them: CUDA probing on a CPU machine
("Could not find cuda drivers", "failed call to cuInit"), oneDNN and
CPU-instruction notes, and absl's "All log messages before
absl::InitializeLog()". `TF_CPP_MIN_LOG_LEVEL` silences only what comes
after the import, so `quiet_tensorflow` has TensorFlow's first import run
with the process's standard error pointed at a buffer, replayed if the
import fails. ONNX Runtime warns about graph optimizations it cannot apply
to an exported LSTM; only its errors are shown.
"""

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time

# How often a terminal's clock is redrawn, in seconds.
_TICK_SECONDS = 1.0


@contextlib.contextmanager
def phase(name):
    """Reports the block as the phase `name`: a start line, a ticking clock on a terminal, its time at the end.

    Args:
        name: what runs, e.g. `"fold 1/3: baselines"`.

    Example:

    >>> with phase("example"):
    ...     pass
    """
    stream = sys.stderr
    started = time.monotonic()
    interactive = hasattr(stream, "isatty") and stream.isatty()
    stop = threading.Event()

    def tick():
        while not stop.wait(_TICK_SECONDS):
            stream.write(f"\r{name} ... {time.monotonic() - started:.0f} s")
            stream.flush()

    clock = threading.Thread(target=tick, daemon=True) if interactive else None
    stream.write(f"{name} ...")
    stream.write("" if interactive else "\n")
    stream.flush()
    if clock:
        clock.start()
    try:
        yield
    finally:
        stop.set()
        if clock:
            clock.join()
        stream.write(f"\r{name}: {time.monotonic() - started:.1f} s\n" if interactive
                     else f"{name}: done in {time.monotonic() - started:.1f} s\n")
        stream.flush()


def quiet_tensorflow():
    """Makes TensorFlow's and ONNX Runtime's first imports silent, whoever imports them, and sets their log levels.

    Cheap: nothing is imported here. An import hook (`sys.meta_path`) runs
    TensorFlow's first import, and its CUDA probe, with the native standard
    error captured (replayed if the import fails), and sets ONNX Runtime's
    logger to errors when it is first imported. Every command calls this
    before its work (`keras_synapse.cli.run_command`). Set
    `TF_CPP_MIN_LOG_LEVEL` yourself (e.g. 0) to see TensorFlow's logs again.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    # Each fold builds a fresh model, so its predict function is traced anew: expected, not a mistake to warn of.
    tensorflow_logger = logging.getLogger("tensorflow")
    if not any(isinstance(existing, _ExpectedRetracing) for existing in tensorflow_logger.filters):
        tensorflow_logger.addFilter(_ExpectedRetracing())
    if "onnxruntime" in sys.modules:
        _quiet_onnxruntime(sys.modules["onnxruntime"])
    if not any(isinstance(finder, _QuietFirstImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietFirstImport())


def _probe_devices(tensorflow):
    tensorflow.config.list_physical_devices()  # the CUDA probe (cuInit) logs here, not at the first fit


def _quiet_onnxruntime(onnxruntime):
    onnxruntime.set_default_logger_severity(3)  # errors only, not warnings about optimizations it skipped


# What to do once a module has loaded; TensorFlow's native libraries load with its submodules (and tf2onnx's),
# so every one of those loads with its native standard error captured.
_AFTER_IMPORT = {"tensorflow": _probe_devices, "onnxruntime": _quiet_onnxruntime}
_CAPTURED_PACKAGES = ("tensorflow", "tf2onnx")


class _QuietFirstImport:
    """A `sys.meta_path` finder that wraps the loader of TensorFlow's (and tf2onnx's) modules and ONNX Runtime."""

    def find_spec(self, name, path=None, target=None):
        captured = name.partition(".")[0] in _CAPTURED_PACKAGES
        if not captured and name not in _AFTER_IMPORT:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _QuietLoader(spec.loader, captured, _AFTER_IMPORT.get(name, lambda module: None))
                return spec
        return None


class _QuietLoader:
    def __init__(self, loader, captured, after):
        self.loader, self.captured, self.after = loader, captured, after

    def __getattr__(self, name):
        # Everything else (`get_source` for tracebacks, `get_resource_reader`, ...) is the real loader's.
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        context = native_stderr_captured() if self.captured else contextlib.nullcontext(lambda: "")
        with context as captured:
            try:
                self.loader.exec_module(module)
                self.after(module)
            except BaseException:
                sys.stderr.write(captured())
                raise


@contextlib.contextmanager
def native_stderr_captured():
    """Points file descriptor 2 at a temporary file for the block; yields a function returning what was written.

    Python's `sys.stderr` writes to the same descriptor, so a traceback
    raised inside the block is captured too: callers replay the text when
    the block fails.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)

        def captured():
            sys.stderr.flush()
            sink.seek(0)
            return sink.read().decode("utf-8", "replace")

        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _ExpectedRetracing(logging.Filter):
    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()
