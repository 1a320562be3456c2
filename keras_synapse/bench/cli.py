"""Benchmarks that print the toolkit's figures beside a reference, in one run.

    python -m keras_synapse.bench windows [--symbols 34] [--bars 5040]
    python -m keras_synapse.bench features [--symbols 34] [--bars 5040]
    python -m keras_synapse.bench inference
    python -m keras_synapse.bench train
    python -m keras_synapse.bench scale
    python -m keras_synapse.bench edge planted|null [--seeds 20]
    python -m keras_synapse.bench edge power [--seeds 5] [--executor local|ray|ray://HOST:PORT] [--cpus-per-task 1]

Each contender runs in its own subprocess so its peak resident memory is its
own. Figures depend on the machine; the README quotes the ones measured on a
2-core CPU with the command that produced them.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

WINDOW_CONTENDERS = ("keras_synapse", "keras_timeseries_dataset", "numpy_sliding_window_copy")


def _feature_blocks(num_symbols, num_bars, num_features, seed=0):
    """Per-symbol float32 feature blocks (values do not affect windowing speed)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((num_bars, num_features), dtype=np.float32) for _ in range(num_symbols)]


def _peak_rss_megabytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_window_contender(name, num_symbols, num_bars, num_features, sequence_length, batch_size):
    """Windows every block with one contender; returns windows, seconds and peak RSS.

    `baseline_rss_mb` is the peak before any window is made (interpreter,
    libraries and the feature blocks), so `peak - baseline` is what windowing
    itself costs.
    """
    if name != "numpy_sliding_window_copy":
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras  # imported before the baseline is read
        import tensorflow  # noqa: F401
    blocks = _feature_blocks(num_symbols, num_bars, num_features)
    windows_per_symbol = num_bars - sequence_length + 1
    baseline = _peak_rss_megabytes()
    if name == "numpy_sliding_window_copy":
        started = time.perf_counter()
        copies = [
            np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(block, sequence_length, axis=0).transpose(0, 2, 1))
            for block in blocks
        ]
        seconds = time.perf_counter() - started
        assert copies[0].shape == (windows_per_symbol, sequence_length, num_features)
    else:
        if name == "keras_synapse":
            from keras_synapse.windows.dataset import WindowedPanel, make_dataset

            rows = num_symbols * num_bars
            position = np.tile(np.arange(num_bars), num_symbols)
            windowed = WindowedPanel(
                features=np.concatenate(blocks), targets=np.zeros(rows, np.float32),
                forward_returns=np.zeros(rows), past_returns=np.zeros(rows),
                timestamps=np.zeros(rows, "datetime64[ns]"), label_end_times=np.zeros(rows, "datetime64[ns]"),
                symbol_codes=np.repeat(np.arange(num_symbols, dtype=np.int32), num_bars), symbol_names=(),
                feature_names=(), sequence_length=sequence_length, window_ok=position >= sequence_length - 1,
            )
            dataset = make_dataset(windowed, np.flatnonzero(windowed.window_ok), batch_size, with_targets=False)
        else:
            dataset = None
            for block in blocks:
                part = keras.utils.timeseries_dataset_from_array(block, None, sequence_length, batch_size=batch_size)
                dataset = part if dataset is None else dataset.concatenate(part)
        started = time.perf_counter()
        for _ in dataset:
            pass
        seconds = time.perf_counter() - started
    return {"windows": num_symbols * windows_per_symbol, "seconds": seconds, "peak_rss_mb": _peak_rss_megabytes(),
            "baseline_rss_mb": baseline}


