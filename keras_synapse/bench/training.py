"""Training speed: the toolkit's tf.data pipeline vs `model.fit` on materialized NumPy windows.

    python -m keras_synapse.bench train [--epochs 2] [--batch-sizes 64,256] [--threads 1,2]

Both contenders fit the same model on the same windows (the offline sample,
core features, stride 5) with the same batch size; the figure is samples per
second of the last epoch (the first one includes graph tracing). A ratio of 1
means the pipeline costs nothing. Each thread setting runs in its own process
because TensorFlow fixes its thread pools at start-up. Samples/s of every
model in the zoo are measured the same way.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=2, help="epochs per measurement; the last is timed")
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


class _LastEpochTimer:
    """Times each epoch; keeps the last."""

    def __init__(self):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.started = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.seconds = time.perf_counter() - inner.started

        self.callback = Timer()
        self.seconds = None


def measure(model_name, batch_size, epochs, pipeline):
    """Samples/s of the last epoch fitting `model_name` through the pipeline or on NumPy arrays."""
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
    timer = _LastEpochTimer()
    if pipeline:
        dataset = make_dataset(data.windowed, ends, batch_size, shuffle=True, seed=0)
        model.fit(dataset, steps_per_epoch=int(np.ceil(len(ends) / batch_size)), epochs=epochs, verbose=0,
                  callbacks=[timer.callback])
    else:
        inputs = data.windowed.gather(ends)
        targets = np.nan_to_num(data.windowed.targets[ends])[:, None]
        model.fit(inputs, targets, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0,
                  callbacks=[timer.callback])
    return {"samples_per_second": len(ends) / timer.seconds, "windows": int(len(ends)),
            "parameters": int(model.count_params())}


def _in_process(threads, *arguments):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "keras_synapse.bench.training", "_measure", str(threads), *map(str, arguments)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=environment).stdout
    return json.loads(output.strip().splitlines()[-1])


def bench_train(args):
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    thread_counts = [int(count) for count in args.threads.split(",")]
    print("shared backbone, offline sample, core features, stride 5; samples/s of the last of "
          f"{args.epochs} epochs (each setting in its own process)\n")
    print(f"{'threads':>8}{'batch':>7}{'pipeline':>12}{'numpy fit':>12}{'ratio':>8}")
    for threads in thread_counts:
        for batch_size in batch_sizes:
            pipeline = _in_process(threads, "shared_backbone", batch_size, args.epochs, 1)
            reference = _in_process(threads, "shared_backbone", batch_size, args.epochs, 0)
            print(f"{threads or 'default':>8}{batch_size:>7}{pipeline['samples_per_second']:>12,.0f}"
                  f"{reference['samples_per_second']:>12,.0f}"
                  f"{pipeline['samples_per_second'] / reference['samples_per_second']:>8.2f}")
    print(f"\n{'model':<18}{'parameters':>11}{'samples/s':>11}   (pipeline, batch {batch_sizes[0]})")
    for name in args.models.split(","):
        result = _in_process(thread_counts[0], name, batch_sizes[0], args.epochs, 1)
        print(f"{name:<18}{result['parameters']:>11,}{result['samples_per_second']:>11,.0f}")


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
