"""What data preparation refuses before any training: strategies that misread an event model, all-reference data."""

import dataclasses
import types

import pytest

from keras_synapse.config import ExperimentConfig
from keras_synapse.data.sample import load_sample
from keras_synapse.errors import ConfigError, DataError
from keras_synapse.training.preparation import require_strategy_for_task, split_reference_inputs

EVENT = types.SimpleNamespace(directional=False)
FILTER = "signal=meta_label;primary_side_column=momentum"


@pytest.mark.parametrize("strategy", ["sizing=kelly", FILTER, FILTER + ";confidence_target=direction"])
def test_an_event_model_read_as_a_direction_is_refused(strategy):
    config = ExperimentConfig(label="momentum_persistence", strategy=strategy)
    with pytest.raises(ConfigError, match="predicts whether an event resolves.*confidence_target=event"):
        require_strategy_for_task(config, EVENT)


def test_an_event_filter_and_a_directional_strategy_pass():
    require_strategy_for_task(ExperimentConfig(label="momentum_persistence",
                                               strategy=FILTER + ";confidence_target=event"), EVENT)
    require_strategy_for_task(ExperimentConfig(strategy=FILTER), types.SimpleNamespace(directional=True))


def test_references_leave_the_traded_panel_only_when_a_feature_set_reads_them():
    panel = load_sample(quick=True, references=True)
    roles = dict(market_symbol="MARKET", sector_symbol="SECTOR-0", vix_symbol="VIX", vix3m_symbol="VIX3M")
    traded, inputs_only = split_reference_inputs(panel, ExperimentConfig(features="pattern17", **roles))
    assert inputs_only == ("MARKET", "SECTOR-0", "VIX", "VIX3M")
    # SECTOR-1 and SECTOR-2 are nobody's sector here: ordinary symbols.
    assert traded.symbols == ("SYN-00", "SYN-01", "SYN-02", "SYN-03", "SECTOR-1", "SECTOR-2")
    core = split_reference_inputs(panel, ExperimentConfig(features="core", **roles))
    assert core[0].symbols == panel.symbols and core[1] == ()
    only_references = panel.select(["MARKET", "SECTOR-0", "VIX", "VIX3M"])
    with pytest.raises(DataError, match="Every symbol of the data is a reference series"):
        split_reference_inputs(only_references, dataclasses.replace(ExperimentConfig(features="pattern17"), **roles))


def test_quick_panel_bounds_symbols_and_bars_whatever_the_data_size(capsys):
    from conftest import make_bars

    from keras_synapse.config import ExperimentConfig
    from keras_synapse.data.panel import Panel
    from keras_synapse.training.preparation import QUICK_MAX_BARS, QUICK_MAX_SYMBOLS, quick_panel

    frames = {f"S{number:02d}": make_bars(num_bars=5000, seed=number) for number in range(20)}
    frames["SP500"] = make_bars(num_bars=5000, seed=99)  # the config's market reference series is kept besides
    sliced = quick_panel(Panel(frames), ExperimentConfig())
    assert sliced.symbols == tuple(f"S{number:02d}" for number in range(QUICK_MAX_SYMBOLS)) + ("SP500",)
    for symbol in sliced.symbols:
        assert len(sliced[symbol]) == QUICK_MAX_BARS
        assert sliced[symbol].index[-1] == frames[symbol].index[-1]  # the last bars, not the first
    said = capsys.readouterr().out
    assert f"quick: {QUICK_MAX_SYMBOLS + 1} of 21 symbol(s), the last {QUICK_MAX_BARS} of up to 5000 bars" in said
