"""Inference benchmark: ONNX Runtime vs `model.predict` vs calling the Keras model, and streaming.

    python -m keras_synapse.bench.inference [--models shared_backbone,transformer] [--symbols 500]

For each model (built from `ExperimentConfig(model=name)` on 20-bar windows
of 17 features, normalization fitted on random rows, exported through
`keras_synapse.export`) it prints, side by side:

- single-window latency p50/p99 (one window, one call, intra-op threads 1
  for ONNX Runtime, graph optimization level ALL);
- batched throughput (windows/s, batches of `--batch-size`; for ONNX
  Runtime the better of one intra-op thread and all cores, both recorded);

for ONNX Runtime (float and dynamic int8), `model.predict`, and the Keras
model called directly (`model(x, training=False)`, eager and inside a
`tf.function`). Then the streaming path of `keras_synapse.serving.inference`: a
synthetic 500-symbol panel (`generate_universe(500, 400, seed=0)`), one new
bar per symbol per update, timed end to end (validation, features on the
buffers, windows, one ONNX call); its peak RSS is measured in a separate
process that never imports TensorFlow. Model file sizes close the report.
Figures depend on the machine and its load; quote them with the command.

Measured with the defaults on a 2-core CPU shared with other jobs (load ~4):
shared backbone (34k parameters) ONNX Runtime p50 53 us / p99 121 us for one
window vs 54 ms for `model.predict` (1027x), 37k windows/s batched (int8
51k); the same graph converted without the recurrent rebuild (an ONNX `Loop`
for the LSTM with recurrent dropout) takes 414 us. Transformer (18k
parameters): 91 us, 22k windows/s. Streaming 500 symbols: 33 ms p50 per
update with one ONNX Runtime thread, peak RSS 314 MB.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOALS = {"single_p50_us": 100.0, "speedup_vs_predict": 100.0, "batched_per_s": 100_000.0, "stream_ms": 50.0}


def add_arguments(parser):
    """Adds this benchmark's options to an argparse parser (for `python -m keras_synapse.bench inference`)."""
    parser.add_argument("--models", default="main,shared_backbone,gru,shared_backbone*3,transformer",
                        help="comma-separated model names; NAME*K is a seed ensemble of K; 'main' is the main "
                        "experiment's model (the shared backbone with its linear highway)")
    parser.add_argument("--trees", default="lightgbm",
                        help="comma-separated tree models (keras_synapse.models.trees.TREE_MODELS); '' for none")
    parser.add_argument("--sequence-length", type=int, default=20)
    parser.add_argument("--features", type=int, default=17)
    parser.add_argument("--single-repeats", type=int, default=2000, help="single-window calls per ONNX contender")
    parser.add_argument("--keras-repeats", type=int, default=50, help="single-window calls per Keras contender")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--batched-windows", type=int, default=32768)
    parser.add_argument("--symbols", type=int, default=500, help="symbols of the streaming benchmark")
    parser.add_argument("--bars", type=int, default=400, help="bars per symbol of the streaming benchmark")
    parser.add_argument("--stream-updates", type=int, default=30, help="timed streaming updates")
    return parser


def _defaults():
    return add_arguments(argparse.ArgumentParser()).parse_args([])


