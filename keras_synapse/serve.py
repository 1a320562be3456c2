"""`python -m keras_synapse.serve`: the HTTP service of `keras_synapse.serving.app` on uvicorn.

    python -m keras_synapse.serve saved_models/shared_backbone/latest [--host 127.0.0.1 --port 8000]
    python -m keras_synapse.serve saved_models/shared_backbone/latest --live-dir live/shared_backbone

The endpoints, and what bad input gets, are `keras_synapse.serving.app`'s (`--help` prints them). With
`--live-dir` the service also shows the live runner's dashboard at `/dashboard`
(`keras_synapse.trading.dashboard`), read from the `status.json` the runner writes there.
"""

import argparse
import logging
import sys

from keras_synapse.errors import ConfigError, SynapseError
from keras_synapse.serving import app as service
from keras_synapse.serving.app import DEFAULT_HOLD_BAND, ServiceLimits, create_app, require_fastapi


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m keras_synapse.serve", description=service.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a registry version: saved_models/<experiment>/<version|latest>")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on. Defaults to 127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port). Defaults to 8000")
    parser.add_argument("--backend", choices=("onnx", "onnx_int8", "keras"), default="onnx",
                        help="model runtime. Defaults to onnx")
    parser.add_argument("--intra-op-threads", type=int, default=1,
                        help="threads per model call (1 keeps latency low under concurrent requests). Defaults to 1")
    parser.add_argument("--hold-band", type=float, default=DEFAULT_HOLD_BAND,
                        help=f"scores within this of 0 read hold/skip. Defaults to {DEFAULT_HOLD_BAND}")
    defaults = ServiceLimits()
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes,
                        help=f"larger request bodies get 413. Defaults to {defaults.max_body_bytes}")
    parser.add_argument("--max-bars-per-symbol", type=int, default=defaults.max_bars_per_symbol,
                        help=f"more bars for one symbol get 422. Defaults to {defaults.max_bars_per_symbol}")
    parser.add_argument("--max-symbols", type=int, default=defaults.max_symbols,
                        help=f"more symbols in one request get 422. Defaults to {defaults.max_symbols}")
    parser.add_argument("--live-dir", default=None,
                        help="the live runner's directory: serve its dashboard at /dashboard. Defaults to none")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from keras_synapse.console import quiet_tensorflow

    quiet_tensorflow()  # TensorFlow's first import, whenever it comes, is silent
    try:
        require_fastapi()
        try:
            import uvicorn
        except ImportError:
            raise ConfigError("The HTTP service needs uvicorn: pip install -e '.[serve]'.") from None
        from keras_synapse.serving.inference import Predictor

        predictor = Predictor.from_registry(args.model, backend=args.backend, intra_op_threads=args.intra_op_threads)
        predictor.stream()  # refuses, in one line, a model the service cannot score (cross-sectional inputs)
        app = create_app(predictor, args.hold_band, ServiceLimits(args.max_body_bytes, args.max_bars_per_symbol,
                                                                  args.max_symbols))
        if args.live_dir is not None:
            from keras_synapse.trading.dashboard import add_dashboard

            add_dashboard(app, args.live_dir)
    except SynapseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    _announce_when_started(server, predictor, args.live_dir)
    server.run()
    return 0


def _announce_when_started(server, predictor, live_dir=None):
    """Prints the bound address (also with --port 0), and the dashboard's with --live-dir, once uvicorn listens."""
    original = server.startup

    async def startup(sockets=None):
        await original(sockets=sockets)
        for listener in server.servers:
            for sock in listener.sockets:
                host, port = sock.getsockname()[:2]
                print(f"serving {predictor.experiment} v{predictor.version} ({predictor.backend}) on "
                      f"http://{host}:{port}", flush=True)
                if live_dir is not None:
                    print(f"dashboard of {live_dir} on http://{host}:{port}/dashboard", flush=True)

    server.startup = startup


if __name__ == "__main__":
    sys.exit(main())
