"""Registry writes are atomic and versioned; `latest` follows the newest version."""

import json

import pytest
from conftest import model_card_fields

from keras_synapse.serving.model_card import ModelCardError
from keras_synapse.serving.registry import read_metadata, register, resolve


def write_model(directory):
    (directory / "model.keras").write_text("weights")


def test_versions_count_up_and_latest_points_at_the_newest(tmp_path):
    first = register(tmp_path, "exp", write_model, model_card_fields(note="a"))
    second = register(tmp_path, "exp", write_model, model_card_fields(note="b"))
    assert (first.name, second.name) == ("1", "2")
    assert resolve(tmp_path / "exp" / "latest") == (tmp_path / "exp" / "2").resolve()
    assert dict(read_metadata(tmp_path / "exp" / "latest")) == model_card_fields(note="b", version=2)


def test_a_crash_while_writing_leaves_no_version_behind(tmp_path):
    register(tmp_path, "exp", write_model, model_card_fields())

    def crash(directory):
        (directory / "model.keras").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        register(tmp_path, "exp", crash, model_card_fields())
    assert sorted(child.name for child in (tmp_path / "exp").iterdir()) == [".latest.lock", "1", "latest"]
    assert json.loads((tmp_path / "exp" / "latest" / "metadata.json").read_text())["version"] == 1


def test_resolve_refuses_a_directory_that_is_not_a_version(tmp_path):
    from keras_synapse.errors import SynapseError

    with pytest.raises(SynapseError, match="is not a registry version"):
        resolve(tmp_path)


def test_an_invalid_model_card_registers_nothing(tmp_path):
    with pytest.raises(ModelCardError, match="the field `label` is missing"):
        register(tmp_path, "exp", write_model, {key: value for key, value in model_card_fields().items()
                                                if key != "label"})
    assert list((tmp_path / "exp").iterdir()) == []


def test_a_dead_registrations_staging_is_removed_and_a_live_ones_kept(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from keras_synapse.serving.registry import STAGING_PREFIX

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    (tmp_path / "exp").mkdir()
    stale = tmp_path / "exp" / f"{STAGING_PREFIX}{host}-{int(dead.stdout)}-abc"
    live = tmp_path / "exp" / f"{STAGING_PREFIX}{host}-{os.getpid()}-def"
    other_host = tmp_path / "exp" / f"{STAGING_PREFIX}elsewhere-{int(dead.stdout)}-ghi"
    for directory in (stale, live, other_host):
        directory.mkdir()
        (directory / "model.keras").write_text("half")
    register(tmp_path, "exp", write_model, model_card_fields())
    assert not stale.exists() and live.exists() and other_host.exists()


def test_latest_only_moves_forward(tmp_path):
    from keras_synapse.serving.registry import point_latest

    for _ in range(3):
        register(tmp_path, "exp", write_model, model_card_fields())
    point_latest(tmp_path / "exp", 2)  # a slower registration of an older version finishing last
    assert resolve(tmp_path / "exp" / "latest").name == "3"


def test_racing_registrations_end_with_latest_at_the_newest(tmp_path):
    import subprocess
    import sys

    script = (f"import sys; sys.path.insert(0, {str(tmp_path.parent)!r})\n"
              "from keras_synapse.serving.registry import register\n"
              f"fields = {model_card_fields()!r}\n"
              "for _ in range(8):\n"
              f"    register({str(tmp_path)!r}, 'exp', lambda d: (d / 'model.keras').write_text('w'), fields)\n")
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0, 0]
    versions = sorted(int(child.name) for child in (tmp_path / "exp").iterdir() if child.name.isdigit())
    assert versions == list(range(1, 25))
    assert resolve(tmp_path / "exp" / "latest").name == "24"
