"""Where independent fits run: in this process (`local`), or as Ray tasks on a cluster (`ray`, `ray://ADDRESS`).

Users outgrow one machine through the number of fits (folds x seeds, a
benchmark's runs, a search's trials), not the size of one model, so the unit
of work is one whole fit. An executor offers:

- `share(value)`: data every task reads, prepared once (Ray's object store;
  locally the value itself);
- `map(function, argument_tuples)`: `function(*arguments)` for each tuple, the
  results in order. `function` must be importable by name (a module-level
  function), its arguments and results picklable; Keras models in a result
  travel as `.keras` bytes and come back as models;
- `record()`: what ran where, for `metrics.json`;
- `submit(function, arguments)`, `wait_any(handles)` and `capacity()`: one
  task at a time, for a driver that decides the next task from the results
  so far (a search's oracle); `wait_any` gives the first to end and its
  `TaskOutcome` (the value, or the task's error, and the node it ran on).

A Ray task asks for `cpus_per_task` CPUs (and a GPU each where the cluster
has them) and runs TensorFlow with that many intra-op threads, one inter-op
thread, set before TensorFlow starts in the worker. Give the local executor
the same `cpus_per_task` and the same seeds give the same metrics (floating
reductions depend on the thread count). A task whose worker dies is retried
(`max_retries`); Ray needs `pip install -e ".[ray]"`.
"""

import collections
import dataclasses
import io
import os
import socket
import tempfile
from pathlib import Path

from keras_synapse.errors import ConfigError

MAX_RETRIES = 3
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS")


def parse_executor(spec):
    """`local`, `ray` (the cluster in `RAY_ADDRESS`, or a new one on this machine) or `ray://HOST:PORT`.

    Returns:
        `(kind, address)`.

    Raises:
        ConfigError: for anything else.
    """
    spec = str(spec).strip()
    if spec in ("local", "ray"):
        return spec, None
    if spec.startswith("ray://") and len(spec) > len("ray://"):
        return "ray", spec
    raise ConfigError(f"`--executor` must be 'local', 'ray' or 'ray://HOST:PORT'. Received: {spec!r}")


def make_executor(spec="local", cpus_per_task=None):
    """The executor of an `--executor` value.

    Args:
        spec: see `parse_executor`. Defaults to `"local"`.
        cpus_per_task: CPUs (and TensorFlow intra-op threads) per fit, or
            `None` for TensorFlow's default locally and 1 on Ray. Defaults
            to `None`.
    """
    if cpus_per_task is not None and (not isinstance(cpus_per_task, int) or cpus_per_task < 1):
        raise ConfigError(f"`--cpus-per-task` must be an integer >= 1. Received: {cpus_per_task!r}")
    kind, address = parse_executor(spec)
    if kind == "local":
        return LocalExecutor(cpus_per_task)
    return RayExecutor(address, cpus_per_task or 1)


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    """How one submitted task ended: its value, or the exception it raised, and where it ran.

    Attributes:
        value: the function's result (Keras models back as models), `None`
            on error.
        error: the exception the task raised (on Ray, Ray's error carrying
            the task's traceback, an instance of the original exception's
            class where Ray can make one), or `None`.
        node: the Ray node id, or this host's name locally; `""` when
            unknown (a task whose retries all died with their workers).
    """

    value: object = None
    error: BaseException = None
    node: str = ""


