"""Registry writes are atomic and versioned; `latest` follows the newest version."""

import json

import pytest
from conftest import model_card_fields

from keras_synapse.serving.model_card import ModelCardError
from keras_synapse.serving.registry import read_metadata, register, resolve


def write_model(directory):
    (directory / "model.keras").write_text("weights")


def test_versions_count_up_and_latest_points_at_the_newest(tmp_path):
    first = register(tmp_path, "exp", write_model, model_card_fields(note="a"))
    second = register(tmp_path, "exp", write_model, model_card_fields(note="b"))
    assert (first.name, second.name) == ("1", "2")
    assert resolve(tmp_path / "exp" / "latest") == (tmp_path / "exp" / "2").resolve()
    card = read_metadata(tmp_path / "exp" / "latest")
    assert dict(card) == model_card_fields(note="b", version=2, registered_at=card["registered_at"])


def test_a_crash_while_writing_leaves_no_version_behind(tmp_path):
    register(tmp_path, "exp", write_model, model_card_fields())

    def crash(directory):
        (directory / "model.keras").write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        register(tmp_path, "exp", crash, model_card_fields())
    assert sorted(child.name for child in (tmp_path / "exp").iterdir()) == [".latest.lock", "1", "latest", "promotions.jsonl"]
    assert json.loads((tmp_path / "exp" / "latest" / "metadata.json").read_text())["version"] == 1


def test_resolve_refuses_a_directory_that_is_not_a_version(tmp_path):
    from keras_synapse.errors import SynapseError

    with pytest.raises(SynapseError, match="is not a registry version"):
        resolve(tmp_path)


def test_an_invalid_model_card_registers_nothing(tmp_path):
    with pytest.raises(ModelCardError, match="the field `label` is missing"):
        register(tmp_path, "exp", write_model, {key: value for key, value in model_card_fields().items()
                                                if key != "label"})
    assert list((tmp_path / "exp").iterdir()) == []


def test_a_dead_registrations_staging_is_removed_and_a_live_ones_kept(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from keras_synapse.serving.registry import STAGING_PREFIX

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    (tmp_path / "exp").mkdir()
    stale = tmp_path / "exp" / f"{STAGING_PREFIX}{host}-{int(dead.stdout)}-abc"
    live = tmp_path / "exp" / f"{STAGING_PREFIX}{host}-{os.getpid()}-def"
    other_host = tmp_path / "exp" / f"{STAGING_PREFIX}elsewhere-{int(dead.stdout)}-ghi"
    for directory in (stale, live, other_host):
        directory.mkdir()
        (directory / "model.keras").write_text("half")
    register(tmp_path, "exp", write_model, model_card_fields())
    assert not stale.exists() and live.exists() and other_host.exists()


def test_latest_only_moves_forward(tmp_path):
    from keras_synapse.serving.registry import point_latest

    for _ in range(3):
        register(tmp_path, "exp", write_model, model_card_fields())
    point_latest(tmp_path / "exp", 2)  # a slower registration of an older version finishing last
    assert resolve(tmp_path / "exp" / "latest").name == "3"


def test_racing_registrations_end_with_latest_at_the_newest(tmp_path):
    import subprocess
    import sys

    script = (f"import sys; sys.path.insert(0, {str(tmp_path.parent)!r})\n"
              "from keras_synapse.serving.registry import register\n"
              f"fields = {model_card_fields()!r}\n"
              "for _ in range(8):\n"
              f"    register({str(tmp_path)!r}, 'exp', lambda d: (d / 'model.keras').write_text('w'), fields)\n")
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(3)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0, 0]
    versions = sorted(int(child.name) for child in (tmp_path / "exp").iterdir() if child.name.isdigit())
    assert versions == list(range(1, 25))
    assert resolve(tmp_path / "exp" / "latest").name == "24"


def test_registration_time_is_recorded_as_utc(tmp_path):
    import datetime

    card = read_metadata(register(tmp_path, "exp", write_model, model_card_fields()))
    registered = datetime.datetime.fromisoformat(card["registered_at"])
    assert registered.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - registered).total_seconds()) < 60


