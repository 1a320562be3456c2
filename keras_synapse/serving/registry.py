"""The model registry: versioned, atomic, loadable by any Keras app.

Layout::

    saved_models/<experiment>/<version>/model.keras
                                       /model.onnx
                                       /metadata.json
    saved_models/<experiment>/latest -> <version>

A version is written into a hidden staging directory, flushed to disk and
renamed into place in one step, so a crash never leaves a half-written
version; a staging directory whose process died is removed at the next
registration. `latest` is switched with an atomic symlink replace, under a
lock and only forward, so racing registrations never move it back.

Promotion (champion/challenger, `keras_synapse.serving.retraining`): a
version may be registered without moving `latest` (`promote=False`), and
`set_latest` later points `latest` at any existing version, in either
direction. Every move of `latest` is appended to
`saved_models/<experiment>/promotions.jsonl`, one JSON object a line
(`time`, `action`, `from`, `to`, `reason`, optional `details`), so that
`rollback` restores the version that was latest before the current one
rather than merely the number below it::

    register(root, "exp", write, card, promote=False)   # v3, `latest` stays at 2
    set_latest(root / "exp", 3, reason="beats v2")      # latest -> 3
    rollback(root / "exp")                              # latest -> 2 again
"""

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import socket
import uuid
from pathlib import Path

from keras_synapse.errors import SynapseError
from keras_synapse.serving.model_card import ModelCard

LATEST = "latest"
STAGING_PREFIX = ".staging-"
PROMOTIONS = "promotions.jsonl"


def _versions(experiment_dir):
    return sorted(int(child.name) for child in experiment_dir.iterdir() if child.name.isdigit())


def register(registry_dir, experiment, write_files, metadata, promote=True):
    """Writes a new version of `experiment` and (unless `promote=False`) points `latest` at it.

    Args:
        registry_dir: the registry root, e.g. `saved_models/`.
        experiment: the experiment name (a directory under the root).
        write_files: a callable taking the staging directory (a `Path`) that
            writes the model files into it.
        metadata: a JSON-ready dict, written as the version's model card
            (`metadata.json`, see `keras_synapse.serving.model_card`) with the
            version number and, unless it holds one, `registered_at` (UTC,
            ISO 8601) added.
        promote: whether `latest` moves to the new version (forward only, see
            `point_latest`). `False` registers a challenger that `set_latest`
            may promote later. Defaults to `True`.

    Returns:
        The `Path` of the new version directory.

    Raises:
        ModelCardError: when `metadata` is not a valid model card (nothing
            is registered then).
    """
    experiment_dir = Path(registry_dir) / experiment
    experiment_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(experiment_dir)
    staging = experiment_dir / f"{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        write_files(staging)
        _flush_to_disk(staging)
        while True:
            version = (_versions(experiment_dir) or [0])[-1] + 1
            fields = {"registered_at": utc_now(), **metadata, "version": version}
            ModelCard(fields, source=f"the model card of {experiment}").write(staging)
            try:
                staging.rename(experiment_dir / str(version))
                break
            except OSError:
                # Another process took this number between listing and renaming.
                if not (experiment_dir / str(version)).exists():
                    raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if promote:
        point_latest(experiment_dir, version)
    return experiment_dir / str(version)


def point_latest(experiment_dir, version):
    """Points `latest` at `version` unless it already points at a newer one, under a lock.

    Two registrations finishing in the other order would otherwise move
    `latest` backwards. A move is recorded in `promotions.jsonl` (action
    `"register"`).
    """
    experiment_dir = Path(experiment_dir)
    with _latest_lock(experiment_dir):
        current = latest_version(experiment_dir)
        if current is not None and current >= version:
            return
        _replace_latest(experiment_dir, version)
        _append_promotion(experiment_dir, "register", current, version, "registered")


def latest_version(experiment_dir):
    """The version number `latest` points at, or `None` when there is no `latest` (or it is not a version)."""
    link = Path(experiment_dir) / LATEST
    target = os.readlink(link) if link.is_symlink() else ""
    return int(target) if target.isdigit() else None


def versions(experiment_dir):
    """The registered version numbers of an experiment directory, ascending (empty when it does not exist)."""
    experiment_dir = Path(experiment_dir)
    return _versions(experiment_dir) if experiment_dir.is_dir() else []