def bench_windows(args):
    print(f"windowing {args.symbols} symbols x {args.bars} bars x {args.features} features, "
          f"windows of {args.sequence_length}, batch {args.batch_size} (each contender in its own process)")
    results = {}
    for name in WINDOW_CONTENDERS:
        symbols = args.symbols if name != "keras_timeseries_dataset" else max(1, args.symbols // 8)
        command = [sys.executable, "-m", "keras_synapse.bench", "_window_contender", name, str(symbols),
                   str(args.bars), str(args.features), str(args.sequence_length), str(args.batch_size)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
    print(f"\n{'contender':<28}{'windows':>9}{'seconds':>9}{'windows/s':>12}{'vs keras':>10}"
          f"{'peak RSS MB':>13}{'of which windowing':>20}")
    reference = results["keras_timeseries_dataset"]["windows"] / results["keras_timeseries_dataset"]["seconds"]
    for name, result in results.items():
        rate = result["windows"] / result["seconds"]
        print(f"{name:<28}{result['windows']:>9}{result['seconds']:>9.2f}{rate:>12,.0f}{rate / reference:>9.1f}x"
              f"{result['peak_rss_mb']:>13.0f}{result['peak_rss_mb'] - result['baseline_rss_mb']:>20.0f}")
    print("\n(keras_timeseries_dataset runs on 1/8 of the symbols to keep the run short; its rate is per window.)")
    return results


def bench_features(args):
    """Seconds to compute each feature set on a synthetic universe (seed 004's 34 symbols x 20 years)."""
    from keras_synapse.data.synthetic import generate_universe
    from keras_synapse.features import FEATURE_SETS, compute_features

    panel = generate_universe(num_symbols=args.symbols, num_bars=args.bars, seed=0).panel
    # Stand-ins for the market, sector and VIX series, so pattern17 runs too.
    references = dict(zip(("market", "sector", "vix", "vix3m"), panel.symbols[:4]))
    print(f"features for {args.symbols} symbols x {args.bars} bars ({panel.num_bars:,} bars)\n")
    print(f"{'feature set':<14}{'features':>9}{'warm-up':>9}{'seconds':>9}{'bars/s':>13}")
    total = 0.0
    for name, feature_set in FEATURE_SETS.items():
        started = time.perf_counter()
        frames = compute_features(panel, name, references)
        seconds = time.perf_counter() - started
        total += seconds
        print(f"{name:<14}{next(iter(frames.values())).shape[1]:>9}{feature_set.warmup:>9}{seconds:>9.2f}"
              f"{panel.num_bars / seconds:>13,.0f}")
    print(f"{'all sets':<14}{'':>18}{total:>9.2f}")
    bench_garch_freshness()


def bench_garch_freshness(every=21):
    """The GARCH forecast on the offline sample's real index series against a fresh fit every `every` bars."""
    import numpy as np

    from keras_synapse.data import load_panel
    from keras_synapse.features import garch

    print(f"\nGARCH on the sample's real index series, against a fresh fit on all past returns every {every} bars")
    print(f"{'series':<9}{'bars':>7}{'fits':>6}{'ms':>7}{'median':>9}{'p90':>7}{'largest':>9}  relative difference")
    panel = load_panel("sample")
    for symbol in ("SP500", "NASDAQ"):
        bars = panel[symbol]
        fits, original = [0], garch._fit_garch

        def counting(*arguments, **options):
            fits[0] += 1
            return original(*arguments, **options)

        garch._fit_garch = counting
        try:
            started = time.perf_counter()
            forecast = garch.garch_volatility_forecast(bars).to_numpy()
            milliseconds = (time.perf_counter() - started) * 1e3
        finally:
            garch._fit_garch = original
        returns = np.diff(np.log(bars["close"].to_numpy()))
        scale = 1 / np.std(returns[:garch.GARCH_MIN_HISTORY])
        differences = []
        for position in range(garch.GARCH_MIN_HISTORY + 1, len(bars), every):
            fresh = garch._garch_model(returns[:position] * scale).fit(disp="off", show_warning=False)
            fresh_volatility = np.sqrt(fresh.forecast(horizon=1, reindex=False).variance.to_numpy()[-1, 0]) / scale
            differences.append(abs(forecast[position] / fresh_volatility - 1))
        print(f"{symbol:<9}{len(bars):>7}{fits[0]:>6}{milliseconds:>7.0f}{np.median(differences):>9.3f}"
              f"{np.percentile(differences, 90):>7.3f}{max(differences):>9.3f}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_window_contender":
        name, *numbers = argv[1:]
        print(json.dumps(run_window_contender(name, *map(int, numbers))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m keras_synapse.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    windows = commands.add_parser("windows", help="tf.data gather pipeline vs Keras's utility vs a NumPy copy")
    windows.add_argument("--symbols", type=int, default=34)
    windows.add_argument("--bars", type=int, default=5040)
    windows.add_argument("--features", type=int, default=17)
    windows.add_argument("--sequence-length", type=int, default=20)
    windows.add_argument("--batch-size", type=int, default=256)
    features = commands.add_parser("features", help="seconds per feature set on a synthetic universe")
    features.add_argument("--symbols", type=int, default=34)
    features.add_argument("--bars", type=int, default=5040)
    from keras_synapse.bench import edge as bench_edge
    from keras_synapse.bench import inference as bench_inference
    from keras_synapse.bench import scale as bench_scale
    from keras_synapse.bench import training as bench_train

    scale = commands.add_parser("scale", help="500-symbol universe: feature time cold/cached, windows/s, peak RSS "
                                              "training one epoch")
    bench_scale.add_arguments(scale)

    train = commands.add_parser("train", help="samples/s: tf.data pipeline vs model.fit on NumPy windows; per model")
    bench_train.add_arguments(train)

    inference = commands.add_parser("inference", help="ONNX Runtime vs model.predict vs Keras: latency, throughput, "
                                                      "streaming, memory")
    bench_inference.add_arguments(inference)
    edge = commands.add_parser("edge", help="edge verdict vs known truth: planted-signal IC vs the oracle's, "
                                            "false edges over random-walk seeds")
    bench_edge.add_arguments(edge)
    args = parser.parse_args(argv)
    from keras_synapse.errors import SynapseError

    try:
        {"windows": bench_windows, "features": bench_features, "inference": bench_inference.bench_inference,
         "train": bench_train.bench_train, "scale": bench_scale.bench_scale,
         "edge": bench_edge.bench_edge}[args.command](args)
    except SynapseError as error:  # a setting to fix (e.g. `--executor ray` without Ray): one line, status 2
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

