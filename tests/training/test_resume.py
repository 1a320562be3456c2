"""kill -9 mid-fold, then --resume: the same final metrics and predictions as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

EXPERIMENT = "experiments/shared_backbone.py"
ARGUMENTS = ["--quick", "--epochs", "4", "--set", "patience=10"]


def command(root, workdir, *extra):
    return [sys.executable, "-m", "keras_synapse.train", str(root / EXPERIMENT), *ARGUMENTS,
            "--output", str(workdir / "runs"), "--registry", str(workdir / "saved_models"), *extra]


def only_run_dir(workdir):
    (run_dir,) = (workdir / "runs" / "shared_backbone").iterdir()
    return run_dir


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, request):
    root = request.config.rootpath
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    result = subprocess.run(command(root, uninterrupted), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    # Kill the second run with SIGKILL once fold 1 has completed an epoch (mid-fold).
    process = subprocess.Popen(command(root, interrupted), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    marker = None
    while time.time() < deadline and process.poll() is None:
        runs = interrupted / "runs" / "shared_backbone"
        if runs.exists() and any(runs.iterdir()):
            marker = only_run_dir(interrupted) / "checkpoints" / "fold_1" / "checkpoint.json"
            if marker.exists() and json.loads(marker.read_text())["epoch"] >= 0:
                break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed mid-fold"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    run_dir = only_run_dir(interrupted)
    assert not (run_dir / "metrics.json").exists()
    killed_at = json.loads(marker.read_text())["epoch"]
    assert killed_at < 3, "fold 1 had already finished"

    resumed = subprocess.run(command(root, interrupted, "--resume", str(run_dir)), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming run directory" in resumed.stdout

    expected = json.loads((only_run_dir(uninterrupted) / "metrics.json").read_text())
    actual = json.loads((run_dir / "metrics.json").read_text())
    assert actual["folds"] == [{**fold} for fold in expected["folds"]]
    assert actual["summary"] == expected["summary"]
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "test_predictions.csv"),
                                  pd.read_csv(only_run_dir(uninterrupted) / "test_predictions.csv"))


def test_resume_refuses_other_data_or_config_and_never_registers_twice(tmp_path, request):
    from keras_synapse.data import load_panel

    root = request.config.rootpath
    panel = load_panel("sample", quick=True)
    (tmp_path / "bars").mkdir()
    for symbol in ("SP500", "SYN-00", "SYN-01"):
        panel[symbol].rename_axis("timestamp").to_csv(tmp_path / "bars" / f"{symbol}.csv")
    arguments = ["--data", str(tmp_path / "bars"), "--epochs", "1"]
    result = subprocess.run(command(root, tmp_path, *arguments), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    # Resuming a finished run continues nothing and registers nothing new.
    result = subprocess.run(command(root, tmp_path, *arguments, "--resume", str(run_dir)),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already registered" in result.stdout
    assert sorted(path.name for path in (tmp_path / "saved_models" / "shared_backbone").iterdir()
                  if path.name.isdigit()) == ["1"]
    # Another config, or other bars, are refused by name.
    result = subprocess.run(command(root, tmp_path, *arguments, "--set", "dropout=0.2", "--resume", str(run_dir)),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "the run was started with another config: dropout=0.1 (now 0.2)" in result.stderr
    bars = pd.read_csv(tmp_path / "bars" / "SYN-01.csv")
    bars.iloc[:-30].to_csv(tmp_path / "bars" / "SYN-01.csv", index=False)
    result = subprocess.run(command(root, tmp_path, *arguments, "--resume", str(run_dir)),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "the data differ from those the run started on (bars of ['SYN-01'] changed)" in result.stderr
