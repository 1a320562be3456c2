"""The model registry: versioned, atomic, loadable by any Keras app.

Layout::

    saved_models/<experiment>/<version>/model.keras
                                       /model.onnx
                                       /metadata.json
    saved_models/<experiment>/latest -> <version>

A version is written into a hidden staging directory and renamed into place
in one step, so a crash never leaves a half-written version; `latest` is
switched with an atomic symlink replace.
"""

import os
import shutil
import uuid
from pathlib import Path

from keras_synapse.errors import SynapseError
from keras_synapse.serving.model_card import ModelCard

LATEST = "latest"


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
    staging = experiment_dir / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        write_files(staging)
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
    link = experiment_dir / f".{LATEST}-{uuid.uuid4().hex}"
    link.symlink_to(str(version))
    os.replace(link, experiment_dir / LATEST)
    return experiment_dir / str(version)


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
