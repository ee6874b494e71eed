"""The nightly Prefect flow: ingest → standardize → link → households → validate → publish.

Tasks are thin: each calls one stage function of `flows/stages.py`. The flow only
orders them, keeps the run ledger, and decides whether the night published.
`renhu run` and a Prefect deployment (`renhu serve`) start the same flow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import stages
from flows.config import ConfigError, check_output_paths, load_sources
from flows.settings import Settings
from flows.stages import RunContext, StageResult


class RunFailed(Exception):
    """The night did not publish; the message is one line for the steward."""


class _NoTracebackForRefusals(logging.Filter):
    """A night that stops for a reason renhu states (validation failed, another run holds
    the folder, a bad file or sources file) did not crash: Prefect's line "Encountered
    exception during execution: RunFailed('validation failed ...')" already says why, and
    the 17-line traceback it adds on stderr (and in the Prefect UI) buried the one-line
    reason `renhu run` prints after it. Any other exception keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], RunFailed | ConfigError):
            record.exc_info = None
            record.exc_text = None
        return True


# On the logger, not on a handler: Prefect's console and API handlers both get the record
# as it leaves here, and a logger's filters outlive Prefect's own logging set-up.
logging.getLogger("prefect.flow_runs").addFilter(_NoTracebackForRefusals())


def _progress(settings: Settings):
    if not settings.show_progress:
        return nullcontext(None)
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True)


def _run_stage(ctx: RunContext, name: str, function, *args) -> StageResult:
    logger = get_run_logger()
    logger.info("stage %s: starting", name)
    with _progress(ctx.settings) as progress:
        if progress is not None:
            progress.add_task(f"[bold]{name}[/bold] …", total=None)
        result = function(ctx, *args)
    stages.ledger_record_stage(ctx, result)
    logger.info(
        "stage %s: %d rows in, %d rows out, %.1f s%s", name, result.rows_in, result.rows_out, result.seconds,
        f" (and {result.details['read_ahead_seconds']:.1f} s reading the extracts before the flow started)"
        if result.details.get("read_ahead_seconds") else "",
    )
    return result


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_task(ctx: RunContext) -> StageResult:
    logger = get_run_logger()

    def on_file(file: str, rows: int) -> None:
        logger.info("read %s: %d rows", file, rows)

    return _run_stage(ctx, "ingest", stages.ingest, on_file)


@task(name="standardize", cache_policy=NO_CACHE)
def standardize_task(ctx: RunContext) -> StageResult:
    return _run_stage(ctx, "standardize", stages.standardize)


@task(name="link", cache_policy=NO_CACHE)
def link_task(ctx: RunContext) -> StageResult:
    return _run_stage(ctx, "link", stages.link)


@task(name="households", cache_policy=NO_CACHE)
def households_task(ctx: RunContext) -> StageResult:
    return _run_stage(ctx, "households", stages.households)


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(ctx: RunContext) -> StageResult:
    return _run_stage(ctx, "validate", stages.validate)


@task(name="publish", cache_policy=NO_CACHE)
def publish_task(ctx: RunContext) -> Path:
    from flows.publish import publish

    run_dir, result = publish(ctx)
    get_run_logger().info("published %s in %.1f s", run_dir, result.seconds)
    return run_dir


LOCK_FILE = ".renhu.lock"


