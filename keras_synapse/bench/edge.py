"""Does the edge verdict tell the truth? Checked where the truth is known.

    python -m keras_synapse.bench edge power --seeds 5     # realistic edges of every kind: found how often, how much
    python -m keras_synapse.bench edge power --symbols 10,20,50,100 --kinds ar1,nonlinear --plot curve.png
    python -m keras_synapse.bench edge planted             # one realistic planted edge: found, and how much of it
    python -m keras_synapse.bench edge null --seeds 20     # pure random walks: how often a false edge

`power` is the full check: the main experiment (`experiments/shared_backbone.py`)
and, as its reference, the shared-backbone design's original protocol
(`experiments/original_backbone.py`), unchanged, on synthetic universes of
the size a researcher has (20 symbols, 8 years of daily bars by default)
with each kind of planted edge of `keras_synapse.data.planted` at realistic
strengths (oracle IC 0.03 and 0.05), and on universes with nothing planted,
several seeds each. For each group it prints how often `edge_significant`
was true and the mean ratio of the model's test IC to the oracle's on the
same windows, for the model and for the ridge on the same flattened windows
side by side, how often the model beat that ridge on a paired interval, and
the model's minimum detectable IC over the oracle's. Several `--symbols`
make a learning curve: how much data an edge of that size needs.

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

`power`'s runs are independent, so `--executor ray` (the cluster in
`RAY_ADDRESS`, or a new one on this machine) or `--executor ray://HOST:PORT`
runs each as one Ray task (`keras_synapse.training.executors`), the training
process started on the node that runs the task:

    RAY_ADDRESS=HEAD:6379 python -m keras_synapse.bench edge power --executor ray --cpus-per-task 1

Each task trains on `--cpus-per-task` TensorFlow threads; give a local run
the same `--cpus-per-task` and the same seeds give the same figures.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from keras_synapse.errors import ConfigError

# The repository's experiment files, wherever the command is started from.
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
PLANTED_EXPERIMENT = EXPERIMENTS / "planted_signal.py"
NULL_EXPERIMENT = EXPERIMENTS / "random_walk.py"
MAIN_EXPERIMENT = EXPERIMENTS / "shared_backbone.py"
# The shared-backbone design's own model and protocol: the reference `power` trains beside the main experiment.
REFERENCE_EXPERIMENT = EXPERIMENTS / "original_backbone.py"
POWER_KINDS = ("ar1", "cross_sectional", "nonlinear", "volume")
POWER_STRENGTHS = (0.03, 0.05)
# The baseline the network is held against in `power`: a linear model on exactly its inputs.
POWER_BASELINE = "ridge_window"


def add_arguments(parser):
    parser.add_argument("check", choices=("power", "planted", "null"), help="power: detection rate and share of "
                        "the oracle for every planted kind and strength and for the null; planted: model IC vs the "
                        "oracle's; null: false edges over random-walk seeds")
    parser.add_argument("--seeds", type=int, help="universes per group. Defaults to 5 (power) or 20 (null)")
    parser.add_argument("--kinds", default=",".join(POWER_KINDS), help="power: planted kinds, comma-separated. "
                        f"Defaults to {','.join(POWER_KINDS)}")
    parser.add_argument("--strengths", default=",".join(map(str, POWER_STRENGTHS)),
                        help="power: oracle ICs, comma-separated. Defaults to 0.03,0.05")
    parser.add_argument("--symbols", default="20", help="power: symbols per universe; several, comma-separated, "
                        "make a learning curve (e.g. 10,20,50,100). Defaults to 20")
    parser.add_argument("--experiments", default=f"{MAIN_EXPERIMENT.name},{REFERENCE_EXPERIMENT.name}",
                        help="power: experiment files (in experiments/, or paths), comma-separated, each trained on "
                        "every universe; rows of the table per experiment. Defaults to the main experiment and the "
                        "shared-backbone design's original protocol, its reference")
    parser.add_argument("--bars", type=int, default=2016, help="power: daily bars per symbol. Defaults to 2016 "
                        "(8 years)")
    parser.add_argument("--plot", help="power: also draw the share of the oracle and the detection rate against "
                        "the universe size (the learning curve of `--symbols 10,20,50`) to this PNG file")
    parser.add_argument("--results", help="power: also write every run's figures to this CSV file")
    parser.add_argument("--json", dest="json_path", metavar="PATH", help="power: also write every run's figures, "
                        "where and how long each ran, and the executor's record to this JSON file")
    parser.add_argument("--executor", default="local", help="power: where the runs go: 'local' (one after another "
                        "here), 'ray' (Ray tasks on the cluster in RAY_ADDRESS, or a new one on this machine) or "
                        "'ray://HOST:PORT'. Defaults to local")
    parser.add_argument("--cpus-per-task", type=int, help="power: CPUs (TensorFlow intra-op threads, one inter-op "
                        "thread) per run; give local and Ray the same value for the same figures. Defaults to "
                        "TensorFlow's own count locally and 1 on Ray")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides passed to every training run")


def thread_environment(cpus_per_task):
    """The environment of a training process with `cpus_per_task` intra-op threads and one inter-op thread.

    TensorFlow reads these variables when it starts, so the count holds in
    the child whatever the parent has started (`None`: the parent's own
    environment, TensorFlow's default count).
    """
    if cpus_per_task is None:
        return None
    threads = str(int(cpus_per_task))
    return {**os.environ, "TF_NUM_INTRAOP_THREADS": threads, "OMP_NUM_THREADS": threads,
            "TF_NUM_INTEROP_THREADS": "1"}


def train_run(experiment, output, extra_arguments=(), cpus_per_task=None):
    """Runs `python -m keras_synapse.train` in a subprocess; returns the run directory.

    Args:
        experiment: the experiment file.
        output: directory for the run's `runs/` and `saved_models/`.
        extra_arguments: more command-line arguments. Defaults to `()`.
        cpus_per_task: TensorFlow's intra-op threads in the run (see
            `thread_environment`), or `None` for its default. Defaults to
            `None`.

    Raises:
        RuntimeError: when the run fails, with the end of its output.
    """
    output = Path(output)
    command = [sys.executable, "-m", "keras_synapse.train", str(experiment), "--output", str(output / "runs"),
               "--registry", str(output / "saved_models"), *extra_arguments]
    result = subprocess.run(command, capture_output=True, text=True, env=thread_environment(cpus_per_task))
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return max((output / "runs").glob("*/*/metrics.json"), key=lambda path: path.stat().st_mtime).parent


def oracle_comparison(run_dir):
    """The run's primary statistic beside the oracle's on the same test windows.

    Args:
        run_dir: a run trained on `--data synthetic:...` (its `config.json`
            names the universe, which is regenerated to read the oracle).

    Returns:
        A dict with `statistic` (the run's primary statistic, e.g.
        `per_date_rank_ic`), `model_ic` (its value, as in `metrics.json`),
        `oracle_ic` (the same statistic of the oracle's expected return
        against the same windows' realized forward returns), `ratio`,
        `edge_significant`, `oracle_edge` (whether the oracle's own interval
        on these windows lies above zero: the most any model could have
        shown) and `oracle_minimum_detectable_ic` (the oracle's own minimum
        detectable value on these windows).
    """
    from keras_synapse.data import parse_synthetic_options
    from keras_synapse.data.synthetic import generate_universe
    from keras_synapse.evaluation.intervals import bootstrap_metrics

    run_dir = Path(run_dir)
    data = json.loads((run_dir / "config.json").read_text())["data"]
    source, _, options = data.partition(":")
    if source != "synthetic":
        raise ConfigError(f"The oracle exists only for `synthetic:` data. Received: data={data!r} in {run_dir}")
    universe = generate_universe(**parse_synthetic_options(options))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    predictions = pd.read_csv(run_dir / "test_predictions.csv")
    predictions["timestamp"] = pd.to_datetime(predictions["timestamp"], utc=True)
    oracle = pd.concat(universe.expected_return, names=["symbol", "timestamp"]).rename("oracle")
    predictions = predictions.join(oracle, on=["symbol", "timestamp"])
    if predictions["oracle"].isna().any():
        raise ValueError(f"Test windows of {run_dir} are missing from the regenerated universe.")
    primary = metrics["summary"]["primary"]
    statistic, model_ic = primary["statistic"], primary["value"]
    # Even the oracle's figure is a finite sample's: would this run's interval have found it?
    config = json.loads((run_dir / "config.json").read_text())
    oracle = bootstrap_metrics(predictions.assign(reference=predictions["forward_return"]), ["oracle"],
                               min_block_length=config["horizon"], num_resamples=500, seed=config["seed"])
    oracle_ic = oracle.point["oracle"][statistic]
    return {"statistic": statistic, "model_ic": model_ic, "oracle_ic": oracle_ic, "ratio": model_ic / oracle_ic,
            "edge_significant": metrics["summary"]["edge_significant"],
            "oracle_edge": bool(oracle.interval("oracle", statistic)[0] > 0),
            "oracle_minimum_detectable_ic": oracle.minimum_detectable("oracle", statistic)}


def planted_data(kind, oracle_ic, seed, num_symbols, num_bars):
    """The `--data synthetic:` spec of one power-check universe (`kind=None` for the null)."""
    planted = "" if kind is None else f",signal={kind},oracle_ic={oracle_ic}"
    return f"synthetic:num_symbols={num_symbols},num_bars={num_bars},seed={seed}{planted}"


def power_run(kind, oracle_ic, seed, output, num_symbols=20, num_bars=2016, experiment=MAIN_EXPERIMENT,
              extra_arguments=(), cpus_per_task=None):
    """Trains `experiment` on one planted (or null) universe; returns the run's figures as a dict.

    The model and `POWER_BASELINE` are each scored, in the run's primary
    statistic, as a share of the oracle's on the same test windows (`None`
    for the null, where there is no oracle to share).
    """
    arguments = ["--data", planted_data(kind, oracle_ic, seed, num_symbols, num_bars), "--seed", str(seed),
                 *extra_arguments]
    run_dir = train_run(experiment, output, arguments, cpus_per_task)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    summary, baseline = metrics["summary"], metrics["baselines"][POWER_BASELINE]["summary"]
    statistic = summary["primary"]["statistic"]
    row = {"experiment": Path(experiment).stem, "symbols": num_symbols, "kind": kind or "null",
           "oracle_ic": oracle_ic if kind else 0.0, "seed": seed, "statistic": statistic,
           "model_ic": summary["primary"]["value"], "model_edge": summary["edge_significant"],
           "baseline_ic": baseline[statistic]["pooled"], "baseline_edge": baseline["edge_significant"],
           "beats_baseline": summary["versus_baselines"][POWER_BASELINE]["beats"],
           "minimum_detectable_ic": summary["minimum_detectable_ic"], "realized_oracle_ic": None,
           "oracle_edge": None, "model_ratio": None, "baseline_ratio": None, "oracle_minimum_detectable_ic": None}
    if kind is not None:
        comparison = oracle_comparison(run_dir)
        oracle = comparison["oracle_ic"]
        row.update(realized_oracle_ic=oracle, oracle_edge=comparison["oracle_edge"],
                   model_ratio=row["model_ic"] / oracle, baseline_ratio=row["baseline_ic"] / oracle,
                   oracle_minimum_detectable_ic=comparison["oracle_minimum_detectable_ic"])
    return row


def experiment_source(path):
    """An experiment file as `{"name", "text"}`, shipped to the tasks so every node trains the driver's file.

    Only a file without sibling imports travels this way (the main and the reference experiments import only
    `keras_synapse`)."""
    return {"name": Path(path).name, "text": Path(path).read_text()}


def power_task(experiment, kind, oracle_ic, seed, num_symbols, num_bars, extra_arguments, cpus_per_task):
    """One power run as an executor task: the run's figures, the node it ran on and its seconds.

    Runs wherever the executor puts it (this process, or a Ray worker on any
    node): the experiment arrives as `experiment_source`'s dict, the
    universe is generated from its spec by the training process itself, and
    only the figures come back.

    Args:
        experiment: `experiment_source(path)`.
        kind, oracle_ic, seed, num_symbols, num_bars: the universe (`kind`
            `None` for the null) and the weights' seed, as `power_run`'s.
        extra_arguments: more `keras_synapse.train` arguments (`--set=...`).
        cpus_per_task: TensorFlow's intra-op threads in the run, or `None`
            for its default.

    Returns:
        A dict with `row` (`power_run`'s), `node` (the Ray node id, or the
        host name outside Ray) and `seconds`.
    """
    import time

    started = time.time()
    with tempfile.TemporaryDirectory(prefix="keras_synapse_power_") as output:
        path = Path(output) / experiment["name"]
        path.write_text(experiment["text"])
        row = power_run(kind, oracle_ic, seed, Path(output) / "run", num_symbols, num_bars, experiment=path,
                        extra_arguments=list(extra_arguments), cpus_per_task=cpus_per_task)
    return {"row": row, "node": _node_name(), "seconds": time.time() - started}


def _node_name():
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return ray.get_runtime_context().get_node_id()
    return socket.gethostname()


def power_table(rows):
    """The `power` summary: one line per (experiment, symbols, kind, strength) group."""
    frame = pd.DataFrame(rows)
    for column, default in (("experiment", MAIN_EXPERIMENT.stem), ("symbols", 0),
                            ("oracle_minimum_detectable_ic", None)):
        frame[column] = frame[column] if column in frame else default
    statistic = frame["statistic"].iloc[0] if "statistic" in frame else "ic"
    lines = [f"(realized, MDE and the ratios in each run's primary statistic, {statistic}; oracle IC: the planted "
             "strength; MDE x: the model's minimum detectable value over the oracle's on the same windows, median)",
             f"{'experiment':<20}{'symbols':>8} {'kind':<16}{'oracle IC':>10}{'runs':>6}{'realized':>10}{'MDE':>8}"
             f"{'MDE x':>7}{'oracle: found':>15}   {'model: found':>13}{'IC/oracle':>10}   "
             f"{POWER_BASELINE + ': found':>20}{'IC/oracle':>10}   {'model beats it':>14}"]
    groups = frame.groupby(["experiment", "symbols", "kind", "oracle_ic"], sort=False)
    for (experiment, symbols, kind, strength), group in groups:
        def ratio(column):
            values = group[column].dropna()
            return f"{values.mean():>9.0%}" if len(values) else f"{'-':>9}"

        def count(column):
            values = group[column].dropna()
            return f"{int(values.sum())}/{len(values)}" if len(values) else "-"

        realized = group["realized_oracle_ic"].dropna()
        detectable = (group["minimum_detectable_ic"] / group["oracle_minimum_detectable_ic"]).dropna()
        lines.append(f"{experiment:<20}{symbols:>8} {kind:<16}{strength:>10.3f}{len(group):>6}"
                     f"{(f'{realized.mean():.4f}' if len(realized) else '-'):>10}"
                     f"{group['minimum_detectable_ic'].mean():>8.4f}"
                     f"{(f'{detectable.median():.2f}' if len(detectable) else '-'):>7}"
                     f"{count('oracle_edge'):>15}   {count('model_edge'):>13}{ratio('model_ratio'):>10}   "
                     f"{count('baseline_edge'):>20}{ratio('baseline_ratio'):>10}   {count('beats_baseline'):>14}")
    return "\n".join(lines)


def learning_curve_plot(rows, path):
    """Mean share of the oracle (with its standard error over seeds) and detection rate against universe size.

    One line per experiment, planted kind and strength; the null has no
    oracle and is left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame(rows)
    frame = frame[frame["kind"] != "null"]
    figure, (share_axis, found_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (experiment, kind, strength), group in frame.groupby(["experiment", "kind", "oracle_ic"], sort=False):
        by_size = group.astype({"model_edge": float}).groupby("symbols")
        shares = by_size["model_ratio"]
        errors = shares.std(ddof=1) / np.sqrt(shares.count())
        style = "-" if experiment == MAIN_EXPERIMENT.stem else ":"
        label = f"{experiment}: {kind} at {strength:g}"
        share_axis.errorbar(shares.mean().index, shares.mean(), yerr=errors.fillna(0), fmt=style + "o", capsize=3,
                            label=label)
        found_axis.plot(by_size["model_edge"].mean().index, by_size["model_edge"].mean(), style + "o", label=label)
    share_axis.axhline(0, color="grey", linewidth=0.8)
    share_axis.set(xscale="log", xlabel="symbols (daily bars each: as run)", ylabel="model IC / oracle IC",
                   title="Share of the knowable edge recovered (mean ± SE over seeds)")
    found_axis.set(xscale="log", xlabel="symbols", ylabel="share of runs whose interval clears zero",
                   ylim=(-0.05, 1.05), title="Edge found")
    found_axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def power_cells(args):
    """The `power` runs in order: `(experiment, symbols, kind, strength, seed)`, the null first for each size."""
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    strengths = [float(value) for value in args.strengths.split(",") if value.strip()]
    groups = [(None, 0.0)] + [(kind, strength) for kind in kinds for strength in strengths]
    return [(experiment, symbols, kind, strength, seed) for experiment in power_experiments(args)
            for symbols in universe_sizes(args) for kind, strength in groups for seed in range(args.seeds or 5)]


def universe_sizes(args):
    """`--symbols` as a list of sizes.

    Raises:
        ConfigError: for anything but whole numbers >= 2.
    """
    try:
        sizes = [int(part) for part in str(args.symbols).split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 2:
        raise ConfigError(f"`--symbols` expects symbol counts >= 2, comma-separated (e.g. 10,20,50). "
                          f"Received: {args.symbols!r}")
    return sizes


def power_experiments(args):
    """`--experiments` as paths: a bare name is a file in the repository's `experiments/`.

    Raises:
        ConfigError: for a file that does not exist.
    """
    paths = [Path(name.strip()) if Path(name.strip()).is_file() else EXPERIMENTS / name.strip()
             for name in args.experiments.split(",") if name.strip()]
    missing = [str(path) for path in paths if not path.is_file()]
    if not paths or missing:
        raise ConfigError(f"`--experiments` names experiment files (in {EXPERIMENTS} or paths). Received: "
                          f"{args.experiments!r}" + (f"; not found: {', '.join(missing)}" if missing else ""))
    return paths


def bench_power(args):
    """Runs the power check and prints each run, then the table.

    Locally each run is printed as it ends; on Ray all runs are submitted at
    once and printed in order when the last ends, with the node each ran on
    and its own seconds. The table is the same either way.

    Returns:
        A dict with `rows` (each run's figures, in order), `runs` (node and
        seconds of each), `executor` (the executor's record) and `seconds`.
    """
    import time

    from keras_synapse.training.executors import make_executor

    started = time.time()
    cells = power_cells(args)
    executor = make_executor(args.executor, args.cpus_per_task)
    sources = {path: executor.share(experiment_source(path)) for path in power_experiments(args)}
    extra = [f"--set={pair}" for pair in args.overrides]
    arguments = [(sources[experiment], kind, strength, seed, symbols, args.bars, extra, executor.cpus_per_task)
                 for experiment, symbols, kind, strength, seed in cells]
    rows, runs = [], []

    def report(outcome, strength, seed):
        row = outcome["row"]
        rows.append(row)
        runs.append({"node": outcome["node"], "seconds": outcome["seconds"]})
        ratio = "" if row["model_ratio"] is None else (f" ({row['model_ratio']:.0%} of the oracle's "
                                                       f"{row['realized_oracle_ic']:+.4f})")
        where = (f"{outcome['seconds']:.0f} s on node {outcome['node'][:12]}" if executor.remote
                 else f"{time.time() - started:.0f} s")
        print(f"{row['experiment']} {row['symbols']} symbols {row['kind']:<16}{strength:.3f} seed {seed}: model IC "
              f"{row['model_ic']:+.4f}{ratio} edge {row['model_edge']}; {POWER_BASELINE} IC {row['baseline_ic']:+.4f} "
              f"edge {row['baseline_edge']}; model beats it {row['beats_baseline']}; MDE "
              f"{row['minimum_detectable_ic']:.4f} [{where}]", flush=True)
        if args.results:
            pd.DataFrame(rows).to_csv(args.results, index=False)

    if executor.remote:
        print(f"{len(cells)} runs submitted to Ray at {executor.address}, {executor.cpus_per_task} CPU(s) each",
              flush=True)
        outcomes = executor.map(power_task, arguments)
    else:
        # One at a time, so each run is printed as it ends.
        outcomes = (executor.map(power_task, [task])[0] for task in arguments)
    for outcome, (_, _, kind, strength, seed) in zip(outcomes, cells):
        report(outcome, strength, seed)
    seconds = time.time() - started
    record = executor.record()
    executor.close()
    print()
    print(power_table(rows))
    names = ", ".join(path.name for path in sources)
    print(f"\n{len(rows)} runs of {names} on {args.symbols} symbols x {args.bars} bars in {seconds / 60:.0f} min")
    if args.plot:
        learning_curve_plot(rows, args.plot)
        print(f"learning curve: {args.plot}")
    if executor.remote:
        nodes = ", ".join(f"{node[:12]} {count}" for node, count in record["nodes"].items())
        print(f"executor: ray at {record['address']}, {record['tasks']} tasks of {record['cpus_per_task']} CPU(s); "
              f"tasks per node: {nodes}")
    result = {"rows": rows, "runs": runs, "executor": record, "seconds": seconds}
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


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
    primary = summary["primary"]
    return {"seed": seed, "statistic": primary["label"], "ic": primary["value"], "ic_ci_low": primary["ci_low"],
            "pooled_ic": summary["ic"]["pooled"], "pooled_ic_ci_low": summary["ic"]["ci_low"],
            "edge_significant": summary["edge_significant"]}


def bench_edge(args):
    """Runs `args.check`.

    Raises:
        ConfigError: for `--executor` other than `local` with `planted` or
            `null` (their runs are still in this process, one after another).
    """
    if args.check == "power":
        return bench_power(args)
    if args.executor != "local" or args.json_path:
        raise ConfigError(f"`--executor` and `--json` apply to `bench edge power` only. Received: "
                          f"check={args.check!r}, executor={args.executor!r}, json={args.json_path!r}")
    with tempfile.TemporaryDirectory(prefix="keras_synapse_edge_") as output:
        if args.check == "planted":
            run_dir = train_run(PLANTED_EXPERIMENT, output, [f"--set={pair}" for pair in args.overrides])
            result = oracle_comparison(run_dir)
            metrics = json.loads((run_dir / "metrics.json").read_text())
            statistic = result["statistic"]
            print(f"{'':28s}{statistic:>20s}{'of the oracle':>15s}")
            print(f"{'oracle (knows the edge)':28s}{result['oracle_ic']:>20.4f}")
            print(f"{'shared backbone':28s}{result['model_ic']:>20.4f}{result['ratio']:>15.0%}")
            for name, baseline in metrics["baselines"].items():
                value = baseline["summary"][statistic]["pooled"] if "summary" in baseline else None
                if value is not None and np.isfinite(value):
                    print(f"{'baseline ' + name:28s}{value:>20.4f}{value / result['oracle_ic']:>15.0%}")
            print(f"edge_significant: {result['edge_significant']}; minimum detectable "
                  f"{metrics['summary']['minimum_detectable_ic']:.4f}\n{metrics['summary']['verdict']}")
            return
        rows = []
        for seed in range(args.seeds or 20):
            rows.append(null_run(seed, output, args.overrides))
            row = rows[-1]
            print(f"seed {seed:3d}: {row['statistic']} {row['ic']:+.4f}  CI low {row['ic_ci_low']:+.4f}  (secondary: "
                  f"pooled IC {row['pooled_ic']:+.4f}, CI low {row['pooled_ic_ci_low']:+.4f})  edge_significant "
                  f"{row['edge_significant']}", flush=True)
        false_edges = sum(row["edge_significant"] for row in rows)
        print(f"false edges: {false_edges} of {len(rows)} random-walk seeds (goal: at most {max(len(rows) // 20, 1)}); "
              f"mean {rows[0]['statistic']} {np.mean([row['ic'] for row in rows]):+.4f}, by the primary statistic")
