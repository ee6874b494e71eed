"""Ingest stage: every source's extracts into `raw_records` and `quarantine`.

All files are read and checked before any table is replaced, so a bad file or
mapping stops the night with the previous night's tables untouched. Each row
ends in exactly one of `raw_records` (accepted) or `quarantine` (with a reason).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from flows.config import CANONICAL_FIELDS, ConfigError, Source, SourcesConfig
from flows.readers import (
    Extract,
    check_parquet_pages,
    check_xlsx_sheets,
    decodes_cleanly,
    file_identity,
    read_csv,
    read_jsonl,
    read_parquet,
    read_xlsx,
)
from linkage.fields import NAME_PLACEHOLDERS, QUARANTINE_OWN_RECORD_ID, QUARANTINE_SHEET
from linkage.id_numbers import (
    IDENTITY_NUMBER_FORM_MACRO,
    IDENTITY_NUMBER_MACRO,
    MASKED_ID_NUMBER_SQL,
    define_identity_number_macro,
)
from linkage.sql import materialize

RAW_FIELDS: tuple[str, ...] = CANONICAL_FIELDS
# The contract's columns and reason_code; file_row: where the clerk finds the row in the file
# (the line a CSV or JSON lines record starts on, a workbook row's Excel row in its sheet;
# a Parquet row's row), beside row_number, the data row (readers.row_place).
QUARANTINE_COLUMNS = ["source", "file", "row_number", "record_id", "reason_code", "reason", "file_row"]

# readers.row_place, in SQL: how stg_ingest_rows_rejected's reasons name a row (and the row
# that replaced a superseded one). ``fmt``: the source's format; ``sheet``: the sheet's name
# where a workbook's data runs over several sheets, else null; ``note`` (Chinese only) goes
# inside the parentheses.
ROW_PLACE_MACROS = (
    """
    create or replace temp macro row_place_zh(fmt, sheet, file_row, row_number, note) as (
        case
            when fmt = 'parquet' or file_row is null then
                case when file_row is null then '数据第' else '第' end || row_number || '行'
                || coalesce('(' || note || ')', '')
            else
                case when fmt <> 'xlsx' then '文件第'
                     when sheet is not null then '工作表 ' || sheet || ' 第'
                     else 'Excel 第' end
                || file_row || '行(数据第' || row_number || '行' || coalesce('，' || note, '') || ')'
        end
    )
    """,
    """
    create or replace temp macro row_place_en(fmt, sheet, file_row, row_number) as (
        case
            when file_row is null then 'data row ' || row_number
            when fmt = 'parquet' then 'row ' || row_number
            when fmt <> 'xlsx' then 'line ' || file_row || ', data row ' || row_number
            when sheet is not null then 'sheet ' || sheet || ', Excel row ' || file_row || ', data row ' || row_number
            else 'Excel row ' || file_row || ', data row ' || row_number
        end
    )
    """,
)


def define_row_place_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Define ``row_place_zh`` and ``row_place_en`` on ``con`` (temporary, per connection)."""
    for statement in ROW_PLACE_MACROS:
        con.execute(statement)


@dataclass(frozen=True)
class IngestResult:
    rows_in: int
    accepted: int
    quarantined: int
    files: list[dict]
    per_source: list[dict]
    # Seconds spent reading, before the flow started, the extracts this ingest took from
    # `prefetch_extracts`: work of the night that the stage's own time does not hold.
    read_ahead_seconds: float = 0.0


def read_extract(source: Source, file: Path) -> Extract:
    required = source.mapped_columns
    record_id_columns = source.columns["record_id"]
    if source.format == "csv":
        return read_csv(file, source.encoding, required, source.name, record_id_columns)
    if source.format == "xlsx":
        return read_xlsx(file, required, source.name)
    if source.format == "parquet":
        return read_parquet(file, required, source.name)
    if source.format == "jsonl":
        return read_jsonl(file, source.encoding, required, source.name, record_id_columns)
    raise ConfigError(f"{file}: unsupported format {source.format!r}")


# Extracts read ahead of the flow (see `prefetch_extracts`), keyed by source, path, size and
# modification time so a file changed in between is read again.
_prefetched: dict[tuple[str, str, int, int], tuple[Extract, float]] = {}


def _file_key(source: Source, file: Path) -> tuple[str, str, int, int]:
    return source.name, *file_identity(file)


# Rows of one DuckDB row group: an Arrow batch of this size is one insert thread's share.
ROW_GROUP_ROWS = 122_880