@contextmanager
def out_lock(out_dir: Path) -> Iterator[None]:
    """Hold OUT/.renhu.lock while the night runs: a second run into the same folder is refused.

    Two runs into one folder (each with its own DuckDB file, which DuckDB's own lock does not
    catch) would each publish a run with its own person ids and move `latest` in turn. The
    lock is the kernel's (flock): it goes with the process, however that ends.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): as before
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK_FILE, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunFailed(f"another renhu run ({holder}) is running into {out_dir}; this one did not start") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_run(sources_file: Path, out_dir: Path, db_path: Path | None, settings: Settings) -> RunContext:
    """Check the sources file and open the night's DuckDB; raises ConfigError before writing anything.

    Every extract is read ahead (`renhu run`) or known readable to its end before the DuckDB
    file is opened: a bad file found by the ingest task would come after the ledger row.
    After `renhu run` there is nothing left to check; a deployment's run checks every file here.
    """
    from flows.ingest import check_extracts

    config = load_sources(Path(sources_file))
    check_extracts(config)
    out_dir = Path(out_dir)
    db = Path(db_path) if db_path else out_dir / "renhu.duckdb"
    check_output_paths(out_dir, db)
    started_at = dt.datetime.now(dt.UTC)
    ctx = RunContext(
        config=config,
        out_dir=out_dir,
        db_path=db,
        con=stages.connect(db, settings),
        settings=settings,
        run_id=stages.new_run_id(started_at),
        started_at=started_at,
        sources_sha256=_sha256(config.path),
    )
    return ctx


@flow(name="nightly", log_prints=True)
def nightly(sources_file: str, out_dir: str, db_path: str | None = None, full_refresh: bool = False) -> str:
    """The nightly run over every source in `sources_file`, published into `out_dir`.

    `full_refresh` (or RENHU_FULL_REFRESH=1) re-standardizes and re-links every record and
    refits the linkage model instead of reusing last night's work for unchanged records.
    """
    from flows.validation import preload_great_expectations

    # GX's import (2.5-5 s) overlaps the stages before validate instead of adding to them.
    preload_great_expectations()
    settings = Settings.from_env()
    if full_refresh:
        settings = replace(settings, full_refresh=True)
    ctx = open_run(Path(sources_file), Path(out_dir), Path(db_path) if db_path else None, settings)
    try:
        # A second run into the same folder stops here, before it writes anything.
        with out_lock(ctx.out_dir):
            return _nightly(ctx, settings)
    finally:
        ctx.con.close()


def _nightly(ctx: RunContext, settings: Settings) -> str:
    logger = get_run_logger()
    logger.info("run %s: %d sources from %s", ctx.run_id, len(ctx.config.sources), ctx.config.path)
    if settings.full_refresh:
        logger.info("full refresh: every record is re-standardized and re-linked, the linkage model refitted")
    for folder in stages.remove_abandoned_staging(ctx):
        logger.info("removed %s, left by a run that stopped half-way", folder)
    try:
        stages.ledger_start(ctx)
        # Every extract is read and checked before any table is replaced: a bad file stops here.
        ingest_task(ctx)
        stages.prepare_staging_dir(ctx)
        standardize_task(ctx)
        link_task(ctx)
        households_task(ctx)
        validate_task(ctx)
        critical = list(getattr(ctx.validation, "critical_failures", []) or [])
        if critical:
            failed_dir = ctx.out_dir / "runs" / f"{ctx.run_id}-failed"
            if failed_dir.exists():
                shutil.rmtree(failed_dir)
            ctx.staging_dir.rename(failed_dir)
            message = f"validation failed ({len(critical)} critical): {critical[0]}; Data Docs in {failed_dir / 'validation'}"
            stages.ledger_finish(ctx, "failed", message)
            raise RunFailed(message)
        run_dir = publish_task(ctx)
        stages.ledger_finish(ctx, "published")
        _publish_artifacts(ctx, run_dir)
        return str(run_dir)
    except RunFailed:
        raise
    except Exception as error:
        if ctx.staging_dir.exists():
            shutil.rmtree(ctx.staging_dir, ignore_errors=True)
        try:
            stages.ledger_finish(ctx, "failed", f"{type(error).__name__}: {error}")
        except Exception:  # the ledger may not exist yet when ingest itself failed
            pass
        raise


def nightly_deployment(sources: Path, out: Path, db: Path | None, cron: str = "0 2 * * *",
                       name: str = "renhu-nightly"):
    """The nightly flow as a Prefect deployment: every night on `cron`, retried once on failure."""
    return nightly.with_options(retries=1, retry_delay_seconds=600).to_deployment(
        name=name,
        cron=cron,
        parameters={
            "sources_file": str(Path(sources).resolve()),
            "out_dir": str(Path(out).resolve()),
            "db_path": str(Path(db).resolve()) if db else None,
        },
        description="renhu nightly: ingest, standardize, link, households, validate, publish",
        tags=["renhu"],
    )


def _publish_artifacts(ctx: RunContext, run_dir: Path) -> None:
    import json

    from flows.validation import publish_prefect_artifacts

    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    import polars as pl

    share_rates = pl.read_csv(run_dir / "share_rates.csv")
    publish_prefect_artifacts(share_rates, metrics, run_dir / "validation" / "index.html")
