"""Experiment files, --set overrides, and refusal of leaky settings."""

import subprocess
import sys

import pytest

from keras_synapse.config import ExperimentConfig, apply_overrides, load_experiment
from keras_synapse.errors import ConfigError


def test_overrides_are_parsed_to_field_types():
    config = apply_overrides(ExperimentConfig(), ["epochs=3", "lstm_units=32,16", "learning_rate=1e-3", "data=./bars"])
    assert config.epochs == 3 and config.lstm_units == (32, 16)
    assert config.learning_rate == 0.001 and config.data == "./bars"


@pytest.mark.parametrize(
    "override, message",
    [
        ("epochs", r"`--set` expects key=value. Received: 'epochs'"),
        ("epoch=3", r"Unknown config field 'epoch'"),
        ("epochs=three", r"`epochs` expects a whole number. Received: epochs='three'"),
        ("epochs=0", r"`epochs` must be >= 1. Received: epochs=0"),
        ("gap=2", r"`gap` must be >= `horizon` \(5\).*Received: gap=2"),
    ],
)
def test_bad_overrides_say_what_was_received(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(ExperimentConfig(), [override])


def test_experiment_file_is_loaded_with_its_quick_branch(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(
        "import dataclasses\nfrom keras_synapse.config import ExperimentConfig\n"
        "def get_config(quick=False):\n"
        "    config = ExperimentConfig(name='tiny')\n"
        "    return dataclasses.replace(config, epochs=1) if quick else config\n"
    )
    assert load_experiment(path).epochs == 25
    assert load_experiment(path, quick=True).epochs == 1


def test_missing_experiment_and_missing_get_config(tmp_path):
    with pytest.raises(ConfigError, match="Experiment file not found"):
        load_experiment(tmp_path / "nope.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match=r"defines no `get_config"):
        load_experiment(tmp_path / "empty.py")


@pytest.mark.parametrize(
    "override, message",
    [
        ("dropout=-0.5", "`dropout` must be in [0, 1). Received: dropout=-0.5"),
        ("lstm_units=0", "`lstm_units` must be one or more layer sizes, each >= 1 (e.g. 64,32). Received: lstm_units=(0,)"),
        ("lstm_units=", "`lstm_units` must be one or more layer sizes, each >= 1 (e.g. 64,32). Received: lstm_units=()"),
        ("pooling=nope", "`pooling` must be one of ('last', 'mean'). Received: pooling='nope'"),
        ("name=../x", "`name` must be a plain name"),
        ("loss=nope", "`loss` must be one of ('auto', 'correlation_aware', 'crossentropy', 'focal', 'huber', 'mse')"),
        ("head_activation=tanhh", "`head_activation` must be one of ('tanh', 'linear')"),
        ("learning_rate=inf", "`learning_rate` must be a finite number. Received: learning_rate=inf"),
        ("cost_bps=nan", "`cost_bps` must be a finite number. Received: cost_bps=nan"),
        ("lstm_units=32,16x", "`lstm_units` expects whole numbers separated by commas, e.g. 64,32. Received: "
                              "lstm_units='32,16x'"),
        ("droput=0.2", "Unknown config field 'droput': did you mean `dropout` (model group)"),
    ],
)
def test_a_bad_value_stops_the_command_in_one_line_before_any_directory_exists(override, message, tmp_path, request,
                                                                             capsys):
    from keras_synapse.train import main

    status = main([str(request.config.rootpath / "experiments/shared_backbone.py"), "--quick", "--set", override,
                   "--output", str(tmp_path / "runs"), "--registry", str(tmp_path / "registry")])
    assert status == 2
    assert f"error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "registry").exists() and not (tmp_path / "x").exists()


def test_the_same_through_python_dash_m(tmp_path, request):
    result = subprocess.run(
        [sys.executable, "-m", "keras_synapse.train", str(request.config.rootpath / "experiments/shared_backbone.py"),
         "--quick", "--set", "name=../x", "--output", str(tmp_path / "runs"), "--registry", str(tmp_path / "registry")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: `name` must be a plain name")
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("override", ["dropout=-0.5", "droput=0.2", "head_activation=tanhh", "learning_rate=inf"])
def test_a_bad_set_ends_in_one_line_before_tensorflow_is_imported(override, tmp_path, request):
    # In a fresh process: the command's whole output is the one error line, and TensorFlow never loaded.
    script = ("import sys\nfrom keras_synapse.train import main\n"
              f"status = main([{str(request.config.rootpath / 'experiments/shared_backbone.py')!r}, '--set', "
              f"{override!r}, '--output', {str(tmp_path / 'runs')!r}])\n"
              "print('tensorflow' in sys.modules, 'keras' in sys.modules, status)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "False", "2"]
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert not (tmp_path / "runs").exists()


def test_an_unknown_key_far_from_any_field_lists_the_groups():
    with pytest.raises(ConfigError, match=r"Unknown config field 'zzz'. Groups and their fields: data: data, "):
        apply_overrides(ExperimentConfig(), ["zzz=1"])


def test_every_field_is_in_exactly_one_group():
    import dataclasses

    from keras_synapse.config import CONFIG_GROUPS

    grouped = [name for names in CONFIG_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(field.name for field in dataclasses.fields(ExperimentConfig))
    assert len(grouped) == len(set(grouped))


def test_a_group_may_name_the_field_and_must_be_its_own():
    config = apply_overrides(ExperimentConfig(), ["fitting.stride=1", "windows.sequence_length=40", "epochs=3"])
    assert (config.stride, config.sequence_length, config.epochs) == (1, 40, 3)
    with pytest.raises(ConfigError, match=r"`stride` is in the `fitting` group; `model` holds model, lstm_units.*"
                                          r"Received: 'model.stride=1'"):
        apply_overrides(ExperimentConfig(), ["model.stride=1"])
    with pytest.raises(ConfigError, match=r"Unknown config group 'fiting'. Groups: data, labels, windows"):
        apply_overrides(ExperimentConfig(), ["fiting.stride=1"])


def test_a_monitor_the_label_cannot_log_is_refused_before_any_directory_exists(tmp_path, request, capsys):
    from keras_synapse.train import main

    status = main([str(request.config.rootpath / "experiments/lstm_classifier.py"), "--quick", "--set",
                   "monitor=val_mse", "--output", str(tmp_path / "runs"), "--registry", str(tmp_path / "registry")])
    assert status == 2
    assert "error: `val_mse` exists only for regression labels; 'direction' is multiclass" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_head_per_horizon_names_its_horizon_after_the_label():
    from keras_synapse.config import ExperimentConfig
    from keras_synapse.labels.heads import head_horizons, head_labels

    config = ExperimentConfig(model="multitask", label="forward_return", horizon=5, gap=10,
                              heads="return_1=forward_return@1;return_5=forward_return;return_10=forward_return@10")
    assert head_labels(config) == ({"return_1": "forward_return@1", "return_5": "forward_return",
                                    "return_10": "forward_return@10"}, "return_5")
    assert head_horizons(config) == {"return_1": 1, "return_5": 5, "return_10": 10}
    with pytest.raises(ConfigError, match=r"the longest head horizon \(10\) \+ `execution_lag` \(0\)"):
        ExperimentConfig(model="multitask", label="forward_return", gap=6, heads="a=forward_return;b=forward_return@10")
    with pytest.raises(ConfigError, match="Head 'b': the horizon after '@' must be a whole number"):
        ExperimentConfig(model="multitask", label="forward_return", heads="a=forward_return;b=forward_return@x")
