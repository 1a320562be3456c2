"""The linear highway: the closed-form ridge inside the graph, the network's share, and what they never see."""

import dataclasses

import keras
import numpy as np

import planted_windows
from planted_windows import HORIZON, LENGTH, chronological_split

from keras_synapse.config import ExperimentConfig
from keras_synapse.models import ModelSpec, fit_normalization, get_model_builder
from keras_synapse.models.highway import NETWORK_SHARES, choose_network_share, fit_highways, highway_heads
from keras_synapse.models.ridge import RIDGE_PENALTIES, tuned_ridge_solver


def windowed_universe(**options):
    return planted_windows.windowed_universe(6, 900, 4, **options)


def fold_split(windowed):
    """Fit, carve-out and test windows in time order, and the rows normalization may see."""
    split = chronological_split(windowed, 0.6, 0.8)
    return {**split, "baseline_fit": split["fit"], "fit_rows": windowed.timestamps <= split["fit_end"]}


def highway_model(windowed, bars, split):
    keras.utils.set_random_seed(0)
    config = ExperimentConfig(highway_bars=bars, sequence_length=LENGTH)
    model = get_model_builder("shared_backbone")(config, ModelSpec(LENGTH, len(windowed.feature_names)))
    fit_normalization(model, windowed.features[split["fit_rows"]])
    fit_highways(model, windowed, split)
    return model


def logits(model, windowed, ends):
    """The head's pre-activation (highway plus network score) for the windows ending at `ends`."""
    probe = keras.Model(model.inputs, model.get_layer("prediction_logit").output)
    return np.ravel(probe.predict({"sequence": windowed.gather(ends)["sequence"]}, verbose=0))


def test_the_highway_is_the_closed_form_ridge_on_the_last_bars_and_the_network_starts_at_zero():
    windowed = windowed_universe(signal="ar1", oracle_ic=0.1)
    split = fold_split(windowed)
    for bars in (1, 3):
        model = highway_model(windowed, bars, split)
        assert highway_heads(model) == ["prediction"]
        solver, alpha = tuned_ridge_solver(windowed, split["fit"], split["validation"], bars, windowed.targets)
        last_bars = windowed.gather(split["test"])["sequence"][:, -bars:, :].reshape(len(split["test"]), -1)
        expected = solver.predict(last_bars, [alpha * solver.count])[:, 0]
        # Before any epoch the head is exactly the ridge (the network's last layer is zero), in float32.
        np.testing.assert_allclose(logits(model, windowed, split["test"]), expected, rtol=1e-4, atol=1e-5)
        assert not model.get_layer("prediction_highway").trainable


def test_the_ridge_never_sees_the_test_targets_nor_before_the_share_the_carve_out():
    windowed = windowed_universe(signal="ar1", oracle_ic=0.1)
    split = fold_split(windowed)
    reference = highway_model(windowed, 2, split)
    for part in ("test", "validation"):
        targets = windowed.targets.copy()
        targets[split[part]] = np.random.default_rng(1).permutation(targets[split[part]])
        scrambled = highway_model(dataclasses.replace(windowed, targets=targets), 2, split)
        if part == "test":  # test targets change nothing at all
            for mine, theirs in zip(scrambled.get_layer("prediction_highway").get_weights(),
                                    reference.get_layer("prediction_highway").get_weights()):
                np.testing.assert_array_equal(mine, theirs)
            continue
        # Carve-out targets only choose among the penalties: the coefficients are a fit on the fit windows alone.
        solver = tuned_ridge_solver(windowed, split["fit"], split["validation"], 2, windowed.targets)[0]
        last_bars = windowed.gather(split["test"])["sequence"][:, -2:, :].reshape(len(split["test"]), -1)
        candidates = solver.predict(last_bars, np.asarray(RIDGE_PENALTIES) * solver.count)
        found = logits(scrambled, windowed, split["test"])
        assert any(np.allclose(found, candidates[:, index], rtol=1e-4, atol=1e-5)
                   for index in range(len(RIDGE_PENALTIES)))


def test_a_network_that_learned_noise_gets_no_share_and_the_ridge_is_refitted_with_the_carve_out():
    windowed = windowed_universe(signal="ar1", oracle_ic=0.1)
    split = fold_split(windowed)
    model = highway_model(windowed, 1, split)
    network = model.get_layer("prediction_network")
    kernel, bias = network.get_weights()
    # Noise: a random score layer (the dense block's output of an untrained network is noise too).
    network.set_weights([np.random.default_rng(2).normal(0, 1.0, kernel.shape).astype("float32"), bias])
    highway = [weight.copy() for weight in model.get_layer("prediction_highway").get_weights()]
    # As a tuner's trial calls it: the carve-out that then scores the model stays unseen by the ridge.
    chosen = choose_network_share(model, windowed, split, batch_size=256, horizon=HORIZON,
                                  refit_highway=False)["prediction"]
    assert chosen["share"] == 0.0 and np.allclose(network.get_weights()[0], 0)
    assert chosen["rank_ic"] == chosen["ridge_rank_ic"]
    for mine, fitted in zip(model.get_layer("prediction_highway").get_weights(), highway):
        np.testing.assert_array_equal(mine, fitted)
    # As a run calls it: after the share is chosen the ridge is refitted with the carve-out, as the ridge
    # baseline is.
    assert choose_network_share(model, windowed, split, batch_size=256, horizon=HORIZON)["prediction"]["share"] == 0
    solver, alpha = tuned_ridge_solver(windowed, split["fit"], split["validation"], 1, windowed.targets,
                                       with_validation=True)
    expected = solver.predict(windowed.features[split["test"]], [alpha * solver.count])[:, 0]
    np.testing.assert_allclose(logits(model, windowed, split["test"]), expected, rtol=1e-4, atol=1e-5)
    assert NETWORK_SHARES[0] == 0.0 and NETWORK_SHARES[-1] == 1.0


def test_a_highway_on_a_class_label_is_refused_with_what_to_set():
    import types

    import pytest

    from keras_synapse.errors import ConfigError
    from keras_synapse.training.trainer import check_fit_settings

    data = types.SimpleNamespace(head_tasks=None, task=types.SimpleNamespace(kind="multiclass", label="direction"))
    with pytest.raises(ConfigError, match="'direction' is multiclass: set highway_bars=0. Received: highway_bars=1"):
        check_fit_settings(ExperimentConfig(highway_bars=1, monitor="val_ic"), data)
    check_fit_settings(ExperimentConfig(highway_bars=0, monitor="val_ic"), data)  # no highway, nothing to refuse
    with pytest.raises(ConfigError, match="highway_bars.*0 for multitask"):
        ExperimentConfig(model="multitask", highway_bars=1)