def set_latest(experiment_dir, version, reason="", action="promote", details=None, expect=None):
    """Points `latest` at an existing `version`, forward or back, and records the move.

    The symlink is replaced atomically under the lock registrations take, and
    the move is appended to `promotions.jsonl`.

    Args:
        experiment_dir: `saved_models/<experiment>`.
        version: the version number to point `latest` at.
        reason: why, in one line (kept in the history). Defaults to `""`.
        action: `"promote"` or `"rollback"`, as the history records it.
            Defaults to `"promote"`.
        details: a JSON-ready dict kept beside the reason (e.g. a
            champion/challenger decision). Defaults to `None`.
        expect: when given, the version `latest` must still point at (e.g. the
            incumbent a challenger was compared with); a registry where
            another process moved `latest` meanwhile is left alone. Defaults
            to `None`.

    Returns:
        The version `latest` pointed at before (`None` if none); when that is
        `version`, nothing is changed or recorded.

    Raises:
        SynapseError: when `version` is not a registered version (the message
            names those that exist), `action` is unknown, or `latest` is not
            at `expect`.
    """
    experiment_dir = Path(experiment_dir)
    if action not in ACTIONS:
        raise SynapseError(f"`action` must be one of {ACTIONS}. Received: action={action!r}")
    existing = versions(experiment_dir)
    if not isinstance(version, int) or isinstance(version, bool) or version not in existing:
        raise SynapseError(f"{experiment_dir} has no version {version!r}: registered versions are "
                           f"{', '.join(map(str, existing)) or 'none'}.")
    with _latest_lock(experiment_dir):
        current = latest_version(experiment_dir)
        if expect is not None and current != expect:
            raise SynapseError(f"{experiment_dir / LATEST} moved to {current} while this was decided against "
                               f"version {expect}; nothing changed. Decide again against the new latest.")
        if current != version:  # pointing `latest` where it points records nothing
            _replace_latest(experiment_dir, version)
            _append_promotion(experiment_dir, action, current, version, reason, details)
    return current


def rollback(experiment_dir, version=None, reason=""):
    """Points `latest` back at the version that was latest before the current one.

    The history is read as a stack: each promotion or registration that moved
    `latest` pushes the version it replaced, each rollback pops one, so two
    rollbacks after two promotions return to where the first promotion
    started. With `version`, `latest` moves there instead (recorded like a
    promotion, so a later plain rollback returns to the version it replaced).

    Args:
        experiment_dir: `saved_models/<experiment>`.
        version: the version to restore, or `None` for the previous latest.
            Defaults to `None`.
        reason: why, kept in the history. Defaults to `""`.

    Returns:
        `(previous, restored)`: the version `latest` pointed at and the one it
        points at now.

    Raises:
        SynapseError: when the history does not explain the current `latest`
            or holds no earlier version, or `version` does not exist.
    """
    experiment_dir = Path(experiment_dir)
    if version is not None:
        previous = set_latest(experiment_dir, version, reason or f"rolled back to version {version}")
        return previous, version
    history = read_promotions(experiment_dir)
    current = latest_version(experiment_dir)
    if current is None:
        raise SynapseError(f"{experiment_dir} has no `latest` to roll back (registered versions: "
                           f"{', '.join(map(str, versions(experiment_dir))) or 'none'}).")
    if not history or history[-1]["to"] != current:
        raise SynapseError(f"{experiment_dir / PROMOTIONS} does not record how `latest` came to point at "
                           f"{current}; name the version to restore (registered versions: "
                           f"{', '.join(map(str, versions(experiment_dir)))}).")
    target = previous_latest(history)
    if target is None:
        raise SynapseError(f"{experiment_dir}: no earlier latest to roll back to (version {current} was the "
                           "first); name a version to move `latest` to instead.")
    set_latest(experiment_dir, target, reason or f"rolled back from version {current}", action="rollback",
               expect=current)
    return current, target


def previous_latest(history):
    """The version that was latest before the current one, from `read_promotions` entries, or `None`."""
    stack = []
    for entry in history:
        if entry["action"] == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(entry["from"])
    return stack[-1] if stack else None


def read_promotions(experiment_dir):
    """Every recorded move of `latest`, oldest first: dicts with `time`, `action`, `from`, `to`, `reason`.

    Raises:
        SynapseError: when a line of `promotions.jsonl` is not a JSON object
            of that shape (the line number is named).
    """
    path = Path(experiment_dir) / PROMOTIONS
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict) or not {"action", "from", "to"} <= set(entry):
            raise SynapseError(f"{path}, line {number}, is not a promotion record (a JSON object with action, "
                               f"from, to). Received: {line[:120]!r}")
        entries.append(entry)
    return entries


ACTIONS = ("register", "promote", "rollback")


