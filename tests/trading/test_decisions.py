"""Sizing, the allocation ramp and client order ids, by hand."""

import pandas as pd

from keras_synapse.trading.decisions import Decision, client_order_id, ramp_fraction, target_quantities


def decision(period, halted=False, stopped=False, flattened=False):
    return Decision(pd.Timestamp("2024-01-01", tz="UTC"), {}, halted, stopped, flattened, False, period)


def test_the_ramp_climbs_a_stage_per_clean_stretch_and_a_breaker_sends_it_back():
    clean = [decision(period) for period in range(7)]
    # The newest decision's own breakers act on its book already; the ramp counts the ones before it.
    assert [ramp_fraction(clean[:n], (0.25, 0.5, 1.0), 3) for n in range(1, 8)] == [0.25, 0.25, 0.25, 0.5, 0.5,
                                                                                      0.5, 1.0]
    broken = clean[:5] + [decision(5, stopped=True), decision(6), decision(7)]
    assert ramp_fraction(broken, (0.25, 0.5, 1.0), 3) == 0.25
    assert ramp_fraction(broken + [decision(8), decision(9)], (0.25, 0.5, 1.0), 3) == 0.5


def test_quantities_are_the_weight_of_the_ramped_allocation_at_the_close_rounded():
    weights, prices = {"AAA": 0.25, "BBB": -0.125, "CCC": 0.0}, {"AAA": 40.0, "BBB": 33.0, "CCC": 10.0}
    assert target_quantities(weights, prices, 100000.0, 0.5) == {"AAA": 312.0, "BBB": -189.0, "CCC": 0.0}
    assert target_quantities(weights, prices, 100000.0, 0.5, fractional=True) == {"AAA": 312.5, "BBB": -189.3939,
                                                                                     "CCC": 0.0}


def test_a_client_order_id_names_strategy_symbol_and_bar_and_fits_alpaca():
    identifier = client_order_id("shared-backbone", "BTC/USD", pd.Timestamp("2024-03-01 14:30", tz="America/New_York"))
    assert identifier == "ks-shared-backbone-BTCUSD-20240301T193000"
    assert len(identifier) <= 128
