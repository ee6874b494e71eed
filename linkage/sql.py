"""Run the project's SQL files: one file per table, the file's stem is the table's name.

`sql/<layer>/<table>.sql` holds a single SELECT (a chain of CTEs ending in
`select * from <last_cte>`); `materialize` wraps it in CREATE OR REPLACE TABLE.
Parameters are DuckDB prepared-statement parameters (`$run_id`), never string
formatting, so a source name or a path cannot change the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import duckdb

SQL_ROOT = Path(__file__).resolve().parent.parent / "sql"
LAYERS = ("staging", "intermediate", "marts")


@cache
def sql_path(table: str) -> Path:
    for layer in LAYERS:
        candidate = SQL_ROOT / layer / f"{table}.sql"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no SQL file for table '{table}' under {SQL_ROOT}/{{{','.join(LAYERS)}}}")


def load_sql(table: str) -> str:
    return sql_path(table).read_text(encoding="utf-8")


def relation_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """A table or view of that name is visible to `con` (temporary ones included)."""
    return bool(
        con.execute("select count(*) from information_schema.tables where table_name = $n", {"n": name}).fetchone()[0]
    )


def raw_values_join(
    con: duckdb.DuckDBPyConnection, present: set[str], wanted: Iterable[str], raw_values: str,
    only_keys: str | None = None,
) -> tuple[str, list[str]]:
    """Where a standardized relation (alias ``s``, columns ``present``) lacks `<field>_raw`
    columns of ``wanted``, take them from ``raw_values`` (alias ``v``) by record_key.

    ``only_keys``: a relation of the record_keys the query keeps. The raw values are cut to
    them before the join: DuckDB otherwise joins every record's raw row first.

    Returns the join clause and the select expressions of the columns it adds; ("", []) when
    nothing is missing or ``raw_values`` does not exist (a frame that holds its raw copies).
    """
    missing = [c for c in wanted if c.endswith("_raw") and c not in present]
    if not missing or not relation_exists(con, raw_values):
        return "", []
    available = {row[0] for row in con.execute(f"describe {raw_values}").fetchall()}
    taken = [c for c in missing if c in available]
    if not taken:
        return "", []
    joined = raw_values if only_keys is None else f"(select * from {raw_values} semi join {only_keys} using (record_key))"
    return f"left join {joined} v using (record_key)", [f'v."{c}"' for c in taken]


def create_view(con: duckdb.DuckDBPyConnection, view: str) -> None:
    """Define `view` from its SQL file: for a table that would only copy another's columns."""
    body = load_sql(view).strip().rstrip(";")
    con.execute(f"create or replace view {view} as\n{body}")


def materialize(con: duckdb.DuckDBPyConnection, table: str, *, temporary: bool = False, **params: object) -> int:
    """Build `table` from its SQL file; return its row count.

    `temporary`: a staging table that lives only for this connection, never written to the file.
    """
    body = load_sql(table).strip().rstrip(";")
    kind = "temp table" if temporary else "table"
    statement = f"create or replace {kind} {table} as\n{body}"
    if params:
        con.execute(statement, params)
    else:
        con.execute(statement)
    return con.execute(f"select count(*) from {table}").fetchone()[0]
