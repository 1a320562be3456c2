"""The synthetic universe's reference series: related to its symbols as real indexes are to stocks, past draws only."""

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data import load_panel
from keras_synapse.data.panel import validate_bars
from keras_synapse.data.sample import load_sample, sample_sector_symbols
from keras_synapse.data.synthetic import generate_universe
from keras_synapse.errors import DataError

REFERENCE_SYMBOLS = ("MARKET", "SECTOR-0", "SECTOR-1", "SECTOR-2", "VIX", "VIX3M")


@pytest.fixture(scope="module")
def universe():
    return generate_universe(num_symbols=6, num_bars=3000, seed=11)


def log_returns(frame):
    return np.log(frame["close"]).diff().iloc[1:]


def test_every_reference_is_valid_bars_on_the_universe_calendar(universe):
    assert tuple(universe.references) == REFERENCE_SYMBOLS
    for symbol, frame in universe.references.items():
        validated = validate_bars(frame, symbol)
        assert validated.index.equals(universe.panel["SYN-00"].index)
        assert (validated["volume"] == 0).all()


def test_the_market_and_sectors_move_with_their_members(universe):
    market = log_returns(universe.references["MARKET"])
    for symbol in universe.panel.symbols:
        returns = log_returns(universe.panel[symbol])
        assert returns.corr(market) > 0.25  # beta 0.6 with the largest idiosyncratic noise gives ~0.3
        own = log_returns(universe.references[f"SECTOR-{universe.sector[symbol]}"])
        others = [log_returns(universe.references[f"SECTOR-{sector}"]) for sector in range(3)
                  if sector != universe.sector[symbol]]
        # A symbol moves more with its own sector's index than with any other.
        assert returns.corr(own) > max(returns.corr(other) for other in others) + 0.05


def test_the_vix_term_structure_inverts_in_turbulence(universe):
    vix, vix_3_month = universe.references["VIX"]["close"], universe.references["VIX3M"]["close"]
    turbulent = universe.regime.to_numpy() == 1
    assert turbulent.any() and (~turbulent).any()
    assert (vix[turbulent] > vix_3_month[turbulent]).mean() > 0.9
    assert (vix[~turbulent] < vix_3_month[~turbulent]).mean() > 0.8
    # Turbulence doubles the volatility: the VIX is higher there, in a realistic range overall.
    assert vix[turbulent].median() > 1.5 * vix[~turbulent].median()
    assert 10 < vix.median() < 30


def test_a_reference_bar_depends_on_no_later_draw():
    short = generate_universe(num_symbols=3, num_bars=400, seed=5).references
    long = generate_universe(num_symbols=3, num_bars=900, seed=5).references
    for symbol in REFERENCE_SYMBOLS:
        pd.testing.assert_frame_equal(short[symbol], long[symbol].iloc[:400])


def test_the_symbols_are_the_same_bars_as_in_the_plain_sample():
    plain = load_sample(quick=True)
    with_references = load_panel("sample:references", quick=True)
    symbols = [f"SYN-0{number}" for number in range(4)]
    assert with_references.symbols == tuple(symbols) + REFERENCE_SYMBOLS
    for symbol in symbols:
        pd.testing.assert_frame_equal(plain[symbol], with_references[symbol])
    assert sample_sector_symbols(quick=True) == "SYN-00=SECTOR-0;SYN-01=SECTOR-1;SYN-02=SECTOR-2;SYN-03=SECTOR-0"


def test_an_unknown_sample_variant_is_named():
    with pytest.raises(DataError, match=r"sample:reference.*`sample` or `sample:references`"):
        load_panel("sample:reference")
