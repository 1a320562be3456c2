"""Inference from a registry version: the training windows and scores, streaming = batch, neutral fallbacks."""

import logging

import numpy as np
import pandas as pd
import pytest
from conftest import copy_version, make_bars

from keras_synapse.data import Panel, load_panel
from keras_synapse.errors import ConfigError, DataError
from keras_synapse.features import FEATURE_SETS, get_feature_set
from keras_synapse.serving.inference import Predictor
from keras_synapse.serving.model_card import ModelCard
from keras_synapse.serving.model_inputs import FeatureMismatchError, ModelInputs


@pytest.fixture(scope="module")
def panel():
    return load_panel("sample", quick=True)


@pytest.fixture(scope="module")
def predictor(trained_registry):
    return Predictor.from_registry(trained_registry)


def test_predict_panel_scores_exactly_the_training_windows(trained_registry, predictor, panel):
    """Same windows as the trainer (ends, symbols, times) and the Keras model's scores on them."""
    import keras

    from keras_synapse.config import ExperimentConfig
    from keras_synapse.training.preparation import prepare_data

    metadata = predictor.metadata
    config = ExperimentConfig(**{key: tuple(value) if isinstance(value, list) else value
                                 for key, value in metadata["config"].items()})
    windowed = prepare_data(config, quick=True).windowed
    ends = np.flatnonzero(windowed.window_ok)

    predictions = predictor.predict_panel(panel)

    assert predictor.backend == "onnx"
    assert predictions.index.names == ["symbol", "timestamp"]
    expected = windowed.window_frame(ends)
    assert len(predictions) == len(ends)
    assert list(predictions.index.get_level_values("symbol")) == list(expected["symbol"])
    assert (predictions.index.get_level_values("timestamp") == pd.DatetimeIndex(expected["timestamp"])).all()
    model = keras.models.load_model(trained_registry / "model.keras", compile=False)
    sample = np.linspace(0, len(ends) - 1, 300).astype(int)
    keras_scores = np.asarray(model(windowed.gather(ends[sample]), training=False)).ravel()
    np.testing.assert_allclose(predictions["score"].to_numpy()[sample], keras_scores, atol=1e-4)


def test_streaming_updates_equal_batch_predictions(predictor, panel):
    """Bars fed one at a time to the stream give the batch scores of the same windows (core features)."""
    batch = predictor.predict_panel(panel)
    calendar = panel["SP500"].index
    stream = predictor.stream(panel.truncate(calendar[-11]))
    long = panel.to_long()
    for timestamp in calendar[-10:]:
        latest = stream.update(long[long["timestamp"] == timestamp])
        assert not latest["fallback"].any()
        assert (latest["timestamp"] == timestamp).all()
        expected = batch.xs(timestamp, level="timestamp")["score"].loc[latest.index]
        np.testing.assert_allclose(latest["score"].to_numpy(), expected.to_numpy(), atol=1e-4)
    assert stream.buffer_length == predictor.inputs.default_buffer_length() == 20 + 3 * 21 - 1
    assert len(stream.bars("SP500")) == stream.buffer_length
    # predict_latest (tails of a panel) = the last window of predict_panel.
    latest = predictor.predict_latest(panel)
    last = batch.groupby(level="symbol").tail(1).reset_index("timestamp")
    np.testing.assert_allclose(latest["score"], last["score"].loc[latest.index], atol=1e-4)


@pytest.mark.parametrize("name", sorted(name for name, feature_set in FEATURE_SETS.items() if feature_set.stackable))
def test_stackable_feature_sets_give_per_symbol_values_when_stacked(name):
    """The streaming fast path's premise: a stacked computation's last rows equal each symbol's own."""
    feature_set = get_feature_set(name)
    length, buffer_length = 20, 20 + 3 * feature_set.warmup - 1
    blocks = [make_bars(buffer_length, seed=seed) * (1 + 9 * seed) for seed in range(3)]
    stacked = feature_set.compute(pd.concat(blocks, ignore_index=True), {}).to_numpy()
    ends = np.cumsum([len(block) for block in blocks])
    for block, end in zip(blocks, ends):
        own = feature_set.compute(block, {}).to_numpy()[-length:]
        np.testing.assert_allclose(stacked[end - length:end], own, rtol=1e-9, atol=1e-9)