# Past this many rows the rest is read by the ingest task itself: read-ahead must not
# hold a whole large city in memory.
PREFETCH_ROW_BUDGET = 2_500_000


def prefetch_extracts(config: SourcesConfig, row_budget: int | None = None) -> int:
    """Read extracts now, for the ingest task to take later; returns rows read.

    The CLI calls this while Prefect's temporary server starts (10-25 s of waiting on a
    small machine), so the night's reading overlaps that wait. Reading writes nothing.
    """
    row_budget = PREFETCH_ROW_BUDGET if row_budget is None else row_budget
    rows = 0
    for source in config.sources:
        for file in source.files:
            if rows >= row_budget:
                return rows
            key = _file_key(source, file)
            if key not in _prefetched:
                started = time.perf_counter()
                extract = read_extract(source, file)
                _prefetched[key] = (extract, time.perf_counter() - started)
            rows += _prefetched[key][0].rows_in
    return rows


# Extracts not read ahead but checked to be readable to their end (see `check_extracts`).
_checked: set[tuple[str, str, int, int]] = set()


def check_extract(source: Source, file: Path) -> None:
    """Raise the ConfigError reading ``file`` would raise, without keeping its rows.

    Every ConfigError of the readers is one of: the header (`check_file_header`, the
    preflight's check), the encoding of a CSV or JSON lines file (only a file with bytes
    that do not decode can be refused for it: one streaming pass finds whether there are
    any, and only then is the file read as ingest reads it, to apply the same rule), a
    Parquet page that does not decode (every row group is decoded, one at a time), and a
    workbook's later sheets (`check_xlsx_sheets`; a one-sheet workbook was parsed whole by
    the header check).
    """
    from flows import readers
    from flows.preflight import check_file_header

    # A workbook preflight kept for the read stays kept.
    check_file_header(source, file, keep_open=source.format == "xlsx" and file_identity(file) in readers._opened_sheet)
    if source.format in ("csv", "jsonl"):
        if not decodes_cleanly(file, source.encoding):
            read_extract(source, file)
    elif source.format == "parquet":
        check_parquet_pages(file)
    elif source.format == "xlsx":
        check_xlsx_sheets(file, source.mapped_columns, source.name)


def check_extracts(config: SourcesConfig) -> int:
    """Make sure every extract not read ahead can be read to its end; returns files checked.

    A file past the read-ahead budget is read by the ingest task, after the run has opened
    its DuckDB file and written its ledger row: a bad file found only then would have
    written to the night's output. This runs before, and writes nothing.
    """
    checked = 0
    for source in config.sources:
        for file in source.files:
            key = _file_key(source, file)
            if key in _prefetched or key in _checked:
                continue
            check_extract(source, file)
            _checked.add(key)
            checked += 1
    return checked


def _take_or_read(source: Source, file: Path) -> tuple[Extract, float]:
    """The extract, and the seconds it took to read when it was read ahead (else 0)."""
    key = _file_key(source, file)
    _checked.discard(key)
    taken = _prefetched.pop(key, None)
    return taken if taken is not None else (read_extract(source, file), 0.0)


def _canonical_frame(source: Source, extract: Extract, relative_file: str, order: tuple[int, int]) -> pl.DataFrame:
    raw = extract.frame
    fields: dict[str, pl.Expr] = {}
    for canonical in RAW_FIELDS:
        parts = source.columns.get(canonical)
        if parts is None:
            fields[canonical] = pl.lit(None, dtype=pl.String)
        elif len(parts) == 1:
            fields[canonical] = pl.col(parts[0])
        else:
            # A field spread over several columns: join the non-empty parts with one space.
            joined = pl.concat_str([pl.col(p) for p in parts], separator=" ", ignore_nulls=True)
            fields[canonical] = pl.when(joined.str.len_chars() > 0).then(joined).otherwise(None)
    return raw.select(
        pl.lit(source.name).alias("source"),
        pl.lit(source.department).alias("department"),
        pl.lit(source.kind).alias("source_kind"),
        pl.lit(relative_file).alias("file"),
        pl.lit(order[0], dtype=pl.Int32).alias("source_order"),
        pl.lit(order[1], dtype=pl.Int32).alias("file_order"),
        pl.col("row_number"),
        pl.col("file_row"),
        pl.lit(extract.sha256).alias("file_sha256"),
        *[expr.alias(name) for name, expr in fields.items()],
    )


