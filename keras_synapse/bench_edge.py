"""Does the edge verdict tell the truth? Checked where the truth is known.

    python -m keras_synapse.bench edge planted             # a planted edge: found, and how much of it
    python -m keras_synapse.bench edge null --seeds 20     # pure random walks: how often a false edge

`planted` trains `experiments/planted_signal.py` (a synthetic universe whose
volume surprises carry a drift of known size) and prints the model's test IC
beside the oracle's on the very same test windows: the oracle knows the
planted drift exactly, so no model can beat it on average, and the ratio says
how much of the knowable edge the model recovered.

`null` trains `experiments/random_walk.py` on one synthetic universe per seed
with nothing to find (driftless random walks) and counts the runs whose
`edge_significant` is true: at a 95% level per interval, a run claims an edge
by chance in at most a few percent of seeds, so 19 or more of 20 must say no.
Each run is the full command line (folds, baselines, bootstrap, refit,
export), in its own process.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

# The repository's experiment files, wherever the command is started from.
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
PLANTED_EXPERIMENT = EXPERIMENTS / "planted_signal.py"
NULL_EXPERIMENT = EXPERIMENTS / "random_walk.py"


def add_arguments(parser):
    parser.add_argument("check", choices=("planted", "null"), help="planted: model IC vs the oracle's; "
                        "null: false edges over random-walk seeds")
    parser.add_argument("--seeds", type=int, default=20, help="null: how many random-walk universes. Defaults to 20")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides passed to every training run")


def train_run(experiment, output, extra_arguments=()):
    """Runs `python -m keras_synapse.train` in a subprocess; returns the run directory.

    Raises:
        RuntimeError: when the run fails, with the end of its output.
    """
    output = Path(output)
    command = [sys.executable, "-m", "keras_synapse.train", str(experiment), "--output", str(output / "runs"),
               "--registry", str(output / "saved_models"), *extra_arguments]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return max((output / "runs").glob("*/*/metrics.json"), key=lambda path: path.stat().st_mtime).parent


def oracle_comparison(run_dir):
    """The run's test IC beside the oracle's IC on the same test windows.

    Args:
        run_dir: a run trained on `--data synthetic:...` (its `config.json`
            names the universe, which is regenerated to read the oracle).

    Returns:
        A dict with `model_ic` (pooled test IC, as in `metrics.json`),
        `oracle_ic` (the oracle's expected return correlated with the same
        windows' realized forward returns), `ratio` and `edge_significant`.
    """
    from keras_synapse.data import parse_synthetic_options
    from keras_synapse.data.synthetic import generate_universe
    from keras_synapse.evaluation import regression_metrics

    run_dir = Path(run_dir)
    data = json.loads((run_dir / "config.json").read_text())["data"]
    source, _, options = data.partition(":")
    if source != "synthetic":
        raise ValueError(f"The oracle exists only for `synthetic:` data. Received: data={data!r} in {run_dir}")
    universe = generate_universe(**parse_synthetic_options(options))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    predictions = pd.read_csv(run_dir / "test_predictions.csv")
    predictions["timestamp"] = pd.to_datetime(predictions["timestamp"], utc=True)
    oracle = pd.concat(universe.expected_return, names=["symbol", "timestamp"]).rename("oracle")
    predictions = predictions.join(oracle, on=["symbol", "timestamp"])
    if predictions["oracle"].isna().any():
        raise ValueError(f"Test windows of {run_dir} are missing from the regenerated universe.")
    oracle_ic = regression_metrics(predictions["oracle"], predictions["target"], predictions["forward_return"])["ic"]
    model_ic = metrics["summary"]["ic"]["pooled"]
    return {"model_ic": model_ic, "oracle_ic": oracle_ic, "ratio": model_ic / oracle_ic,
            "edge_significant": metrics["summary"]["edge_significant"]}


def null_run(seed, output, overrides=(), quick=False):
    """Trains the random-walk experiment on universe `seed`; returns its summary line as a dict."""
    from keras_synapse.config import load_experiment
    from keras_synapse.data import parse_synthetic_options

    # The experiment's universe, drawn with this seed; the weights start from it too.
    options = parse_synthetic_options(load_experiment(NULL_EXPERIMENT, quick).data.partition(":")[2]) | {"seed": seed}
    data = "synthetic:" + ",".join(f"{key}={value}" for key, value in options.items())
    arguments = ["--data", data, "--seed", str(seed), *(f"--set={pair}" for pair in overrides)]
    if quick:
        arguments.append("--quick")
    run_dir = train_run(NULL_EXPERIMENT, output, arguments)
    summary = json.loads((run_dir / "metrics.json").read_text())["summary"]
    return {"seed": seed, "ic": summary["ic"]["pooled"], "ic_ci_low": summary["ic"]["ci_low"],
            "excess_accuracy_ci_low": summary["excess_directional_accuracy"]["ci_low"],
            "edge_significant": summary["edge_significant"]}


def bench_edge(args):
    with tempfile.TemporaryDirectory(prefix="keras_synapse_edge_") as output:
        if args.check == "planted":
            run_dir = train_run(PLANTED_EXPERIMENT, output, [f"--set={pair}" for pair in args.overrides])
            result = oracle_comparison(run_dir)
            print(f"{'':24s}{'test IC':>10s}")
            print(f"{'oracle (knows the drift)':24s}{result['oracle_ic']:>10.4f}")
            print(f"{'shared backbone':24s}{result['model_ic']:>10.4f}")
            print(f"model / oracle: {result['ratio']:.1%} (goal >= 80%); "
                  f"edge_significant: {result['edge_significant']}")
            return
        rows = []
        for seed in range(args.seeds):
            rows.append(null_run(seed, output, args.overrides))
            row = rows[-1]
            print(f"seed {seed:3d}: IC {row['ic']:+.4f}  IC CI low {row['ic_ci_low']:+.4f}  excess accuracy CI low "
                  f"{row['excess_accuracy_ci_low']:+.4f}  edge_significant {row['edge_significant']}", flush=True)
        false_edges = sum(row["edge_significant"] for row in rows)
        print(f"false edges: {false_edges} of {len(rows)} random-walk seeds (goal: at most {len(rows) // 20}); "
              f"mean IC {np.mean([row['ic'] for row in rows]):+.4f}")
