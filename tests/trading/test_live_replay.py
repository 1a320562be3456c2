"""The live command's replay: a progress bar over the replayed bars on stderr, stdout kept to the summary."""

import re
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def replay(model, live_dir, *flags):
    command = [sys.executable, "-m", "keras_synapse.live", str(model), "--replay", "sample", "--quick",
               "--replay-bars", "6", "--poll-interval", "0", "--live-dir", str(live_dir), *flags]
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_replay_shows_its_progress_on_stderr_and_resumes_it(trained_registry, tmp_path):
    first = replay(trained_registry, tmp_path / "live", "--max-bars", "4")
    # stdout is the one summary line scripts read; the bar went to stderr.
    assert len(first.stdout.splitlines()) == 1
    assert first.stdout.startswith("shared_backbone v1 on simulated: 4 bar(s) traded this session")
    assert re.search(r"replay: 100%\|[^\r\n]*\| 4/4 \[", first.stderr), first.stderr[-2000:]

    resumed = replay(trained_registry, tmp_path / "live")
    assert resumed.stdout.startswith("shared_backbone v1 on simulated: 2 bar(s) traded this session")
    # A resumed replay starts its bar at the bars already traded.
    assert re.search(r"replay:  67%\|[^\r\n]*\| 4/6 \[", resumed.stderr), resumed.stderr[-2000:]
    assert re.search(r"replay: 100%\|[^\r\n]*\| 6/6 \[", resumed.stderr)
