"""Stock-specific adaptation (seed 004): a shared backbone, frozen, with a new head for one symbol.

    python -m keras_synapse.train experiments/shared_backbone.py     # registers the shared backbone
    python -m keras_synapse.train experiments/finetune.py            # fine-tunes its head on SP500
    python -m keras_synapse.train experiments/finetune.py --quick

In each fold the backbone is first trained on all symbols' training windows,
then frozen while a fresh head trains on SP500 only; test metrics are on
SP500's test windows, next to the un-tuned shared backbone on the same windows
(`baseline shared_backbone`). The final model fine-tunes the registered
backbone (`base_model`) when it exists and saw no data past this run's last
test fold; otherwise it refits the backbone first.
"""

import dataclasses
from pathlib import Path

import shared_backbone

BASE_MODEL = "saved_models/shared_backbone/latest"


def get_config(quick=False):
    base = BASE_MODEL if (Path(BASE_MODEL) / "metadata.json").is_file() and not quick else ""
    return dataclasses.replace(shared_backbone.get_config(quick), name="finetune", finetune_symbol="SP500",
                               base_model=base)