def test_a_challenger_registers_without_moving_latest_and_is_promoted_later(tmp_path):
    from keras_synapse.serving.registry import latest_version, read_promotions, set_latest

    register(tmp_path, "exp", write_model, model_card_fields())
    challenger = register(tmp_path, "exp", write_model, model_card_fields(), promote=False)
    assert challenger.name == "2" and latest_version(tmp_path / "exp") == 1
    assert set_latest(tmp_path / "exp", 2, reason="beats v1", details={"difference": 0.1}) == 1
    assert resolve(tmp_path / "exp" / "latest").name == "2"
    history = read_promotions(tmp_path / "exp")
    assert [(entry["action"], entry["from"], entry["to"]) for entry in history] == [("register", None, 1),
                                                                                    ("promote", 1, 2)]
    assert history[1]["reason"] == "beats v1" and history[1]["details"] == {"difference": 0.1}
    assert set_latest(tmp_path / "exp", 2) == 2 and len(read_promotions(tmp_path / "exp")) == 2  # no move, no record


def test_set_latest_refuses_a_version_that_does_not_exist_naming_those_that_do(tmp_path):
    from keras_synapse.errors import SynapseError
    from keras_synapse.serving.registry import set_latest

    for _ in range(2):
        register(tmp_path, "exp", write_model, model_card_fields())
    with pytest.raises(SynapseError, match="has no version 7: registered versions are 1, 2"):
        set_latest(tmp_path / "exp", 7)
    with pytest.raises(SynapseError, match="moved to 2 while this was decided against version 1; nothing changed"):
        set_latest(tmp_path / "exp", 1, expect=1)
    assert resolve(tmp_path / "exp" / "latest").name == "2"


def test_rollback_restores_the_previous_latest_not_the_number_below(tmp_path):
    from keras_synapse.errors import SynapseError
    from keras_synapse.serving.registry import latest_version, rollback, set_latest

    experiment = tmp_path / "exp"
    register(tmp_path, "exp", write_model, model_card_fields())  # latest 1
    for _ in range(3):
        register(tmp_path, "exp", write_model, model_card_fields(), promote=False)  # 2, 3, 4
    set_latest(experiment, 3, reason="challenger 3")  # 1 -> 3
    set_latest(experiment, 4, reason="challenger 4")  # 3 -> 4
    assert rollback(experiment) == (4, 3)
    assert rollback(experiment) == (3, 1)  # the version before the first promotion, not 2
    assert latest_version(experiment) == 1
    with pytest.raises(SynapseError, match="no earlier latest to roll back to"):
        rollback(experiment)
    assert rollback(experiment, 2) == (1, 2)  # a named version, recorded like a promotion
    assert rollback(experiment) == (2, 1)


def test_rollback_refuses_when_the_history_does_not_explain_latest(tmp_path):
    from keras_synapse.errors import SynapseError
    from keras_synapse.serving.registry import PROMOTIONS, rollback

    for _ in range(2):
        register(tmp_path, "exp", write_model, model_card_fields())
    (tmp_path / "exp" / PROMOTIONS).unlink()  # a registry from before the history existed
    with pytest.raises(SynapseError, match="does not record how `latest` came to point at 2; name the version"):
        rollback(tmp_path / "exp")
    (tmp_path / "exp" / PROMOTIONS).write_text("not json\n")
    with pytest.raises(SynapseError, match="line 1, is not a promotion record"):
        rollback(tmp_path / "exp")


def test_version_summaries_show_latest_metrics_and_why_it_was_promoted(tmp_path):
    from keras_synapse.serving.registry import format_version_summaries, set_latest, version_summaries

    summary = {"ic": {"pooled": 0.05, "ci_low": 0.01, "ci_high": 0.09},
               "verdict": "Detectable edge: the IC's interval lies above zero (...)"}
    register(tmp_path, "exp", write_model, model_card_fields(metrics={"summary": summary},
                                                             data={"end": "2020-01-31 00:00:00+00:00"}))
    register(tmp_path, "exp", write_model, model_card_fields(), promote=False)
    set_latest(tmp_path / "exp", 2, reason="beats v1")
    rows = version_summaries(tmp_path / "exp")
    assert [(row["version"], row["latest"], row["promotion"]) for row in rows] == [(1, False, None),
                                                                                   (2, True, "beats v1")]
    assert rows[0]["ic"] == 0.05 and rows[0]["verdict"] == "Detectable edge"
    text = format_version_summaries(tmp_path / "exp", rows)
    assert "2 version(s), latest -> 2" in text and "+0.0500 [+0.0100, +0.0900]" in text
    assert "2020-01-31 00:00:00+00:00" in text and "made latest: beats v1" in text
