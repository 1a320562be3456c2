"""The inference benchmark's model rows: a seed ensemble is benchmarked as the one graph it exports to."""

import argparse

from keras_synapse.bench.inference import _defaults, bench_model, bench_tree, build_model


def test_a_seed_ensemble_row_times_its_one_exported_graph(tmp_path):
    args = argparse.Namespace(**{**vars(_defaults()), "sequence_length": 8, "features": 4, "single_repeats": 20,
                                 "keras_repeats": 2, "batch_size": 64, "batched_windows": 256})
    single = build_model("gru", 8, 4)
    result = bench_model("gru*2", args, tmp_path)
    # Two members' weights, one graph: the parity gate passed and every contender was timed.
    assert result["parameters"] == 2 * single.count_params() and result["parity"] < 1e-4
    assert {"onnx_runtime", "onnx_runtime_int8", "keras_model_predict"} <= set(result["contenders"])
    assert all(figures["p50_us"] > 0 and figures["windows_per_s"] > 0 for figures in result["contenders"].values())
    assert (tmp_path / "grux2.onnx").is_file()


def test_a_tree_row_times_its_window_input_graph_against_the_native_predict(tmp_path):
    args = argparse.Namespace(**{**vars(_defaults()), "sequence_length": 8, "features": 4, "single_repeats": 20,
                                 "keras_repeats": 2, "batch_size": 256, "batched_windows": 2048})
    result = bench_tree("lightgbm", args, tmp_path)
    assert result["parity"] < 1e-4 and result["trees"] >= 25 and (tmp_path / "lightgbm.onnx").is_file()
    assert set(result["contenders"]) == {"onnx_runtime", "native_predict"}
    assert all(figures["p50_us"] > 0 and figures["windows_per_s"] > 0 for figures in result["contenders"].values())
