"""A second run over a changed history records exactly the selections whose amount changed,
and its summary prints them."""

from __future__ import annotations

import io

import pyarrow.compute as pc
import pyarrow.parquet as pq

from chalicelib import runs
from tests.helpers import fetch, run_job, sample_bytes, upload


def selections(db, run_id: str) -> dict[tuple, float]:
    """A run's selections and fallbacks: (country, segment_name, segment) -> amount."""
    rows = fetch(
        db,
        "SELECT country_key, segment_name, segment, voucher_amount"
        " FROM voucher_selection WHERE run_id = %s UNION ALL"
        " SELECT country_key, NULL, NULL, voucher_amount FROM country_fallback"
        " WHERE run_id = %s",
        run_id,
        run_id,
    )
    return {tuple(row[:3]): row[3] for row in rows}


def test_a_changed_history_reports_the_segments_whose_amount_changed(
    stack, s3, db, tmp_path, capsys
):
    """The second history doubles Latvia's amounts of 2 and above: every Latvian selection
    whose amount moved is reported, nothing of the other countries."""
    history = pq.read_table(io.BytesIO(sample_bytes(tmp_path, rows=8_000, seed=23)))
    latvia = pc.equal(pc.utf8_lower(pc.utf8_trim_whitespace(history["country_code"])), "latvia")
    raised = pc.if_else(
        pc.and_(latvia, pc.greater_equal(history["voucher_amount"], 2)),
        pc.multiply(history["voucher_amount"], 2),
        history["voucher_amount"],
    )
    changed = history.set_column(
        history.schema.get_field_index("voucher_amount"), "voucher_amount", raised
    )
    buffer, original = io.BytesIO(), io.BytesIO()
    pq.write_table(changed, buffer)
    pq.write_table(history, original)

    first = run_job(stack, upload(s3, stack, "incoming/a.parquet", original.getvalue()))
    second = run_job(stack, upload(s3, stack, "incoming/b.parquet", buffer.getvalue()))
    before, after = selections(db, first), selections(db, second)
    expected = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert expected and {key[0] for key in expected} == {"latvia"}

    recorded = runs.changes_of(db, second)
    assert {(c.country_key, c.segment_name, c.segment) for c in recorded} == expected
    for change in recorded:
        key = (change.country_key, change.segment_name, change.segment)
        assert (change.old_amount, change.new_amount, change.replaced_run_id) == (
            before.get(key),
            after.get(key),
            first,
        )

    summary = capsys.readouterr().out.rsplit(f"Run {second}", 1)[1]
    assert "What changed" in summary
    assert f"Latvia, against run {first}:" in summary
    assert "Peru: no selection changed" in summary
    assert summary.count(" -> ") == len(expected)


def test_the_job_records_the_min_segment_rows_it_was_given(stack, s3, db, tmp_path, monkeypatch):
    """From the job's argument, else from ``MIN_SEGMENT_ROWS`` in the environment; the API
    then falls back on the segments below it."""
    source = upload(s3, stack, "incoming/min.parquet", sample_bytes(tmp_path, rows=3_000, seed=5))
    given = run_job(stack, source, min_segment_rows="400")
    monkeypatch.setenv("MIN_SEGMENT_ROWS", "7")
    from_env = run_job(stack, source)
    recorded = dict(fetch(db, "SELECT run_id, min_segment_rows FROM runs"))
    assert (recorded[given], recorded[from_env]) == (400, 7)
