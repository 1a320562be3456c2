"""The live loop's retrain: checked every few bars, a promoted `latest` traded from the next bar, a failure survived.

The retrain command itself (triggers, champion/challenger, promotion) is
tested on real training runs in tests/test_retrain.py; here it is replaced by
a function that answers as it would, so that the runner's side can be seen:
which bar the check ran at, the switch to the promoted version, the journal.
"""

import shutil
import subprocess

import pytest

from keras_synapse.data import load_panel
from keras_synapse.serving.inference import Predictor
from keras_synapse.serving.registry import read_metadata, register, set_latest
from keras_synapse.trading.bar_sources import ReplayBars
from keras_synapse.trading.brokers import SimulatedBroker
from keras_synapse.trading.retrain_hook import RetrainHook
from keras_synapse.trading.runner import LiveRunner, LiveSettings

SYMBOLS = ("SYN-00", "SYN-01")
TRADED_BARS = 12


@pytest.fixture
def registry(trained_registry, tmp_path):
    """A registry with the trained version as v1 (latest) and a copy registered as v2, not promoted."""
    root = tmp_path / "saved_models"
    card = dict(read_metadata(trained_registry))

    def copy_files(staging):
        shutil.copytree(trained_registry, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("metadata.json"))

    for promote in (True, False):
        register(root, card["experiment"], copy_files, {key: value for key, value in card.items() if key != "version"},
                 promote=promote)
    return root / card["experiment"]


def test_a_promotion_by_the_retrain_is_traded_from_the_next_bar_and_a_failed_retrain_is_survived(registry, tmp_path):
    predictor = Predictor.from_registry(registry / "latest")
    warmup = predictor.inputs.default_buffer_length()
    sample = load_panel("sample", quick=True)
    panel = {symbol: sample[symbol].iloc[-(TRADED_BARS + warmup):] for symbol in SYMBOLS}
    commands = []

    def retrain(command, **options):  # as `python -m keras_synapse.retrain` would answer
        commands.append(command)
        if len(commands) == 1:
            return subprocess.CompletedProcess(command, 2, "", "error: the holdout reaches into the training data")
        set_latest(registry, 2, reason="challenger beat the incumbent")
        return subprocess.CompletedProcess(command, 0, "promoted v2", "")

    hook = RetrainHook("experiments/shared_backbone.py", registry / "latest", "sample", every_bars=4, run=retrain)
    settings = LiveSettings(strategy_id="hook", horizon=5)
    runner = LiveRunner(predictor, SimulatedBroker(), ReplayBars(panel, warmup), tmp_path / "live", settings,
                        sleep=lambda seconds: None)
    runner.start()
    assert runner.run(poll_interval=0, on_bar=hook) == TRADED_BARS
    runner.close()

    assert len(commands) == 3 and commands[0][commands[0].index("--live-dir") + 1] == str(tmp_path / "live")
    retrains = [record for record in runner.journal.records if record["type"] == "retrain"]
    assert [record["returncode"] for record in retrains] == [2, 0, 0]
    switches = [record for record in runner.journal.records if record["type"] == "model"]
    assert [(record["previous"], record["version"]) for record in switches] == [(1, 2)]
    assert switches[0]["at_bar"] == retrains[1]["at_bar"] and runner.predictor.version == 2
    # Every bar was traded, before and after the switch.
    assert sum(record["type"] == "processed" for record in runner.journal.records) == TRADED_BARS