def set_thread_counts(cpus):
    """TensorFlow's intra-op threads to `cpus` and inter-op threads to 1, if TensorFlow has not started yet."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(cpus))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialized in this process: it keeps its threads
        return False
    return True


class LocalExecutor:
    """Runs every fit here, one after another (today's behaviour, the default)."""

    kind = "local"
    remote = False

    def __init__(self, cpus_per_task=None):
        self.cpus_per_task = cpus_per_task
        self._tasks = 0
        self._next_handle, self._outcomes = 0, {}
        if cpus_per_task is not None:
            set_thread_counts(cpus_per_task)

    def share(self, value):
        return value

    def map(self, function, argument_tuples):
        results = [function(*arguments) for arguments in argument_tuples]
        self._tasks += len(results)
        return results

    def capacity(self):
        """Tasks that can run at once here: 1 (they run one after another)."""
        return 1

    def submit(self, function, arguments):
        """Runs `function(*arguments)` now; returns the handle `wait_any` gives back with its outcome."""
        try:
            outcome = TaskOutcome(value=function(*arguments), node=socket.gethostname())
        except Exception as error:  # noqa: BLE001  (the caller decides what a failed task means)
            outcome = TaskOutcome(error=error, node=socket.gethostname())
        self._tasks += 1
        self._next_handle += 1
        self._outcomes[self._next_handle] = outcome
        return self._next_handle

    def wait_any(self, handles):
        """The first of `handles` (all ended already) and its `TaskOutcome`, forgotten here once returned."""
        handle = list(handles)[0]
        return handle, self._outcomes.pop(handle)

    def record(self):
        return {"kind": "local", "cpus_per_task": self.cpus_per_task, "tasks": self._tasks,
                "nodes": {socket.gethostname(): self._tasks} if self._tasks else {}}

    def close(self):
        pass


class RayExecutor:
    """Runs each fit as a Ray task, spread over the cluster's nodes.

    Args:
        address: `ray://HOST:PORT` (Ray Client), a GCS address `HOST:PORT`,
            or `None` for `RAY_ADDRESS` or a new local cluster.
        cpus_per_task: CPUs each task asks for (and TensorFlow's threads).
            Defaults to `1`.
    """

    kind = "ray"
    remote = True

    def __init__(self, address=None, cpus_per_task=1):
        try:
            import ray
        except ImportError:
            raise ConfigError("`--executor ray` needs Ray: pip install -e '.[ray]'") from None
        self.ray, self.cpus_per_task = ray, int(cpus_per_task)
        threads = {name: str(self.cpus_per_task) for name in THREAD_VARIABLES}
        threads["TF_NUM_INTEROP_THREADS"] = "1"
        threads["TF_CPP_MIN_LOG_LEVEL"] = "2"
        # "local" starts a new instance here: without it Ray would join whatever cluster was last started on this
        # machine (its address file in /tmp/ray), even a dead one.
        self.address = address or os.environ.get("RAY_ADDRESS") or "local"
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=True, runtime_env={"env_vars": threads},
                     include_dashboard=False, configure_logging=False)
        self.gpus_per_task = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        self.nodes = collections.Counter()
        self._remote = ray.remote(_run_task)

    def share(self, value):
        return self.ray.put(value)

    def map(self, function, argument_tuples):
        references = [self.submit(function, arguments) for arguments in argument_tuples]
        results = []
        for value, node in self.ray.get(references):
            self.nodes[node] += 1
            results.append(_from_transport(value))
        return results

    def capacity(self):
        """Tasks the cluster can run at once now: its CPUs (GPUs, where tasks take one) per task, at least 1.

        Nodes may join or leave while a driver runs; ask again before
        submitting more.
        """
        resources = self.ray.cluster_resources()
        slots = int(resources.get("CPU", 0) // self.cpus_per_task)
        if self.gpus_per_task:
            slots = min(slots, int(resources.get("GPU", 0) // self.gpus_per_task))
        return max(1, slots)

    def submit(self, function, arguments):
        """Starts `function(*arguments)` as a Ray task (as `map`'s, retried if its worker dies); returns its handle."""
        task = self._remote.options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                    max_retries=MAX_RETRIES, retry_exceptions=False, scheduling_strategy="SPREAD")
        return task.remote(function, self.cpus_per_task, *arguments)

    def wait_any(self, handles):
        """Blocks until one of `handles` ends; returns it and its `TaskOutcome`."""
        ready, _ = self.ray.wait(list(handles), num_returns=1)
        try:
            value, node = self.ray.get(ready[0])
        except self.ray.exceptions.RayError as error:  # the task raised, or its worker died MAX_RETRIES + 1 times
            return ready[0], TaskOutcome(error=error)
        self.nodes[node] += 1
        return ready[0], TaskOutcome(value=_from_transport(value), node=node)

    def record(self):
        return {"kind": "ray", "address": self.address, "cpus_per_task": self.cpus_per_task,
                "gpus_per_task": self.gpus_per_task, "tasks": sum(self.nodes.values()), "nodes": dict(self.nodes)}

    def close(self):
        pass  # the cluster outlives the command; a local one ends with the process


def _run_task(function, cpus, *arguments):
    """A Ray task: the fit with the task's thread counts, its models as bytes, and the node it ran on."""
    import ray

    set_thread_counts(cpus)
    value = function(*arguments)
    return _to_transport(value), ray.get_runtime_context().get_node_id()


class _ModelBytes:
    """A Keras model in transit: its `.keras` file."""

    def __init__(self, data):
        self.data = data


def _to_transport(value):
    import keras

    if isinstance(value, keras.Model):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "model.keras"
            value.save(path)
            return _ModelBytes(path.read_bytes())
    if isinstance(value, tuple):
        return tuple(_to_transport(item) for item in value)
    if isinstance(value, list):
        return [_to_transport(item) for item in value]
    return value


def _from_transport(value):
    if isinstance(value, _ModelBytes):
        import keras

        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "model.keras"
            path.write_bytes(io.BytesIO(value.data).getvalue())
            return keras.models.load_model(path, compile=False)
    if isinstance(value, tuple):
        return tuple(_from_transport(item) for item in value)
    if isinstance(value, list):
        return [_from_transport(item) for item in value]
    return value
