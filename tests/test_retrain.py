"""`python -m keras_synapse.retrain` end to end: real training runs, a better challenger promoted, a worse one not.

The incumbent is trained on a universe without an edge; the data then gain
one (`signal=ar1` planted, `keras_synapse.data.planted`), which drifts the
return features: the drift-triggered retrain's challenger learns the edge
and is promoted. Then the incumbent is that model, and new data whose older
bars have no edge (only the held-out bars do): the degradation-triggered
challenger, trained on the bars without it, is worse and `latest` stays.
Rollback then restores the version that was latest before the promotion.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from keras_synapse.data import load_panel
from keras_synapse.serving.registry import latest_version, read_promotions

pytestmark = pytest.mark.slow

NUM_BARS, HOLDOUT = 1200, 300
NO_EDGE = "synthetic:num_symbols=8,signal=ar1,seed=1"
EDGE = f"{NO_EDGE},oracle_ic=0.3"
EXPERIMENT = textwrap.dedent(f"""
    from keras_synapse.config import ExperimentConfig


    def get_config(quick=False):
        return ExperimentConfig(name="retrain_check", model="lightgbm", data={NO_EDGE!r}, n_splits=1,
                                test_size=0.3, feature_importance=False, ab_test=False)
""")


def command(module, *arguments, cwd):
    return subprocess.run([sys.executable, "-m", f"keras_synapse.{module}", *arguments], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def spliced_bars(path):
    """The no-edge universe's bars, then the edge universe's held-out bars (rescaled to continue each price)."""
    older, newer = load_panel(f"{NO_EDGE},num_bars={NUM_BARS}"), load_panel(f"{EDGE},num_bars={NUM_BARS}")
    frames = []
    for symbol in older:
        before, after = older[symbol].iloc[:-HOLDOUT], newer[symbol].iloc[-HOLDOUT:].copy()
        scale = before["close"].iloc[-1] / newer[symbol]["close"].iloc[-HOLDOUT - 1]
        after[["open", "high", "low", "close"]] *= scale
        frames.append(pd.concat([before, after]).reset_index().assign(symbol=symbol))
    pd.concat(frames).to_csv(path, index=False)
    return path


def lost_edge(path, panel):
    """Realized live predictions that went wrong: each score the opposite of the return that followed."""
    rows = [{"symbol": symbol, "timestamp": timestamp, "score": -value, "forward_return": value}
            for symbol, frame in panel.items()
            for timestamp, value in np.log(frame["close"]).diff(5).shift(-5).iloc[-60:-5].items()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_better_challenger_is_promoted_a_worse_one_is_not_and_rollback_restores(tmp_path):
    (tmp_path / "retrain_check.py").write_text(EXPERIMENT)
    places = ["--registry", "models", "--output", "runs"]
    experiment_dir = tmp_path / "models" / "retrain_check"
    # The incumbent: trained on the bars before the holdout, without an edge.
    result = command("train", "retrain_check.py", "--data", f"{NO_EDGE},num_bars={NUM_BARS - HOLDOUT}", *places,
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # Nothing due: a recent incumbent, drift not counted, no realized predictions -> nothing trains.
    result = command("retrain", "retrain_check.py", "--data", f"{NO_EDGE},num_bars={NUM_BARS}", "--holdout-bars",
                     str(HOLDOUT), "--min-drifted-features", "100%", *places, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not due: no trigger fired; latest stays at version 1" in result.stdout
    assert sorted(child.name for child in experiment_dir.iterdir() if child.name.isdigit()) == ["1"]

    # Better: the data gained an edge; the return features drift and the challenger learns it.
    result = command("retrain", "retrain_check.py", "--data", f"{EDGE},num_bars={NUM_BARS}", "--holdout-bars",
                     str(HOLDOUT), *places, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FIRED drift:" in result.stdout and "FIRED schedule" not in result.stdout
    assert "PROMOTED, latest 1 -> 2" in result.stdout, result.stdout
    assert latest_version(experiment_dir) == 2
    decision_path = result.stdout.split("decision: ")[-1].strip()
    report = json.loads((tmp_path / decision_path).read_text())
    decision = report["decision"]
    assert report["promoted"] and report["latest"] == 2 and decision["difference_interval"][0] > 0
    assert decision["challenger_ic"] > decision["incumbent_ic"] and decision["num_timestamps"] <= HOLDOUT
    assert f"IC {decision['challenger_ic']:+.4f} vs incumbent v1 IC {decision['incumbent_ic']:+.4f}" in result.stdout
    # The challenger never saw a held-out bar.
    challenger_card = json.loads((experiment_dir / "2" / "metadata.json").read_text())
    assert pd.Timestamp(challenger_card["data"]["end"]) < pd.Timestamp(report["holdout"]["start"])
    assert read_promotions(experiment_dir)[-1]["reason"] == decision["reason"]

    # The incumbent's training data overlap a longer holdout: refused before anything trains.
    result = command("retrain", "retrain_check.py", "--data", f"{EDGE},num_bars={NUM_BARS}", "--holdout-bars", "400",
                     "--force", *places, cwd=tmp_path)
    assert result.returncode == 2 and "overlaps the holdout" in result.stderr
    assert f"hold out at most that many (--holdout-bars {HOLDOUT})" in result.stderr
    assert sorted(child.name for child in experiment_dir.iterdir() if child.name.isdigit()) == ["1", "2"]

    # Worse: new bars whose older part has no edge; live predictions degraded. The challenger is kept out.
    bars = spliced_bars(tmp_path / "spliced.csv")
    realized = lost_edge(tmp_path / "realized.csv", load_panel(str(bars)))
    result = command("retrain", "retrain_check.py", "--data", str(bars), "--holdout-bars", str(HOLDOUT),
                     "--realized", str(realized), "--min-trades", "100", *places, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FIRED degradation: live IC -1.0000" in result.stdout
    assert "kept, latest stays at 2" in result.stdout, result.stdout
    assert latest_version(experiment_dir) == 2 and (experiment_dir / "3" / "metadata.json").is_file()
    report = json.loads((tmp_path / result.stdout.split("decision: ")[-1].strip()).read_text())
    assert not report["promoted"] and report["decision"]["difference_interval"][0] <= 0

    # Rollback: latest goes back to the version it was before the promotion.
    result = command("registry", "rollback", "retrain_check", "--registry", "models", cwd=tmp_path)
    assert result.returncode == 0 and "latest 2 -> 1 (rolled back)" in result.stdout
    assert latest_version(experiment_dir) == 1
    listing = command("registry", "list", "retrain_check", "--registry", "models", cwd=tmp_path).stdout
    assert "3 version(s), latest -> 1" in listing and "made latest: challenger promoted" in listing
