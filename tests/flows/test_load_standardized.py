"""load_standardized: the standardized table in record_key order, whole or a few columns, in slices."""

from __future__ import annotations

import random

import duckdb
import polars as pl
import pytest

from flows import stages
from flows.stages import load_standardized


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # Keys with gaps, rows inserted out of order: the table's own order is no guide.
    keys = [k * 3 + (k % 2) for k in range(1000)]
    random.Random(7).shuffle(keys)
    frame = pl.DataFrame(
        {
            "record_key": keys,
            "source": [f"s{k % 3}" for k in keys],
            "record_id": [f"r{k}" for k in keys],
            "name": [None if k % 5 == 0 else f"名{k}" for k in keys],
        },
        schema={"record_key": pl.Int64, "source": pl.String, "record_id": pl.String, "name": pl.String},
    )
    con.register("frame", frame)
    con.execute("create table int_persons_standardized as select * from frame")
    con.unregister("frame")
    return con


def plain(con: duckdb.DuckDBPyConnection, select: str = "*") -> pl.DataFrame:
    return con.execute(f"select {select} from int_persons_standardized order by record_key").pl()


@pytest.mark.parametrize("chunk_rows", [1, 7, 999, 1000, 5000])
def test_slices_give_the_table_in_record_key_order(con, monkeypatch, chunk_rows: int) -> None:
    monkeypatch.setattr(stages, "LOAD_CHUNK_ROWS", chunk_rows)
    loaded = load_standardized(con)
    assert loaded.equals(plain(con))
    assert loaded.get_column("record_key").is_sorted()


def test_columns_loads_only_those_the_table_has_with_record_key_first(con, monkeypatch) -> None:
    monkeypatch.setattr(stages, "LOAD_CHUNK_ROWS", 64)
    loaded = load_standardized(con, ["name", "source", "not_a_column", "name"])
    assert loaded.columns == ["record_key", "name", "source"]
    assert loaded.equals(plain(con, "record_key, name, source"))


def test_a_record_without_key_is_still_loaded(con, monkeypatch) -> None:
    monkeypatch.setattr(stages, "LOAD_CHUNK_ROWS", 100)
    con.execute("insert into int_persons_standardized values (null, 's9', 'r-null', '无键')")
    loaded = load_standardized(con, ["record_id"])
    assert loaded.height == 1001
    assert "r-null" in loaded.get_column("record_id").to_list()
    assert loaded.equals(plain(con, "record_key, record_id"))
