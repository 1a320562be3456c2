"""The model registry: versioned, atomic, loadable by any Keras app.

Layout::

    saved_models/<experiment>/<version>/model.keras
                                       /model.onnx
                                       /metadata.json
    saved_models/<experiment>/latest -> <version>

A version is written into a hidden staging directory, flushed to disk and
renamed into place in one step, so a crash never leaves a half-written
version; a staging directory whose process died is removed at the next
registration. `latest` is switched with an atomic symlink replace, under a
lock and only forward, so racing registrations never move it back.
"""

import fcntl
import os
import shutil
import socket
import uuid
from pathlib import Path

from keras_synapse.errors import SynapseError
from keras_synapse.serving.model_card import ModelCard

LATEST = "latest"
STAGING_PREFIX = ".staging-"


def _versions(experiment_dir):
    return sorted(int(child.name) for child in experiment_dir.iterdir() if child.name.isdigit())


def register(registry_dir, experiment, write_files, metadata):
    """Writes a new version of `experiment` and points `latest` at it.

    Args:
        registry_dir: the registry root, e.g. `saved_models/`.
        experiment: the experiment name (a directory under the root).
        write_files: a callable taking the staging directory (a `Path`) that
            writes the model files into it.
        metadata: a JSON-ready dict, written as the version's model card
            (`metadata.json`, see `keras_synapse.serving.model_card`) with the
            version number added.

    Returns:
        The `Path` of the new version directory.

    Raises:
        ModelCardError: when `metadata` is not a valid model card (nothing
            is registered then).
    """
    experiment_dir = Path(registry_dir) / experiment
    experiment_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(experiment_dir)
    staging = experiment_dir / f"{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        write_files(staging)
        _flush_to_disk(staging)
        while True:
            version = (_versions(experiment_dir) or [0])[-1] + 1
            ModelCard({**metadata, "version": version}, source=f"the model card of {experiment}").write(staging)
            try:
                staging.rename(experiment_dir / str(version))
                break
            except OSError:
                # Another process took this number between listing and renaming.
                if not (experiment_dir / str(version)).exists():
                    raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    point_latest(experiment_dir, version)
    return experiment_dir / str(version)


def point_latest(experiment_dir, version):
    """Points `latest` at `version` unless it already points at a newer one, under a lock.

    Two registrations finishing in the other order would otherwise move
    `latest` backwards.
    """
    experiment_dir = Path(experiment_dir)
    with open(experiment_dir / ".latest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = experiment_dir / LATEST
        if current.is_symlink() and os.readlink(current).isdigit() and int(os.readlink(current)) >= version:
            return
        link = experiment_dir / f".{LATEST}-{uuid.uuid4().hex}"
        link.symlink_to(str(version))
        os.replace(link, current)


def remove_stale_staging(experiment_dir):
    """Removes staging directories left by registrations that died (this host's, whose process is gone)."""
    host = socket.gethostname()
    for child in Path(experiment_dir).glob(f"{STAGING_PREFIX}*"):
        owner_host, _, rest = child.name.removeprefix(STAGING_PREFIX).rpartition("-")[0].rpartition("-")
        if owner_host != host or not rest.isdigit() or _alive(int(rest)):
            continue
        shutil.rmtree(child, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flush_to_disk(directory):
    # The rename publishes the version: its files must be on disk first, or a crash right after could
    # leave a published version with empty files.
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in [*sorted(p for p in Path(directory).rglob("*") if p.is_dir()), Path(directory)]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def resolve(path):
    """Resolves `saved_models/NAME/{VERSION|latest}` to a version directory.

    Raises:
        SynapseError: when the path is not a registry version.
    """
    path = Path(path)
    version_dir = path.resolve() if path.name == LATEST else path
    if not (version_dir / "metadata.json").is_file():
        raise SynapseError(
            f"{path} is not a registry version (expected saved_models/<experiment>/<version>/metadata.json)."
        )
    return version_dir


def read_metadata(path):
    """Returns the validated model card (`metadata.json`) of a registry version, a read-only mapping.

    Raises:
        SynapseError: when `path` is not a registry version.
        ModelCardError: when its `metadata.json` is damaged or of an unknown
            format.
    """
    return ModelCard.read(resolve(path))
