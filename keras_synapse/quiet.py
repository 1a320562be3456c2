"""TensorFlow and ONNX Runtime without their start-up chatter on the console.

TensorFlow's native libraries log before Python can configure them: CUDA
probing on a CPU machine ("Could not find cuda drivers", "failed call to
cuInit"), oneDNN and CPU-instruction notes, and absl's "All log messages
before absl::InitializeLog()". `TF_CPP_MIN_LOG_LEVEL` silences only what
comes after the import, so the import itself runs with the process's
standard error pointed at a buffer, replayed if the import fails. ONNX
Runtime warns about graph optimizations it cannot apply to an exported
LSTM; only its errors are shown.
"""

import contextlib
import logging
import os
import sys
import tempfile


def quiet_tensorflow():
    """Imports TensorFlow silently and sets its, tf2onnx's and ONNX Runtime's log levels; returns `tensorflow`.

    Call it before anything imports TensorFlow (later calls are cheap). Set
    `TF_CPP_MIN_LOG_LEVEL` yourself (e.g. 0) to see TensorFlow's logs again.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # The captured lines are replayed when the import fails: they then say why.
    with native_stderr_captured() as captured:
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe (cuInit) happens here, not at the first fit
        except BaseException:
            sys.stderr.write(captured())
            raise
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    # Each fold builds a fresh model, so its predict function is traced anew: expected, not a mistake to warn of.
    tensorflow_logger = logging.getLogger("tensorflow")
    if not any(isinstance(existing, _ExpectedRetracing) for existing in tensorflow_logger.filters):
        tensorflow_logger.addFilter(_ExpectedRetracing())
    quiet_onnxruntime()
    return tf


def quiet_onnxruntime():
    """Shows ONNX Runtime's errors only (not its warnings about optimizations it skipped)."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)


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
