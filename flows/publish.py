"""Publish stage: the run folder of CONTRACT.md section 3, written whole or not at all.

Files are written into `runs/.<run_id>.partial/` and the folder is renamed to
`runs/<run_id>/` only when everything is in it; `latest` then moves to it. A run that
fails leaves the previous night's `latest` untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from flows import __version__
from flows.stages import RunContext, StageResult, commit_person_ids
from linkage.households import PUBLISHED_FINDING_COLUMNS

CONTRACT_FILES = (
    "entity_map.parquet",
    "quarantine.parquet",
    "household_findings.parquet",
    "share_rates.csv",
    "metrics.json",
)


def rate(numerator: int, denominator: int) -> dict:
    return {
        "numerator": int(numerator),
        "denominator": int(denominator),
        "value": round(numerator / denominator, 6) if denominator else None,
    }


def build_metrics(ctx: RunContext, finished_at: dt.datetime) -> dict:
    con = ctx.con
    per_source = {row["source"]: row for row in ctx.ingest.per_source}
    reasons = con.execute(
        "select source, reason_code, count(*) n from quarantine group by all order by source, reason_code"
    ).fetchall()
    rates_metrics: dict = dict(getattr(ctx.rates, "metrics", {}) or {})
    source_rates: dict = rates_metrics.pop("sources", {}) or {}
    standardization: dict[str, dict] = {}
    if ctx.standardization_metrics is not None:
        for row in ctx.standardization_metrics.iter_rows(named=True):
            standardization.setdefault(row["source"], {})[row["field"]] = {
                key: row[key] for key in ("filled", "standardized", "flagged_invalid", "derived") if key in row
            }
    sources: dict[str, dict] = {}
    for source in ctx.config.sources:
        counts = per_source.get(source.name, {"rows_in": 0, "accepted": 0, "quarantined": 0})
        entry = {
            "department": source.department,
            "kind": source.kind,
            "format": source.format,
            "files": [ctx.config.relative(f) for f in source.files],
            "records_in": counts["rows_in"],
            "accepted": counts["accepted"],
            "quarantined": counts["quarantined"],
            "quarantine_reasons": {code: n for src, code, n in reasons if src == source.name},
        }
        entry.update(source_rates.get(source.name, {}))
        entry["standardization"] = standardization.get(source.name, {})
        sources[source.name] = entry
    linkage_metrics = dict(getattr(ctx.linkage, "metrics", {}) or {})
    persons = con.execute("select count(distinct person_id) from entity_map").fetchone()[0]
    metrics = {
        "run_id": ctx.run_id,
        "renhu_version": __version__,
        "started_at": ctx.started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "sources_file": str(ctx.config.path),
        "sources_sha256": ctx.sources_sha256,
        "linkage_method": linkage_metrics.pop("linkage_method", None),
        "records_in": ctx.ingest.rows_in,
        "accepted": ctx.ingest.accepted,
        "quarantined": ctx.ingest.quarantined,
        "persons": persons,
    }
    metrics.update(rates_metrics)
    metrics["sources"] = sources
    metrics["linkage"] = linkage_metrics
    metrics["stages"] = [s.ledger_entry() for s in ctx.stages]
    validation = ctx.validation
    metrics["validation"] = validation.as_dict() if hasattr(validation, "as_dict") else (validation or {})
    return metrics


def _write_frame_parquet(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> int:
    frame = con.execute(query).pl()
    frame.write_parquet(path)
    return frame.height


def _write_table_files(con: duckdb.DuckDBPyConnection, staging: Path) -> int:
    """entity_map, quarantine and household_findings as parquet; returns entity_map's rows.

    ``con``: a cursor of its own, as this runs in a thread beside the reports.
    """
    entity_rows = _write_frame_parquet(
        con, "select source, record_id, person_id from entity_map order by source, record_id", staging / "entity_map.parquet"
    )
    _write_frame_parquet(
        con,
        "select source, file, row_number, record_id, reason, reason_code, file_row from quarantine "
        "order by source, file, row_number",
        staging / "quarantine.parquet",
    )
    # The published columns only: the findings table also keeps, for the reports, the related
    # department's own household numbers in full.
    _write_frame_parquet(
        con,
        f"select {', '.join(PUBLISHED_FINDING_COLUMNS)} from household_findings",
        staging / "household_findings.parquet",
    )
    return entity_rows


def point_latest(out_dir: Path, run_dir: Path) -> None:
    latest = out_dir / "latest"
    temporary = out_dir / ".latest.tmp"
    if temporary.is_symlink() or temporary.exists():
        if temporary.is_dir() and not temporary.is_symlink():
            shutil.rmtree(temporary)
        else:
            temporary.unlink()
    try:
        temporary.symlink_to(Path("runs") / run_dir.name, target_is_directory=True)
        os.replace(temporary, latest)
    except OSError:
        # Where links are not possible the contract allows a copy.
        if latest.is_symlink():
            latest.unlink()
        elif latest.exists():
            shutil.rmtree(latest)
        shutil.copytree(run_dir, latest)


def publish(ctx: RunContext) -> tuple[Path, StageResult]:
    import time

    started = time.perf_counter()
    # The dashboard's imports and first-call work (0.4 s of one core) go on while DuckDB
    # sorts and the reports are written, instead of after them.
    warm_up = threading.Thread(target=_warm_up_dashboard, name="dashboard-warm-up", daemon=True)
    warm_up.start()
    staging = ctx.staging_dir
    staging.mkdir(parents=True, exist_ok=True)
    share_rates = ctx.con.execute(
        "select source, records, persons, shared_persons, share_rate from share_rates order by source"
    ).pl()
    share_rates.write_csv(staging / "share_rates.csv")
    if ctx.linkage is not None and getattr(ctx.linkage, "model", None) is not None:
        (staging / "linkage_model.json").write_text(
            json.dumps(ctx.linkage.model, ensure_ascii=False, indent=2, default=str), encoding="utf-8"
        )
    # The three tables' parquet files are sorted and written on a cursor of their own while the
    # reports are built and written: those leave a core idle part of the time (the stage used
    # 1.4 cores of 2 at a million records).
    cursor = ctx.con.cursor()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish-tables") as pool:
        tables = pool.submit(_write_table_files, cursor, staging)
        try:
            known_rows = write_reports(ctx, staging / "reports")
        finally:
            # Waited for even when the reports fail, so nothing writes into the folder after.
            entity_rows = tables.result()
            cursor.close()
    result = StageResult("publish", time.perf_counter() - started, entity_rows, entity_rows)
    ctx.stages.append(result)
    finished_at = dt.datetime.now(dt.UTC)
    metrics = build_metrics(ctx, finished_at)
    (staging / "metrics.json").write_text(json.dumps(metrics, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    warm_up.join()
    write_dashboard_and_manifest(ctx, staging, metrics, finished_at, known_rows)
    result.seconds = time.perf_counter() - started
    run_dir = ctx.run_dir
    if run_dir.exists():
        shutil.rmtree(run_dir)
    staging.rename(run_dir)
    commit_person_ids(ctx)
    point_latest(ctx.out_dir, run_dir)
    write_history(ctx.out_dir)
    return run_dir, result


def _warm_up_dashboard() -> None:
    from flows.dashboard import warm_up

    try:
        warm_up()
    except Exception:  # noqa: BLE001 - only a head start: the dashboard itself reports its own failures
        pass


def write_reports(ctx: RunContext, reports_dir: Path) -> dict[str, int]:
    """Write every department's report; return the data rows of each CSV written, by path
    relative to the run folder (the manifest lists them without counting them again)."""
    from flows.config import department_folder
    from flows.reports import csv_rows, write_department_reports
    from linkage.reports import iter_reports, report_inputs_from_duckdb

    rows: dict[str, int] = {}

    def counted(reports):
        for report in reports:
            rows.update({f"{reports_dir.name}/{path}": n for path, n in csv_rows(report).items()})
            yield report

    # Every department in the sources file gets a folder, even with nothing to correct.
    for source in ctx.config.sources:
        (reports_dir / department_folder(source.department)).mkdir(parents=True, exist_ok=True)
    # DuckDB reduces the city to the rows the reports show (a few per cent of the records),
    # and the reports are built and written one department at a time: loading every
    # record's shown columns into polars set the stage's time and its peak. Each department's
    # own rejected rows come from the quarantine table, placed by the sources file.
    source_departments = {source.name: source.department for source in ctx.config.sources}
    inputs = report_inputs_from_duckdb(ctx.con, source_departments=source_departments)
    write_department_reports(reports_dir, counted(iter_reports(inputs)))
    return rows


def write_dashboard_and_manifest(
    ctx: RunContext, staging: Path, metrics: dict, finished_at: dt.datetime, known_rows: dict[str, int] | None = None
) -> None:
    from flows.dashboard import write_run_dashboard
    from flows.manifest import write_manifest

    write_run_dashboard(staging)
    lock_file = Path(__file__).resolve().parent.parent / "requirements.lock"
    write_manifest(
        staging,
        run_id=ctx.run_id,
        started_at=ctx.started_at,
        finished_at=finished_at,
        sources_file=ctx.config.path,
        lock_file=lock_file if lock_file.is_file() else None,
        input_files=[
            {"path": f["file"], "size_bytes": f["size_bytes"], "sha256": f["sha256"], "rows": f["rows"], "source": f["source"]}
            for f in ctx.ingest.files
        ],
        stage_counts=[s.ledger_entry() for s in ctx.stages],
        validation=metrics.get("validation", {}),
        known_rows=known_rows,
    )


def write_history(out_dir: Path) -> None:
    from flows.dashboard import write_history as write_history_page

    write_history_page(out_dir)

