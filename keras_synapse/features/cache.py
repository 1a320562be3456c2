"""Features for large universes: computed per symbol in parallel, cached on disk.

`compute_features_cached` returns exactly what `compute_features` returns (the
same frames, bit for bit), but

- computes the symbols in parallel (`concurrent.futures.ProcessPoolExecutor`,
  one task per chunk of symbols) when they would take long enough in-process
  to pay for the workers, and
- with a cache directory, stores each symbol's frame as one Parquet file and
  skips the computation on the next run.

A cache entry is keyed by the SHA-256 of: `FEATURE_CACHE_VERSION`, the
feature set's name, the source code of the feature modules
(`keras_synapse/features/*.py`) and the versions of the libraries they call
(NumPy, pandas, SciPy, arch, TA-Lib), the symbol's bars (timestamps and
OHLCV values), and the bars of every reference series the set uses (e.g. the
market index for `pattern17`). Editing a feature function, upgrading pandas,
revising one bar or the market series therefore misses the cache, and only the
symbols whose inputs changed are recomputed. Entries are written atomically
(temporary file, then rename), so concurrent runs may share a directory.

The cache is off by default (`feature_cache = ""` in the config). Turn it on
with `--set feature_cache=auto` (`$KERAS_SYNAPSE_CACHE/features`, default
`~/.cache/keras_synapse/features`) or `--set feature_cache=DIRECTORY`. Entries
are never evicted: delete the directory to reclaim the space (about
`bars x features x 8` bytes per symbol and feature set, e.g. 0.7 MB for 5040
bars of the 17 `pattern17` features).

Example:

>>> from keras_synapse.data.synthetic import generate_universe
>>> panel = generate_universe(num_symbols=2, num_bars=100, seed=0).panel
>>> frames = compute_features_cached(panel, "core", num_workers=1)
>>> sorted(frames) == sorted(panel.symbols)
True
"""

import concurrent.futures
import functools
import hashlib
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError
from keras_synapse.features import get_feature_set
from keras_synapse.features.references import resolve_references, symbol_roles

logger = logging.getLogger(__name__)

# Bump when cached frames would change for a reason the key cannot see.
FEATURE_CACHE_VERSION = 1
# Workers start (unless asked for) only when the symbols left would take this
# long in-process, judged from one symbol and its cache write: sending bars to
# a worker and frames back costs more than cheap sets take to compute (core:
# ~2 ms a symbol), while pattern17's GARCH fits take ~0.1 s a symbol.
MIN_SECONDS_FOR_WORKERS = 2.0
_KEYED_LIBRARIES = ("numpy", "pandas", "scipy", "arch", "TA-Lib")


def resolve_cache_directory(setting):
    """The cache directory for a `feature_cache` setting, or `None` when disabled.

    Args:
        setting: `""` (disabled), `"auto"` (`$KERAS_SYNAPSE_CACHE/features`,
            default `~/.cache/keras_synapse/features`) or a directory
            (`~` is expanded).
    """
    if not setting:
        return None
    if setting == "auto":
        from keras_synapse.data.cache import default_cache_directory

        return default_cache_directory() / "features"
    return Path(setting).expanduser()


@functools.cache
def feature_code_fingerprint():
    """SHA-256 of the feature modules' source and the versions of the libraries they call."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        if path.name != "cache.py":
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    for name in _KEYED_LIBRARIES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}={version};".encode())
    return digest.hexdigest()


def bars_fingerprint(bars):
    """SHA-256 of one symbol's canonical bars: timestamps and OHLCV values."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(bars.index.asi8).tobytes())
    digest.update(np.ascontiguousarray(bars.to_numpy(dtype="float64")).tobytes())
    return digest.hexdigest()


def cache_key(feature_set_name, bars, references):
    """The cache key of one symbol's frame of feature set `feature_set_name`.

    Args:
        feature_set_name: the canonical feature set name (e.g. `"core+technical"`).
        bars: the symbol's canonical bars.
        references: dict role -> canonical bars of the reference series the
            set uses.

    Returns:
        A hex digest.
    """
    digest = hashlib.sha256()
    digest.update(f"v{FEATURE_CACHE_VERSION}|{feature_set_name}|{feature_code_fingerprint()}|".encode())
    digest.update(bars_fingerprint(bars).encode())
    for role in sorted(references):
        digest.update(f"|{role}={bars_fingerprint(references[role])}".encode())
    return digest.hexdigest()


