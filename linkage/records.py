"""The prepared link records, kept where each step reads them fastest.

Linkage reads every record several times (blocking, the comparison of each candidate
pair, u from random pairs, clustering). Blocking is SQL, so the fields it keys on (and
those clustering reads) are derived in DuckDB into a temp table (int_link_records.sql),
never crossing to polars. Comparison needs both sides' strings for every pair: up to
``IN_MEMORY_MAX_RECORDS`` records, the fields it reads are prepared once into one
polars frame, and a pair frame is two gathers by position (a 500 000-pair chunk in
~0.15 s, against ~0.85 s for DuckDB's join and its hand-over to polars); an
incremental night loads only the records of tonight's pairs. Past that,
at ten million records, such a frame would take gigabytes: every field then lives in
the DuckDB temp table (spilled to disk past DuckDB's memory limit), and each step asks
for the columns or the pairs' rows it reads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from linkage.block import (
    LINK_COLUMNS,
    OWN_ID_SQL,
    SQL_DIR,
    STD_COLUMN_TYPES,
    prepare_link_records,
    with_std_columns,
)
from linkage.compare import PAIR_COLUMNS

# Reserved name of the temp table of prepared records.
PREPARED_RECORDS = "__renhu_prepared_records"
# Rows prepared at a time from a standardized table.
PREPARE_CHUNK_ROWS = 250_000
# Rows of each batch the in-memory frame is read in: DuckDB reads the next batch while
# polars prepares this one, and smaller batches overlap more (1M: 1.84-1.87 s with
# 250,000-row batches, 1.73-1.76 s with these; the peak RSS is the same, 1.4 GB).
FRAME_BATCH_ROWS = 125_000
# Up to this many records the comparison fields are held in polars (~220 bytes a record).
IN_MEMORY_MAX_RECORDS = 3_000_000
# A max_in_memory for `PreparedRecords.from_table` that no city reaches.
UNLIMITED_RECORDS = 2**62
# What the in-memory frame holds: the comparison fields, and what clustering and person ids read.
FRAME_COLUMNS: tuple[str, ...] = ("record_key", "source", "record_id", *PAIR_COLUMNS)


def _quoted(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


# Columns of the DuckDB table in its usual form (int_link_records.sql): the blocking fields,
# and what clustering and person ids read.
LINK_RECORDS_SQL = SQL_DIR / "int_link_records.sql"
# The standardized records int_link_records.sql reads (a temp view of `_std_select`).
LINK_STD = "__renhu_link_std"


def _std_select(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """The linkage columns of ``relation``, a missing one as a typed null."""
    present = {row[0] for row in con.execute(f"describe {relation}").fetchall()}
    columns = []
    for column, dtype in STD_COLUMN_TYPES.items():
        if column in present:
            columns.append(f"{_quoted(column)}::{_DUCKDB_TYPES[dtype]} as {_quoted(column)}")
        else:
            columns.append(f"null::{_DUCKDB_TYPES[dtype]} as {_quoted(column)}")
    return f"select {', '.join(columns)} from {relation}"


_DUCKDB_TYPES = {pl.Int64: "bigint", pl.String: "varchar", pl.Boolean: "boolean", pl.Date: "date"}


def _next_batch(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


class PreparedRecords:
    """The prepared link records of ``con``'s TEMP table ``table`` (never in the run's file)
    and, when loaded, the comparison fields in ``frame`` (polars, sorted by record_key).

    Usually the table is `int_link_records.sql` over the standardized records (blocking and
    clustering fields, derived in DuckDB), and the frame holds every record, or on an
    incremental night only the records of tonight's pairs (``frame_complete`` false).
    Past ``IN_MEMORY_MAX_RECORDS`` there is no frame: the table holds every prepared field.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str = PREPARED_RECORDS,
                 std_relation: str | None = None) -> None:
        self.con = con
        self.table = table
        self.std_relation = std_relation
        self.frame: pl.DataFrame | None = None
        self.frame_complete = False
        self.table_columns = [row[0] for row in con.execute(f"describe {table}").fetchall()]
        self.height, low, high = con.execute(
            f"select count(*), min(record_key), max(record_key) from {table}"
        ).fetchone()
        self.key_range = (low or 0, high or 0)

    def __len__(self) -> int:
        return self.height

    @property
    def in_memory(self) -> bool:
        return self.frame is not None

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns) if self.frame is not None else self.table_columns

    @property
    def blocking_ready(self) -> bool:
        """The table is exactly what the blocking passes read (int_link_records.sql)."""
        return self.std_relation is not None

    @classmethod
    def _from_std(cls, con: duckdb.DuckDBPyConnection, relation: str) -> PreparedRecords:
        con.execute(f"create or replace temp view {LINK_STD} as {_std_select(con, relation)}")
        con.execute(f"drop table if exists {PREPARED_RECORDS}")
        sql = LINK_RECORDS_SQL.read_text(encoding="utf-8")
        # own_id is computed once here, not in each of the blocking passes' scans (1M: 0.3-0.5 s).
        con.execute(f"create temp table {PREPARED_RECORDS} as select *, {OWN_ID_SQL} as own_id from ({sql})")
        records = cls(con, std_relation=relation)
        return records

    def load_frame(self, keys: pl.Series | None = None) -> None:
        """The comparison fields of every record, or only of ``keys``, into ``frame``.

        The frame stays in the order DuckDB scanned it; ``_order`` sorts it by record_key
        (a sorted copy would be another ~250 MB at a million records).
        """
        if self.std_relation is None:
            raise ValueError("no frame past IN_MEMORY_MAX_RECORDS: the table holds every field")
        query = f"select * from {LINK_STD}"
        if keys is not None:
            self.con.register("__renhu_frame_keys", pl.DataFrame({"record_key": keys.cast(pl.Int64)}))
            query = f"select * from {LINK_STD} where record_key in (select record_key from __renhu_frame_keys)"
        try:
            # Prepared a batch at a time from one scan: the standardized batch and its
            # preparation live only while that batch is prepared (1M: peak 2.7 -> 2.1 GB).
            # DuckDB produces the next batch on one core while polars prepares this one.
            reader = self.con.execute(query).to_arrow_reader(FRAME_BATCH_ROWS)
            parts = []
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-reader") as pool:
                pending = pool.submit(_next_batch, reader)
                while (batch := pending.result()) is not None:
                    pending = pool.submit(_next_batch, reader)
                    parts.append(prepare_link_records(pl.from_arrow(batch)).select(FRAME_COLUMNS))
                    del batch
        finally:
            if keys is not None:
                self.con.unregister("__renhu_frame_keys")
        if not parts:
            parts = [prepare_link_records(with_std_columns(pl.DataFrame({"record_key": []}))).select(FRAME_COLUMNS)]
        # One contiguous frame: a gather from a chunked one is several times slower.
        self.frame = pl.concat(parts, rechunk=True)
        self.frame_complete = keys is None
        frame_keys = self.frame["record_key"].to_numpy()
        self._order = np.argsort(frame_keys, kind="stable")
        self._keys = frame_keys[self._order]

    @classmethod
    def from_frame(cls, con: duckdb.DuckDBPyConnection, std: pl.DataFrame, in_memory: bool = True) -> PreparedRecords:
        """From standardized records already in polars (tests, FEBRL, explain)."""
        if not in_memory:
            prepared = prepare_link_records(std)
            con.register(f"{PREPARED_RECORDS}_frame", prepared)
            con.execute(f"create or replace temp table {PREPARED_RECORDS} as select * from {PREPARED_RECORDS}_frame")
            con.unregister(f"{PREPARED_RECORDS}_frame")
            return cls(con)
        # Held as a DuckDB table: the view over a registered frame would re-read it per scan.
        con.register(f"{PREPARED_RECORDS}_std_frame", with_std_columns(std).select(list(STD_COLUMN_TYPES)))
        con.execute(f"create or replace temp table {PREPARED_RECORDS}_std as select * from {PREPARED_RECORDS}_std_frame")
        con.unregister(f"{PREPARED_RECORDS}_std_frame")
        records = cls._from_std(con, f"{PREPARED_RECORDS}_std")
        records.load_frame()
        return records

    @classmethod
    def from_table(
        cls,
        con: duckdb.DuckDBPyConnection,
        table: str,
        chunk_rows: int = PREPARE_CHUNK_ROWS,
        max_in_memory: int | None = None,
        load_frame: bool = True,
    ) -> PreparedRecords:
        """From a standardized table of ``con``. ``load_frame`` false: the frame is left for
        `load_frame` (an incremental night loads only the records of tonight's pairs)."""
        present = {row[0] for row in con.execute(f"describe {table}").fetchall()}
        select = ", ".join(_quoted(c) for c in LINK_COLUMNS if c in present)
        rows, low, high = con.execute(f"select count(*), min(record_key), max(record_key) from {table}").fetchone()
        con.execute(f"drop table if exists {PREPARED_RECORDS}")
        if rows <= (IN_MEMORY_MAX_RECORDS if max_in_memory is None else max_in_memory):
            records = cls._from_std(con, table)
            if load_frame:
                records.load_frame()
            return records
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
        if self.frame is not None and self.frame_complete:
            return self.frame.select(pl.col(list(columns)).gather(self._order))
        listed = ", ".join(_quoted(c) for c in columns)
        return self.con.execute(f"select {listed} from {self.table} order by record_key").pl()

    def keys(self) -> np.ndarray:
        if self.frame is not None and self.frame_complete:
            return self._keys
        return self.select("record_key").get_column("record_key").to_numpy()
    def term_frequencies(self, column: str) -> pl.DataFrame:
        """value, tf: the share of records (with the field filled) holding each value, by value:
        a sum over the table (the expected tf) then adds up in the same order every night."""
        if self.frame is not None and self.frame_complete:
            values = self.frame.get_column(column).drop_nulls().cast(pl.String)
            counts = values.value_counts(name="n")
            return counts.select(
                pl.col(column).alias("value"), (pl.col("n").cast(pl.Float64) / len(values)).alias("tf")
            ).cast({"value": pl.String, "tf": pl.Float64}).sort("value")
        return self.con.execute(
            f"""
            select cast({_quoted(column)} as varchar) as value,
                   cast(count(*) as double) / sum(count(*)) over () as tf
            from {self.table} where {_quoted(column)} is not null
            group by {_quoted(column)} order by value
            """
        ).pl().cast({"value": pl.String, "tf": pl.Float64})

    def _positions(self, keys: np.ndarray) -> pl.Series:
        """Each key's row in the frame; null for a key that is no record."""
        at = np.searchsorted(self._keys, keys)
        inside = at < len(self._keys)
        found = np.zeros(len(keys), dtype=bool)
        found[inside] = self._keys[at[inside]] == keys[inside]
        if not self.frame_complete and not found.all():
            raise ValueError("a pair's record is not in the loaded frame")
        rows = self._order[np.where(found, at, 0)] if len(self._order) else np.zeros(len(keys), dtype=np.int64)
        positions = pl.Series(rows, dtype=pl.UInt32)
        if found.all():
            return positions
        return pl.select(pl.when(pl.Series(found)).then(positions)).to_series()

    def pair_frame(self, pairs: pl.DataFrame, key_ranges: tuple[int, int, int, int] | None = None) -> pl.DataFrame:
        """As `linkage.compare.pair_frame`: the pairs, in their order, with each side's fields.

        ``key_ranges``: (low, high) of the left keys, then of the right keys (high
        exclusive), when the caller knows them: DuckDB then reads only those row groups.
        """
        cols = ["record_key", *[c for c in PAIR_COLUMNS if c in self.columns]]
        if self.frame is not None:
            fields = self.frame.select(cols[1:])
            sides = [
                fields.select(pl.all().gather(self._positions(pairs[f"record_key_{s}"].to_numpy()))).rename(
                    {c: f"{c}_{s}" for c in cols[1:]}
                )
                for s in ("l", "r")
            ]
            return pl.concat([pairs, *sides], how="horizontal")
        left, right = self.table, self.table
        if key_ranges is not None:
            l_low, l_high, r_low, r_high = (int(k) for k in key_ranges)
            left = f"(select * from {self.table} where record_key >= {l_low} and record_key < {l_high})"
            right = f"(select * from {self.table} where record_key >= {r_low} and record_key < {r_high})"
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
        self.con.execute(f"drop view if exists {LINK_STD}")
        self.con.execute(f"drop table if exists {PREPARED_RECORDS}_std")
        self.frame = None
