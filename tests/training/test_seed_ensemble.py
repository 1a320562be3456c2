"""Seed ensembles: one model that averages its members, saved and exported whole; the members' agreement."""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.config import ExperimentConfig
from keras_synapse.evaluation.agreement import agreement_record, format_agreement
from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder


def built_members(count, spec):
    import keras

    members = []
    for member in range(count):
        keras.utils.set_random_seed(member)
        config = ExperimentConfig(model="gru", name=f"gru_member_{member}", lstm_units=(8, 4), dense_units=4)
        model = get_model_builder("gru")(config, spec)
        fit_normalization(model, np.random.default_rng(member).normal(size=(50, spec.num_features)).astype("float32"))
        members.append(model)
    return members


def test_the_average_is_one_model_that_saves_and_exports_whole(tmp_path):
    import keras

    from keras_synapse.serving.onnx_export import export_onnx
    from keras_synapse.training.seed_ensemble import average_members, ensemble_members

    spec = ModelSpec(6, 3, 0, "regression", 1, ())
    members = built_members(3, spec)
    ensemble = average_members(members, "gru")
    inputs = {"sequence": np.random.default_rng(9).normal(size=(16, 6, 3)).astype("float32")}
    expected = np.mean([member.predict(inputs, verbose=0) for member in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(inputs, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert [member.name for member in ensemble_members(ensemble)] == [f"gru_member_{k}" for k in range(3)]
    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(inputs, verbose=0), expected, rtol=1e-5,
                               atol=1e-6)
    assert export_onnx(ensemble, tmp_path / "ensemble.onnx", inputs)["max_abs_diff"] < 1e-4


def frame_of(members, reference, seed=0):
    rng = np.random.default_rng(seed)
    members = np.asarray(members, dtype=np.float64)
    frame = pd.DataFrame({"timestamp": pd.date_range("2020-01-01", periods=members.shape[1], freq="D", tz="UTC"),
                          "reference": reference, "target": reference,
                          "prediction": members.mean(axis=0) + rng.normal(0, 1e-9, members.shape[1])})
    return frame.assign(**{f"member_{k}": values for k, values in enumerate(members)})


def test_agreement_is_counted_per_window_and_scored_where_all_agree():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=400)
    # Members that agree where they are right, and split at random elsewhere.
    right = np.sign(reference) * (0.5 + rng.random(400))
    noise = rng.normal(size=(3, 400))
    confident = np.arange(400) < 200
    members = np.where(confident, right, noise)
    record = agreement_record(frame_of(members, reference), horizon=1, num_resamples=200, seed=0)
    scores = np.asarray(members)
    average = scores.mean(axis=0)
    agreeing = (np.sign(scores) == np.sign(average)).mean(axis=0)
    assert record["members"] == 3 and record["mean_agreement"] == pytest.approx(agreeing.mean(), abs=1e-9)
    assert record["unanimous_share"] == pytest.approx((agreeing == 1).mean(), abs=1e-9)
    assert record["unanimous"]["directional_accuracy"] > 0.8 > record["split"]["directional_accuracy"]
    low, high = record["unanimous"]["ci"]
    assert low <= record["unanimous"]["directional_accuracy"] <= high
    assert record["mean_spread"] == pytest.approx(scores.std(axis=0).mean())
    assert "all agree" in format_agreement(record)


def test_a_plain_run_has_no_agreement_record():
    assert agreement_record(pd.DataFrame({"prediction": [0.1]}), 1, 10, 0) is None
