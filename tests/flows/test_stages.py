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
