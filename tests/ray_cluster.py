"""A real two-node Ray cluster on 127.0.0.1 for tests: a head and a second node, each its own `ray start` process.

    with loopback_cluster(cpus_per_node=1) as address:   # "127.0.0.1:PORT"
        ... RAY_ADDRESS=address python -m keras_synapse.train ... --executor ray

Each node is started with `ray start --block` in its own process group, so
the teardown stops exactly this cluster's processes (`ray stop` would stop
every Ray process on the machine, other tests' included).
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
# Token authentication would make every client read ~/.ray/auth_token; a loopback test cluster needs none.
ENVIRONMENT = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(arguments, log_path):
    log = open(log_path, "w")
    return subprocess.Popen([RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                             *arguments], stdout=log, stderr=subprocess.STDOUT, env=ENVIRONMENT,
                            start_new_session=True)


def _alive_nodes(address):
    code = ("import ray; ray.init(address=%r, log_to_driver=False); "
            "print(sum(node['Alive'] for node in ray.nodes()))" % address)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENVIRONMENT,
                            timeout=60)
    return int(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 and result.stdout.strip() else 0


@contextlib.contextmanager
def loopback_cluster(log_dir, cpus_per_node=1, num_nodes=2, timeout=120):
    """Starts a head and `num_nodes - 1` more nodes on 127.0.0.1; yields the GCS address; stops them all."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    processes = [_start(["--head", f"--port={port}", f"--num-cpus={cpus_per_node}", "--include-dashboard=false"],
                        Path(log_dir) / "ray-head.log")]
    try:
        deadline = time.time() + timeout
        started_workers = False
        while True:
            if any(process.poll() is not None for process in processes):
                logs = "\n".join(path.read_text()[-2000:] for path in Path(log_dir).glob("ray-*.log"))
                raise RuntimeError(f"a Ray node exited while starting:\n{logs}")
            alive = _alive_nodes(address)
            if alive >= 1 and not started_workers:
                processes += [_start([f"--address={address}", f"--num-cpus={cpus_per_node}"],
                                     Path(log_dir) / f"ray-node-{index}.log") for index in range(1, num_nodes)]
                started_workers = True
            if alive >= num_nodes:
                break
            if time.time() > deadline:
                raise RuntimeError(f"the Ray cluster at {address} has {alive} of {num_nodes} nodes after {timeout} s")
            time.sleep(1)
        yield address
    finally:
        # `ray start --block` stops its node at once on SIGINT (it waits out SIGTERM for 10 s).
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