def _rejected_frame(source: Source, extract: Extract, relative_file: str, order: tuple[int, int]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "source": [source.name] * len(extract.rejected),
            "file": [relative_file] * len(extract.rejected),
            "row_number": [r.row_number for r in extract.rejected],
            "record_id": [r.record_id for r in extract.rejected],
            "reason_code": [r.reason_code for r in extract.rejected],
            "reason": [r.reason for r in extract.rejected],
            "file_row": [r.file_row for r in extract.rejected],
            "source_order": [order[0]] * len(extract.rejected),
            "file_order": [order[1]] * len(extract.rejected),
        },
        schema={
            "source": pl.String,
            "file": pl.String,
            "row_number": pl.Int32,
            "record_id": pl.String,
            "reason_code": pl.String,
            "reason": pl.String,
            "file_row": pl.Int32,
            "source_order": pl.Int32,
            "file_order": pl.Int32,
        },
    )


def _load_files(
    con: duckdb.DuckDBPyConnection,
    config: SourcesConfig,
    rejected: list[pl.DataFrame],
    files: list[dict],
    on_file: Callable[[str, int], None] | None,
    sheets: list[dict] | None = None,
) -> float:
    """Append every extract's rows to the temporary table ingest_rows, one file at a time;
    return the seconds the extracts taken from the read-ahead took to read."""
    position = 0
    created = False
    read_ahead = 0.0
    for source_order, source in enumerate(config.sources):
        for file_order, file in enumerate(source.files):
            extract, read_seconds = _take_or_read(source, file)
            read_ahead += read_seconds
            relative = config.relative(file)
            # Rows are numbered in source, file and row order: the position is the record_key
            # the design asks for (gaps where rows are quarantined are harmless).
            frame = _canonical_frame(source, extract, relative, (source_order, file_order)).with_row_index(
                "ingest_position", offset=position
            )
            position += frame.height
            # Arrow's large strings copy into DuckDB about twice as fast as polars' string views;
            # in batches of a row group, DuckDB's threads insert one each.
            rows = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
            con.register("file_rows", pa.Table.from_batches(rows.to_batches(max_chunksize=ROW_GROUP_ROWS), rows.schema))
            if not created:
                con.execute("create temp table ingest_rows as select * from file_rows")
                created = True
            else:
                con.execute("insert into ingest_rows select * from file_rows")
            con.unregister("file_rows")
            del frame
            rejected.append(_rejected_frame(source, extract, relative, (source_order, file_order)))
            if sheets is not None:
                sheets.extend({"source": source.name, "file": relative, "sheet": name, "first_row": first,
                               "last_row": last} for name, first, last in extract.sheets)
            files.append(
                {
                    "source": source.name,
                    "file": relative,
                    "size_bytes": extract.size_bytes,
                    "sha256": extract.sha256,
                    "rows": extract.rows_in,
                }
            )
            del extract
            if on_file is not None:
                on_file(relative, files[-1]["rows"])
    return read_ahead


