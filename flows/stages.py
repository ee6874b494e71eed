"""The nightly stages as plain functions over a `RunContext`.

Prefect tasks in `flows/nightly.py` call these one to one; tests call them directly
so they run without a Prefect server. Each stage reads and writes tables in the
run's DuckDB connection and returns a `StageResult` for the run ledger.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import shutil
import time
from collections.abc import Sequence
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
        return {"stage": self.stage, "seconds": round(self.seconds, 3), "rows_in": self.rows_in, "rows_out": self.rows_out}


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
    ctx.con.execute(
        "insert into run_ledger values ($run_id, $started, null, 'running', $file, $sha, '[]', null)",
        {"run_id": ctx.run_id, "started": ctx.started_at, "file": str(ctx.config.path), "sha": ctx.sources_sha256},
    )


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
    details = {"quarantined": result.quarantined, "files": len(result.files)}
    return StageResult("ingest", time.perf_counter() - started, result.rows_in, result.accepted, details)


def standardize(ctx: RunContext) -> StageResult:
    from linkage.standardize import standardization_metrics, standardize_records

    def body():
        raw = ctx.con.execute("select * from raw_records order by record_key").pl()
        # Dates after the night's own date count as "in the future": a rerun judges alike.
        standardized = standardize_records(raw, as_of=ctx.as_of)
        del raw
        ctx.con.register("standardized_frame", standardized)
        ctx.con.execute("create or replace table int_persons_standardized as select * from standardized_frame")
        ctx.con.unregister("standardized_frame")
        ctx.standardization_metrics = standardization_metrics(standardized)
        return standardized.height, {}

    return _timed("standardize", _count(ctx.con, "raw_records"), body)


# Rows per query of `load_standardized`: DuckDB sorts and converts one slice at a time.
LOAD_CHUNK_ROWS = 125_000


def load_standardized(con: duckdb.DuckDBPyConnection, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """The standardized records in record_key order; only ``columns`` (those the table has) when given.

    At a million records all 59 columns take ~0.5 GB in polars, and the one sorted query
    that handed them over peaked at 2.8 GB: a stage that reads a dozen columns loads only
    those, and the rows come in record_key ranges (sorted and converted a slice at a time:
    2.2 GB for all columns), in the same order.
    """
    if columns is None:
        select = "*"
    else:
        present = {row[0] for row in con.execute("describe int_persons_standardized").fetchall()}
        wanted = [c for c in dict.fromkeys(columns) if c in present]
        if "record_key" not in wanted:
            wanted.insert(0, "record_key")
        select = ", ".join(f'"{c}"' for c in wanted)
    query = f"select {select} from int_persons_standardized"
    rows, low, high = con.execute(
        "select count(*), min(record_key), max(record_key) from int_persons_standardized"
    ).fetchone()
    if rows <= LOAD_CHUNK_ROWS:
        return con.execute(f"{query} order by record_key").pl()
    # Ranges of equal key width: record keys are dense, so each holds about LOAD_CHUNK_ROWS rows.
    width = (high - low) // -(-rows // LOAD_CHUNK_ROWS) + 1
    parts = [
        con.execute(
            f"{query} where record_key >= $start and record_key < $stop order by record_key",
            {"start": start, "stop": start + width},
        ).pl()
        for start in range(low, high + 1, width)
    ]
    loaded = pl.concat(parts, rechunk=False)
    if loaded.height != rows:
        # A record without a key falls in no range: load it the plain way.
        return con.execute(f"{query} order by record_key").pl()
    return loaded


def link(ctx: RunContext) -> StageResult:
    from linkage.block import LINK_COLUMNS
    from linkage.link import link_records

    def body():
        standardized = load_standardized(ctx.con, columns=LINK_COLUMNS)
        ctx.con.execute(
            """
            create table if not exists person_registry (
                source varchar, record_id varchar, person_id varchar,
                first_seen_run varchar, last_seen_run varchar, primary key (source, record_id)
            )
            """
        )
        previous = ctx.con.execute("select source, record_id, person_id from person_registry").pl()
        result = link_records(ctx.con, standardized, previous if previous.height else None)
        ctx.linkage = result
        entity_map = result.entity_map.select("record_key", "source", "record_id", "person_id")
        ctx.con.register("entity_map_frame", entity_map)
        ctx.con.execute("create or replace table entity_map as select * from entity_map_frame order by record_key")
        ctx.con.execute(
            """
            insert into person_registry
            select source, record_id, person_id, $run_id, $run_id from entity_map_frame
            on conflict (source, record_id) do update set person_id = excluded.person_id, last_seen_run = $run_id
            """,
            {"run_id": ctx.run_id},
        )
        ctx.con.unregister("entity_map_frame")
        ctx.con.execute(
            """
            create table if not exists person_id_changes (
                run_id varchar, change varchar, old_person_id varchar, new_person_id varchar
            )
            """
        )
        if result.id_changes is not None and result.id_changes.height:
            ctx.con.register("id_changes_frame", result.id_changes.select("change", "old_person_id", "new_person_id"))
            ctx.con.execute("insert into person_id_changes select $run_id, * from id_changes_frame", {"run_id": ctx.run_id})
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
            ctx.con.register("pairs_frame", result.pairs)
            ctx.con.execute("create or replace table int_pairs_scored as select * from pairs_frame")
            ctx.con.unregister("pairs_frame")
        persons = entity_map["person_id"].n_unique()
        # The frames live on as tables; keep only what publish reads, so they can be freed.
        ctx.linkage = LinkageSummary(metrics=result.metrics, model=result.model)
        return entity_map.height, {"persons": persons}

    return _timed("link", _count(ctx.con, "int_persons_standardized"), body)


def households(ctx: RunContext) -> StageResult:
    from linkage.households import find_household_findings
    from linkage.rates import compute_rates, rates_columns

    def body():
        mapped_fields = {source.name: list(source.columns) for source in ctx.config.sources}
        standardized = load_standardized(ctx.con, rates_columns(mapped_fields))
        entity_map = ctx.con.execute("select source, record_id, person_id from entity_map order by record_key").pl()
        findings = find_household_findings(standardized, entity_map, as_of=ctx.as_of)
        rates = compute_rates(standardized, entity_map, findings, mapped_fields=mapped_fields)
        del standardized, entity_map
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
