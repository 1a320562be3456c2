"""Stock-specific adaptation (seed 004): a shared backbone, frozen, with a new head for one symbol.

    python -m keras_synapse.train experiments/shared_backbone.py     # registers the shared backbone
    python -m keras_synapse.train experiments/finetune.py            # fine-tunes its head on SP500
    python -m keras_synapse.train experiments/finetune.py --quick

In each fold the backbone is first trained on all symbols' training windows,
then frozen while a fresh head trains on SP500 only; test metrics are on
SP500's test windows, next to the un-tuned shared backbone on the same windows
(`baseline shared_backbone`). The final model fine-tunes the registered
backbone (`base_model`, `shared_backbone/latest` inside `--registry`) when it
exists and saw no data past this run's last test fold; otherwise it says so
and refits the backbone first.

Result on the offline sample (128 s while other jobs shared the CPU, starting
from the registered shared backbone): on SP500's test windows the fine-tuned
head has IC -0.025 [95% CI -0.124, +0.089] against +0.009 for the un-tuned
shared backbone on the same windows (difference -0.034 [-0.129, +0.075]),
directional accuracy 0.469 [0.440, 0.502]. One symbol's test windows can only
show an IC of 0.15 or more (the run's minimum detectable IC), so "no
detectable edge" here says little either way.
"""

import dataclasses

import shared_backbone

# Looked up in the run's --registry (saved_models/ by default).
BASE_MODEL = "shared_backbone/latest"


def get_config(quick=False):
    return dataclasses.replace(shared_backbone.get_config(quick), name="finetune", finetune_symbol="SP500",
                               base_model="" if quick else BASE_MODEL)
