"""Training on several devices: the config's `distribute` field.

    python -m keras_synapse.train experiments/shared_backbone.py --set distribute=mirrored

- `"none"` (default): the default device, no strategy.
- `"mirrored"`: `tf.distribute.MirroredStrategy` over every local GPU (or,
  without GPUs, every logical CPU device: usually just one). The model is
  built, its normalization adapted and it is compiled inside
  `strategy.scope()`; `model.fit` then splits each batch
  of the (unchanged) `tf.data` pipeline across the replicas and all-reduces
  the gradients. `batch_size` stays the *global* batch: with 2 replicas each
  sees `batch_size / 2` windows per step.
- `"multi_worker"` is refused with a `ConfigError`: Keras 3's `model.fit`
  fails under `tf.distribute.MultiWorkerMirroredStrategy` (an upstream
  limitation, seen with Keras 3.15 and TensorFlow 2.21). Spread work over
  machines as whole fits on a Ray cluster instead (`keras_synapse.tune
  --executor ray`: one trial per task), use `"mirrored"` for several devices
  on one host, or run experiments (or folds) as separate processes.

Example:

>>> check_distribute("mirrored")
'mirrored'
"""

import contextlib

from keras_synapse.errors import ConfigError

DISTRIBUTE_MODES = ("none", "mirrored")

MULTI_WORKER_MESSAGE = (
    "`distribute='multi_worker'` is not supported: Keras 3's model.fit fails under "
    "tf.distribute.MultiWorkerMirroredStrategy (an upstream limitation, seen with Keras 3.15 / TensorFlow 2.21), "
    "so a multi-worker run would crash or hang rather than train. Instead:\n"
    "  - many trials over many machines: tuning on a Ray cluster, one trial per task "
    "(python -m keras_synapse.tune EXPERIMENT.py --executor ray; see keras_synapse.tune);\n"
    "  - several GPUs (or devices) on one host: --set distribute=mirrored (tf.distribute.MirroredStrategy);\n"
    "  - independent runs (experiments, seeds, data sets) as separate processes, e.g. one per machine."
)

_strategies = {}


def check_distribute(mode):
    """Validates a `distribute` setting and returns it.

    Args:
        mode: `"none"` or `"mirrored"`.

    Returns:
        `mode`, unchanged.

    Raises:
        ConfigError: for `"multi_worker"` (explaining the upstream limitation
            and what to use instead) and for unknown modes.
    """
    if mode == "multi_worker":
        raise ConfigError(MULTI_WORKER_MESSAGE)
    if mode not in DISTRIBUTE_MODES:
        raise ConfigError(f"`distribute` must be one of {', '.join(DISTRIBUTE_MODES)} "
                          f"('multi_worker' is refused, see keras_synapse.training.distribute). Received: distribute={mode!r}")
    return mode


def get_strategy(mode):
    """The `tf.distribute.Strategy` for `mode`, or `None` for `"none"`.

    One strategy per mode and process: a `MirroredStrategy` claims its devices
    once, and every fold's model is built under that same strategy.

    Raises:
        ConfigError: see `check_distribute`.
    """
    check_distribute(mode)
    if mode == "none":
        return None
    if mode not in _strategies:
        _strategies[mode] = _mirrored_strategy()
    return _strategies[mode]


def _mirrored_strategy():
    import tensorflow as tf

    # MirroredStrategy() alone takes every GPU, or only CPU:0 when there is
    # none; several logical CPU devices (configured before TensorFlow starts)
    # have to be named.
    devices = [device.name for device in tf.config.list_logical_devices("GPU")]
    devices = devices or [device.name for device in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    print(f"distribute: MirroredStrategy over {strategy.num_replicas_in_sync} device(s): {', '.join(devices)}")
    return strategy


def distribution_scope(mode):
    """A context manager: `strategy.scope()` for `mode`, or a no-op for `"none"`.

    Build, adapt and compile the model inside it; `fit`, `predict` and saving
    may run outside.
    """
    strategy = get_strategy(mode)
    return contextlib.nullcontext() if strategy is None else strategy.scope()
