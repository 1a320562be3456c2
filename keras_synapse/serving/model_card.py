"""The model card: a registry version's `metadata.json`, written and read by one class.

Training writes it, export updates it, and inference, serving, drift checks
and fine-tuning read it; apps outside keras_synapse read it too. So its
layout is versioned (`format_version`) and checked whenever it is read: a
damaged, truncated or hand-edited file stops with a message naming the file
and what is wrong, instead of a `KeyError` deep in a reader or, worse, a
prediction made with the wrong recipe.

Format 1 (this module's `FORMAT_VERSION`) holds, besides free-form entries
such as `metrics`, `drift_reference` and `onnx`:

| field            | what                                                           |
| ---------------- | -------------------------------------------------------------- |
| `format_version` | the layout, `1`                                                |
| `version`        | the registry version number                                    |
| `experiment`     | the experiment name                                            |
| `config`         | the `ExperimentConfig` as a dict                               |
| `inputs`         | per model input: `shape`, `feature_set`, `feature_names` and   |
|                  | (optional) `definitions`: per feature its `kind`, parameters   |
|                  | and `formula`, or `null` where the set is not restated         |
| `label`          | `name`, `kind` (`regression`/`binary`/`multiclass`), `horizon` |
| `normalization`  | per input: the training-fold `mean` and `variance` per feature |
|                  | and the variance's `ddof` (`0`: the population variance, sum   |
|                  | of squares over the row count, as Keras' `Normalization.adapt` |
|                  | computes it); `formula` says what the model computes:          |
|                  | `(x - mean) / max(sqrt(variance), 1e-7)`                       |
| `windows`        | (optional) how windows are cut: `sequence_length`, `warmup`,   |
|                  | `max_gap_factor` and the rules in words                        |
| `files`          | (optional) SHA-256 per model file, see below                   |
| `probes`         | (optional) probe windows and each backend's outputs on them,   |
|                  | see `keras_synapse.serving.probes`                             |

Integrity: `files` records the SHA-256 of each model file at registration
(and export), and `checksum` is the SHA-256 of the card's own content, both
written by `ModelCard.write` and checked on every read and load: a model file
whose bytes changed (e.g. a damaged ONNX weight tensor that still passes
`onnx.checker`) or a card edited by hand (two feature names swapped, another
label kind) is refused by name instead of giving silently wrong predictions.
They guard against damage and unaware edits, not against an attacker, who can
recompute them.

Cards written before `ddof` was recorded hold the same population variance
(`ddof` 0, what every keras_synapse version fitted) and load as they are;
`normalization_statistics` says so for them.

Cards written before `format_version` existed have the same fields and are
read as format 1 (without `files` and `checksum`, nothing is verified);
`python -m keras_synapse.export VERSION` rewrites one with its
`format_version`, checksum and the ONNX file's digest.
"""

import collections.abc
import hashlib
import json
from pathlib import Path

from keras_synapse.errors import SynapseError
from keras_synapse.labels.common import LABEL_KINDS

FORMAT_VERSION = 1
FILE_NAME = "metadata.json"
CHECKSUM = "checksum"
# The delta degrees of freedom of the recorded variances: Keras' Normalization.adapt divides by the row count.
NORMALIZATION_DDOF = 0


class ModelCardError(SynapseError):
    """A `metadata.json` that is missing, damaged or of an unknown format."""


