"""The journal: what was written survives a crash; a write cut short is dropped, a damaged middle is refused."""

import pytest

from keras_synapse.errors import SynapseError
from keras_synapse.trading.journal import Journal, read_records


def test_records_survive_a_reopen_and_a_write_cut_short_is_dropped_and_cut_off(tmp_path):
    journal = Journal(tmp_path)
    journal.append("bar", timestamp="2024-01-02T00:00:00+00:00", bars={})
    journal.append("intent", client_order_id="ks-a-AAA-20240102T000000", quantity=5.0)
    journal.close()
    with open(tmp_path / "journal.jsonl", "a") as handle:
        handle.write('{"type":"order","client_order_id":"ks-a-AA')  # kill -9 in the middle of a write
    reopened = Journal(tmp_path)
    assert [record["type"] for record in reopened.records] == ["bar", "intent"]
    reopened.append("order", client_order_id="ks-a-AAA-20240102T000000", state="filled")
    reopened.close()
    assert [record["type"] for record in read_records(tmp_path / "journal.jsonl")] == ["bar", "intent", "order"]


def test_a_damaged_line_before_the_last_is_refused_with_its_line_number(tmp_path):
    journal = Journal(tmp_path)
    for number in range(3):
        journal.append("processed", timestamp=str(number))
    journal.close()
    lines = (tmp_path / "journal.jsonl").read_text().splitlines(keepends=True)
    lines[1] = "not json\n"
    (tmp_path / "journal.jsonl").write_text("".join(lines))
    with pytest.raises(SynapseError, match="line 2 is not a journal record"):
        Journal(tmp_path)


def test_non_finite_numbers_are_refused_before_anything_is_written(tmp_path):
    journal = Journal(tmp_path)
    with pytest.raises(ValueError):
        journal.append("decision", weights={"AAA": float("nan")})
    journal.close()
    assert read_records(tmp_path / "journal.jsonl") == []