def test_technical_features_on_the_default_buffer_match_full_history(panel):
    """TA-Lib's exponential smoothing has converged within the default buffer (module docstring)."""
    feature_set = get_feature_set("technical")
    bars = panel["SYN-01"]
    buffer_length = 20 + 3 * feature_set.warmup - 1
    full = feature_set.compute(bars, {}).to_numpy()[-20:]
    buffered = feature_set.compute(bars.iloc[-buffer_length:], {}).to_numpy()[-20:]
    np.testing.assert_allclose(buffered, full, atol=1e-9)


def test_the_gap_rule_is_the_trainers(bars):
    import keras_synapse.serving.model_inputs as model_inputs
    import keras_synapse.windows.dataset as windows

    # One function serves both, so inference drops exactly the windows training dropped.
    assert model_inputs.window_ok is windows.window_ok
    index = make_bars(120).index
    index = index.delete([30, 31, 32, 33, 34, 35, 36, 37, 38, 70])  # an outage and a single missing day
    ok = windows.complete_windows(index.asi8, 5, 5.0)
    assert not ok[30:34].any() and ok[34]  # a full window of fresh rows is needed after the outage
    assert ok[69:75].all()  # one missing business day is not an outage


def test_neutral_signal_for_short_history_invalid_bars_and_gaps(predictor, panel, caplog):
    calendar = panel["SP500"].index
    frames = {"SP500": panel["SP500"], "SHORT": panel["SYN-00"].iloc[-30:],
              "GAPPY": panel["SYN-01"].drop(calendar[-12:-4])}
    stream = predictor.stream(Panel(frames, validate=False))
    with caplog.at_level(logging.WARNING, logger="keras_synapse.serving.inference"):
        latest = stream.latest()
    assert not latest.loc["SP500", "fallback"]
    assert latest.loc["SHORT", "fallback"] and latest.loc["SHORT", "score"] == 0
    assert "needs 40 bars" in latest.loc["SHORT", "reason"] and "has 30" in latest.loc["SHORT", "reason"]
    assert latest.loc["GAPPY", "fallback"] and "data gap" in latest.loc["GAPPY", "reason"]
    assert "Symbol 'SHORT': neutral signal" in caplog.text

    next_day = calendar[-1] + pd.Timedelta(days=1)
    good = panel["SP500"].iloc[[-1]].set_axis(pd.DatetimeIndex([next_day], name="timestamp"))
    bad = good.assign(high=good["low"] * 0.5)
    updated = stream.update({"SP500": good, "SHORT": bad})
    assert not updated.loc["SP500", "fallback"] and updated.loc["SP500", "timestamp"] == next_day
    assert updated.loc["SHORT", "fallback"]
    assert "column 'high': high below low" in updated.loc["SHORT", "reason"]
    assert len(stream.bars("SHORT")) == 30  # the invalid bar was not buffered
    with pytest.raises(DataError, match="Symbol 'SHORT', column 'high': high below low"):
        stream.update({"SHORT": bad}, on_invalid="raise")


def test_neutral_signal_when_the_model_fails(trained_registry, panel, caplog):
    predictor = Predictor.from_registry(trained_registry)

    def broken(inputs):
        raise RuntimeError("session exploded")

    broken.output_names = predictor._runner.output_names
    broken.input_shapes = predictor._runner.input_shapes
    predictor._runner = broken
    with caplog.at_level(logging.ERROR, logger="keras_synapse.serving.inference"):
        latest = predictor.predict_latest(panel)
    assert latest["fallback"].all() and (latest["score"] == 0).all()
    assert latest["reason"].str.contains("model failed: session exploded").all()
    assert "session exploded" in caplog.text


