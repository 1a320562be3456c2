"""Multi-device training: MirroredStrategy on two logical CPU devices; multi_worker refused with the reason."""

import json
import subprocess
import sys
import textwrap

import pytest

from keras_synapse.config import ExperimentConfig, apply_overrides
from keras_synapse.training.distribute import check_distribute, distribution_scope
from keras_synapse.errors import ConfigError

# Logical devices must be configured before TensorFlow initializes, hence a fresh process.
MIRRORED_FOLD = textwrap.dedent("""
    import json, sys, tempfile
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from keras_synapse.config import load_experiment, apply_overrides
    from keras_synapse.training.distribute import get_strategy
    from keras_synapse.training.preparation import fold_windows, prepare_data
    from keras_synapse.training.trainer import FoldTrainer, predict_windows
    from keras_synapse.windows.splitters import GappedTimeSeriesCV

    config = apply_overrides(load_experiment("experiments/shared_backbone.py", quick=True),
                             ["distribute=mirrored", "epochs=3", "patience=3", "stride=10", "n_splits=1"])
    data = prepare_data(config, quick=True)
    calendar = data.windowed.calendar
    fold = GappedTimeSeriesCV(config.n_splits, config.test_size, config.gap).split(calendar)[0]
    split = fold_windows(data.windowed, calendar, fold, config)
    model, history = FoldTrainer(config, data, tempfile.mkdtemp()).fit(split, "fold_0")
    kernel = model.trainable_variables[0].value  # the tf.Variable under the Keras variable
    frame = predict_windows(model, data, split["test"], config.batch_size)
    direct = np.asarray(model(data.windowed.gather(split["test"]), training=False)).ravel()
    print(json.dumps({
        "replicas": get_strategy("mirrored").num_replicas_in_sync,
        "variable_devices": sorted({value.device for value in kernel.values}) if hasattr(kernel, "values") else [],
        "loss": history["loss"],
        "num_test": len(split["test"]),
        "predictions": frame["prediction"].tolist(),
        "max_difference_to_direct_call": float(np.max(np.abs(frame["prediction"].to_numpy() - direct))),
    }))
""")


def test_multi_worker_is_refused_with_the_reason_and_the_alternatives():
    with pytest.raises(ConfigError) as error:
        ExperimentConfig(distribute="multi_worker")
    message = str(error.value)
    assert "MultiWorkerMirroredStrategy" in message and "Keras 3" in message
    for alternative in ("keras_synapse.tune", "distribute=mirrored", "separate processes"):
        assert alternative in message
    with pytest.raises(ConfigError, match="MultiWorkerMirroredStrategy"):
        apply_overrides(ExperimentConfig(), ["distribute=multi_worker"])


def test_unknown_mode_is_refused_and_none_is_a_no_op():
    with pytest.raises(ConfigError, match="Received: distribute='tpu'"):
        check_distribute("tpu")
    assert ExperimentConfig().distribute == "none"
    with distribution_scope("none"):
        pass


def test_mirrored_strategy_trains_a_fold_on_two_logical_cpu_devices(request):
    result = subprocess.run([sys.executable, "-c", MIRRORED_FOLD], cwd=request.config.rootpath,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy over 2 device(s)" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    # The model's variables are mirrored: one copy on each logical device.
    assert len(report["variable_devices"]) == 2
    assert report["loss"][-1] < report["loss"][0]
    predictions = report["predictions"]
    assert len(predictions) == report["num_test"] > 0
    assert all(abs(value) < 1e6 for value in predictions)  # finite (NaN fails the comparison)
    # Distributed predict keeps the windows' order.
    assert report["max_difference_to_direct_call"] < 1e-4
