"""The nightly stages as plain functions over a `RunContext`.

Prefect tasks in `flows/nightly.py` call these one to one; tests call them directly
so they run without a Prefect server. Each stage reads and writes tables in the
run's DuckDB connection and returns a `StageResult` for the run ledger.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import secrets
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from flows.config import SourcesConfig
from flows.ingest import ingest_sources
from flows.settings import Settings

CHINA_TIME = ZoneInfo("Asia/Shanghai")


@dataclass
class StageResult:
    stage: str
    seconds: float
    rows_in: int
    rows_out: int
    details: dict = field(default_factory=dict)

    def ledger_entry(self) -> dict:
        entry = {"stage": self.stage, "seconds": round(self.seconds, 3), "rows_in": self.rows_in, "rows_out": self.rows_out}
        if self.details.get("read_ahead_seconds"):
            # Ingest's reading done before the flow started (flows.ingest.prefetch_extracts):
            # the stage's own seconds do not hold it, the night's clock does.
            entry["read_ahead_seconds"] = round(self.details["read_ahead_seconds"], 3)
        return entry


@dataclass(frozen=True)
class LinkageSummary:
    metrics: dict
    model: dict | None


@dataclass
class RunContext:
    config: SourcesConfig
    out_dir: Path
    db_path: Path
    con: duckdb.DuckDBPyConnection
    settings: Settings
    run_id: str
    started_at: dt.datetime
    sources_sha256: str
    stages: list[StageResult] = field(default_factory=list)
    # Results handed from stage to stage that are not tables.
    ingest: object | None = None
    linkage: object | None = None
    rates: object | None = None
    validation: object | None = None
    standardization_metrics: pl.DataFrame | None = None
    # "full" or "incremental": whether tonight reuses last night's work for unchanged rows.
    refresh: str = "full"
    # Why (standardize_plan's reason), for metrics.json's linkage.refresh_reason.
    refresh_why: str = ""
    # Whether int_pairs_scored is in the record keys int_persons_standardized had before
    # tonight's standardize stage (see STANDARDIZED_KEYS_RUN): the link stage carries last
    # night's pairs over only then.
    pairs_reusable: bool = True
    # Likewise for the stored block keys (BLOCK_KEYS_RUN).
    block_keys_reusable: bool = False

    @property
    def as_of(self) -> dt.date:
        """The night's own date in China: dates after it are "in the future", ages are on it."""
        return self.started_at.astimezone(CHINA_TIME).date()

    @property
    def staging_dir(self) -> Path:
        """Where the run's files are written until the run publishes them."""
        return self.out_dir / "runs" / f".{self.run_id}.partial"

    @property
    def run_dir(self) -> Path:
        return self.out_dir / "runs" / self.run_id


def new_run_id(now: dt.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def connect(db_path: Path, settings: Settings) -> duckdb.DuckDBPyConnection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db_path))
    con.execute(f"set memory_limit = '{settings.duckdb_memory_limit}'")
    if settings.duckdb_threads:
        con.execute(f"set threads = {int(settings.duckdb_threads)}")
    if settings.duckdb_temp_dir:
        con.execute("set temp_directory = $dir", {"dir": str(settings.duckdb_temp_dir)})
    con.execute("set preserve_insertion_order = false")
    con.execute("set enable_progress_bar = false")
    return con


# ---------------------------------------------------------------------------- ledger

def ledger_start(ctx: RunContext) -> None:
    ctx.con.execute(
        """
        create table if not exists run_ledger (
            run_id varchar primary key, started_at timestamptz, finished_at timestamptz, status varchar,
            sources_file varchar, sources_sha256 varchar, stages json, message varchar
        )
        """
    )
    # This process holds the DuckDB file (DuckDB locks it), so a run still marked running is
    # one whose process ended without finishing: killed, or the machine went down.
    ctx.con.execute(
        "update run_ledger set status = 'stopped', message = $message where status = 'running'",
        {"message": "运行中途停止（进程被终止或机器停机），未发布 (the process ended before the run finished; nothing was published)"},
    )
    ctx.con.execute(
        "insert into run_ledger values ($run_id, $started, null, 'running', $file, $sha, '[]', null)",
        {"run_id": ctx.run_id, "started": ctx.started_at, "file": str(ctx.config.path), "sha": ctx.sources_sha256},
    )


def remove_abandoned_staging(ctx: RunContext) -> list[Path]:
    """Remove the `runs/.<run_id>.partial/` folders of runs that stopped half-way; returns them.

    Called while the run holds the output folder's lock, so no other run is writing one.
    """
    runs = ctx.out_dir / "runs"
    abandoned = sorted(p for p in runs.glob(".*.partial") if p != ctx.staging_dir) if runs.is_dir() else []
    for folder in abandoned:
        shutil.rmtree(folder, ignore_errors=True)
    return abandoned


def ledger_record_stage(ctx: RunContext, result: StageResult) -> None:
    ctx.stages.append(result)
    ctx.con.execute(
        "update run_ledger set stages = $stages where run_id = $run_id",
        {"stages": json.dumps([s.ledger_entry() for s in ctx.stages]), "run_id": ctx.run_id},
    )


