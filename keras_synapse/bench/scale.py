"""A large synthetic universe end to end: features cold and cached, the window pipeline, one epoch's memory.

    python -m keras_synapse.bench scale                    # 500 symbols x 5040 bars (20 years), ~5 min on 2 cores
    python -m keras_synapse.bench scale --symbols 50       # a smaller universe

Three figures, each measured on the seeded `synthetic:` universe:

1. **Features**: seconds to compute each feature set for every symbol with
   `compute_features_cached`, cold (per symbol, in worker processes, written
   to an empty cache) and cached (read back), for the set the backbone trains
   on (`--features`, the shared backbone's `core`) and for an expensive one
   (`--slow-features`, `pattern14`: a GARCH fit per symbol).
2. **Windows/s** of the `tf.data` pipeline that feeds `fit`: the shuffled,
   batched gather over every window end (stride 5), iterated once.
3. **Peak RSS while training** one epoch of the shared backbone
   (`FoldTrainer.build` + `compile`, then `model.fit`) on all those windows,
   in a fresh process: the kernel's high-water mark (`VmHWM`) is reset after
   data preparation and read after the epoch (a 0.2 s sampler of `VmRSS`
   cross-checks it). The goal is under 2 GB for 500 symbols.

The training process prepares its data through `prepare_data` with the
feature cache the first step filled, as a re-run of an experiment would.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time


def add_arguments(parser):
    """Adds the `bench scale` options to an `argparse` parser."""
    parser.add_argument("--symbols", type=int, default=500, help="symbols in the universe. Defaults to 500")
    parser.add_argument("--bars", type=int, default=5040, help="daily bars per symbol. Defaults to 5040 (20 years)")
    parser.add_argument("--features", default="core", help="feature set the backbone trains on. Defaults to core")
    parser.add_argument("--slow-features", default="pattern14", help="an expensive feature set timed as well "
                        "('' to skip). Defaults to pattern14")
    parser.add_argument("--workers", type=int, default=None, help="feature worker processes. Defaults to the CPUs")
    parser.add_argument("--stride", type=int, default=5, help="bars between window ends. Defaults to 5")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch. Defaults to 64")
    parser.add_argument("--cache-dir", help="feature cache directory, kept afterwards. Defaults to a temporary "
                        "directory, removed afterwards")
    parser.add_argument("--skip-training", action="store_true", help="features only")
    return parser


def _megabytes(kilobytes):
    return kilobytes / 1024


def _status_kilobytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss():
    """Resets this process's `VmHWM` to its current RSS; `False` where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


class _RssSampler(threading.Thread):
    """Samples `VmRSS` every `interval` seconds; `peak_kilobytes` is the largest seen."""

    def __init__(self, interval=0.2):
        super().__init__(daemon=True)
        self.interval, self.peak_kilobytes, self._stop_event = interval, 0, threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak_kilobytes = max(self.peak_kilobytes, _status_kilobytes("VmRSS"))
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
        self.peak_kilobytes = max(self.peak_kilobytes, _status_kilobytes("VmRSS"))


def _config(options):
    from keras_synapse.config import ExperimentConfig

    return ExperimentConfig(
        name="bench_scale", data=f"synthetic:num_symbols={options['symbols']},num_bars={options['bars']},seed=0",
        features=options["features"], stride=options["stride"], batch_size=options["batch_size"], epochs=1,
        feature_cache=options["cache_dir"],
    )


def train_one_epoch(options):
    """Runs in its own process: prepares the data, times the pipeline, trains one epoch; returns the figures."""
    import gc

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf  # loaded first, so its share of the RSS is known

    from keras_synapse.training.preparation import PreparedData, prepare_data

    from keras_synapse.training.trainer import FoldTrainer
    from keras_synapse.windows.dataset import make_dataset, select_ends

    rss_runtime = _status_kilobytes("VmRSS")
    config = _config(options)
    started = time.perf_counter()
    prepared = prepare_data(config, quick=False)
    prepare_seconds = time.perf_counter() - started
    # Training needs the stacked windows only; the bars and per-symbol frames go.
    data = PreparedData(panel=None, windowed=prepared.windowed, task=prepared.task)
    del prepared
    gc.collect()
    windowed = data.windowed
    windowed_bytes = sum(value.nbytes for value in vars(windowed).values() if isinstance(value, np.ndarray))

    ends = select_ends(windowed, windowed.labelled_ends(), stride=config.stride)
    steps = int(np.ceil(len(ends) / config.batch_size))
    dataset = make_dataset(windowed, ends, config.batch_size, shuffle=True, seed=config.seed)
    started = time.perf_counter()
    for _ in dataset.take(steps):
        pass
    pipeline_seconds = time.perf_counter() - started
    del dataset

    keras.utils.set_random_seed(config.seed)
    trainer = FoldTrainer(config, data, tempfile.mkdtemp())
    # One epoch on every window: normalization (and a highway's ridge) fitted on all of them.
    model = trainer.build({"fit": ends, "fit_rows": np.ones(len(windowed.timestamps), bool), "baseline_fit": ends,
                           "validation": ends})
    trainer.compile(model, config.learning_rate)
    gc.collect()
    rss_before = _status_kilobytes("VmRSS")
    peak_before = _status_kilobytes("VmHWM")
    reset = _reset_peak_rss()
    sampler = _RssSampler()
    sampler.start()
    started = time.perf_counter()
    history = model.fit(make_dataset(windowed, ends, config.batch_size, shuffle=True, seed=config.seed),
                        steps_per_epoch=steps, epochs=1, verbose=2)
    epoch_seconds = time.perf_counter() - started
    sampler.stop()
    return {
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "symbols": len(windowed.symbol_names), "rows": int(len(windowed.features)),
        "features": len(windowed.feature_names), "windows": int(len(ends)), "steps": steps,
        "prepare_seconds": prepare_seconds, "pipeline_seconds": pipeline_seconds, "epoch_seconds": epoch_seconds,
        "loss": float(history.history["loss"][-1]), "parameters": int(model.count_params()),
        "rss_runtime_mb": _megabytes(rss_runtime), "windowed_arrays_mb": windowed_bytes / 2**20,
        "rss_before_training_mb": _megabytes(rss_before),
        "peak_rss_before_training_mb": _megabytes(peak_before),
        "peak_rss_training_mb": _megabytes(_status_kilobytes("VmHWM")) if reset else None,
        "sampled_peak_rss_training_mb": _megabytes(sampler.peak_kilobytes),
        "process_peak_rss_mb": _megabytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
    }


