"""Reference roles: one sector or a sector per symbol, and which symbols are inputs only."""

import numpy as np
import pytest

from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import ConfigError
from keras_synapse.features import compute_features
from keras_synapse.features.references import reference_inputs, sector_map, symbol_roles

ROLES = {"market": "MARKET", "sector": "SYN-00=SECTOR-0;SYN-01=SECTOR-1", "vix": "VIX", "vix3m": "VIX3M"}


def test_sector_pairs_give_each_symbol_its_own_sector():
    assert sector_map("XLK") == ("XLK", {})
    assert sector_map("AAPL=XLK; JPM=XLF;*=SPY") == ("SPY", {"AAPL": "XLK", "JPM": "XLF"})
    assert symbol_roles(ROLES, "SYN-01")["sector"] == "SECTOR-1"
    # A symbol the pairs do not name has no sector (no default given): the role is unset.
    assert "sector" not in symbol_roles(ROLES, "SYN-02")


@pytest.mark.parametrize("text, message", [("AAPL=", "SYMBOL=SECTOR"), ("A=X;A=Y", "names 'A' twice")])
def test_malformed_sector_pairs_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        sector_map(text)


def test_only_references_a_feature_set_reads_are_inputs():
    symbols = ("SYN-00", "SYN-01", "MARKET", "SECTOR-0", "SECTOR-1", "VIX", "VIX3M", "SECTOR-2")
    # SECTOR-2 is nobody's sector here: it stays an ordinary symbol.
    assert reference_inputs({"market", "sector", "vix", "vix3m"}, ROLES, symbols) == symbols[2:7]
    assert reference_inputs((), ROLES, symbols) == ()


def test_pattern17_reads_each_symbols_own_sector():
    universe = generate_universe(num_symbols=2, num_bars=400, seed=2)
    sources = {**dict(universe.panel.items()), **universe.references}
    swapped = {**ROLES, "sector": "SYN-00=SECTOR-1;SYN-01=SECTOR-0"}
    own = compute_features(universe.panel, "pattern17", ROLES, sources)
    other = compute_features(universe.panel, "pattern17", swapped, sources)
    column = "sector_relative_strength_20"
    for symbol in universe.panel.symbols:
        assert not np.allclose(own[symbol][column], other[symbol][column])
        # The single-asset and market columns do not depend on the sector.
        np.testing.assert_array_equal(own[symbol]["vix_term_structure"], other[symbol]["vix_term_structure"])
    sector = universe.references["SECTOR-1"]["close"]
    expected = (np.log(universe.panel["SYN-01"]["close"]).diff(20) - np.log(sector).diff(20)).iloc[-1]
    assert own["SYN-01"][column].iloc[-1] == pytest.approx(expected)


def test_a_symbol_without_a_sector_is_named():
    universe = generate_universe(num_symbols=3, num_bars=300, seed=2)
    sources = {**dict(universe.panel.items()), **universe.references}
    with pytest.raises(ConfigError, match=r"(?s)for symbol 'SYN-02'.*'sector'.*no symbol set"):
        compute_features(universe.panel, "pattern17", ROLES, sources)
