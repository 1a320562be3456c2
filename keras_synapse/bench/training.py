"""Training speed: the toolkit's tf.data pipeline vs `model.fit` on materialized NumPy windows.

    python -m keras_synapse.bench train [--epochs 3] [--repeats 3] [--batch-sizes 64,256] [--threads 1,2]

Both contenders fit the same model on the same windows (the offline sample,
core features, stride 5) with the same batch size. Each measurement is a
fresh process (TensorFlow fixes its thread pools at start-up) fitting
`--epochs` epochs; every epoch after the first (which includes graph tracing)
gives one samples/s figure. The contenders alternate, `--repeats` times each,
so a load that comes and goes on a shared machine falls on both; the table
prints the median over all timed epochs with the range beside it, and the
ratio of the medians (1 means the pipeline costs nothing). Samples/s of every
model in the zoo are measured the same way.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; all but the first are timed")
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender, alternating with the other")
    parser.add_argument("--batch-sizes", default="64,256", help="comma-separated batch sizes")
    parser.add_argument("--threads", default="0", help="comma-separated intra-op thread counts (0: TensorFlow's "
                        "default)")
    parser.add_argument("--models", default="shared_backbone,lstm_attention,transformer",
                        help="models timed through the pipeline at the first batch size")


def _windows():
    from keras_synapse.config import ExperimentConfig
    from keras_synapse.training.preparation import prepare_data
    from keras_synapse.windows.dataset import select_ends

    config = ExperimentConfig()
    data = prepare_data(config, quick=False)
    ends = select_ends(data.windowed, data.windowed.labelled_ends(), stride=config.stride)
    return config, data, ends


class _EpochTimer:
    """Times every epoch."""

    def __init__(self):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.started = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.seconds.append(time.perf_counter() - inner.started)

        self.callback = Timer()
        self.seconds = []


def measure(model_name, batch_size, epochs, pipeline):
    """Samples/s of each epoch after the first, fitting `model_name` through the pipeline or on NumPy arrays."""
    import dataclasses

    import keras

    from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder
    from keras_synapse.windows.dataset import make_dataset

    config, data, ends = _windows()
    config = dataclasses.replace(config, model=model_name, name=model_name)
    keras.utils.set_random_seed(0)
    model = get_model_builder(model_name)(config, ModelSpec(config.sequence_length, len(data.windowed.feature_names)))
    fit_normalization(model, data.windowed.features)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate, clipnorm=config.clipnorm), loss="mse")
    timer = _EpochTimer()
    if pipeline:
        dataset = make_dataset(data.windowed, ends, batch_size, shuffle=True, seed=0)
        model.fit(dataset, steps_per_epoch=int(np.ceil(len(ends) / batch_size)), epochs=epochs, verbose=0,
                  callbacks=[timer.callback])
    else:
        inputs = data.windowed.gather(ends)
        targets = np.nan_to_num(data.windowed.targets[ends])[:, None]
        model.fit(inputs, targets, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
                  callbacks=[timer.callback])
    return {"samples_per_second": [len(ends) / seconds for seconds in timer.seconds[1:]], "windows": int(len(ends)),
            "parameters": int(model.count_params())}


def _in_process(threads, *arguments):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "keras_synapse.bench.training", "_measure", str(threads), *map(str, arguments)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=environment).stdout
    return json.loads(output.strip().splitlines()[-1])


def interleaved_rates(contenders, repeats):
    """Runs each contender `repeats` times, alternating their order; returns all samples/s figures of each.

    Args:
        contenders: name -> a callable returning `{"samples_per_second": [...]}`.
        repeats: measurements per contender.
    """
    rates = {name: [] for name in contenders}
    names = list(contenders)
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else reversed(names):
            rates[name] += contenders[name]()["samples_per_second"]
    return rates


def _median_and_range(values):
    return f"{np.median(values):>9,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def bench_train(args):
    if args.epochs < 2 or args.repeats < 1:
        raise SystemExit(f"--epochs must be >= 2 (the first is not timed) and --repeats >= 1. "
                         f"Received: --epochs {args.epochs} --repeats {args.repeats}")
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    thread_counts = [int(count) for count in args.threads.split(",")]
    print(f"shared backbone, offline sample, core features, stride 5; samples/s, median (range) over "
          f"{args.repeats} alternating runs x {args.epochs - 1} timed epochs (each run its own process)\n")
    print(f"{'threads':>8}{'batch':>7}{'pipeline':>26}{'numpy fit':>26}{'ratio':>8}")
    for threads in thread_counts:
        for batch_size in batch_sizes:
            rates = interleaved_rates({
                "pipeline": lambda: _in_process(threads, "shared_backbone", batch_size, args.epochs, 1),
                "numpy": lambda: _in_process(threads, "shared_backbone", batch_size, args.epochs, 0)},
                args.repeats)
            print(f"{threads or 'default':>8}{batch_size:>7}{_median_and_range(rates['pipeline']):>26}"
                  f"{_median_and_range(rates['numpy']):>26}"
                  f"{np.median(rates['pipeline']) / np.median(rates['numpy']):>8.2f}", flush=True)
    print(f"\n{'model':<18}{'parameters':>11}{'samples/s':>26}   (pipeline, batch {batch_sizes[0]})")
    for name in args.models.split(","):
        results = [_in_process(thread_counts[0], name, batch_sizes[0], args.epochs, 1) for _ in range(args.repeats)]
        rates = [rate for result in results for rate in result["samples_per_second"]]
        print(f"{name:<18}{results[0]['parameters']:>11,}{_median_and_range(rates):>26}", flush=True)


def main(argv):
    if argv and argv[0] == "_measure":
        threads, model_name, batch_size, epochs, pipeline = argv[1:]
        import tensorflow as tf

        if int(threads):
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        import logging

        logging.disable(logging.WARNING)
        print(json.dumps(measure(model_name, int(batch_size), int(epochs), bool(int(pipeline)))))
        return 0
    raise SystemExit("use: python -m keras_synapse.bench train")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