def utc_now():
    """The current UTC time, ISO 8601 with its offset, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def _latest_lock(experiment_dir):
    with open(Path(experiment_dir) / ".latest.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _replace_latest(experiment_dir, version):
    link = experiment_dir / f".{LATEST}-{uuid.uuid4().hex}"
    link.symlink_to(str(version))
    os.replace(link, experiment_dir / LATEST)


def _append_promotion(experiment_dir, action, previous, version, reason, details=None):
    # One write() of one line with O_APPEND, under the lock: readers see whole lines only.
    entry = {"time": utc_now(), "action": action, "from": previous, "to": version, "reason": str(reason)}
    if details is not None:
        entry["details"] = details
    from keras_synapse.runs import json_ready

    line = (json.dumps(json_ready(entry), allow_nan=False) + "\n").encode()
    descriptor = os.open(Path(experiment_dir) / PROMOTIONS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_staging(experiment_dir):
    """Removes staging directories left by registrations that died (this host's, whose process is gone)."""
    host = socket.gethostname()
    for child in Path(experiment_dir).glob(f"{STAGING_PREFIX}*"):
        owner_host, _, rest = child.name.removeprefix(STAGING_PREFIX).rpartition("-")[0].rpartition("-")
        if owner_host != host or not rest.isdigit() or _alive(int(rest)):
            continue
        shutil.rmtree(child, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flush_to_disk(directory):
    # The rename publishes the version: its files must be on disk first, or a crash right after could
    # leave a published version with empty files.
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in [*sorted(p for p in Path(directory).rglob("*") if p.is_dir()), Path(directory)]:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def resolve(path):
    """Resolves `saved_models/NAME/{VERSION|latest}` to a version directory.

    Raises:
        SynapseError: when the path is not a registry version.
    """
    path = Path(path)
    version_dir = path.resolve() if path.name == LATEST else path
    if not (version_dir / "metadata.json").is_file():
        raise SynapseError(
            f"{path} is not a registry version (expected saved_models/<experiment>/<version>/metadata.json)."
        )
    return version_dir


def read_metadata(path):
    """Returns the validated model card (`metadata.json`) of a registry version, a read-only mapping.

    Raises:
        SynapseError: when `path` is not a registry version.
        ModelCardError: when its `metadata.json` is damaged or of an unknown
            format.
    """
    return ModelCard.read(resolve(path))


def version_summaries(experiment_dir):
    """One dict per registered version, oldest first: what `python -m keras_synapse.registry list` prints.

    Each holds `version`, `latest` (bool), `registered_at`, `data_end` (the
    last bar it was trained on), `ic` and `ic_interval` (the training run's
    pooled test IC and its 95% interval), `verdict` (the run's verdict,
    first clause), and `promotion`, the reason recorded when `latest` last
    moved to it (`None` if it never did). A version whose card cannot be
    read is listed with its `error`.

    Raises:
        SynapseError: when `experiment_dir` holds no version.
    """
    experiment_dir = Path(experiment_dir)
    numbers = versions(experiment_dir)
    if not numbers:
        raise SynapseError(f"{experiment_dir} holds no registered version (is the experiment name right? "
                           f"{_siblings(experiment_dir)}).")
    latest, history = latest_version(experiment_dir), read_promotions(experiment_dir)
    reasons = {entry["to"]: entry.get("reason", "") for entry in history if entry["action"] != "register"}
    rows = []
    for number in numbers:
        row = {"version": number, "latest": number == latest, "promotion": reasons.get(number)}
        try:
            card = read_metadata(experiment_dir / str(number))
        except SynapseError as error:
            rows.append({**row, "error": str(error)})
            continue
        summary = card.get("metrics", {}).get("summary", {})
        ic = summary.get("ic") if isinstance(summary.get("ic"), dict) else {}
        rows.append({**row, "registered_at": card.get("registered_at"), "data_end": card.get("data", {}).get("end"),
                     "ic": ic.get("pooled"), "ic_interval": [ic.get("ci_low"), ic.get("ci_high")],
                     "verdict": str(summary.get("verdict") or "").split(":")[0] or None})
    return rows


def format_version_summaries(experiment_dir, rows):
    """The table `python -m keras_synapse.registry list` prints, from `version_summaries` rows."""
    latest = next((row["version"] for row in rows if row["latest"]), None)
    lines = [f"{experiment_dir}: {len(rows)} version(s), latest -> {latest if latest is not None else 'none'}",
             f"{'version':<9}{'latest':<8}{'registered':<27}{'data end':<27}{'IC [95% CI]':<28}verdict"]
    for row in rows:
        mark = "*" if row["latest"] else ""
        if "error" in row:
            lines.append(f"{row['version']:<9}{mark:<8}unreadable: {row['error']}")
            continue
        low, high = row["ic_interval"]
        ic = (f"{row['ic']:+.4f} [{low:+.4f}, {high:+.4f}]" if None not in (row["ic"], low, high)
              else "n/a")
        verdict = row["verdict"] or "n/a"
        if row["promotion"]:
            verdict += f"; made latest: {row['promotion']}"
        lines.append(f"{row['version']:<9}{mark:<8}{str(row['registered_at'] or 'n/a'):<27}"
                     f"{str(row['data_end'] or 'n/a'):<27}{ic:<28}{verdict}")
    return "\n".join(lines)


def _siblings(experiment_dir):
    parent = Path(experiment_dir).parent
    names = sorted(child.name for child in parent.iterdir() if child.is_dir()) if parent.is_dir() else []
    return f"{parent} holds {', '.join(names)}" if names else f"{parent} holds no experiment"