class ModelCard(collections.abc.Mapping):
    """A validated, read-only model card; read it like the dict it was written from.

    Args:
        fields: the card's content, a JSON-ready dict.
        source: where it came from, for error messages. Defaults to
            `"model card"`.

    Raises:
        ModelCardError: when a field is missing or inconsistent.

    Example:

    >>> card = ModelCard.read("saved_models/shared_backbone/latest")  # doctest: +SKIP
    >>> card["inputs"]["sequence"]["feature_names"][:2]  # doctest: +SKIP
    ['log_return_1', 'log_return_5']
    """

    def __init__(self, fields, source="model card"):
        self._fields = dict(fields)
        # The checksum is of the content, never part of it: a card built from a file's JSON drops the old one.
        self._fields.pop(CHECKSUM, None)
        self._fields.setdefault("format_version", FORMAT_VERSION)
        self.source = str(source)
        _validate(self._fields, self.source)

    @classmethod
    def read(cls, version_dir):
        """Reads and validates `version_dir/metadata.json`.

        Raises:
            ModelCardError: when the file is missing, is not valid JSON, or
                does not hold a valid card.
        """
        path = Path(version_dir) / FILE_NAME
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ModelCardError(f"{path} does not exist: {Path(version_dir)} has no model card.") from None
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelCardError(f"{path} is damaged: not valid JSON ({error.msg} at line {error.lineno}, column "
                                 f"{error.colno}; {len(text)} characters). Restore it from a copy or re-train; "
                                 f"the model files cannot be used without it.") from None
        if not isinstance(fields, dict):
            raise ModelCardError(f"{path} must hold a JSON object. Received: {type(fields).__name__}")
        recorded = fields.pop(CHECKSUM, None)
        if recorded is not None and recorded != content_checksum(fields):
            raise ModelCardError(f"{path} was changed after keras_synapse wrote it (its checksum does not match its "
                                 "content): a hand edit or damage. Restore it from a copy or re-train; to keep an "
                                 "intended edit, delete its `checksum` entry (nothing is then verified).")
        return cls(fields, source=str(path))

    def updated(self, **changes):
        """A new card with `changes` applied (the card itself never changes)."""
        return ModelCard({**self._fields, **changes}, source=self.source)

    def write(self, version_dir):
        """Writes the card, with its checksum, into `version_dir` atomically (never a partial file under its name)."""
        from keras_synapse.runs import json_ready, write_json

        fields = json_ready(self._fields)
        write_json(Path(version_dir) / FILE_NAME, {**fields, CHECKSUM: content_checksum(fields)})

    def with_file_digests(self, version_dir, names):
        """A new card recording the SHA-256 of `names` (paths relative to `version_dir`) beside those it has."""
        digests = {name: file_digest(Path(version_dir) / name) for name in names}
        return self.updated(files={**self.get("files", {}), **digests})

    def verify_file(self, version_dir, name):
        """Checks `version_dir/name` against the digest recorded for it; a card without one checks nothing.

        Raises:
            ModelCardError: when the file's bytes are not those registered.
        """
        recorded = self.get("files", {}).get(name)
        if recorded is not None and file_digest(Path(version_dir) / name) != recorded:
            raise ModelCardError(f"{Path(version_dir) / name} is not the file registered with this model (its SHA-256 "
                                 "differs from the one in metadata.json): it was changed or damaged. Restore it or "
                                 "re-export it (python -m keras_synapse.export) from model.keras.")

    def normalization_statistics(self, name="sequence"):
        """The training-fold `mean`, `variance` and its `ddof` of input `name`, as float lists and an int.

        A card written before `ddof` was recorded gets `NORMALIZATION_DDOF`
        (`0`), the only value keras_synapse ever fitted. To normalize a raw
        feature row `x` as the model does:
        `(x - mean) / np.maximum(np.sqrt(variance), 1e-7)`.

        Raises:
            KeyError: when the card has no input `name`.
        """
        statistics = self["normalization"][name]
        return {"mean": [float(value) for value in statistics["mean"]],
                "variance": [float(value) for value in statistics["variance"]],
                "ddof": int(statistics.get("ddof", NORMALIZATION_DDOF))}

    def to_dict(self):
        """The card's content as a plain dict (a copy)."""
        return json.loads(json.dumps(self._fields))

    def __getitem__(self, key):
        return self._fields[key]

    def __iter__(self):
        return iter(self._fields)

    def __len__(self):
        return len(self._fields)