def ledger_finish(ctx: RunContext, status: str, message: str | None = None) -> None:
    ctx.con.execute(
        "update run_ledger set finished_at = $now, status = $status, message = $message where run_id = $run_id",
        {"now": dt.datetime.now(dt.UTC), "status": status, "message": message, "run_id": ctx.run_id},
    )


def _timed(stage: str, rows_in: int, body) -> StageResult:
    started = time.perf_counter()
    rows_out, details = body()
    return StageResult(stage, time.perf_counter() - started, rows_in, rows_out, details)


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"select count(*) from {table}").fetchone()[0]


# ---------------------------------------------------------------------------- stages

def ingest(ctx: RunContext, on_file=None) -> StageResult:
    started = time.perf_counter()
    result = ingest_sources(ctx.con, ctx.config, ctx.run_id, on_file=on_file)
    ctx.ingest = result
    details = {"quarantined": result.quarantined, "files": len(result.files),
               "read_ahead_seconds": result.read_ahead_seconds}
    return StageResult("ingest", time.perf_counter() - started, result.rows_in, result.accepted, details)


# Bump when a change to linkage/standardize.py changes what a row standardizes to: the
# next night then re-standardizes every row instead of reusing last night's values.
# 2: int_persons_standardized stores standardization_flags instead of the raw copies.
# 3: nor the provenance columns (file, row_number, file_sha256, load_batch).
# 4: *_township maps a code of another vintage to the township's learned code
#    (std_region_township_aliases).
# 5: an id number with digits a spreadsheet lost (330602199001021###) is no id.
# 6: link_ref, each row's number for its stored block keys (linkage.block.StoredBlockKeys).
STANDARDIZE_VERSION = 6
# Rows standardized at a time on a full night: polars holds one slice, DuckDB the rest. Two
# DuckDB row groups (122,880 rows each): an insert that ends on a partial row group costs the
# next one a rewrite of it (writing the 1M city's table: 5.5 s in 250,000-row inserts, 4.2 s
# in 245,760-row ones).
STANDARDIZE_CHUNK_ROWS = 245_760
# Rows of one Arrow record batch handed to DuckDB's insert (one row group).
_WRITE_PIECE_ROWS = 122_880
# Above this share of changed rows a night re-standardizes (and re-links) everything.
INCREMENTAL_MAX_CHANGED_SHARE = 0.2
# pipeline_state keys naming the run whose record keys int_persons_standardized and
# int_pairs_scored are in. An incremental night carries last night's scored pairs over by
# mapping their keys through int_persons_standardized: that holds only when both tables were
# written by the same night. The standardize stage names its run before it changes the table,
# the link stage after it has written the pairs, so a night stopped (killed, or failed) in
# between leaves the two different and the next night scores every pair again.
STANDARDIZED_KEYS_RUN = "standardized_keys_run"
PAIRS_KEYS_RUN = "scored_pairs_keys_run"
# The run whose standardized table the stored block keys (int_block_keys_*) were brought up
# to, and the digest of what they were computed by: like the pairs, they are updated only
# from the table the night before left, and built anew otherwise.
BLOCK_KEYS_RUN = "block_keys_run"
BLOCK_KEYS_VERSION = "block_keys_version"
# The link_ref of each row an incremental standardize took out (gone, or changed since):
# their stored block keys leave with them.
RETIRED_LINK_REFS = "std_retired_link_refs"
# Carried from tonight's row even when its standard values are last night's.
_ROW_PROVENANCE = ("record_key", "source", "department", "source_kind", "record_id", "file", "row_number",
                   "file_sha256", "load_batch")


