"""Retraining from the live loop: `python -m keras_synapse.live ... --retrain EXPERIMENT.py`.

Every `every_bars` traded bars the hook runs `python -m keras_synapse.retrain`
on the session's journal (`--live-dir`: live degradation is judged on the
realized predictions there), which retrains only when a trigger fires
(schedule, drift, degradation) and promotes the challenger only when it beats
the incumbent on the held-out bars. If `saved_models/<experiment>/latest` moved,
the runner switches to the new version at once (journaled as a `model`
record); if the runner was started on a fixed version, it keeps it and says so.

The retrain runs in its own process, so a failed or killed training leaves
the runner trading; the loop waits for it (a daily strategy has the night).
"""

import logging
import subprocess
import sys
from pathlib import Path

from keras_synapse.serving.registry import LATEST, resolve

logger = logging.getLogger("keras_synapse.trading")
OUTPUT_TAIL = 2000


class RetrainHook:
    """Called by `LiveRunner.run` after every bar; retrains every `every_bars` of them.

    Args:
        experiment: the experiment file the retrain trains.
        model_path: the path the runner loaded (`saved_models/NAME/latest`
            follows promotions; a fixed version does not).
        data: the `--data` spec the retrain trains and holds out on.
        every_bars: traded bars between retrain checks, >= 1.
        extra_args: more `retrain` options (e.g. `["--holdout-bars", "250"]`).
            Defaults to `()`.
        run: runs the command (`subprocess.run`'s signature). Defaults to
            `subprocess.run`.
    """

    def __init__(self, experiment, model_path, data, every_bars, extra_args=(), run=subprocess.run):
        self.experiment, self.model_path, self.data = str(experiment), Path(model_path), str(data)
        self.every_bars, self.extra_args, self._run = int(every_bars), list(extra_args), run
        self.registry = self.model_path.parent.parent
        self.bars = 0

    def __call__(self, runner):
        self.bars += 1
        if self.bars % self.every_bars:
            return
        command = [sys.executable, "-m", "keras_synapse.retrain", self.experiment, "--live-dir", str(runner.live_dir),
                   "--data", self.data, "--registry", str(self.registry), *self.extra_args]
        logger.info("Retrain check: %s", " ".join(command))
        result = self._run(command, capture_output=True, text=True)
        output = (result.stdout or "") + (result.stderr or "")
        runner.journal.append("retrain", returncode=result.returncode, output=output[-OUTPUT_TAIL:],
                              at_bar=runner.last_processed)
        if result.returncode != 0:
            logger.warning("The retrain failed (exit %d); trading on with v%s: %s", result.returncode,
                           runner.predictor.version, output[-300:])
            return
        newest = resolve(self.model_path)
        if newest.name == str(runner.predictor.version):
            return
        if self.model_path.name != LATEST:
            logger.warning("A retrain promoted v%s, but the runner was started on %s and keeps it.", newest.name,
                           self.model_path)
            return
        from keras_synapse.serving.inference import Predictor

        runner.switch_model(Predictor.from_registry(self.model_path))
