"""bench train: contenders alternate, so a load that comes and goes falls on both."""

from keras_synapse.bench.training import interleaved_rates


def test_contenders_alternate_and_every_timed_epoch_counts():
    order = []

    def contender(name, rate):
        def run():
            order.append(name)
            return {"samples_per_second": [rate, rate + 1]}
        return run

    rates = interleaved_rates({"pipeline": contender("pipeline", 10), "numpy": contender("numpy", 20)}, repeats=3)
    assert order == ["pipeline", "numpy", "numpy", "pipeline", "pipeline", "numpy"]
    assert rates == {"pipeline": [10, 11] * 3, "numpy": [20, 21] * 3}
