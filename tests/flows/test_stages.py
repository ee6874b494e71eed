"""flows.stages helpers that shape how frames reach DuckDB."""

from __future__ import annotations

import duckdb
import polars as pl

from flows.stages import _WRITE_PIECE_ROWS, in_row_group_pieces


def test_a_frame_goes_to_duckdb_in_row_group_pieces() -> None:
    rows = 2 * _WRITE_PIECE_ROWS + 1000
    frame = pl.DataFrame({"record_key": range(rows), "person_id": [f"P{i % 977}" for i in range(rows)]})
    pieces = in_row_group_pieces(frame)
    # One Arrow record batch per row group (the last one short), so each DuckDB thread writes one.
    assert pieces.n_chunks() == 3
    assert [len(batch) for batch in pieces.to_arrow().to_batches()] == [_WRITE_PIECE_ROWS, _WRITE_PIECE_ROWS, 1000]
    assert pieces.equals(frame)
    con = duckdb.connect()
    con.register("pieces", pieces)
    con.execute("create table written as select * from pieces")
    assert con.execute("select * from written order by record_key").pl().equals(frame)


def test_a_frame_of_one_row_group_is_handed_over_as_it_is() -> None:
    frame = pl.DataFrame({"record_key": [1, 2, 3]})
    assert in_row_group_pieces(frame) is frame
    assert in_row_group_pieces(frame.clear()).height == 0


def _bare_run(con: duckdb.DuckDBPyConnection, out_dir, run_id: str):
    import datetime as dt
    from pathlib import Path
    from types import SimpleNamespace

    return SimpleNamespace(
        con=con, run_id=run_id, started_at=dt.datetime(2026, 12, 7, 2, tzinfo=dt.UTC),
        config=SimpleNamespace(path=Path("sources.yaml")), sources_sha256="0" * 64,
        out_dir=out_dir, staging_dir=out_dir / "runs" / f".{run_id}.partial",
    )


def test_a_run_killed_half_way_is_marked_stopped_and_its_partial_folder_removed(tmp_path) -> None:
    from flows.stages import ledger_finish, ledger_start, remove_abandoned_staging

    con = duckdb.connect()
    done = _bare_run(con, tmp_path, "20261205T020000Z-aaaaaa")
    ledger_start(done)
    ledger_finish(done, "published")
    killed = _bare_run(con, tmp_path, "20261206T020000Z-bbbbbb")
    ledger_start(killed)  # and the process died: no ledger_finish, its folder half written
    killed.staging_dir.mkdir(parents=True)
    (killed.staging_dir / "entity_map.parquet").write_bytes(b"PAR1")
    tonight = _bare_run(con, tmp_path, "20261207T020000Z-cccccc")

    assert remove_abandoned_staging(tonight) == [killed.staging_dir]
    assert not killed.staging_dir.exists()
    ledger_start(tonight)

    statuses = dict(con.execute("select run_id, status from run_ledger").fetchall())
    assert statuses == {done.run_id: "published", killed.run_id: "stopped", tonight.run_id: "running"}
    message = con.execute("select message from run_ledger where run_id = $r", {"r": killed.run_id}).fetchone()[0]
    assert "nothing was published" in message
