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
    assert sorted(child.name for child in (tmp_path / "exp").iterdir()) == ["1", "latest"]
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
