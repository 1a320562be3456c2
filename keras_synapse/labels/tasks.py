"""What a label asks of a model: the head, the loss, and how outputs become a score.

Every run reports the same headline metrics (directional accuracy, IC, rank
IC) whatever the label, so outputs are first turned into one score per window:

- regression: the output itself;
- binary: P(class 1) - 0.5;
- multiclass (ordered, e.g. DOWN/FLAT/UP or STOP_LOSS/VERTICAL/PROFIT_TAKE):
  P(last class) - P(first class).

For directional labels the score is judged against the realized forward
return; for event labels (seed 004's pattern validations, meta-labels) against
the event's outcome (1 resolved, 0 not), centred at zero.
"""

import dataclasses

import numpy as np

from keras_synapse.labels.common import DIRECTIONAL_LABELS


@dataclasses.dataclass(frozen=True)
class Task:
    """The task of one label.

    Attributes:
        label: the label's registry name.
        kind: `"regression"`, `"binary"` or `"multiclass"`.
        classes: class names, in index order (empty for regression).
    """

    label: str
    kind: str
    classes: tuple = ()

    @classmethod
    def from_labels(cls, name, labels):
        """The task of label `name`, given its per-symbol `Label`s."""
        first = next(iter(labels.values()))
        return cls(label=name, kind=first.kind, classes=tuple(first.classes))

    @property
    def directional(self):
        return self.label in DIRECTIONAL_LABELS

    @property
    def num_classes(self):
        return len(self.classes) if self.kind == "multiclass" else 1

    def scores(self, outputs):
        """One score per window from the model's outputs `[windows, units]`."""
        outputs = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
        if self.kind == "binary":
            return outputs[:, 0] - 0.5
        if self.kind == "multiclass":
            return outputs[:, -1] - outputs[:, 0]
        return outputs[:, 0]

    def reference(self, frame):
        """What the score should agree with: the forward return, or the centred event outcome."""
        if self.directional:
            return frame["forward_return"].to_numpy(dtype=np.float64)
        return frame["target"].to_numpy(dtype=np.float64) - 0.5

    def balance(self, targets):
        """Share of each class among `targets` (empty for regression)."""
        if self.kind == "regression":
            return {}
        targets = np.asarray(targets)
        targets = targets[np.isfinite(targets)]
        return {name: float(np.mean(targets == index)) for index, name in enumerate(self.classes)}