def peak_rss_mb():
    """This process's peak resident memory in MiB (VmHWM: unlike ru_maxrss, not inherited across fork/exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentiles_us(seconds):
    seconds = np.asarray(seconds) * 1e6
    return float(np.percentile(seconds, 50)), float(np.percentile(seconds, 99))


def _time_calls(call, repeats, warmup=20):
    for _ in range(warmup):
        call()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return _percentiles_us(timings)


def _throughput(call, num_windows, batch_size):
    call(0, min(batch_size, num_windows))  # warm-up
    started = time.perf_counter()
    for start in range(0, num_windows, batch_size):
        call(start, min(start + batch_size, num_windows))
    return num_windows / (time.perf_counter() - started)


def _ort_session(path, threads):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def build_model(name, sequence_length, num_features, seed=0):
    """A model of the zoo with its normalization fitted on random rows; `"NAME*K"` is a seed ensemble of K.

    `"main"` is the main experiment's model (`experiments/shared_backbone.py`'s settings, its highway included).
    """
    import dataclasses

    import keras

    from keras_synapse.config import ExperimentConfig, load_experiment
    from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder
    from keras_synapse.models.highway import highway_heads
    from keras_synapse.training.seed_ensemble import average_members, member_name

    model_name, _, count = name.partition("*")
    if model_name == "main":
        settings = load_experiment(Path(__file__).resolve().parents[2] / "experiments" / "shared_backbone.py")
        model_name = settings.model
    else:
        settings = ExperimentConfig(model=model_name)
    members = []
    for member in range(int(count or 1)):
        keras.utils.set_random_seed(seed + member)
        config = dataclasses.replace(settings, sequence_length=sequence_length,
                                     name=member_name(model_name, member) if count else model_name)
        model = get_model_builder(model_name)(config, ModelSpec(sequence_length, num_features))
        rows = np.random.default_rng(seed).normal(0.0, 1.0, (2000, num_features)).astype(np.float32)
        fit_normalization(model, rows)
        for head in highway_heads(model):  # as if fitted and trained: a zero highway would make parity trivial
            for layer in (model.get_layer(f"{head}_highway"), model.get_layer(f"{head}_network")):
                layer.set_weights([np.random.default_rng(seed).normal(0, 0.2, weight.shape).astype(np.float32)
                                   for weight in layer.get_weights()])
        members.append(model)
    return average_members(members, model_name) if count else members[0]


def bench_model(name, args, directory):
    """Every contender on one model; returns dict contender -> figures, and file sizes."""
    import tensorflow as tf

    from keras_synapse.serving.onnx_export import convert_to_onnx, export_onnx, quantize_onnx

    model = build_model(name, args.sequence_length, args.features)
    rng = np.random.default_rng(1)
    windows = rng.normal(0.0, 1.0, (args.batched_windows, args.sequence_length, args.features)).astype(np.float32)
    parity = {"sequence": windows[:256]}
    stem = name.replace("*", "x")
    paths = {"keras": directory / f"{stem}.keras", "onnx": directory / f"{stem}.onnx",
             "onnx_plain": directory / f"{stem}.plain.onnx", "onnx_int8": directory / f"{stem}.int8.onnx"}
    model.save(paths["keras"])
    export_info = export_onnx(model, paths["onnx"], parity)
    paths["onnx_plain"].write_bytes(convert_to_onnx(model).SerializeToString())
    int8_info = quantize_onnx(paths["onnx"], paths["onnx_int8"], parity)
    one = {"sequence": windows[:1]}
    results = {}

    onnx_contenders = [("onnx_runtime", paths["onnx"]), ("onnx_runtime_int8", paths["onnx_int8"])]
    if export_info["rebuilt_recurrent"]:
        onnx_contenders.append(("onnx_runtime_plain_convert", paths["onnx_plain"]))
    for contender, path in onnx_contenders:
        single = _ort_session(path, 1)
        batched = _ort_session(path, 0)
        p50, p99 = _time_calls(lambda: single.run(None, one), args.single_repeats)
        rate_one_thread = _throughput(lambda start, end: single.run(None, {"sequence": windows[start:end]}),
                                      args.batched_windows, args.batch_size)
        rate = _throughput(lambda start, end: batched.run(None, {"sequence": windows[start:end]}),
                           args.batched_windows, args.batch_size)
        results[contender] = {"p50_us": p50, "p99_us": p99, "windows_per_s": max(rate, rate_one_thread),
                              "windows_per_s_one_thread": rate_one_thread, "windows_per_s_all_cores": rate}

    p50, p99 = _time_calls(lambda: model.predict(one, verbose=0), args.keras_repeats, warmup=3)
    rate = _throughput(lambda start, end: model.predict({"sequence": windows[start:end]}, batch_size=args.batch_size,
                                                        verbose=0), args.batched_windows, args.batch_size)
    results["keras_model_predict"] = {"p50_us": p50, "p99_us": p99, "windows_per_s": rate}

    p50, p99 = _time_calls(lambda: model(one, training=False), args.keras_repeats * 4, warmup=3)
    rate = _throughput(lambda start, end: model({"sequence": windows[start:end]}, training=False),
                       args.batched_windows, args.batch_size)
    results["keras_direct_call"] = {"p50_us": p50, "p99_us": p99, "windows_per_s": rate}

    compiled = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    p50, p99 = _time_calls(lambda: compiled(one), args.keras_repeats * 4, warmup=5)
    rate = _throughput(lambda start, end: compiled({"sequence": windows[start:end]}), args.batched_windows,
                       args.batch_size)
    results["keras_tf_function"] = {"p50_us": p50, "p99_us": p99, "windows_per_s": rate}

    sizes = {kind: path.stat().st_size for kind, path in paths.items()}
    return {"contenders": results, "sizes": sizes, "parameters": int(model.count_params()),
            "parity": export_info["max_abs_diff"], "int8_max_abs_diff": int8_info["max_abs_diff_vs_float"],
            "rebuilt_recurrent": export_info["rebuilt_recurrent"]}


def bench_tree(kind, args, directory):
    """A tree of `keras_synapse.models.trees` on window summaries: its window-input ONNX graph vs native `predict`.

    Fitted (one thread) on half of `--batched-windows` random windows with a
    product target so the trees have depth, its number of trees chosen on the
    other half; the native contender computes the summaries in NumPy and
    calls the library's `predict`, as a Python app would.
    """
    from keras_synapse.models.tree_windows import export_tree_window_onnx, float32_window_summaries
    from keras_synapse.models.trees import fit_tree

    rng = np.random.default_rng(1)
    windows = rng.normal(0.0, 1.0, (args.batched_windows, args.sequence_length, args.features)).astype(np.float32)
    summaries = float32_window_summaries(windows)
    targets = summaries[:, 0] * summaries[:, 1] + rng.normal(0.0, 1.0, len(windows))
    half = len(windows) // 2
    model, info = fit_tree(kind, summaries[:half], targets[:half], summaries[half:], targets[half:], threads=1)
    path = directory / f"{kind}.onnx"
    export = export_tree_window_onnx(model, kind, args.sequence_length, args.features, path, windows[:256])
    single, batched = _ort_session(path, 1), _ort_session(path, 0)
    p50, p99 = _time_calls(lambda: single.run(None, {"sequence": windows[:1]}), args.single_repeats)
    rates = [_throughput(lambda start, end: session.run(None, {"sequence": windows[start:end]}), args.batched_windows,
                         args.batch_size) for session in (single, batched)]
    results = {"onnx_runtime": {"p50_us": p50, "p99_us": p99, "windows_per_s": max(rates)}}

    def native(batch):
        return model.predict(float32_window_summaries(batch))

    p50, p99 = _time_calls(lambda: native(windows[:1]), args.keras_repeats * 4, warmup=3)
    results["native_predict"] = {"p50_us": p50, "p99_us": p99, "windows_per_s": _throughput(
        lambda start, end: native(windows[start:end]), args.batched_windows, args.batch_size)}
    return {"contenders": results, "sizes": {"onnx": path.stat().st_size}, "trees": info["num_trees"],
            "parity": export["max_abs_diff"]}


def _print_tree(kind, result, args):
    native_p50 = result["contenders"]["native_predict"]["p50_us"]
    print(f"\n{kind}: {result['trees']} trees on window summaries ({args.sequence_length}x{args.features} windows, "
          f"summary in the graph); ONNX parity {result['parity']:.1e}, file {result['sizes']['onnx'] / 1024:,.0f} KiB")
    print(f"{'contender':<30}{'1-window p50 us':>16}{'p99 us':>10}{'vs native':>12}{'batched windows/s':>19}")
    for contender, figures in result["contenders"].items():
        print(f"{contender:<30}{figures['p50_us']:>16,.0f}{figures['p99_us']:>10,.0f}"
              f"{native_p50 / figures['p50_us']:>11.0f}x{figures['windows_per_s']:>19,.0f}")


def write_streaming_entry(registry, num_symbols, num_bars, sequence_length=20, seed=0):
    """Registers a core-feature shared backbone (normalization fitted on the synthetic panel) for the stream bench."""
    import keras

    from keras_synapse.config import ExperimentConfig, config_to_dict
    from keras_synapse.data.synthetic import generate_universe
    from keras_synapse.serving.onnx_export import export_onnx
    from keras_synapse.features import compute_features
    from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder
    from keras_synapse.serving.registry import register

    keras.utils.set_random_seed(seed)
    panel = generate_universe(num_symbols, num_bars, seed=seed).panel
    frames = compute_features(panel.select(panel.symbols[:20]), "core")
    rows = np.concatenate([frame.to_numpy(np.float32) for frame in frames.values()])
    names = list(next(iter(frames.values())).columns)
    config = ExperimentConfig(name="bench_stream", sequence_length=sequence_length, market_symbol="")
    model = get_model_builder("shared_backbone")(config, ModelSpec(sequence_length, len(names)))
    fit_normalization(model, rows)
    windows = np.stack([rows[start:start + sequence_length] for start in range(0, 256 * 5, 5)])
    layer = model.get_layer("feature_normalization")

    def write_files(directory):
        model.save(directory / "model.keras")
        export_onnx(model, directory / "model.onnx", {"sequence": windows})

    metadata = {
        "experiment": config.name, "config": config_to_dict(config),
        "inputs": {"sequence": {"shape": [None, sequence_length, len(names)], "feature_set": "core",
                                "feature_names": names}},
        "label": {"name": "forward_return", "kind": "regression", "classes": [], "horizon": config.horizon},
        "normalization": {"sequence": {"mean": np.asarray(layer.mean).ravel().tolist(),
                                       "variance": np.asarray(layer.variance).ravel().tolist()}},
        "data": {"spec": f"synthetic:{num_symbols}x{num_bars}"},
    }
    return register(registry, config.name, write_files, metadata)


def run_stream_contender(version_dir, num_symbols, num_bars, num_updates, intra_op_threads):
    """Times `PredictionStream.update` with one new bar per symbol; runs in its own process (no TensorFlow)."""
    import pandas as pd

    from keras_synapse.data.synthetic import generate_universe
    from keras_synapse.serving.inference import Predictor

    baseline = peak_rss_mb()
    predictor = Predictor.from_registry(version_dir, intra_op_threads=intra_op_threads or None)
    panel = generate_universe(num_symbols, num_bars, seed=0).panel
    calendar = panel[panel.symbols[0]].index
    long = panel.to_long()
    stream = predictor.stream(panel.truncate(calendar[-num_updates - 1]))
    new_bars = [long[long["timestamp"] == stamp] for stamp in calendar[-num_updates:]]
    timings = []
    for bars in new_bars:
        started = time.perf_counter()
        latest = stream.update(bars)
        timings.append(time.perf_counter() - started)
    batch = predictor.predict_latest(panel)
    started = time.perf_counter()
    predictor.predict_latest(panel)
    from_panel = time.perf_counter() - started
    p50, p99 = _percentiles_us(timings)
    return {"p50_ms": p50 / 1e3, "p99_ms": p99 / 1e3, "symbols": int(len(latest)),
            "fallbacks": int(latest["fallback"].sum()),
            "max_abs_diff_vs_predict_latest": float(np.abs(latest["score"] - batch["score"]).max()),
            "predict_latest_from_panel_ms": from_panel * 1e3, "buffer_length": stream.buffer_length,
            "peak_rss_mb": peak_rss_mb(), "baseline_rss_mb": baseline,
            "tensorflow_imported": "tensorflow" in sys.modules, "pandas": pd.__version__}


def bench_inference(args=None):
    """Runs the inference benchmark and prints it; returns the figures as a dict."""
    defaults = vars(_defaults())
    args = argparse.Namespace(**{**defaults, **({} if args is None else {key: value for key, value in vars(args).items()
                                                                         if key in defaults})})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import logging

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    figures = {"cpu_count": os.cpu_count(), "models": {}}
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        for name in [name.strip() for name in args.models.split(",") if name.strip()]:
            figures["models"][name] = bench_model(name, args, directory)
            _print_model(name, figures["models"][name], args)
        figures["trees"] = {}
        for kind in [kind.strip() for kind in args.trees.split(",") if kind.strip()]:
            figures["trees"][kind] = bench_tree(kind, args, directory)
            _print_tree(kind, figures["trees"][kind], args)
        version_dir = write_streaming_entry(directory / "registry", args.symbols, args.bars)
        streams = {}
        for threads in (1, 0):
            command = [sys.executable, "-m", "keras_synapse.bench.inference", "_stream", str(version_dir),
                       str(args.symbols), str(args.bars), str(args.stream_updates), str(threads)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            streams["1 thread" if threads == 1 else "all cores"] = json.loads(output.strip().splitlines()[-1])
        figures["streaming"] = streams
        figures["streaming_model_sizes"] = {path.name: path.stat().st_size for path in sorted(version_dir.iterdir())
                                            if path.is_file()}
    _print_streaming(streams, args)
    _print_goals(figures)
    return figures


def _print_model(name, result, args):
    contenders = result["contenders"]
    predict_p50 = contenders["keras_model_predict"]["p50_us"]
    print(f"\n{name}: {result['parameters']:,} parameters, windows {args.sequence_length}x{args.features}; ONNX parity "
          f"{result['parity']:.1e}, int8 vs float {result['int8_max_abs_diff']:.1e}"
          + ("; recurrent layers rebuilt for export" if result["rebuilt_recurrent"] else ""))
    print(f"{'contender':<30}{'1-window p50 us':>16}{'p99 us':>10}{'vs predict':>12}{'batched windows/s':>19}")
    for contender, figures in contenders.items():
        print(f"{contender:<30}{figures['p50_us']:>16,.0f}{figures['p99_us']:>10,.0f}"
              f"{predict_p50 / figures['p50_us']:>11.0f}x{figures['windows_per_s']:>19,.0f}")
    sizes = result["sizes"]
    print("files: " + ", ".join(f"{kind} {size / 1024:,.0f} KiB" for kind, size in sizes.items()))


def _print_streaming(streams, args):
    print(f"\nstreaming: {args.symbols} symbols x {args.bars} bars (core features, shared backbone), one new bar per "
          f"symbol per update, {args.stream_updates} updates, each in a fresh process without TensorFlow")
    print(f"{'ONNX Runtime threads':<22}{'update p50 ms':>14}{'p99 ms':>9}{'fallbacks':>11}{'|stream-batch|':>16}"
          f"{'peak RSS MB':>13}{'buffer':>8}")
    for label, result in streams.items():
        print(f"{label:<22}{result['p50_ms']:>14.1f}{result['p99_ms']:>9.1f}{result['fallbacks']:>11}"
              f"{result['max_abs_diff_vs_predict_latest']:>16.1e}{result['peak_rss_mb']:>13.0f}"
              f"{result['buffer_length']:>8}")


def _print_goals(figures):
    print("\ngoals:")
    # The main experiment's model when it was measured, else the plain shared backbone.
    backbone = figures["models"].get("main", figures["models"].get("shared_backbone"))
    if backbone:
        onnx = backbone["contenders"]["onnx_runtime"]
        predict = backbone["contenders"]["keras_model_predict"]
        best_name, best = max(backbone["contenders"].items(), key=lambda item: item[1]["windows_per_s"])
        best_batched = best["windows_per_s"]
        print(f"  main model single-window p50 <= {GOALS['single_p50_us']:.0f} us: {onnx['p50_us']:.0f} us "
              f"({'met' if onnx['p50_us'] <= GOALS['single_p50_us'] else 'missed'})")
        speedup = predict["p50_us"] / onnx["p50_us"]
        print(f"  >= {GOALS['speedup_vs_predict']:.0f}x faster than model.predict on one window: {speedup:.0f}x "
              f"({'met' if speedup >= GOALS['speedup_vs_predict'] else 'missed'})")
        print(f"  batched >= {GOALS['batched_per_s']:,.0f} windows/s: best {best_batched:,.0f} ({best_name}; float "
              f"ONNX {onnx['windows_per_s']:,.0f}) "
              f"({'met' if best_batched >= GOALS['batched_per_s'] else 'missed'}, {figures['cpu_count']} CPU cores)")
    best_stream = min(result["p50_ms"] for result in figures["streaming"].values())
    print(f"  streaming update of 500 symbols <= {GOALS['stream_ms']:.0f} ms: p50 {best_stream:.1f} ms "
          f"({'met' if best_stream <= GOALS['stream_ms'] else 'missed'})")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_stream":
        version_dir, *numbers = argv[1:]
        print(json.dumps(run_stream_contender(version_dir, *map(int, numbers))))
        return 0
    parser = add_arguments(argparse.ArgumentParser(prog="python -m keras_synapse.bench.inference", description=__doc__,
                                                   formatter_class=argparse.RawDescriptionHelpFormatter))
    bench_inference(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
