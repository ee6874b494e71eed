"""Seconds of ingest's record-id rule (record_id_is_id_number) at city scale.

    .venv/bin/python benchmarks/bench_record_id_rule.py [--rows 10000000] [--repeat 5]

Every row of the night passes through the rule: it asks of each record id whether it has
the form of an identity number (`linkage.id_numbers.identity_number_form`), and of each
source whether its record ids are identity numbers (stg_ingest_rows_rejected: the CTEs
record_id_forms, id_number_sources, record_ids_id_numbers, and the join in `flagged`).
For three nights of N rows over 10 sources (every row with a name) it builds `ingest_rows`
in DuckDB and prints the median seconds of:

* `form`: the form macro alone over the record-id column;
* `per row`: a per-row rule in the old rule's form, `case when is_identity_number(record_id)`
  over every row (what the rule cost before it was decided per source);
* `per source`: the rule as stg_ingest_rows_rejected has it, its CTEs read from the SQL file,
  ending in the flag of every row (the rest of the model, the name rule and the duplicates,
  is left out: it costs the same with either rule).

The nights: `0%`, every record id of another shape ('HJ0000000001'); `1%`, every 100th a
number of region code + date + sequence (18 digits around a real date: the layout that passes
the check character by chance about once in 11); `one source 100%`, the first source's record
ids all identity numbers (1 in 20 with a typo in its check character), the rest 'HJ…'.
Synthetic numbers only (random digits with their check character computed). Prints; writes
nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import duckdb

from linkage.id_numbers import define_identity_number_macro
from linkage.sql import load_sql

SOURCES = 10
FIELDS = ("department", "source_kind", "file_sha256", "name", "id_number", "sex", "birth_date", "ethnicity",
          "phone", "hukou_address", "hukou_region", "residence_address", "residence_region", "household_id",
          "relation_to_head", "house_id", "employer", "registered_at", "updated_at")

# Check character of the 17 digits `d` in SQL, to build identity numbers that check.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "substr('10X98765432', ((" + " + ".join(
    f"(ascii(substr(d, {i}, 1)) - 48) * {w}" for i, w in enumerate(_WEIGHTS, start=1)
) + ") % 11 + 1)::bigint, 1)"


def build(con: duckdb.DuckDBPyConnection, rows: int, scenario: str) -> None:
    """`ingest_rows` of `rows` rows over 10 sources; record ids by scenario."""
    per_source = rows // SOURCES
    if scenario == "0%":
        record_id = "'HJ' || lpad(i::varchar, 10, '0')"
    elif scenario == "1%":
        # every 100th row: 3306 02 + a 2023 date + a 4-digit sequence (18 digits, a real "birth date")
        record_id = ("case when i % 100 = 0 then '330602' || strftime(date '2023-01-01' + (i // 100 % 365)::int, '%Y%m%d')"
                     " || lpad((i // 100 % 10000)::varchar, 4, '0') else 'HJ' || lpad(i::varchar, 10, '0') end")
    else:  # source 0's record ids are all identity numbers (1 in 20 with a typo), the rest 'HJ…'
        record_id = (f"case when i < {per_source} then d || case when i % 20 = 0 then (case when {_CHECK} = '0' then '1' else '0' end) else {_CHECK} end "
                     "else 'HJ' || lpad(i::varchar, 10, '0') end")
    con.execute("drop table if exists ingest_rows")
    con.execute(
        f"""
        create temp table ingest_rows as
        with n as (
            select i, '330602' || strftime(date '1950-01-01' + (i % 20000)::int, '%Y%m%d')
                      || lpad((i % 1000)::varchar, 3, '0') as d
            from range({rows}) t(i)
        )
        select
            i as ingest_position,
            's' || (i // {per_source})::varchar as source,
            'f.csv' as file,
            (i // {per_source})::int as source_order,
            0::int as file_order,
            (i % {per_source} + 1)::int as row_number,
            {record_id} as record_id,
            {", ".join(f"'张伟' as {f}" if f == "name" else f"null::varchar as {f}" for f in FIELDS)}
        from n
        """
    )


def timed(con: duckdb.DuckDBPyConnection, sql: str, repeat: int, **params) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = con.execute(sql, params or None).fetchall()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: its own)")
    args = parser.parse_args()

    con = duckdb.connect()
    if args.threads:
        con.execute(f"set threads = {args.threads}")
    define_identity_number_macro(con)
    head, found, _ = load_sql("stg_ingest_rows_rejected").partition("\nflagged as (")
    if not found:
        raise SystemExit("stg_ingest_rows_rejected has no CTE `flagged`: update this benchmark")
    queries = {
        "form": "select count(*) from ingest_rows where identity_number_form(record_id) is not null",
        "per row": """
            select count(rule_problem) from (
                select case when record_id is null then 'missing_record_id'
                            when is_identity_number(record_id) then 'record_id_is_id_number' end as rule_problem
                from ingest_rows
            )""",
        "per source": head + """
            flagged as (
                select case when r.record_id is null then 'missing_record_id'
                            when i.ingest_position is not null then 'record_id_is_id_number' end as rule_problem
                from readable r
                left join record_ids_id_numbers i using (ingest_position)
            )
            select count(rule_problem) from flagged""",
    }

    threads = con.execute("select current_setting('threads')").fetchone()[0]
    print(f"{args.rows:,} rows, {SOURCES} sources, median of {args.repeat}, DuckDB threads {threads}")
    print(f"{'record ids of the form':<20}{'form':>8}{'per row':>10}{'per source':>12}  flagged per row / per source")
    for scenario in ("0%", "1%", "one source 100%"):
        build(con, args.rows, scenario)
        seconds, flagged = {}, {}
        for name, sql in queries.items():
            seconds[name], result = timed(con, sql, args.repeat)
            flagged[name] = result[0][0]
        print(f"{scenario:<20}" + "".join(f"{seconds[n]:>{w}.2f}s" for n, w in
                                          (("form", 7), ("per row", 9), ("per source", 11)))
              + f"  {flagged['per row']:,} / {flagged['per source']:,}")


if __name__ == "__main__":
    main()