def in_row_group_pieces(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` as chunks of one DuckDB row group each, for DuckDB to write in parallel.

    DuckDB scans one Arrow record batch per thread: a frame handed over in one piece is
    written by one thread while the other core waits.
    """
    pieces = [frame.slice(i, _WRITE_PIECE_ROWS) for i in range(0, frame.height, _WRITE_PIECE_ROWS)]
    return pl.concat(pieces, rechunk=False) if len(pieces) > 1 else frame


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(con.execute(
        "select count(*) from duckdb_tables() where table_name = $t and not temporary", {"t": table}
    ).fetchone()[0])


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [row[0] for row in con.execute(f"describe {table}").fetchall()]


def _state_value(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    if not _table_exists(con, "pipeline_state"):
        return None
    row = con.execute("select value from pipeline_state where key = $key", {"key": key}).fetchone()
    return row[0] if row else None


def set_state_value(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute("create table if not exists pipeline_state (key varchar primary key, value varchar)")
    con.execute(
        "insert into pipeline_state values ($key, $value) on conflict (key) do update set value = excluded.value",
        {"key": key, "value": value},
    )


def _raw_row_hash_sql(con: duckdb.DuckDBPyConnection) -> str:
    """A 64-bit hash of a raw_records row's content (its source, id and every raw field)."""
    from linkage.standardize import RAW_FIELDS

    present = set(_columns(con, "raw_records"))
    fields = ", ".join(f'"{c}"' for c in ("source", "record_id", *RAW_FIELDS) if c in present)
    return f"hash({fields})"


def _hash_raw_rows(con: duckdb.DuckDBPyConnection) -> None:
    """`raw_row_hashes`: each raw row's content hash, for the plan to find unchanged rows."""
    con.execute(
        f"create or replace temp table raw_row_hashes as "
        f"select record_key, source, record_id, {_raw_row_hash_sql(con)} as raw_row_hash from raw_records"
    )


def standardize_plan(ctx: RunContext) -> tuple[str, str]:
    """("full" | "incremental", why) for tonight's standardize and link stages."""
    con = ctx.con
    if ctx.settings.full_refresh:
        return "full", "full refresh asked for"
    if not _table_exists(con, "int_persons_standardized") or "raw_row_hash" not in _columns(con, "int_persons_standardized"):
        return "full", "no earlier night in this database"
    if _state_value(con, "standardize_version") != str(STANDARDIZE_VERSION) or not all(
        _table_exists(con, t) for t in REGION_CONTEXT_TABLES
    ):
        return "full", "the standardization changed since the last full night"
    # Tonight's key → last night's key, for rows whose content is unchanged: the plan counts
    # them, and an incremental night reuses them (std_reused stays for the link stage).
    con.execute(
        """
        create or replace temp table std_reused as
        select r.record_key, p.record_key as previous_key
        from raw_row_hashes r join int_persons_standardized p using (source, record_id, raw_row_hash)
        """
    )
    total = _count(con, "raw_row_hashes")
    changed = total - _count(con, "std_reused")
    if total and changed > INCREMENTAL_MAX_CHANGED_SHARE * total:
        return "full", f"{changed:,} of {total:,} records new or changed (over {INCREMENTAL_MAX_CHANGED_SHARE:.0%})"
    _restandardize_dates_come_due(ctx)
    return "incremental", f"{changed:,} of {total:,} records new or changed"


def _restandardize_dates_come_due(ctx: RunContext) -> None:
    """Take out of std_reused the unchanged rows with a date that was in the future on the night
    they were standardized and is not tonight (a rental's move-in date registered ahead, say):
    their stored value is no date, and a full night tonight would read it. Only rows whose raw
    date is kept as no date are parsed again, and they do not count as changed in the plan."""
    from linkage.dates import parse_date_column

    con = ctx.con
    dates = [c for c in ("birth_date", "registered_at", "updated_at") if c in _columns(con, "raw_records")]
    if not dates:
        return
    rejected = " or ".join(f'(r."{c}" is not null and p."{c}" is null)' for c in dates)
    candidates = con.execute(
        f"""
        select u.record_key, {", ".join(f'r."{c}"' for c in dates)}
        from std_reused u join raw_records r on r.record_key = u.record_key
        join int_persons_standardized p on p.record_key = u.previous_key
        where {rejected}
        """
    ).pl()
    if not candidates.height:
        return
    # A raw date rejected then for its form is rejected tonight too: only the range moved.
    due = pl.any_horizontal(
        [parse_date_column(candidates.get_column(c), ctx.as_of).get_column("date").is_not_null() for c in dates]
    )
    keys = candidates.filter(due).select("record_key")
    if keys.height:
        con.register("dates_come_due", keys)
        con.execute("delete from std_reused where record_key in (select record_key from dates_come_due)")
        con.unregister("dates_come_due")


# The region context of the last full night, for the incremental nights after it.
REGION_CONTEXT_TABLES = ("std_region_townships", "std_region_township_aliases", "std_region_cities")


def _save_region_context(con: duckdb.DuckDBPyConnection, context) -> None:
    cities = pl.DataFrame({"rank": list(range(len(context.preferred_cities))), "city": list(context.preferred_cities)},
                          schema={"rank": pl.Int64, "city": pl.String})
    frames = (context.learned_townships, context.township_aliases, cities)
    for table, frame in zip(REGION_CONTEXT_TABLES, frames, strict=True):
        con.register("context_frame", frame)
        con.execute(f"create or replace table {table} as select * from context_frame")
        con.unregister("context_frame")


def _load_region_context(con: duckdb.DuckDBPyConnection):
    from linkage.standardize import RegionContext

    cities = con.execute("select city from std_region_cities order by rank").fetchall()
    return RegionContext(
        tuple(row[0] for row in cities),
        con.execute("select * from std_region_townships").pl(),
        con.execute("select township_code, same_as from std_region_township_aliases").pl(),
    )


def _save_standardization_metrics(con: duckdb.DuckDBPyConnection, metrics: pl.DataFrame) -> None:
    con.register("metrics_frame", metrics)
    con.execute("create or replace table std_metrics as select * from metrics_frame")
    con.unregister("metrics_frame")


def _link_refs_from_keys() -> pl.Expr:
    """A fully standardized row's link_ref: its record_key (numbers a later night continues)."""
    return pl.col("record_key").cast(pl.Int64).alias("link_ref")


def _standardize_full(ctx: RunContext) -> pl.DataFrame:
    """Every row, a key range at a time, with the region context learned over all of them.

    DuckDB writes one key range into the table while polars standardizes the next: writing
    60 columns costs about as much as computing them, and each leaves a core idle.
    """
    from linkage.names import standardize_names
    from linkage.standardize import (
        REGION_CONTEXT_COLUMNS,
        combine_standardization_metrics,
        learn_region_context,
        standardization_metrics,
        standardize_records,
        stored_standardized,
    )

    con = ctx.con
    present = [c for c in REGION_CONTEXT_COLUMNS if c in _columns(con, "raw_records")]
    region_rows = con.execute(f"select {', '.join(present)} from raw_records").pl() if present else pl.DataFrame()
    distinct_names = con.execute("select distinct name from raw_records").pl().get_column("name")
    # The region context (polars, which lets go of the GIL) is learned while the names are
    # standardized (Python over distinct characters and romanized names); one after the other
    # they left a core idle: 1M city 2.6-2.8 s, side by side 1.7-2.1 s.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="region-context") as pool:
        learning = pool.submit(learn_region_context, region_rows)
        # Each distinct name once for the whole batch, not once per key range it appears in
        # (1M city: 397,290 distinct names, 673,127 summed over the ranges).
        names = standardize_names(distinct_names)
        context = learning.result()
    del region_rows, distinct_names
    # Ranges of exactly STANDARDIZE_CHUNK_ROWS keys (the last one shorter).
    keys = con.execute("select record_key from raw_records order by record_key").fetchnumpy()["record_key"]
    starts = [int(k) for k in keys[::STANDARDIZE_CHUNK_ROWS]]
    stops = [*starts[1:], int(keys[-1]) + 1] if len(keys) else []
    del keys
    con.execute("drop table if exists int_persons_standardized_next")
    metrics_parts = []
    # Its own cursor: a DuckDB connection runs one statement at a time.
    writer = con.cursor()
    created = False

    def write(standardized: pl.DataFrame, create: bool) -> None:
        # DuckDB scans one Arrow record batch per thread: a frame handed over in one piece is
        # written by one thread. In row-group pieces both cores write when polars leaves one
        # idle (1M city: 10.5 -> 10.0 s for the stage, 18.5 -> 16.6 s of CPU; in pieces of
        # half a row group, DuckDB's threads crowd out polars: 12.3 s).
        writer.register("standardized_frame", in_row_group_pieces(standardized))
        if create:
            writer.execute("create table int_persons_standardized_next as select * from standardized_frame")
        else:
            writer.execute("insert into int_persons_standardized_next by name select * from standardized_frame")
        writer.unregister("standardized_frame")

    # The same hash as raw_row_hashes', computed in the range's own scan: joining that table
    # for each range cost 0.4 s more at 1M records.
    row_hash = _raw_row_hash_sql(con)
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="standardize-writer") as pool:
            pending: Future | None = None
            for start, stop in zip(starts, stops, strict=True):
                raw = con.execute(
                    f"select *, {row_hash} as raw_row_hash from raw_records "
                    "where record_key >= $start and record_key < $stop",
                    {"start": start, "stop": stop},
                ).pl()
                standardized = stored_standardized(
                    standardize_records(raw, as_of=ctx.as_of, context=context, names=names)
                ).with_columns(raw["raw_row_hash"], _link_refs_from_keys())
                del raw
                metrics_parts.append(standardization_metrics(standardized))
                if pending is not None:
                    pending.result()
                pending = pool.submit(write, standardized, not created)
                created = True
                del standardized
            if pending is not None:
                pending.result()
        if not created:
            empty = stored_standardized(
                standardize_records(con.execute("select * from raw_records").pl(), as_of=ctx.as_of, context=context)
            )
            write(empty.with_columns(pl.lit(None, dtype=pl.UInt64).alias("raw_row_hash"), _link_refs_from_keys()), True)
    finally:
        writer.close()
    _save_region_context(con, context)
    return combine_standardization_metrics(*metrics_parts)


def _standardize_incremental(ctx: RunContext) -> tuple[pl.DataFrame, int]:
    """Last night's table changed in place: rows gone or changed since deleted, unchanged rows
    (std_reused, from `standardize_plan`) given tonight's keys and provenance, new and changed
    rows standardized and inserted. Rewriting the 60 columns of every row cost 4 s at 1M rows;
    this writes the provenance columns and the 1% that changed."""
    from linkage.standardize import (
        STANDARDIZATION_FLAGS,
        combine_standardization_metrics,
        standardization_metrics,
        standardize_records,
        stored_standardized,
    )

    con = ctx.con
    context = _load_region_context(con)
    changed_raw = con.execute(
        """
        select r.*, h.raw_row_hash
        from raw_row_hashes h anti join std_reused using (record_key) join raw_records r using (record_key)
        order by r.record_key
        """
    ).pl()
    # New link_refs follow every one given so far, those of the rows taken out below included:
    # a number is never given twice, so no stored block key can be taken for another row's.
    next_link_ref = con.execute("select coalesce(max(link_ref) + 1, 0) from int_persons_standardized").fetchone()[0]
    changed = stored_standardized(standardize_records(changed_raw, as_of=ctx.as_of, context=context)).with_columns(
        changed_raw["raw_row_hash"],
        (pl.int_range(pl.len(), dtype=pl.Int64) + next_link_ref).alias("link_ref"),
    )
    del changed_raw
    # Last night's rows that are not reused (gone, or changed since) leave the metrics.
    previous_columns = _columns(con, "int_persons_standardized")
    # raw_records holds tonight's rows only: last night's figures of a row are its stored flags.
    # Their link_refs, read in the same scan, retire their stored block keys.
    gone = con.execute(
        f"select source, link_ref, {STANDARDIZATION_FLAGS} from int_persons_standardized "
        "where record_key not in (select previous_key from std_reused)"
    ).pl()
    con.register("retired_frame", gone.select("link_ref"))
    con.execute(f"create or replace temp table {RETIRED_LINK_REFS} as select * from retired_frame")
    con.unregister("retired_frame")
    gone = gone.drop("link_ref")
    # After a night stopped part way, std_metrics may be older than the table: count it again.
    previous_metrics = (
        con.execute("select * from std_metrics").pl()
        if _table_exists(con, "std_metrics") and ctx.pairs_reusable else None
    )
    metrics = None
    if previous_metrics is not None:
        metrics = combine_standardization_metrics(
            previous_metrics, standardization_metrics(changed), minus=[standardization_metrics(gone)]
        )
    del gone
    # source and record_id are the join's own key: equal on both sides. department and
    # source_kind are one per source (the sources file's): rewritten only when that changed.
    unchanged = {"record_key", "source", "record_id"}
    per_source = ["department", "source_kind"]
    if all(c in previous_columns for c in per_source):
        sources_sql = f"select distinct source, {', '.join(per_source)} from "
        if con.execute(
            f"select count(*) from (({sources_sql} raw_records) except ({sources_sql} int_persons_standardized))"
        ).fetchone()[0] == 0:
            unchanged |= set(per_source)
    provenance = [c for c in _ROW_PROVENANCE if c in previous_columns and c not in unchanged]
    assignments = ", ".join(["record_key = u.record_key"] + [f'"{c}" = r."{c}"' for c in provenance])
    # Most nights only the keys move: tonight's raw rows are joined in only for a per-source
    # column that changed (10M rows: 2.0 s to update and 0.9 s to commit with the join, 0.7
    # and 0.2 s without).
    raw_rows = " join raw_records r on r.record_key = u.record_key" if provenance else ""
    con.begin()
    try:
        con.execute("delete from int_persons_standardized where record_key not in (select previous_key from std_reused)")
        con.execute(
            f"""
            update int_persons_standardized p set {assignments}
            from std_reused u{raw_rows}
            where p.record_key = u.previous_key
            """
        )
        con.register("standardized_frame", changed)
        con.execute("insert into int_persons_standardized by name select * from standardized_frame")
        con.unregister("standardized_frame")
        con.commit()
    except BaseException:
        con.rollback()
        raise
    if metrics is None:
        metrics = _metrics_from_table(con, "int_persons_standardized")
    return metrics, changed.height


def _metrics_from_table(con: duckdb.DuckDBPyConnection, table: str) -> pl.DataFrame:
    from linkage.standardize import (
        STANDARDIZATION_FLAGS,
        combine_standardization_metrics,
        standardization_metrics,
    )

    parts = []
    for (source,) in con.execute(f"select distinct source from {table}").fetchall():
        parts.append(standardization_metrics(con.execute(
            f"select source, {STANDARDIZATION_FLAGS} from {table} where source = $s", {"s": source}
        ).pl()))
    return combine_standardization_metrics(*parts)


def _block_keys_reusable(con: duckdb.DuckDBPyConnection) -> bool:
    """The stored block keys are those of the standardized table as the last night left it,
    computed by tonight's code: before tonight's standardize changes the table."""
    from linkage.block import BLOCKING_PASSES, stored_keys_version

    keys_run = _state_value(con, BLOCK_KEYS_RUN)
    return (
        keys_run is not None
        and keys_run == _state_value(con, STANDARDIZED_KEYS_RUN)
        and _state_value(con, BLOCK_KEYS_VERSION) == stored_keys_version()
        and all(_table_exists(con, bp.keys_table) for bp in BLOCKING_PASSES if bp.stored)
    )


def standardize(ctx: RunContext) -> StageResult:
    def body():
        # The stage makes millions of short-lived Python objects (distinct names, addresses)
        # and no reference cycles: the cyclic collector ran again and again over them for
        # nothing (~0.5 s at 1M records).
        collecting = gc.isenabled()
        gc.disable()
        try:
            return run()
        finally:
            if collecting:
                gc.enable()

    def run():
        from linkage.sql import create_view
        from linkage.standardize import RAW_VALUES_VIEW

        con = ctx.con
        _hash_raw_rows(con)
        mode, why = standardize_plan(ctx)
        ctx.refresh, ctx.refresh_why = mode, why
        ctx.pairs_reusable = _state_value(con, STANDARDIZED_KEYS_RUN) == _state_value(con, PAIRS_KEYS_RUN)
        ctx.block_keys_reusable = _block_keys_reusable(con)
        # Named before the table changes: if the night stops before its link stage has
        # written the pairs, the next night sees the two differ.
        set_state_value(con, STANDARDIZED_KEYS_RUN, ctx.run_id)
        if mode == "incremental":
            metrics, restandardized = _standardize_incremental(ctx)
        else:
            metrics = _standardize_full(ctx)
            restandardized = _count(con, "raw_records")
            con.execute("drop table if exists int_persons_standardized")
            con.execute("alter table int_persons_standardized_next rename to int_persons_standardized")
        _save_standardization_metrics(con, metrics)
        # The raw cells beside the standard values, for the readers that show them.
        create_view(con, RAW_VALUES_VIEW)
        set_state_value(con, "standardize_version", str(STANDARDIZE_VERSION))
        ctx.standardization_metrics = metrics
        rows = _count(con, "int_persons_standardized")
        return rows, {"mode": mode, "why": why, "restandardized": restandardized}

    return _timed("standardize", _count(ctx.con, "raw_records"), body)


def _save_link_state(con: duckdb.DuckDBPyConnection, model: dict, tf_tables: dict[str, pl.DataFrame]) -> None:
    """The full night's model and term frequencies, for the incremental nights after it."""
    set_state_value(con, "linkage_model", json.dumps(model))
    frames = [t.select(pl.lit(column).alias("column"), "value", "tf") for column, t in tf_tables.items()]
    frame = pl.concat(frames) if frames else pl.DataFrame(
        schema={"column": pl.String, "value": pl.String, "tf": pl.Float64}
    )
    con.register("tf_frame", frame)
    con.execute("create or replace table link_term_frequencies as select * from tf_frame")
    con.unregister("tf_frame")


def _link_state(ctx: RunContext):
    """Last night's model and scored pairs among unchanged records, in tonight's keys; None for a full link."""
    from linkage.link import MODEL_VERSION, LinkState

    con = ctx.con
    if ctx.refresh != "incremental" or not ctx.pairs_reusable:
        return None
    model_json = _state_value(con, "linkage_model")
    if (
        model_json is None
        or not _table_exists(con, "link_term_frequencies")
        or not _table_exists(con, "int_pairs_scored")
        or "rule" not in _columns(con, "int_pairs_scored")
    ):
        return None
    model = json.loads(model_json)
    if model.get("model_version") != MODEL_VERSION:
        return None
    tf = con.execute("select * from link_term_frequencies").pl()
    tf_tables = {
        column: tf.filter(pl.col("column") == column).select("value", "tf")
        for column in tf.get_column("column").unique().to_list()
    }
    # std_reused (from the standardize stage): tonight's key → last night's, for unchanged rows.
    pairs = con.execute(
        """
        select least(l.record_key, r.record_key) as record_key_l, greatest(l.record_key, r.record_key) as record_key_r,
               p.match_weight, p.match_probability, p.is_match, p.rule
        from int_pairs_scored p
        join std_reused l on l.previous_key = p.record_key_l
        join std_reused r on r.previous_key = p.record_key_r
        """
    ).pl()
    changed = con.execute(
        "select record_key from int_persons_standardized where record_key not in (select record_key from std_reused)"
    ).pl().get_column("record_key")
    return LinkState(model=model, tf_tables=tf_tables, pairs=pairs, changed_keys=changed)


def _link_refresh_reason(ctx: RunContext, state) -> str:
    """Why tonight's link is full or incremental, in a sentence for metrics.json."""
    if state is not None or ctx.refresh != "incremental":
        return ctx.refresh_why
    if not ctx.pairs_reusable:
        return "the last night stopped between its standardize and link stages: every pair is scored again"
    return "no stored linkage model of this version: the model is fitted again"


def _registry_to_start_from(ctx: RunContext) -> str:
    """The table tonight's person ids start from: `person_registry`, unless this database did
    not publish the run OUT/latest points at (renhu.duckdb deleted, or --db naming another or
    an older file). Then the ids the departments last received are in that run's
    entity_map.parquet, and they win over the database's: a fresh registry would mint every
    person's id again from their first record, and any id that had moved with a merge, a
    split or a renamed source would change with no person_id_changes row to say so."""
    con = ctx.con
    latest = ctx.out_dir / "latest"
    try:
        run_id = json.loads((latest / "metrics.json").read_text(encoding="utf-8"))["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return "person_registry"
    entity_map = latest / "entity_map.parquet"
    if not entity_map.is_file() or (_table_exists(con, "run_ledger") and con.execute(
        "select count(*) from run_ledger where run_id = $run_id and status = 'published'", {"run_id": run_id}
    ).fetchone()[0]):
        return "person_registry"
    # Records the published run does not hold keep the database's row, if it has one.
    con.execute(
        """
        create or replace temp table person_registry_published as
        with published as materialized (select source, record_id, person_id from read_parquet($path))
        select source, record_id, person_id, $run_id as first_seen_run, $run_id as last_seen_run from published
        union all
        select r.* from person_registry r anti join published p using (source, record_id)
        """,
        {"run_id": run_id, "path": str(entity_map)},
    )
    return "person_registry_published"


def _with_renamed_sources(ctx: RunContext, registry: str) -> str:
    """``registry`` with the rows of a renamed source under its name now (`renamed_from` in
    the sources file), so that its records keep their person ids; without it a renamed
    source's records look new and everyone only it holds gets a new id, with no change row.

    A row already held under the new name (a night since the rename) wins over its old twin.
    """
    renames = {s.renamed_from: s.name for s in ctx.config.sources if s.renamed_from}
    if not renames:
        return registry
    con = ctx.con
    con.register("source_renames", pl.DataFrame({"old_name": list(renames), "new_name": list(renames.values())}))
    con.execute(
        f"""
        create or replace temp table person_registry_renamed as
        select coalesce(n.new_name, r.source) as source, r.record_id, r.person_id, r.first_seen_run, r.last_seen_run
        from {registry} r
        left join source_renames n on n.old_name = r.source
        where n.old_name is null or not exists (
            select 1 from {registry} t where t.source = n.new_name and t.record_id = r.record_id
        )
        """
    )
    con.unregister("source_renames")
    return "person_registry_renamed"


def _stored_block_keys(ctx: RunContext, state):
    """Where tonight's link keeps the blocking passes' keys: updated by the records tonight's
    incremental standardize changed when they are last night's, else built anew (then the
    records' link_refs are made their record keys first)."""
    from linkage.block import StoredBlockKeys

    con = ctx.con
    # A state only on an incremental night, whose standardize left RETIRED_LINK_REFS.
    if state is not None and ctx.block_keys_reusable:
        return StoredBlockKeys(link_refs="int_persons_standardized", retired=RETIRED_LINK_REFS)
    # After a full standardize they are already; a rebuild on an incremental night renumbers.
    con.execute("update int_persons_standardized set link_ref = record_key where link_ref is distinct from record_key")
    return StoredBlockKeys(link_refs="int_persons_standardized")


def link(ctx: RunContext) -> StageResult:
    from linkage.block import stored_keys_version
    from linkage.link import link_records

    def body():
        ctx.con.execute(
            """
            create table if not exists person_registry (
                source varchar, record_id varchar, person_id varchar,
                first_seen_run varchar, last_seen_run varchar
            )
            """
        )
        registry = _with_renamed_sources(ctx, _registry_to_start_from(ctx))
        previous = ctx.con.execute(f"select source, record_id, person_id from {registry}").pl()
        state = _link_state(ctx)
        stored = _stored_block_keys(ctx, state)
        # The records stay in DuckDB: link_records reads the table a key range at a time.
        result = link_records(ctx.con, "int_persons_standardized", previous if previous.height else None, state=state,
                              stored_keys=stored)
        set_state_value(ctx.con, BLOCK_KEYS_RUN, ctx.run_id)
        set_state_value(ctx.con, BLOCK_KEYS_VERSION, stored_keys_version())
        if state is None:
            _save_link_state(ctx.con, result.model, result.tf_tables)
        result.metrics["refresh_reason"] = _link_refresh_reason(ctx, state)
        ctx.linkage = result
        entity_map = result.entity_map.select("record_key", "source", "record_id", "person_id")
        ctx.con.register("entity_map_frame", in_row_group_pieces(entity_map))
        # Already in record_key order (link_records keeps the standardized order); sorting it
        # again in DuckDB cost ~1 s at a million records.
        ctx.con.execute("create or replace table entity_map as select * from entity_map_frame")
        # The registry below reads the table just written: the frame's strings cross into
        # DuckDB once, not twice.
        ctx.con.unregister("entity_map_frame")
        # Rebuilt by a join, not upserted: a primary-key index over ten million keys must
        # sit in memory, while a join spills. Records not seen tonight keep their row.
        # Into a table of its own: the registry becomes tonight's only when the night
        # publishes (commit_person_ids), so a night that fails leaves the next one to start
        # from the person ids the departments last received.
        ctx.con.execute(
            f"""
            create or replace table person_registry_next as
            select
                coalesce(tonight.source, registry.source) as source,
                coalesce(tonight.record_id, registry.record_id) as record_id,
                coalesce(tonight.person_id, registry.person_id) as person_id,
                coalesce(registry.first_seen_run, $run_id) as first_seen_run,
                case when tonight.source is null then registry.last_seen_run else $run_id end as last_seen_run
            from {registry} as registry
            full outer join entity_map as tonight using (source, record_id)
            """,
            {"run_id": ctx.run_id},
        )
        ctx.con.execute(
            """
            create table if not exists person_id_changes (
                run_id varchar, change varchar, old_person_id varchar, new_person_id varchar
            )
            """
        )
        ctx.con.execute("create or replace table person_id_changes_next as select * from person_id_changes limit 0")
        if result.id_changes is not None and result.id_changes.height:
            ctx.con.register("id_changes_frame", result.id_changes.select("change", "old_person_id", "new_person_id"))
            ctx.con.execute(
                "insert into person_id_changes_next select $run_id, * from id_changes_frame", {"run_id": ctx.run_id}
            )
            ctx.con.unregister("id_changes_frame")
        # Id conflicts and split clusters: kept for the steward and the audit, per run.
        ctx.con.execute(
            """
            create table if not exists link_conflicts (
                run_id varchar, kind varchar, record_key bigint, source varchar, record_id varchar, detail varchar
            )
            """
        )
        if result.conflicts is not None and result.conflicts.height:
            conflicts = result.conflicts.select("kind", "record_key", "detail").join(
                entity_map.select("record_key", "source", "record_id"), on="record_key", how="left"
            )
            ctx.con.register("conflicts_frame", conflicts)
            ctx.con.execute(
                "insert into link_conflicts select $run_id, kind, record_key, source, record_id, detail from conflicts_frame",
                {"run_id": ctx.run_id},
            )
            ctx.con.unregister("conflicts_frame")
        if result.pairs is not None:
            ctx.con.register("pairs_frame", in_row_group_pieces(result.pairs))
            ctx.con.execute("create or replace table int_pairs_scored as select * from pairs_frame")
            ctx.con.unregister("pairs_frame")
            # The pairs are now in the keys of tonight's int_persons_standardized.
            set_state_value(ctx.con, PAIRS_KEYS_RUN, ctx.run_id)
        # Counted once, by link_records (1.3 s over ten million ids).
        persons = result.metrics["persons"]
        # The frames live on as tables; keep only what publish reads, so they can be freed.
        ctx.linkage = LinkageSummary(metrics=result.metrics, model=result.model)
        return entity_map.height, {"persons": persons, "mode": result.metrics.get("refresh", "full"),
                                   "relinked": result.metrics.get("records_relinked")}

    return _timed("link", _count(ctx.con, "int_persons_standardized"), body)


def commit_person_ids(ctx: RunContext) -> None:
    """Make tonight's person ids the registry the next night starts from, with their changes.

    Publish calls it, just before `latest` moves: a night that fails or is stopped before
    then leaves the registry as the last published night left it. Before, link wrote it, and
    ids a failed night merged or minted lived on in every night after.
    """
    con = ctx.con
    if not _table_exists(con, "person_registry_next"):
        return
    con.execute("begin transaction")
    try:
        # A rename, not a copy: ten million rows need not be written twice.
        con.execute("drop table if exists person_registry")
        con.execute("alter table person_registry_next rename to person_registry")
        if _table_exists(con, "person_id_changes_next"):
            con.execute("insert into person_id_changes select * from person_id_changes_next")
            con.execute("drop table person_id_changes_next")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def households(ctx: RunContext) -> StageResult:
    from linkage.households import find_household_findings_db, person_records_table
    from linkage.rates import compute_rates_db

    def body():
        mapped_fields = {source.name: list(source.columns) for source in ctx.config.sources}
        # Every source of the sources file, so that one with no accepted record tonight keeps
        # its row in share_rates.csv (0 records) and its place in metrics.json.
        sources = pl.DataFrame(
            [(s.name, s.department, s.kind) for s in ctx.config.sources],
            schema={"source": pl.String, "department": pl.String, "kind": pl.String},
            orient="row",
        )
        # Both read the standardized records and the entity map in DuckDB, from one working
        # table: only the records each check needs, and per-source counts, come back to polars.
        with person_records_table(ctx.con) as records:
            findings = find_household_findings_db(ctx.con, as_of=ctx.as_of, records=records)
            rates = compute_rates_db(ctx.con, findings, mapped_fields=mapped_fields, records=records,
                                     sources=sources)
        ctx.rates = rates
        ctx.con.register("findings_frame", findings)
        ctx.con.execute("create or replace table household_findings as select * from findings_frame")
        ctx.con.unregister("findings_frame")
        ctx.con.register("share_rates_frame", rates.share_rates)
        ctx.con.execute("create or replace table share_rates as select * from share_rates_frame")
        ctx.con.unregister("share_rates_frame")
        return findings.height, {}

    return _timed("households", _count(ctx.con, "entity_map"), body)


def validate(ctx: RunContext) -> StageResult:
    from flows.validation import run_validation

    def body():
        mapped_fields = {source.name: list(source.columns) for source in ctx.config.sources}
        summary = run_validation(ctx.con, ctx.staging_dir, ctx.run_id, mapped_fields=mapped_fields)
        ctx.validation = summary
        return _count(ctx.con, "entity_map"), {}

    return _timed("validate", _count(ctx.con, "entity_map"), body)


def prepare_staging_dir(ctx: RunContext) -> None:
    if ctx.staging_dir.exists():
        shutil.rmtree(ctx.staging_dir)
    ctx.staging_dir.mkdir(parents=True)
