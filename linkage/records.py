"""The prepared link records kept in DuckDB, handed to polars a slice at a time.

Linkage reads every record several times (blocking, the comparison of each candidate
pair, u from random pairs, clustering) but never all of their fields at once in
Python. At ten million records the prepared frame alone would take ~8 GB in polars;
here it is a DuckDB temp table (spilled to disk past DuckDB's memory limit), and
each step asks for the columns or the pairs' rows it reads.
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl

from linkage.block import LINK_COLUMNS, prepare_link_records
from linkage.compare import PAIR_COLUMNS

# Reserved name of the temp table of prepared records.
PREPARED_RECORDS = "__renhu_prepared_records"
# Rows prepared at a time from a standardized table.
PREPARE_CHUNK_ROWS = 250_000


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


class PreparedRecords:
    """`prepare_link_records` output as a TEMP table of ``con`` (never in the run's file)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str = PREPARED_RECORDS) -> None:
        self.con = con
        self.table = table
        self.columns = [row[0] for row in con.execute(f"describe {table}").fetchall()]
        self.height, low, high = con.execute(
            f"select count(*), min(record_key), max(record_key) from {table}"
        ).fetchone()
        self.key_range = (low or 0, high or 0)

    def __len__(self) -> int:
        return self.height

    @classmethod
    def from_frame(cls, con: duckdb.DuckDBPyConnection, std: pl.DataFrame) -> PreparedRecords:
        """From standardized records already in polars (tests, FEBRL, explain)."""
        prepared = prepare_link_records(std)
        con.register(f"{PREPARED_RECORDS}_frame", prepared)
        con.execute(f"create or replace temp table {PREPARED_RECORDS} as select * from {PREPARED_RECORDS}_frame")
        con.unregister(f"{PREPARED_RECORDS}_frame")
        return cls(con)

    @classmethod
    def from_table(
        cls, con: duckdb.DuckDBPyConnection, table: str, chunk_rows: int = PREPARE_CHUNK_ROWS
    ) -> PreparedRecords:
        """From a standardized table of ``con``, a record_key range at a time."""
        present = {row[0] for row in con.execute(f"describe {table}").fetchall()}
        select = ", ".join(_quoted(c) for c in LINK_COLUMNS if c in present)
        rows, low, high = con.execute(f"select count(*), min(record_key), max(record_key) from {table}").fetchone()
        con.execute(f"drop table if exists {PREPARED_RECORDS}")
        if not rows:
            return cls.from_frame(con, con.execute(f"select {select} from {table}").pl())
        width = (high - low) // -(-rows // chunk_rows) + 1
        created = False
        for start in range(low, high + 1, width):
            chunk = con.execute(
                f"select {select} from {table} where record_key >= $start and record_key < $stop",
                {"start": start, "stop": start + width},
            ).pl()
            if not chunk.height:
                continue
            con.register(f"{PREPARED_RECORDS}_frame", prepare_link_records(chunk))
            verb = f"insert into {PREPARED_RECORDS} by name" if created else f"create temp table {PREPARED_RECORDS} as"
            con.execute(f"{verb} select * from {PREPARED_RECORDS}_frame")
            con.unregister(f"{PREPARED_RECORDS}_frame")
            created = True
        return cls(con)

    def select(self, *columns: str) -> pl.DataFrame:
        """These columns of every record, in record_key order."""
        listed = ", ".join(_quoted(c) for c in columns)
        return self.con.execute(f"select {listed} from {self.table} order by record_key").pl()

    def keys(self) -> np.ndarray:
        return self.select("record_key").get_column("record_key").to_numpy()

    def term_frequencies(self, column: str) -> pl.DataFrame:
        """value, tf: the share of records (with the field filled) holding each value."""
        return self.con.execute(
            f"""
            select cast({_quoted(column)} as varchar) as value,
                   cast(count(*) as double) / sum(count(*)) over () as tf
            from {self.table} where {_quoted(column)} is not null
            group by {_quoted(column)}
            """
        ).pl().cast({"value": pl.String, "tf": pl.Float64})

    def pair_frame(self, pairs: pl.DataFrame, key_ranges: tuple[int, int, int, int] | None = None) -> pl.DataFrame:
        """As `linkage.compare.pair_frame`: the pairs, in their order, with each side's fields.

        ``key_ranges``: (low, high) of the left keys, then of the right keys (high
        exclusive), when the caller knows them: DuckDB then reads only those row groups.
        """
        left, right = self.table, self.table
        if key_ranges is not None:
            l_low, l_high, r_low, r_high = (int(k) for k in key_ranges)
            left = f"(select * from {self.table} where record_key >= {l_low} and record_key < {l_high})"
            right = f"(select * from {self.table} where record_key >= {r_low} and record_key < {r_high})"
        cols = ["record_key", *[c for c in PAIR_COLUMNS if c in self.columns]]
        sides = ", ".join(
            f"{side}.{_quoted(c)} as {_quoted(f'{c}_{suffix}')}"
            for side, suffix in (("l", "l"), ("r", "r"))
            for c in cols
            if c != "record_key"
        )
        self.con.register("__renhu_pairs_frame", pairs.with_row_index("__pair_order"))
        try:
            frame = self.con.execute(
                f"""
                select p.* exclude (__pair_order), {sides}
                from __renhu_pairs_frame p
                left join {left} l on l.record_key = p.record_key_l
                left join {right} r on r.record_key = p.record_key_r
                order by p.__pair_order
                """
            ).pl()
        finally:
            self.con.unregister("__renhu_pairs_frame")
        return frame

    def drop(self) -> None:
        self.con.execute(f"drop table if exists {self.table}")