def test_keras_fallback_when_the_onnx_file_is_missing(trained_registry, predictor, panel, tmp_path, caplog):
    copy = copy_version(trained_registry, tmp_path)
    (copy / "model.onnx").unlink()
    with caplog.at_level(logging.WARNING, logger="keras_synapse.serving.inference"):
        keras_predictor = Predictor.from_registry(copy)
    assert keras_predictor.backend == "keras"
    assert "falling back to Keras" in caplog.text
    recent = panel.truncate(panel.end).select(["SP500", "SYN-02"])
    np.testing.assert_allclose(keras_predictor.predict_latest(recent)["score"],
                               predictor.predict_latest(recent)["score"], atol=1e-4)


def test_features_that_differ_from_the_models_are_refused_by_name(trained_registry, panel, tmp_path):
    copy = copy_version(trained_registry, tmp_path)
    metadata = ModelCard.read(copy).to_dict()
    for names in (metadata["inputs"]["sequence"]["feature_names"], metadata["feature_names"]):
        names[names.index("log_range")] = "log_range_renamed"  # a consistent card for a model the code cannot feed
    definitions = metadata["inputs"]["sequence"]["definitions"]
    metadata["inputs"]["sequence"]["definitions"] = {
        ("log_range_renamed" if name == "log_range" else name): value for name, value in definitions.items()}
    ModelCard(metadata).write(copy)
    predictor = Predictor.from_registry(copy)
    with pytest.raises(FeatureMismatchError, match=r"Missing: \['log_range_renamed'\]; unexpected: \['log_range'\]"):
        predictor.predict_panel(panel.select(["SYN-00"]))
    with pytest.raises(FeatureMismatchError, match="log_range_renamed"):
        predictor.predict_latest(panel.select(["SYN-00"]))


def test_model_inputs_come_from_the_metadata(predictor):
    inputs = ModelInputs.from_metadata(predictor.metadata)
    assert inputs.sequence_length == 20 and inputs.feature_set == "core" and len(inputs.feature_names) == 11
    assert inputs.warmup == 21 and inputs.required_bars == 40 and inputs.stackable
    with pytest.raises(ConfigError, match="buffer_length` must be >= 40"):
        predictor.stream(buffer_length=39)


def test_a_multi_task_model_scores_its_primary_head_and_reports_the_others(tmp_path, panel):
    import keras

    from keras_synapse.config import ExperimentConfig, config_to_dict
    from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder
    from keras_synapse.serving.onnx_export import export_onnx
    from keras_synapse.serving.registry import register

    keras.utils.set_random_seed(0)
    config = ExperimentConfig(name="multitask", model="multitask", label="direction",
                              heads="pattern_confidence=momentum_persistence;market_regime=direction")
    heads = (("pattern_confidence", "binary", 1), ("market_regime", "multiclass", 3))
    names = list(get_feature_set("core").compute(make_bars(30), {}).columns)
    spec = ModelSpec(20, len(names), 0, "multiclass", 3, heads)
    model = get_model_builder("multitask")(config, spec)
    fit_normalization(model, np.random.default_rng(0).normal(0, 0.02, (500, len(names))).astype("float32"))
    parity = {"sequence": np.random.default_rng(1).normal(0, 0.02, (32, 20, len(names))).astype("float32")}
    metadata = {"experiment": "multitask", "config": config_to_dict(config),
                "inputs": {"sequence": {"shape": [None, 20, len(names)], "feature_set": "core",
                                        "feature_names": names}},
                "label": {"name": "direction", "kind": "multiclass", "classes": ["DOWN", "FLAT", "UP"], "horizon": 5},
                "normalization": {"sequence": {
                    key: np.asarray(getattr(model.get_layer("feature_normalization"), key)).ravel().tolist()
                    for key in ("mean", "variance")}}}
    version = register(tmp_path, "multitask", lambda directory: (model.save(directory / "model.keras"),
                                                                export_onnx(model, directory / "model.onnx", parity)),
                       metadata)
    predictor = Predictor.from_registry(version)
    assert predictor.backend == "onnx" and predictor.primary_output == "market_regime"
    latest = predictor.predict_latest(panel.select(["SYN-00", "SYN-01"]))
    probabilities = latest[["probability_DOWN", "probability_FLAT", "probability_UP"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(latest["score"], probabilities[:, 2] - probabilities[:, 0], atol=1e-6)
    assert latest["pattern_confidence"].between(0, 1).all()