def ingest_sources(
    con: duckdb.DuckDBPyConnection,
    config: SourcesConfig,
    run_id: str,
    on_file: Callable[[str, int], None] | None = None,
) -> IngestResult:
    """Read every extract, apply the row rules, and replace raw_records and quarantine.

    Each file's rows go into a temporary DuckDB table as soon as they are read and the
    frame is dropped, so a night's peak memory is one extract, not the whole city; a bad
    file later on drops the temporary table and leaves every kept table as it was.
    """
    rejected: list[pl.DataFrame] = []
    files: list[dict] = []
    sheets: list[dict] = []
    con.execute("drop table if exists ingest_rows")
    try:
        read_ahead_seconds = _load_files(con, config, rejected, files, on_file, sheets)
    except BaseException:
        con.execute("drop table if exists ingest_rows")
        raise
    read_rejects = pl.concat(rejected, how="vertical")
    del rejected

    con.register("read_rejects", read_rejects)
    # Where a workbook's data runs over several sheets: a reason names the sheet of a row.
    con.register("sheet_rows", pl.DataFrame(sheets, schema={"source": pl.String, "file": pl.String,
                                                            "sheet": pl.String, "first_row": pl.Int32,
                                                            "last_row": pl.Int32}))
    con.register("source_formats", pl.DataFrame({"source": [s.name for s in config.sources],
                                                 "format": [s.format for s in config.sources]},
                                                schema={"source": pl.String, "format": pl.String}))
    define_identity_number_macro(con)
    define_row_place_macros(con)
    con.execute("begin transaction")
    try:
        materialize(con, "stg_ingest_rows_rejected", temporary=True,
                    name_placeholders=sorted(word.upper() for word in NAME_PLACEHOLDERS))
        con.execute(
            f"""
            create or replace table raw_records as
            select
                cast(ingest_position as bigint) as record_key,
                source, department, source_kind, file, row_number, file_sha256,
                $run_id as load_batch,
                {", ".join(RAW_FIELDS)}
            from ingest_rows
            anti join stg_ingest_rows_rejected using (ingest_position)
            """,
            {"run_id": run_id},
        )
        # quarantine.parquet is published city-wide: a record id that is an identity number is
        # kept masked, like every id there; the file and row number still find the row. That is
        # every row of the rule above; in a source the rule found to carry identity numbers,
        # every record id of their form (a row the reader could not use, too); and anywhere, an
        # 18-character one that passes the check character (a row the reader could not use of a
        # source with no other evidence). The department's own report shows its own value in
        # full (own_record_id, which publish leaves out).
        quarantine_columns = ", ".join(
            f"case when reason_code = 'record_id_is_id_number' or {IDENTITY_NUMBER_MACRO}(trim(record_id)) "
            f"or ({IDENTITY_NUMBER_FORM_MACRO}(trim(record_id)) is not null "
            "and source in (select source from id_number_sources)) "
            f"then {MASKED_ID_NUMBER_SQL.format(value='trim(record_id)')} "
            "else record_id end as record_id" if column == "record_id" else column
            for column in QUARANTINE_COLUMNS
        )
        con.execute(
            f"""
            create or replace table quarantine as
            with id_number_sources as (
                select distinct source from stg_ingest_rows_rejected where reason_code = 'record_id_is_id_number'
            )
            select {quarantine_columns}, record_id as {QUARANTINE_OWN_RECORD_ID}, {QUARANTINE_SHEET} from (
                select {", ".join(QUARANTINE_COLUMNS)}, {QUARANTINE_SHEET}, source_order, file_order
                from stg_ingest_rows_rejected
                union all
                select {", ".join(QUARANTINE_COLUMNS)}, null::varchar, source_order, file_order from read_rejects
            )
            order by source_order, file_order, row_number
            """
        )
        con.execute(
            """
            create table if not exists ingest_files (
                run_id varchar, source varchar, file varchar, size_bytes bigint, sha256 varchar, rows bigint
            )
            """
        )
        con.execute("delete from ingest_files where run_id = $run_id", {"run_id": run_id})
        files_frame = pl.DataFrame(files, schema={"source": pl.String, "file": pl.String, "size_bytes": pl.Int64,
                                                  "sha256": pl.String, "rows": pl.Int64})
        con.register("files_frame", files_frame)
        con.execute("insert into ingest_files select $run_id, * from files_frame", {"run_id": run_id})
        con.execute(
            """
            create table if not exists run_source_counts (
                run_id varchar, source varchar, rows_in bigint, accepted bigint, quarantined bigint
            )
            """
        )
        con.execute("delete from run_source_counts where run_id = $run_id", {"run_id": run_id})
        source_names = pl.DataFrame({"source": [s.name for s in config.sources],
                                     "source_order": list(range(len(config.sources)))})
        con.register("source_names", source_names)
        con.execute(
            """
            insert into run_source_counts
            select $run_id, s.source,
                   coalesce(a.n, 0) + coalesce(q.n, 0), coalesce(a.n, 0), coalesce(q.n, 0)
            from source_names s
            left join (select source, count(*) n from raw_records group by source) a using (source)
            left join (select source, count(*) n from quarantine group by source) q using (source)
            order by s.source_order
            """,
            {"run_id": run_id},
        )
        con.execute("drop table stg_ingest_rows_rejected")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        for view in ("read_rejects", "sheet_rows", "source_formats", "files_frame", "source_names"):
            con.unregister(view)
        con.execute("drop table if exists ingest_rows")
    per_source = (
        con.execute(
            "select source, rows_in, accepted, quarantined from run_source_counts where run_id = $run_id",
            {"run_id": run_id},
        )
        .pl()
        .to_dicts()
    )
    accepted = sum(s["accepted"] for s in per_source)
    quarantined = sum(s["quarantined"] for s in per_source)
    return IngestResult(
        rows_in=accepted + quarantined,
        accepted=accepted,
        quarantined=quarantined,
        files=files,
        per_source=per_source,
        read_ahead_seconds=read_ahead_seconds,
    )
