"""Retraining with champion/challenger: train a challenger, compare it with the incumbent out of sample, promote or keep.

    python -m keras_synapse.retrain experiments/shared_backbone.py --data ./bars/ --holdout-bars 250

1. **Due?** `keras_synapse.serving.retrain_triggers`: the schedule, feature
   drift of the newest bars against the incumbent's training rows, or live
   degradation of realized predictions (`--force` skips the checks).
2. **Holdout.** The newest `holdout_bars` timestamps of the data are held out.
   The incumbent (`saved_models/<experiment>/latest`) must have been trained
   on data that end before them (its model card's `data.end`), or its score
   there would be in-sample: such a retrain is refused, naming how many bars
   could be held out instead.
3. **Challenger.** The bars before the holdout are written to the retrain's
   report directory and trained on by `python -m keras_synapse.train
   --no-promote` (the experiment's own pipeline, folds and registration), so
   the new version exists but `latest` does not move.
4. **Compare.** Both versions score the bars with
   `keras_synapse.serving.inference.Predictor`; on the held-out rows whose
   forward return (the incumbent's label horizon and execution lag) is known,
   `keras_synapse.evaluation.champion_challenger.compare_on_holdout` decides.
5. **Promote or keep.** A challenger whose paired IC difference has a lower
   95% bound above zero becomes `latest` (`set_latest`, with the decision in
   `promotions.jsonl`); otherwise `latest` stays. Either way the decision is
   written to `runs/<experiment>/retrain-<time>-<pid>/decision.json`.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from keras_synapse.errors import DataError, SynapseError


def split_holdout(panel, holdout_bars):
    """The panel's bars before its newest `holdout_bars` timestamps, and the first held-out timestamp.

    Args:
        panel: a `Panel`.
        holdout_bars: how many of the newest timestamps (of all symbols
            together) to hold out.

    Returns:
        `(training_panel, holdout_start)`.

    Raises:
        DataError: when the panel has too few timestamps to hold that many out.
    """
    calendar = _calendar(panel)
    if not 1 <= holdout_bars < len(calendar):
        raise DataError(f"`holdout_bars` must be in [1, {len(calendar) - 1}] for data of {len(calendar)} timestamps. "
                        f"Received: holdout_bars={holdout_bars}")
    return panel.truncate(calendar[-holdout_bars - 1]), calendar[-holdout_bars]


def _calendar(panel):
    """Every timestamp of any symbol, sorted (UTC)."""
    calendar = pd.DatetimeIndex([])
    for frame in panel.values():
        calendar = calendar.union(frame.index) if len(calendar) else frame.index
    return calendar.sort_values()


def training_end(card, version_dir):
    """The last bar a registry version was trained on (its card's `data.end`), a UTC `Timestamp`.

    Raises:
        SynapseError: when the card records none (the overlap with a holdout
            could not be ruled out).
    """
    end = card.get("data", {}).get("end") if isinstance(card.get("data"), dict) else None
    if not end:
        raise SynapseError(f"{version_dir}'s model card records no training data end (`data.end`): whether its "
                           "training data overlap the holdout cannot be checked. Re-register it with a current "
                           "keras_synapse.")
    return pd.Timestamp(end).tz_convert("UTC") if pd.Timestamp(end).tzinfo else pd.Timestamp(end, tz="UTC")


def check_out_of_sample(panel, holdout_start, end, who):
    """Refuses a holdout that starts at or before `end`, the last bar `who` was trained on.

    Raises:
        DataError: naming the overlap and the most bars that could be held out.
    """
    if end < holdout_start:
        return
    after = int((_calendar(panel) > end).sum())
    raise DataError(f"{who} was trained on data up to {end}, which overlaps the holdout starting {holdout_start}: "
                    f"its holdout IC would be in-sample. The data hold {after} bar(s) after its training end; hold "
                    f"out at most that many (--holdout-bars {after}), or retrain on data with newer bars.")


def holdout_rows(panel, incumbent_scores, challenger_scores, holdout_start, horizon, execution_lag=0):
    """Held-out rows with both models' scores and the realized forward return, for `compare_on_holdout`.

    Args:
        panel: the bars both models scored.
        incumbent_scores: `Predictor.predict_panel` output of the incumbent.
        challenger_scores: the same of the challenger.
        holdout_start: the first held-out timestamp.
        horizon: the label horizon in bars.
        execution_lag: bars from the signal to the trade. Defaults to `0`.

    Returns:
        A frame with `symbol`, `timestamp`, `forward_return`, `incumbent`,
        `challenger`: the rows at or after `holdout_start` that both models
        scored (the last `horizon + execution_lag` bars of each symbol have
        a NaN forward return).
    """
    from keras_synapse.labels.common import entry_return

    returns = pd.concat({symbol: entry_return(frame, horizon, execution_lag) for symbol, frame in panel.items()},
                        names=["symbol", "timestamp"]).rename("forward_return")
    scores = pd.concat([incumbent_scores["score"].rename("incumbent"), challenger_scores["score"].rename("challenger")],
                       axis=1, join="inner")
    rows = scores.join(returns, how="left").reset_index()
    return rows.loc[rows["timestamp"] >= holdout_start, ["symbol", "timestamp", "forward_return", "incumbent",
                                                         "challenger"]].reset_index(drop=True)


def train_challenger(experiment, bars_path, registry, output, log_path, quick=False, overrides=()):
    """Runs `python -m keras_synapse.train EXPERIMENT --data BARS --no-promote` and returns the new version's directory.

    The run's output goes to `log_path`.

    Raises:
        SynapseError: when the training run fails (its last error line is
            quoted, the log named).
    """
    command = [sys.executable, "-m", "keras_synapse.train", str(experiment), "--data", str(bars_path), "--registry",
               str(registry), "--output", str(output), "--no-promote", *(["--quick"] if quick else []),
               *(argument for pair in overrides for argument in ("--set", pair))]
    with open(log_path, "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    text = Path(log_path).read_text()
    if result.returncode != 0:
        lines = [line for line in text.splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
        raise SynapseError(f"training the challenger failed (exit status {result.returncode}): {last.strip()} "
                           f"(log: {log_path})")
    run_dir = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("run directory:")),
                   None)
    record = Path(run_dir) / "registered.json" if run_dir else None
    if record is None or not record.is_file():
        raise SynapseError(f"the challenger's training run registered no model (log: {log_path}).")
    return Path(json.loads(record.read_text())["version_dir"]), Path(run_dir)


def retrain(experiment, *, data=None, registry="saved_models", output="runs", holdout_bars=250, force=False,
            every="7d", min_drifted_features="25%", realized=None, min_trades=100, min_ic=0.0,
            degradation_window=250, quick=False, overrides=(), now=None, seed=0, echo=print):
    """Checks whether a retrain is due and, if so, trains, compares and promotes or keeps (see the module docstring).

    Args:
        experiment: the experiment file.
        data: a `--data` spec; `None` takes the experiment's. Defaults to
            `None`.
        registry: the registry root. Defaults to `"saved_models"`.
        output: the run directory root (the challenger's run and the retrain
            report). Defaults to `"runs"`.
        holdout_bars: the newest timestamps held out. Defaults to `250`.
        force: retrain whatever the checks say. Defaults to `False`.
        every: the schedule's period. Defaults to `"7d"`.
        min_drifted_features: how many features must drift (a count or a
            share such as `"25%"`). Defaults to `"25%"`.
        realized: a frame of realized live predictions (see
            `retrain_triggers.degradation_check`), or `None` to skip that
            check. Defaults to `None`.
        min_trades: the fewest realized predictions to judge on. Defaults to
            `100`.
        min_ic: the live IC below which the incumbent counts as degraded.
            Defaults to `0.0`.
        degradation_window: the most recent realized predictions judged.
            Defaults to `250`.
        quick: the experiment's smoke-sized config (and `sample`'s small
            panel). Defaults to `False`.
        overrides: `key=value` config overrides for the challenger. Defaults
            to `()`.
        now: the current time for the schedule (tests). Defaults to `None`.
        seed: the bootstrap seed. Defaults to `0`.
        echo: where progress lines go. Defaults to `print`.

    Returns:
        A JSON-ready dict: `due` (bool) and `triggers`, and for a retrain
        also `incumbent`, `challenger` (version numbers), `holdout`,
        `decision` (`ChallengerDecision.to_dict()`), `promoted`, `latest` and
        `report` (the decision file).

    Raises:
        SynapseError: no incumbent, an incumbent trained into the holdout, a
            failed training run, or held-out rows too few to compare.
    """
    from keras_synapse.config import apply_overrides, load_experiment
    from keras_synapse.data import load_panel
    from keras_synapse.evaluation.champion_challenger import compare_on_holdout
    from keras_synapse.runs import write_json
    from keras_synapse.serving import retrain_triggers as triggers
    from keras_synapse.serving.inference import Predictor
    from keras_synapse.serving.registry import LATEST, latest_version, read_metadata, set_latest

    config = apply_overrides(load_experiment(experiment, quick=quick), list(overrides))
    experiment_dir = Path(registry) / config.name
    incumbent_version = latest_version(experiment_dir)
    if incumbent_version is None:
        raise SynapseError(f"{experiment_dir / LATEST} does not exist: there is no incumbent to challenge. Train one "
                           f"first: python -m keras_synapse.train {experiment} --registry {registry}")
    incumbent_dir = experiment_dir / str(incumbent_version)
    card = read_metadata(incumbent_dir)
    panel = load_panel(data or config.data, quick=quick, sample_signal_strength=config.sample_signal_strength)
    training_panel, holdout_start = split_holdout(panel, holdout_bars)
    echo(f"incumbent: {config.name} v{incumbent_version}, trained on data up to {card.get('data', {}).get('end')}")
    echo(f"data: {panel!r}; holdout: the last {holdout_bars} bars, from {holdout_start}")

    # --- Due? ------------------------------------------------------------------
    incumbent = Predictor.from_registry(incumbent_dir)
    fired = _checks(triggers, card, incumbent_dir, incumbent, panel, holdout_start, force, every,
                    min_drifted_features, realized, min_trades, min_ic, degradation_window, now)
    for trigger in fired:
        echo(f"{'FIRED ' if trigger.fired else 'quiet '}{trigger.summary}")
    due = force or any(trigger.fired for trigger in fired)
    outcome = {"due": bool(due), "triggers": [trigger.to_dict() for trigger in fired]}
    if not due:
        echo("not due: no trigger fired; latest stays at version "
             f"{incumbent_version} (--force retrains anyway)")
        return outcome

    # --- Holdout out of sample for both ----------------------------------------------
    check_out_of_sample(panel, holdout_start, training_end(card, incumbent_dir),
                        f"the incumbent {config.name} v{incumbent_version}")
    label = card["label"]
    horizon, lag = int(label["horizon"]), int(label.get("execution_lag", 0) or 0)
    report_dir = Path(output) / config.name / f"retrain-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.getpid()}"
    report_dir.mkdir(parents=True)
    bars_path = report_dir / "training_bars.parquet"
    training_panel.to_long().to_parquet(bars_path, index=False)

    # --- Challenger -------------------------------------------------------------------
    echo(f"challenger: training on {training_panel!r} (log: {report_dir / 'train.log'})")
    challenger_dir, run_dir = train_challenger(experiment, bars_path, registry, output, report_dir / "train.log",
                                               quick, overrides)
    challenger_card = read_metadata(challenger_dir)
    check_out_of_sample(panel, holdout_start, training_end(challenger_card, challenger_dir),
                        f"the challenger {challenger_dir}")
    echo(f"challenger: registered {challenger_dir} without moving latest (run {run_dir})")

    # --- Compare on the held-out rows ---------------------------------------------------
    challenger = Predictor.from_registry(challenger_dir)
    rows = holdout_rows(panel, _scores(incumbent, panel), _scores(challenger, panel), holdout_start, horizon, lag)
    decision = compare_on_holdout(rows, horizon=horizon, seed=seed)

    # --- Promote or keep ----------------------------------------------------------------
    challenger_version = int(challenger_dir.name)
    report = {**outcome, "experiment": config.name, "incumbent": incumbent_version, "challenger": challenger_version,
              "challenger_run": str(run_dir), "training_bars": str(bars_path),
              "holdout": {"start": str(holdout_start), "end": str(panel.end), "bars": holdout_bars,
                          "horizon": horizon, "execution_lag": lag},
              "decision": decision.to_dict(), "promoted": decision.promote, "report": str(report_dir / "decision.json")}
    if decision.promote:
        details = {"decision": report["decision"], "report": report["report"], "holdout": report["holdout"],
                   "triggers": [trigger["name"] for trigger in outcome["triggers"] if trigger["fired"]]}
        set_latest(experiment_dir, challenger_version, reason=decision.reason, details=details,
                   expect=incumbent_version)
    report["latest"] = latest_version(experiment_dir)
    write_json(report_dir / "decision.json", report)
    interval = decision.difference_interval
    echo(f"verdict: challenger v{challenger_version} IC {decision.challenger_ic:+.4f} vs incumbent "
         f"v{incumbent_version} IC {decision.incumbent_ic:+.4f}, difference {decision.difference:+.4f} "
         f"[{decision.level:.0%} CI {interval[0]:+.4f}, {interval[1]:+.4f}] on {decision.num_rows} held-out rows: "
         + (f"PROMOTED, latest {incumbent_version} -> {challenger_version}" if decision.promote else
            f"kept, latest stays at {incumbent_version}"))
    echo(f"decision: {report_dir / 'decision.json'}")
    return report


def _checks(triggers, card, incumbent_dir, incumbent, panel, holdout_start, force, every, min_drifted_features,
            realized, min_trades, min_ic, degradation_window, now):
    """The triggers' outcomes, each one printed; `--force` adds one that fires."""
    checked = []
    if force:
        checked.append(triggers.Trigger("forced", True, "forced: --force retrains whatever the checks say"))
    registered_at = card.get("registered_at")
    if registered_at is None:  # cards from before registration times: the card file's own time
        registered_at = pd.Timestamp(os.path.getmtime(Path(incumbent_dir) / "metadata.json"), unit="s", tz="UTC")
    checked.append(triggers.schedule_check(registered_at, every, now))
    reference = card.get("drift_reference")
    if reference:
        rows = incumbent.feature_rows(panel)
        recent = rows[rows.index.get_level_values(0) >= holdout_start] if len(rows) else rows
        checked.append(triggers.drift_check(reference, recent, min_drifted_features))
    else:
        checked.append(triggers.Trigger("drift", False, "drift: the incumbent's card holds no drift_reference"))
    if realized is not None:
        checked.append(triggers.degradation_check(realized, min_trades, min_ic, degradation_window))
    else:
        checked.append(triggers.Trigger("degradation", False, "degradation: no realized predictions given "
                                        "(--realized FILE.csv)"))
    return checked


def _scores(predictor, panel):
    """`predict_panel` on the bars the model was trained on (its card's `bars` built from the source's)."""
    from keras_synapse.data.bars import build_bars

    bar_spec = predictor.metadata.get("config", {}).get("bars", "")
    return predictor.predict_panel(build_bars(panel, bar_spec) if bar_spec else panel)