class FeatureCache:
    """Per-symbol feature frames on disk, one Parquet file per cache key.

    Args:
        directory: where the files live (created on first write).
    """

    def __init__(self, directory):
        self.directory = Path(directory)

    def path(self, feature_set_name, key):
        safe_name = "".join(character if character.isalnum() else "_" for character in feature_set_name)
        return self.directory / f"{safe_name}-{key}.parquet"

    def load(self, feature_set_name, key):
        """The cached frame, or `None` when absent or unreadable (then it is recomputed)."""
        path = self.path(feature_set_name, key)
        if not path.is_file():
            return None
        try:
            return pd.read_parquet(path)
        except Exception as error:  # noqa: BLE001  (a damaged entry is a miss, not a failure)
            logger.warning("Feature cache entry %s is unreadable (%s); recomputing it.", path, error)
            return None

    def store(self, feature_set_name, key, frame):
        """Writes `frame` atomically: readers see the old entry or the whole new one."""
        path = self.path(feature_set_name, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
        try:
            frame.to_parquet(temporary)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def default_num_workers():
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def compute_features_cached(panel, name, reference_symbols=None, cache_directory=None, num_workers=None,
                            stats=None, sources=None):
    """`compute_features`, per symbol in parallel and through an on-disk cache.

    Args:
        panel: a `Panel`.
        name: a registered feature set name or a `+` union.
        reference_symbols: dict role -> symbol for cross-asset sets. Defaults
            to `None` (no references).
        cache_directory: a `feature_cache` setting or directory: `""` or
            `None` disables the cache, `"auto"` is the default location (see
            `resolve_cache_directory`). Defaults to `None`.
        num_workers: worker processes for the symbols not in the cache; 1
            computes in this process. Defaults to `None`: the usable CPUs,
            started only when the symbols would take `MIN_SECONDS_FOR_WORKERS`
            or more in-process (judged from one symbol, computed and stored
            here).
        stats: a dict to fill with `cached`, `computed`, `workers` and
            `seconds`. Defaults to `None`.
        sources: where the reference series are, a `Panel` or dict symbol
            -> bars. Defaults to `None`: `panel`.

    Returns:
        A dict symbol -> float64 frame indexed like the symbol's bars, with the
        warm-up rows dropped, in panel order: identical to `compute_features`.

    Raises:
        ConfigError: for unknown feature sets, missing reference series or
            `num_workers` < 1.
    """
    started = time.perf_counter()
    if num_workers is not None and num_workers < 1:
        raise ConfigError(f"`num_workers` must be >= 1. Received: num_workers={num_workers}")
    feature_set = get_feature_set(name)
    sources = panel if sources is None else sources
    # Per symbol (each may have its own sector), as role -> reference symbol, the series once in `series`.
    references = {symbol: resolve_references(feature_set, sources, reference_symbols, symbol)
                  for symbol in panel.symbols}
    roles = {symbol: symbol_roles(reference_symbols, symbol) for symbol in panel.symbols}
    series = {roles[symbol][role]: bars for symbol in panel.symbols for role, bars in references[symbol].items()}
    directory = resolve_cache_directory(cache_directory) if isinstance(cache_directory, str) else cache_directory
    cache = FeatureCache(directory) if directory else None
    frames, keys = {}, {}
    if cache is not None:
        for symbol, bars in panel.items():
            keys[symbol] = cache_key(feature_set.name, bars, references[symbol])
            frame = cache.load(feature_set.name, keys[symbol])
            if frame is not None:
                frames[symbol] = frame
    missing = [(symbol, panel[symbol], keys.get(symbol), {role: roles[symbol][role] for role in references[symbol]})
               for symbol in panel.symbols if symbol not in frames]
    workers = min(num_workers or default_num_workers(), len(missing))
    computed = []
    if workers > 1 and num_workers is None and len(missing) > 2:
        # Compute (and store) two symbols here, the first warming up, and
        # judge from the second whether the rest are worth the workers.
        computed = _compute_chunk(feature_set.name, missing[:1], series, directory)
        probe_started = time.perf_counter()
        computed += _compute_chunk(feature_set.name, missing[1:2], series, directory)
        if (time.perf_counter() - probe_started) * (len(missing) - 2) < MIN_SECONDS_FOR_WORKERS:
            workers = 1
    remaining = missing[len(computed):]
    if workers > 1 and len(remaining) > 1:
        computed += _compute_in_workers(feature_set.name, remaining, series, directory, min(workers, len(remaining)))
    else:
        workers = min(workers, 1)
        computed += _compute_chunk(feature_set.name, remaining, series, directory)
    frames.update(computed)
    if stats is not None:
        stats.update(cached=len(panel) - len(missing), computed=len(missing), workers=workers,
                     seconds=time.perf_counter() - started)
    if cache is not None or workers > 1:
        logger.info("features %s: %d symbols, %d from the cache, %d computed with %d worker(s), %.1f s",
                    feature_set.name, len(panel), len(panel) - len(missing), len(missing), workers,
                    time.perf_counter() - started)
    return {symbol: frames[symbol] for symbol in panel.symbols}


def _compute_chunk(name, items, series, directory=None):
    """Computes (and caches) feature set `name` for `(symbol, bars, key, roles)` items, here or in a worker.

    `roles` maps each reference role to a symbol of `series` (symbol -> bars).
    """
    feature_set = get_feature_set(name)
    cache = FeatureCache(directory) if directory else None
    results = []
    for symbol, bars, key, roles in items:
        references = {role: series[reference] for role, reference in roles.items()}
        frame = feature_set.compute(bars, references).iloc[feature_set.warmup - 1 :]
        if cache is not None:
            cache.store(feature_set.name, key, frame)  # in the worker, so the writes run in parallel too
        results.append((symbol, frame))
    return results


def _compute_in_workers(name, items, series, directory, num_workers):
    # A few chunks per worker balance uneven symbols without paying per-task
    # pickling of the reference series for every symbol.
    chunk_size = max(1, math.ceil(len(items) / (num_workers * 4)))
    chunks = [items[start:start + chunk_size] for start in range(0, len(items), chunk_size)]
    # Forking is fast (workers inherit the imported libraries) but unsafe once
    # TensorFlow runs its thread pools, which a child would inherit half-copied;
    # then "spawn" it is (the calling script needs its `if __name__ == "__main__":` guard).
    forkable = "tensorflow" not in sys.modules and "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if forkable else "spawn")
    with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as executor:
        results = executor.map(_compute_chunk, [name] * len(chunks), chunks, [series] * len(chunks),
                               [directory] * len(chunks))
        return [item for chunk in results for item in chunk]