def bench_scale(args):
    """Prints the figures (see the module docstring) and returns them as a dict."""
    from keras_synapse.data.synthetic import generate_universe
    from keras_synapse.features.cache import compute_features_cached

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="keras_synapse_bench_scale_")
    results = {"symbols": args.symbols, "bars": args.bars, "features": {}}
    print(f"scale: {args.symbols} symbols x {args.bars} bars ({args.symbols * args.bars:,} bars), "
          f"feature cache {cache_dir}, {os.cpu_count()} CPUs")
    try:
        started = time.perf_counter()
        panel = generate_universe(num_symbols=args.symbols, num_bars=args.bars, seed=0).panel
        results["generate_seconds"] = time.perf_counter() - started
        print(f"generated the universe in {results['generate_seconds']:.1f} s")

        # --- Features: cold (workers, empty cache), then cached ------------------
        print(f"\n{'feature set':<14}{'features':>9}{'cold s':>9}{'workers':>9}{'cached s':>10}{'speed-up':>10}")
        for name in [args.features] + ([args.slow_features] if args.slow_features else []):
            cold, cached = {}, {}
            frames = compute_features_cached(panel, name, cache_directory=cache_dir, num_workers=args.workers,
                                             stats=cold)
            num_features = next(iter(frames.values())).shape[1]
            del frames
            compute_features_cached(panel, name, cache_directory=cache_dir, stats=cached)
            results["features"][name] = {"features": num_features, "cold": cold, "cached": cached}
            print(f"{name:<14}{num_features:>9}{cold['seconds']:>9.1f}{cold['workers']:>9}{cached['seconds']:>10.1f}"
                  f"{cold['seconds'] / cached['seconds']:>9.1f}x")
        del panel

        # --- Pipeline and one epoch, in a fresh process --------------------------
        if not args.skip_training:
            options = {"symbols": args.symbols, "bars": args.bars, "features": args.features, "stride": args.stride,
                       "batch_size": args.batch_size, "cache_dir": cache_dir}
            print(f"\ntraining one epoch of the shared backbone on {args.features} features, stride {args.stride}, "
                  f"batch {args.batch_size} (in its own process)...")
            completed = subprocess.run([sys.executable, "-m", "keras_synapse.bench.scale", "_train",
                                        json.dumps(options)], capture_output=True, text=True)
            if completed.returncode != 0:
                raise RuntimeError(f"the training process failed:\n{completed.stderr[-3000:]}")
            training = json.loads(completed.stdout.strip().splitlines()[-1])
            results["training"] = training
            print(_format_training(training))
    finally:
        if not args.cache_dir:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return results


def _format_training(training):
    peak = training["peak_rss_training_mb"]
    peak_text = f"{peak:,.0f} MB" if peak is not None else "n/a (VmHWM reset refused)"
    lines = [
        f"data preparation (cached features): {training['prepare_seconds']:.1f} s -> {training['windows']:,} windows "
        f"of {training['features']} features from {training['rows']:,} rows",
        f"tf.data pipeline: {training['windows'] / training['pipeline_seconds']:,.0f} windows/s "
        f"({training['steps']:,} shuffled batches in {training['pipeline_seconds']:.1f} s)",
        f"one epoch: {training['epoch_seconds']:.0f} s, {training['windows'] / training['epoch_seconds']:,.0f} "
        f"windows/s, loss {training['loss']:.4f}, {training['parameters']:,} parameters",
        f"RSS: TensorFlow + Keras loaded {training['rss_runtime_mb']:,.0f} MB; before training "
        f"{training['rss_before_training_mb']:,.0f} MB (the stacked window arrays: "
        f"{training['windowed_arrays_mb']:,.0f} MB); peak while training {peak_text} "
        f"(sampled {training['sampled_peak_rss_training_mb']:,.0f} MB); whole process incl. data preparation "
        f"{training['process_peak_rss_mb']:,.0f} MB",
    ]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_train":
        print(json.dumps(train_one_epoch(json.loads(argv[1]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m keras_synapse.bench.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    bench_scale(add_arguments(parser).parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
