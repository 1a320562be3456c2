"""`python -m keras_synapse.export`: re-export a registry version's model.onnx (see `keras_synapse.serving.onnx_export`).

    python -m keras_synapse.export saved_models/shared_backbone/latest [--quantize]
"""

from keras_synapse.errors import SynapseError
from keras_synapse.serving.onnx_export import DEFAULT_OPSET, MAX_QUANTIZATION_ERROR, PARITY_TOLERANCE, reexport

CLI_DESCRIPTION = f"""Re-export model.onnx of a registry version from its model.keras, through the parity gate.

    python -m keras_synapse.export saved_models/shared_backbone/latest [--quantize]

Parity is checked on the most recent windows of the training data rebuilt from
the metadata (--parity-inputs data), or on random inputs drawn from the
model's normalization statistics (--parity-inputs random); the default, auto,
uses the data when it loads and says which it used. The opset, the largest
difference and the inputs used are recorded in metadata.json under "onnx".
--quantize also writes model.int8.onnx (dynamic int8), gated: the int8 and
float models score the same windows (the parity windows and the card's probe
windows), and the largest score difference, also as a share of the float
scores' standard deviation, is printed and recorded under "onnx_int8". Past
--max-quantization-error (a share of that standard deviation; default
{MAX_QUANTIZATION_ERROR:g}: an error that large, even on every window, would
shrink the IC by at most 3%) nothing is written: the command exits with 2 and
model.onnx, model.int8.onnx and metadata.json stay as they were. model.onnx is
never replaced by the int8 model.
"""


def parse_args(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m keras_synapse.export", description=CLI_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", help="a registry version, saved_models/<experiment>/<version|latest>")
    parser.add_argument("--quantize", action="store_true", help="also write model.int8.onnx (dynamic int8), if it "
                        "passes the --max-quantization-error gate")
    parser.add_argument("--max-quantization-error", type=float, default=MAX_QUANTIZATION_ERROR,
                        help="with --quantize: the largest allowed max |int8 - float| score difference, as a share "
                             "of the float scores' standard deviation on the compared windows. Defaults to "
                             f"{MAX_QUANTIZATION_ERROR:g} (at most a 3%% smaller IC even if every score moved that "
                             "far)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset. Defaults to {DEFAULT_OPSET}")
    parser.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE,
                        help=f"largest allowed |ONNX - Keras|. Defaults to {PARITY_TOLERANCE:g}")
    parser.add_argument("--parity-inputs", choices=("auto", "data", "random"), default="auto",
                        help="windows rebuilt from the training data, random inputs from the normalization "
                             "statistics, or data when it loads (auto). Defaults to auto")
    parser.add_argument("--data", help="data spec for --parity-inputs data/auto. Defaults to the metadata's spec")
    parser.add_argument("--parity-samples", type=int, default=256, help="windows to compare on. Defaults to 256")
    return parser.parse_args(argv)


def main(argv=None):
    import logging
    import sys

    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from keras_synapse.console import quiet_tensorflow

    quiet_tensorflow()  # TensorFlow's first import, whenever it comes, is silent
    try:
        metadata = reexport(args.version, args.quantize, args.opset, args.tolerance, args.parity_inputs, args.data,
                            args.parity_samples, args.max_quantization_error)
    except SynapseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    onnx_info = metadata["onnx"]
    print(f"model.onnx: opset {onnx_info['opset']}"
          + (", recurrent layers rebuilt without cuDNN/dropout" if onnx_info.get("rebuilt_recurrent") else ""))
    print(f"parity: max |ONNX - Keras| = {onnx_info['max_abs_diff']:.3g} (tolerance {onnx_info['tolerance']:g}) "
          f"on {onnx_info['parity_inputs']}")
    if args.quantize:
        int8 = metadata["onnx_int8"]
        print(f"model.int8.onnx: {int8['size_bytes'] / 1024:.0f} KiB (float {int8['float_size_bytes'] / 1024:.0f} "
              f"KiB); score max |int8 - float| = {int8['score_max_abs_diff']:.3g}, {int8['relative_error']:.0%} of "
              f"the scores' standard deviation ({int8['score_std']:.3g}; allowed {int8['max_relative_error']:.0%}) "
              f"on {int8['parity_samples']} windows: {int8['compared_on']}")
    from keras_synapse.serving.registry import resolve

    print(f"metadata: {resolve(args.version) / 'metadata.json'} updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
