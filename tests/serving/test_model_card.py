"""The model card (`metadata.json`): one class writes and reads it; damage is named, never a traceback."""

import json
import subprocess
import sys

import pytest
from conftest import MODEL_CARD_NAMES as NAMES
from conftest import copy_version, damage_onnx_weights, flip_bytes
from conftest import model_card_fields as card_fields

from keras_synapse.serving.model_card import FORMAT_VERSION, ModelCard, ModelCardError


def test_a_card_round_trips_and_reads_like_its_dict(tmp_path):
    ModelCard(card_fields()).write(tmp_path)
    card = ModelCard.read(tmp_path)
    assert card.to_dict() == card_fields() and card["label"]["horizon"] == 5 and dict(card) == card_fields()
    assert card.updated(onnx={"opset": 17})["onnx"] == {"opset": 17} and "onnx" not in card
    assert not list(tmp_path.glob(".*partial"))


def test_a_card_written_before_format_version_reads_as_format_1(tmp_path):
    legacy = card_fields()
    del legacy["format_version"]
    (tmp_path / "metadata.json").write_text(json.dumps(legacy))
    assert ModelCard.read(tmp_path)["format_version"] == 1


@pytest.mark.parametrize("text, message", [
    ("", "is damaged: not valid JSON (Expecting value at line 1, column 1; 0 characters)"),
    ('{"experiment": "shared_backbone", "inpu', "is damaged: not valid JSON"),
    ("[1, 2]", "must hold a JSON object. Received: list"),
])
def test_a_damaged_file_is_named(tmp_path, text, message):
    (tmp_path / "metadata.json").write_text(text)
    with pytest.raises(ModelCardError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        ModelCard.read(tmp_path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ModelCardError, match="metadata.json does not exist"):
        ModelCard.read(tmp_path)


def _without(key):
    fields = card_fields()
    del fields[key]
    return fields


@pytest.mark.parametrize("fields, message", [
    (card_fields(format_version=2), "written by a newer keras_synapse \\(format 2\\); this one reads format 1"),
    (card_fields(format_version="1"), "`format_version` must be a positive integer. Received: format_version='1'"),
    (_without("label"), "the field `label` is missing"),
    (card_fields(label={"name": "forward_return", "kind": "regresion", "horizon": 5}),
     "`label.kind` must be one of .*Received: kind='regresion'"),
    (card_fields(label={"name": "direction", "kind": "multiclass", "horizon": 5, "classes": []}),
     "a multiclass label needs its `classes`"),
    (card_fields(normalization={"sequence": {"mean": [0.0, 0.1], "variance": [1.0, 2.0]}}),
     "`normalization.sequence.mean` must hold one value per feature \\(3\\). Received: 2 values"),
    (card_fields(normalization={"sequence": {"mean": [0.0, 0.1, 0.2], "variance": [1.0, -2.0, 3.0]}}),
     "variance` must be non-negative"),
    (card_fields(normalization={"sequence": {"mean": [0.0, 0.1, 0.2], "variance": [1.0, 2.0, 3.0], "ddof": 2}}),
     "`normalization.sequence.ddof` must be 0 \\(population variance\\) or 1 \\(sample variance\\). Received: ddof=2"),
    (card_fields(normalization={"sequence": {"mean": [0.0, 0.1, 0.2], "variance": [1.0, 2.0, 3.0], "ddof": "0"}}),
     "`normalization.sequence.ddof` must be 0 .*Received: ddof='0'"),
    (card_fields(inputs={"sequence": {"shape": [None, 20, 4], "feature_set": "core", "feature_names": NAMES}}),
     "`inputs.sequence.shape` must end with the number of features \\(3\\)"),
    (card_fields(inputs={"sequence": {"shape": [None, 20, 3], "feature_set": "core",
                                      "feature_names": ["log_range", "log_range", "log_return_1"]}}),
     "repeats a name"),
    (card_fields(feature_names=[NAMES[1], NAMES[0], NAMES[2]]), "differs from `inputs.sequence.feature_names`"),
    (card_fields(version="3"), "`version` must be a int. Received: version='3'"),
])
def test_an_inconsistent_card_says_what_is_wrong(fields, message):
    with pytest.raises(ModelCardError, match=message):
        ModelCard(fields, source="saved_models/x/3/metadata.json")


def test_the_card_names_the_ddof_of_the_variance_the_normalization_layer_used():
    import numpy as np

    from keras_synapse.config import ExperimentConfig
    from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder
    from keras_synapse.serving.registration import normalization_statistics

    # Eight training rows: a variance over n - 1 would be 8/7 of one over n, inputs 7% apart.
    rng = np.random.default_rng(0)
    rows = rng.normal(1.0, 2.0, (8, len(NAMES))).astype("float32")
    model = get_model_builder("shared_backbone")(ExperimentConfig(), ModelSpec(4, len(NAMES)))
    fit_normalization(model, rows)  # as training adapts it
    layer = model.get_layer("feature_normalization")
    card = ModelCard(card_fields(normalization={"sequence": normalization_statistics(layer)}))
    recorded = card.normalization_statistics("sequence")
    # Recomputed from the training rows with the ddof the card names: the layer's statistics.
    assert recorded["ddof"] == 0 and card["normalization"]["sequence"]["ddof"] == 0
    np.testing.assert_allclose(recorded["mean"], rows.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(recorded["variance"], rows.astype(np.float64).var(axis=0, ddof=recorded["ddof"]),
                               rtol=1e-5)
    assert not np.allclose(recorded["variance"], rows.astype(np.float64).var(axis=0, ddof=1), rtol=1e-2)
    # A user normalizing raw rows from the card gets what the model's layer computes.
    raw = rng.normal(1.0, 2.0, (5, len(NAMES))).astype("float32")
    by_hand = (raw - np.asarray(recorded["mean"])) / np.maximum(np.sqrt(recorded["variance"]), 1e-7)
    np.testing.assert_allclose(np.asarray(layer(raw[:, None, :]))[:, 0], by_hand, rtol=1e-5, atol=1e-6)
    # A card written before the field existed still loads, and reads as what was always fitted.
    old = ModelCard(card_fields())
    assert "ddof" not in old["normalization"]["sequence"] and old.normalization_statistics()["ddof"] == 0


def test_the_registry_writes_format_version_and_the_commands_name_a_damaged_card(trained_registry, tmp_path):
    written = json.loads((trained_registry / "metadata.json").read_text())
    assert written["format_version"] == FORMAT_VERSION
    # The normalization's variance is the population variance of the training rows the drift reference
    # describes (numpy, ddof 0), and the card says so.
    import numpy as np

    statistics, reference = written["normalization"]["sequence"], written["drift_reference"]
    assert statistics["ddof"] == 0 and "ddof 0" in written["normalization"]["formula"]
    rows = reference["num_rows"]
    stds = np.array([reference["features"][name]["std"] for name in written["inputs"]["sequence"]["feature_names"]])
    np.testing.assert_allclose(statistics["variance"], stds ** 2, rtol=2e-5)
    assert not np.allclose(statistics["variance"], stds ** 2 * rows / (rows - 1), rtol=2e-5)
    version = copy_version(trained_registry, tmp_path / "saved_models")
    text = (version / "metadata.json").read_text()
    (version / "metadata.json").write_text(text[: len(text) // 2])
    for command in (["keras_synapse.predict", str(version), "--data", "sample", "--quick", "--latest"],
                    ["keras_synapse.export", str(version), "--parity-inputs", "random"]):
        result = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (command, result.stderr[-2000:])
        assert "is damaged: not valid JSON" in result.stderr and "Traceback" not in result.stderr, command
    assert (version / "metadata.json").read_text() == text[: len(text) // 2]  # nothing rewrote it


def test_a_version_registered_before_format_version_still_predicts(trained_registry, tmp_path):
    version = copy_version(trained_registry, tmp_path / "saved_models")
    card = json.loads((version / "metadata.json").read_text())
    for key in ("format_version", "windows", "checksum", "files"):
        del card[key]
    del card["inputs"]["sequence"]["definitions"]
    del card["normalization"]["sequence"]["ddof"], card["normalization"]["formula"]
    (version / "metadata.json").write_text(json.dumps(card))
    result = subprocess.run([sys.executable, "-m", "keras_synapse.predict", str(version), "--data", "sample",
                             "--quick", "--latest"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SP500" in result.stdout
    # Re-exporting rewrites the card in the current format.
    result = subprocess.run([sys.executable, "-m", "keras_synapse.export", str(version), "--parity-inputs", "random"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((version / "metadata.json").read_text())["format_version"] == FORMAT_VERSION


def test_a_card_edited_by_hand_is_refused(tmp_path):
    ModelCard(card_fields()).write(tmp_path)
    card = json.loads((tmp_path / "metadata.json").read_text())
    names = card["inputs"]["sequence"]["feature_names"]
    names[0], names[1] = names[1], names[0]  # consistent in itself, wrong for the model
    card["feature_names"] = list(names)
    (tmp_path / "metadata.json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="was changed after keras_synapse wrote it"):
        ModelCard.read(tmp_path)
    del card["checksum"]  # an intended edit, knowingly unverified
    (tmp_path / "metadata.json").write_text(json.dumps(card))
    assert ModelCard.read(tmp_path)["feature_names"][0] == NAMES[1]


def test_a_damaged_model_file_never_predicts(trained_registry, tmp_path, caplog):
    from keras_synapse.data import load_panel
    from keras_synapse.serving.inference import Predictor

    assert set(ModelCard.read(trained_registry)["files"]) >= {"model.keras", "model.onnx", "folds/fold_0.keras"}
    panel = load_panel("sample", quick=True).select(["SP500", "SYN-01"])
    expected = Predictor.from_registry(trained_registry, backend="keras").predict_latest(panel)["score"]
    version = copy_version(trained_registry, tmp_path / "saved_models")
    damage_onnx_weights(version / "model.onnx")
    predictor = Predictor.from_registry(version)
    assert predictor.backend == "keras" and "not the file registered" in caplog.text
    assert (predictor.predict_latest(panel)["score"] == expected).all()
    command = [sys.executable, "-m", "keras_synapse.predict", str(version), "--data", "sample", "--quick", "--latest"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "falling back to Keras" in result.stderr, result.stderr[-2000:]
    # A damaged model.keras has no verified fallback: the commands stop with one line.
    flip_bytes(version / "model.keras", 2000)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "model.keras is not the file registered with this model" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_refuses_a_card_whose_feature_list_was_reordered(trained_registry, tmp_path):
    version = copy_version(trained_registry, tmp_path / "saved_models")
    card = json.loads((version / "metadata.json").read_text())
    names = card["inputs"]["sequence"]["feature_names"]
    names[0], names[1] = names[1], names[0]
    card["feature_names"] = list(names)
    (version / "metadata.json").write_text(json.dumps(card))
    result = subprocess.run([sys.executable, "-m", "keras_synapse.predict", str(version), "--data", "sample",
                             "--quick", "--latest"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "was changed after keras_synapse wrote it" in result.stderr
    assert "Traceback" not in result.stderr
