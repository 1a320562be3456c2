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
