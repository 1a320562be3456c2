"""What the console shows while a command works: the phase running and how long it has run.

A run spends minutes in places that print nothing of their own (fitting
the baselines, the bootstrap, the A/B, the ONNX export). `phase` names
each on standard error as it starts and says how long it took, with a
clock ticking beside it on a terminal, so a silence never reads as a hang.
Counted work (folds, bars replayed) uses a tqdm bar instead.
"""

import contextlib
import sys
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