def _validate(fields, source):
    def fail(problem):
        raise ModelCardError(f"{source}: {problem}")

    format_version = fields["format_version"]
    if not isinstance(format_version, int) or format_version < 1:
        fail(f"`format_version` must be a positive integer. Received: format_version={format_version!r}")
    if format_version > FORMAT_VERSION:
        fail(f"written by a newer keras_synapse (format {format_version}); this one reads format "
             f"{FORMAT_VERSION}. Upgrade keras_synapse to use this model.")
    for name, kind in (("experiment", str), ("version", int), ("config", dict), ("inputs", dict), ("label", dict),
                       ("normalization", dict)):
        if name not in fields:
            fail(f"the field `{name}` is missing (the file is damaged or was not written by keras_synapse).")
        if not isinstance(fields[name], kind) or isinstance(fields[name], bool):
            fail(f"`{name}` must be a {kind.__name__}. Received: {name}={fields[name]!r:.80}")
    label = fields["label"]
    for key in ("name", "kind", "horizon"):
        if key not in label:
            fail(f"`label` lacks `{key}`. Received: label={label!r:.200}")
    if label["kind"] not in LABEL_KINDS:
        fail(f"`label.kind` must be one of {LABEL_KINDS}. Received: kind={label['kind']!r}")
    if label["kind"] == "multiclass" and len(label.get("classes") or ()) < 2:
        fail(f"a multiclass label needs its `classes`. Received: classes={label.get('classes')!r}")
    if "sequence" not in fields["inputs"]:
        fail(f"`inputs` lacks `sequence`. Received inputs: {sorted(fields['inputs'])}")
    for name, spec in fields["inputs"].items():
        _validate_input(name, spec, fields["normalization"].get(name), fail)
    legacy_names = fields.get("feature_names")
    if legacy_names is not None and legacy_names != fields["inputs"]["sequence"]["feature_names"]:
        fail("`feature_names` differs from `inputs.sequence.feature_names`: the card was edited by hand.")


def _validate_input(name, spec, statistics, fail):
    if not isinstance(spec, dict) or not {"shape", "feature_set", "feature_names"} <= set(spec):
        fail(f"`inputs.{name}` must hold `shape`, `feature_set` and `feature_names`. Received: {spec!r:.200}")
    names, shape = spec["feature_names"], spec["shape"]
    if not isinstance(names, list) or not names or not all(isinstance(item, str) and item for item in names):
        fail(f"`inputs.{name}.feature_names` must be a non-empty list of names. Received: {names!r:.200}")
    if len(set(names)) != len(names):
        fail(f"`inputs.{name}.feature_names` repeats a name. Received: {names}")
    definitions = spec.get("definitions")
    if definitions is not None and (not isinstance(definitions, dict) or list(definitions) != names):
        fail(f"`inputs.{name}.definitions` must define each feature of `feature_names`, in order. "
             f"Received: {list(definitions) if isinstance(definitions, dict) else definitions!r:.200}")
    if not isinstance(shape, list) or not shape or shape[-1] != len(names):
        fail(f"`inputs.{name}.shape` must end with the number of features ({len(names)}). Received: shape={shape!r}")
    if not isinstance(statistics, dict) or {"mean", "variance"} - set(statistics):
        fail(f"`normalization.{name}` must hold the training-fold `mean` and `variance`. "
             f"Received: {statistics!r:.200}")
    for key in ("mean", "variance"):
        values = statistics[key]
        if not isinstance(values, list) or len(values) != len(names):
            fail(f"`normalization.{name}.{key}` must hold one value per feature ({len(names)}). "
                 f"Received: {len(values) if isinstance(values, list) else values!r} values")
        if key == "variance" and any(not isinstance(value, (int, float)) or value < 0 for value in values):
            fail(f"`normalization.{name}.variance` must be non-negative numbers. Received: {values!r:.200}")
    # Optional: cards written before it was recorded hold ddof-0 variances too.
    ddof = statistics.get("ddof", NORMALIZATION_DDOF)
    if ddof not in (0, 1) or isinstance(ddof, bool):
        fail(f"`normalization.{name}.ddof` must be 0 (population variance) or 1 (sample variance). "
             f"Received: ddof={ddof!r}")


def content_checksum(fields):
    """SHA-256 of the card's content (without its checksum), over canonical JSON."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def file_digest(path):
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
