"""Validate a night's tables with Great Expectations and publish the Data Docs site.

The suites are files an auditor reads: ``expectations/<table>.yaml`` names each check, its
severity (critical fails the run, warning does not), the GX expectation and why it
matters; ``expectations/<table>.sql`` is the DuckDB query that builds the columns the
suite checks; ``expectations/thresholds.yaml`` holds the ``mostly`` thresholds with
per-source overrides.

Why it is built this way:

* GX 1.24's SQL datasource over duckdb-engine fails on every expectation (IndexError in
  ``resolve_metric_bundle``, GX issues #10738 and #11579), and its pandas engine needs
  every checked row in Python: at a million records, copying the frames into pandas and
  evaluating them row by row took 10-20 s of the stage. So the work is split at GX's own
  seam between metrics and verdicts. Each suite's SQL builds its frame as a temporary
  DuckDB table (all sources at once; a ``source`` column makes the per-source batches);
  GX says which metrics each expectation needs (``get_validation_dependencies``: row
  count, missing count, unexpected count, up to 10 unexpected values, the columns); DuckDB
  computes them for every expectation and batch of the suite in one grouped query (plus
  one per uniqueness check); GX judges each expectation from them (``metrics_validate``:
  ``mostly``, percentages, the result GX would store) and renders the Data Docs. Nothing
  of the size of a table enters Python. Each metric means what GX's pandas engine makes
  it mean; tests/flows/test_validation_parity.py runs GX's own engine on the same frames
  and compares every result.
* The frames carry no identity number and no name at all: ids and dates are reduced to
  their shape (digit → 9, Han character → 字), the outcome of a check is a label
  (``wrong_check_character``, ``differs``), record ids have any run of 15+ digits masked
  like an id number (330602********123X) plus a digest salted per run, so distinct ids
  stay distinct. The unexpected values GX shows are taken from these columns only.
* GX's import (2.5-5 s) runs in a background thread while DuckDB builds the frames.
* The GX context is ephemeral (in-memory stores) and new on every call (its creation
  costs about 10 ms), and the site folder is emptied first, so the site shows this run's
  results only: the Data Docs builder renders every stored result, and an old one would
  otherwise come back. The site is built once, after every result is stored.
* GX's Data Docs call a share of a column's non-empty values a share "of N total rows";
  the unexpected statement and observed value of every map check are drawn by renhu's
  renderers from the same result instead (flows/validation_figures.py: unexpected of the
  checked values, rows not checked and why, ``mostly`` as applied), and ``renhu verify``
  reads them back against results.json.
* A suite file is one table's checks; GX suites are named ``<table>`` for run-wide
  checks and ``<table>.<source>`` for per-source checks, because thresholds differ per
  source and GX fixes ``mostly`` in the suite.

``run_validation`` never raises on a failed expectation: the caller reads
``summary.critical_failures`` after the site is written and fails the run then.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import shutil
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import yaml

from flows.validation_figures import map_figures, percent, register_count_renderers, threshold_percent

EXPECTATIONS_DIR = Path(__file__).resolve().parent.parent / "expectations"
THRESHOLDS_FILE = EXPECTATIONS_DIR / "thresholds.yaml"
DOCS_ASSETS_DIR = EXPECTATIONS_DIR / "data_docs_assets"
# What the Data Docs pages load from the internet, and the local copy each is served from
# (under validation/static/vendor/); None drops the tag. See data_docs_assets/README.md.
CDN_ASSETS: dict[str, str | None] = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper-1.12.9.min.js",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table-1.19.1.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table-1.19.1.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": (
        "bootstrap-table-filter-control-1.19.1.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": (
        "bootstrap-table-filter-control-1.19.1.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": (
        "bootstrap-table-filter-control-1.19.1.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": (
        "bootstrap-datepicker-1.9.0.min.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": (
        "bootstrap-datepicker-1.9.0.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "fontawesome-free-6.6.0/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": None,
    "https://cdn.jsdelivr.net/npm/vega@5": None,
    "https://cdn.jsdelivr.net/npm/vega-lite@5": None,
    "https://cdn.jsdelivr.net/npm/vega-embed@6": None,
}
_RELATIVE_STATIC = re.compile(r"""((?:src|href)=["'])(?:\./|(?:\.\./)+)?static/""")
_NEWSLETTER_FOOTER = re.compile(r"<footer>\s*<p>[^<]*newsletter.*?</footer>", re.S)
_GX_LOGO = re.compile(
    r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/[a-z_-]+\.png(\?d=[0-9TZ.]+)?"
)
# Canonical fields a source may map (docs/CONTRACT.md); record_id is always there.
OPTIONAL_FIELDS = frozenset(
    {
        "name", "id_number", "sex", "birth_date", "ethnicity", "phone", "hukou_address", "hukou_region",
        "residence_address", "residence_region", "household_id", "relation_to_head", "house_id",
        "employer", "registered_at", "updated_at",
    }
)  # fmt: skip
SUITE_ORDER = (
    "run_source_counts", "raw_records", "int_persons_standardized", "entity_map", "household_findings", "share_rates",
)
SEVERITIES = ("critical", "warning")
DOCS_SITE_NAME = "renhu"
RUN_BATCH = "run"
# Examples of unexpected values kept per check; every value handed to GX is a label, a
# shape or a masked key, so examples help the auditor and cannot show a person.
EXAMPLES_PER_CHECK = 10

_PARAMETER = re.compile(r"\$([a-z_]+)")


# ---------------------------------------------------------------------------------------
# Suite and threshold files


@dataclass(frozen=True)
class ExpectationSpec:
    """One check of a suite file."""

    check: str
    severity: str
    expectation: str
    kwargs: dict[str, Any]
    mostly: str | None
    why: str


@dataclass(frozen=True)
class SuiteSpec:
    """One suite file (``expectations/<table>.yaml``) and the SQL of its frame."""

    suite: str
    table: str
    description: str
    grain: str
    batch: str
    frame_file: str
    frame_sql: str
    reads: tuple[str, ...]
    expectations: tuple[ExpectationSpec, ...]


def load_suites(directory: Path = EXPECTATIONS_DIR) -> list[SuiteSpec]:
    """Read every suite file of ``directory`` (all ``*.yaml`` but thresholds.yaml)."""
    suites = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == THRESHOLDS_FILE.name:
            continue
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        checks = []
        for item in spec["expectations"]:
            if item["severity"] not in SEVERITIES:
                raise ValueError(f"{path.name}: check {item['check']}: severity must be one of {SEVERITIES}")
            checks.append(
                ExpectationSpec(
                    check=item["check"],
                    severity=item["severity"],
                    expectation=item["expectation"],
                    kwargs=dict(item.get("kwargs") or {}),
                    mostly=item.get("mostly"),
                    why=" ".join(str(item.get("why", "")).split()),
                )
            )
        batch = spec.get("batch", RUN_BATCH)
        if batch not in ("per_source", RUN_BATCH):
            raise ValueError(f"{path.name}: batch must be per_source or run")
        suites.append(
            SuiteSpec(
                suite=spec["suite"],
                table=spec["table"],
                description=" ".join(str(spec.get("description", "")).split()),
                grain=spec.get("grain", ""),
                batch=batch,
                frame_file=spec["frame"],
                frame_sql=(directory / spec["frame"]).read_text(encoding="utf-8"),
                reads=tuple(spec.get("reads", ())),
                expectations=tuple(checks),
            )
        )
    order = {name: i for i, name in enumerate(SUITE_ORDER)}
    return sorted(suites, key=lambda s: (order.get(s.suite, len(order)), s.suite))


@dataclass
class Thresholds:
    """``mostly`` thresholds and tolerances: defaults, then per-source overrides."""

    defaults: dict[str, float]
    sources: dict[str, dict[str, float]] = field(default_factory=dict)

    def for_source(self, source: str | None) -> dict[str, float]:
        merged = dict(self.defaults)
        if source is not None:
            merged.update(self.sources.get(source, {}))
        return merged


def load_thresholds(path: Path = THRESHOLDS_FILE, overrides: Mapping[str, Any] | None = None) -> Thresholds:
    """Thresholds from ``path``, with ``overrides`` (same shape: defaults / sources) on top."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    defaults = {k: float(v) for k, v in (data.get("defaults") or {}).items()}
    sources = {s: {k: float(v) for k, v in (o or {}).items()} for s, o in (data.get("sources") or {}).items()}
    if overrides:
        unknown = set(overrides) - {"defaults", "sources"}
        if unknown:
            raise ValueError(f"threshold overrides take 'defaults' and 'sources', not {sorted(unknown)}")
        for key, value in (overrides.get("defaults") or {}).items():
            defaults[key] = float(value)
        for source, values in (overrides.get("sources") or {}).items():
            sources.setdefault(source, {}).update({k: float(v) for k, v in values.items()})
    for scope, values in [("defaults", defaults), *sources.items()]:
        for key in values:
            if key not in defaults:
                raise ValueError(f"threshold {key!r} ({scope}) has no default in {path.name}")
    return Thresholds(defaults=defaults, sources=sources)


# ---------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one batch."""

    suite: str
    batch: str
    check: str
    severity: str
    success: bool
    expectation: str
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    observed_value: Any
    examples: list[Any]
    message: str
    # Map checks: rows GX did not check (the value is empty; for a pair check, the rows
    # ignore_row_if leaves out), so unexpected_percent = 100 * unexpected_count /
    # (element_count - missing_count); and the `mostly` GX applied to those checked values.
    missing_count: int | None = None
    mostly: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "batch": self.batch,
            "check": self.check,
            "severity": self.severity,
            "success": self.success,
            "expectation": self.expectation,
            "element_count": self.element_count,
            "missing_count": self.missing_count,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "mostly": self.mostly,
            "observed_value": _jsonable(self.observed_value),
            "examples": _jsonable(self.examples),
            "message": self.message,
        }


@dataclass
class SuiteResult:
    """All checks of one suite on one batch (a source, or the whole run)."""

    suite: str
    batch: str
    rows: int | None
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

    @property
    def evaluated(self) -> int:
        return len(self.checks)

    @property
    def failed(self) -> int:
        return sum(not c.success for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "batch": self.batch,
            "rows": self.rows,
            "success": self.success,
            "evaluated": self.evaluated,
            "failed": self.failed,
        }


@dataclass
class ValidationSummary:
    """What the validate stage found; ``to_metrics()`` is metrics.json["validation"]."""

    run_id: str
    suites: list[SuiteResult]
    docs_index: Path | None
    thresholds: dict[str, dict[str, float]]
    seconds: float
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def checks(self) -> list[CheckResult]:
        return [c for s in self.suites for c in s.checks]

    @property
    def evaluated(self) -> int:
        return len(self.checks)

    @property
    def failed(self) -> int:
        return sum(not c.success for c in self.checks)

    @property
    def critical_failed(self) -> int:
        return sum(not c.success and c.severity == "critical" for c in self.checks)

    @property
    def warnings_failed(self) -> int:
        return sum(not c.success and c.severity == "warning" for c in self.checks)

    @property
    def success(self) -> bool:
        return self.failed == 0 and not self.errors

    @property
    def critical_failures(self) -> list[str]:
        """One line per failed critical check, and per suite that could not be validated."""
        return [*self.errors, *(c.message for c in self.checks if not c.success and c.severity == "critical")]

    @property
    def messages(self) -> list[str]:
        """One line per problem: errors, then failed critical checks, then warnings."""
        warnings = [c.message for c in self.checks if not c.success and c.severity == "warning"]
        return [*self.critical_failures, *warnings]

    def failure_message(self) -> str:
        """The one-line reason a flow gives when it fails the run on critical checks."""
        lines = self.critical_failures
        if not lines:
            return ""
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        where = f"; see {self.docs_index}" if self.docs_index else ""
        return f"validation failed: {lines[0]}{more}{where}"

    def as_dict(self) -> dict[str, Any]:
        """metrics.json["validation"] (same as ``to_metrics``)."""
        return self.to_metrics()

    def to_metrics(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "evaluated": self.evaluated,
            "failed": self.failed,
            # failed = critical_failed + warnings_failed: checks that ran and failed, each
            # listed in results.json. A suite that could not be validated is no check: it
            # is counted apart (could_not_run, its reason in errors) and fails the run too.
            "critical_failed": self.critical_failed,
            "warnings_failed": self.warnings_failed,
            "could_not_run": len(self.errors),
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "docs": "validation/index.html" if self.docs_index else None,
            "suites": [s.to_dict() for s in self.suites],
            "failures": [c.to_dict() for c in self.checks if not c.success],
            "errors": list(self.errors),
            "messages": self.messages,
            "thresholds": self.thresholds,
        }


# ---------------------------------------------------------------------------------------
# Running


def preload_great_expectations() -> threading.Thread:
    """Import Great Expectations in a background thread and return the thread.

    The import takes 2.5-5 s here. Started when the night starts, it overlaps ingest,
    standardize and link; run_validation starts it too, so that at worst it overlaps the
    DuckDB half of validation (DuckDB runs outside the GIL). An import already under way
    in another thread is waited for, not repeated.
    """
    thread = threading.Thread(target=importlib.import_module, args=("great_expectations",), daemon=True)
    thread.start()
    return thread


def run_validation(
    con: duckdb.DuckDBPyConnection,
    run_dir: Path,
    run_id: str,
    thresholds: Mapping[str, Any] | None = None,
    *,
    mapped_fields: Mapping[str, list[str]] | None = None,
    suites_dir: Path = EXPECTATIONS_DIR,
) -> ValidationSummary:
    """Run every suite of ``suites_dir`` over the night's tables.

    ``thresholds``: overrides of expectations/thresholds.yaml (``{"defaults": {...},
    "sources": {name: {...}}}``). ``mapped_fields``: per source, the canonical fields its
    sources-file mapping names; without it only record_id is required to be present.
    DuckDB builds each suite's frame and computes the metrics every expectation asks for;
    Great Expectations judges each expectation from them. Writes the Data Docs site to
    ``run_dir/validation/`` (index.html), every check's outcome to
    ``run_dir/validation/results.json`` and a copy of the suite files and the thresholds
    used to ``run_dir/validation/suites/``.
    """
    started = time.perf_counter()
    importer = preload_great_expectations()
    run_dir = Path(run_dir)
    site_dir = run_dir / "validation"
    try:
        suites = load_suites(suites_dir)
        limits = load_thresholds(suites_dir / THRESHOLDS_FILE.name, thresholds)
    except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        # A broken suite or threshold file fails the run with its reason, like a failed check.
        message = f"CRITICAL validation configuration in {suites_dir}: {type(exc).__name__}: {exc}"
        return ValidationSummary(run_id, [], None, {}, time.perf_counter() - started, errors=[message])
    existing = _existing_tables(con)
    errors: list[str] = []
    used_thresholds: dict[str, dict[str, float]] = {}
    results: list[SuiteResult] = []

    if site_dir.exists():
        shutil.rmtree(site_dir)
    site_dir.mkdir(parents=True)

    timings: dict[str, float] = {}
    # Salts the digests that keep masked record ids apart; never stored, so they cannot be
    # reversed by trying candidate ids.
    mask_salt = secrets.token_hex(16)
    tallies: list[_Tally] = []
    create_compared_nights_view(con)
    # Suites that could not be validated, with the reason: their Data Docs page says so.
    not_run: list[tuple[SuiteSpec, str]] = []
    for suite in suites:
        missing = [t for t in suite.reads if t not in existing]
        if missing:
            errors.append(f"CRITICAL {suite.suite}: cannot validate, table(s) {', '.join(missing)} missing")
            not_run.append((suite, errors[-1]))
            continue
        try:
            tallies.append(_tally_suite(con, suite, run_id, mask_salt))
        except duckdb.Error as exc:
            errors.append(f"CRITICAL {suite.suite}: cannot build the checked frame: {exc}")
            not_run.append((suite, errors[-1]))
            con.execute(f"drop table if exists {_quote(f'{_FRAME}_{suite.suite}')}")
    timings["frames"] = time.perf_counter() - started

    if tallies:
        waited = time.perf_counter()
        importer.join()
        timings["gx_import"] = time.perf_counter() - waited
        try:
            results = _judge(
                tallies, limits, mapped_fields, used_thresholds, site_dir, run_id, timings, not_run=not_run
            )
        except Exception as exc:  # noqa: BLE001 - a GX crash must become a failed run, with the docs folder kept
            errors.append(f"CRITICAL validation could not run: {type(exc).__name__}: {exc}")
        finally:
            for tally in tallies:
                con.execute(f"drop table if exists {tally.params['frame']}")

    _copy_suite_files(suites_dir, site_dir / "suites", used_thresholds)
    if (site_dir / "index.html").exists():
        _serve_assets_locally(site_dir)
    index = site_dir / "index.html"
    summary = ValidationSummary(
        run_id=run_id,
        suites=results,
        docs_index=index if index.exists() else None,
        thresholds=used_thresholds,
        seconds=time.perf_counter() - started,
        errors=errors,
        timings=timings,
    )
    _write_results_json(summary, site_dir / "results.json")
    return summary


def _existing_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("select distinct table_name from information_schema.tables").fetchall()
    return {r[0] for r in rows}


# ---------------------------------------------------------------------------------------
# Metrics in DuckDB
#
# GX asks each expectation which metrics it needs (``get_validation_dependencies``) and
# judges it from their values (``metrics_validate``); normally its execution engine
# computes them row by row over a pandas frame. Here DuckDB computes the same metrics
# over the frame where it was built, all expectations of a suite and all its batches in
# one grouped pass, so nothing of the size of a table is copied into Python. Each metric
# keeps the meaning GX's pandas engine gives it (tests/flows/test_validation_parity.py
# runs GX's own engine on the same frames and compares every result).

_FRAME = "__renhu_validation_frame"
_BATCH = "__renhu_batch"
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES_PER_CHECK}
_SUFFIXES = ("unexpected_count", "unexpected_values", "unexpected_index_list", "unexpected_index_query",
             "filtered_row_count")  # fmt: skip


@dataclass
class _Tally:
    """One suite's frame, reduced in DuckDB: what GX needs to judge its expectations."""

    suite: SuiteSpec
    columns: list[str]
    rows: dict[str, int]  # batch -> rows
    filled: dict[str, set[str]]  # batch -> has_<field> columns with a value somewhere
    con: duckdb.DuckDBPyConnection
    params: dict[str, Any]


@dataclass
class _Batch:
    suite: SuiteSpec
    name: str
    rows: int
    thresholds: dict[str, float]
    run_values: dict[str, Any]

    @property
    def gx_suite_name(self) -> str:
        return self.suite.suite if self.name == RUN_BATCH else f"{self.suite.suite}.{self.name}"


COMPARED_NIGHTS_VIEW = "renhu_compared_nights"


def create_compared_nights_view(con: duckdb.DuckDBPyConnection) -> None:
    """The earlier nights a night's figures are compared with: the published ones.

    A night that failed or was stopped (a truncated extract, say) is no yardstick for the
    next. Without a run ledger (a database built by hand) every night counts.
    """
    tables = _existing_tables(con)
    if "run_ledger" in tables:
        nights = "select run_id from run_ledger where status = 'published'"
    elif "run_source_counts" in tables:
        nights = "select distinct run_id from run_source_counts"
    else:
        nights = "select cast(null as varchar) as run_id where false"
    con.execute(f"create or replace temp view {COMPARED_NIGHTS_VIEW} as {nights}")


def _tally_suite(con: duckdb.DuckDBPyConnection, suite: SuiteSpec, run_id: str, mask_salt: str) -> _Tally:
    """Build the suite's frame as a temporary DuckDB table and count its batches."""
    values = {"run_id": run_id, "mask_salt": mask_salt}
    params = {name: values[name] for name in sorted(set(_PARAMETER.findall(suite.frame_sql)))}
    frame = _quote(f"{_FRAME}_{suite.suite}")
    con.execute(f"create or replace temp table {frame} as {suite.frame_sql}", params)
    columns = [r[0] for r in con.execute(f"describe {frame}").fetchall()]
    if suite.batch == RUN_BATCH:
        batch = "'run'"
    elif "source" in columns:
        batch = "coalesce(source, '')"
    else:
        raise duckdb.BinderException(f"a per_source frame needs a source column ({suite.frame_file})")
    filled_columns = [
        c for c in columns if c.removeprefix("has_") in OPTIONAL_FIELDS and c.startswith("has_")
    ]
    selects = [f"{batch} as {_BATCH}", "count(*)"] + [f"bool_or({_quote(c)})" for c in filled_columns]
    rows: dict[str, int] = {}
    filled: dict[str, set[str]] = {}
    for row in con.execute(f"select {', '.join(selects)} from {frame} group by all order by 1").fetchall():
        rows[row[0]] = row[1]
        filled[row[0]] = {c for c, has in zip(filled_columns, row[2:], strict=True) if has}
    if suite.batch == RUN_BATCH and not rows:
        rows[RUN_BATCH], filled[RUN_BATCH] = 0, set()
    return _Tally(suite, columns, rows, filled, con, {"frame": frame, "batch": batch})


def _metric_sql(name: str, domain: Mapping[str, Any], value: Mapping[str, Any]) -> tuple[str, str] | None:
    """(predicate of an unexpected row, how to aggregate it) for a map metric; None for
    metrics that are not one aggregate over the batch (table.columns, uniqueness)."""
    if domain.get("row_condition"):
        raise ValueError("row_condition is not supported by renhu's DuckDB metrics")
    base, _, suffix = name.rpartition(".")
    if suffix not in _SUFFIXES:
        raise ValueError(f"renhu computes no metric {name!r}")
    if base.startswith("column_pair_values."):
        a, b = _quote(domain["column_A"]), _quote(domain["column_B"])
        ignore = domain.get("ignore_row_if") or "both_values_are_missing"
        keep = {
            "both_values_are_missing": f"not ({a} is null and {b} is null)",
            "either_value_is_missing": f"{a} is not null and {b} is not null",
            "neither": "true",
        }[ignore]
        # pandas compares with == / >: a missing value on a kept row is unexpected.
        if base == "column_pair_values.equal":
            ok = f"coalesce({a} = {b}, false)"
        elif base == "column_pair_values.a_greater_than_b":
            ok = f"coalesce({a} {'>=' if value.get('or_equal') else '>'} {b}, false)"
        else:
            raise ValueError(f"renhu computes no metric {name!r}")
        if suffix == "filtered_row_count":
            return keep, "count"
        return f"({keep}) and not {ok}", f"pair:{a}:{b}"
    column = _quote(domain["column"])
    if base == "column_values.nonnull":
        return f"{column} is null", column
    if base == "column_values.in_set":
        members = ", ".join(_literal(v) for v in value["value_set"])
        ok = f"{column} in ({members})" if members else "false"
    elif base == "column_values.between":
        bounds = []
        if value.get("min_value") is not None:
            bounds.append(
                f"{column} {'>' if value.get('strict_min') else '>='} {_literal(value['min_value'])}"
            )
        if value.get("max_value") is not None:
            bounds.append(
                f"{column} {'<' if value.get('strict_max') else '<='} {_literal(value['max_value'])}"
            )
        if not bounds:
            raise ValueError("expect_column_values_to_be_between needs min_value or max_value")
        ok = " and ".join(bounds)
    elif base == "column_values.match_regex":
        # pandas: str.contains(regex), a search; DuckDB's regexp_matches searches too.
        ok = f"regexp_matches({column}::varchar, {_literal(value['regex'])})"
    elif base == "column_values.unique":
        return None
    else:
        raise ValueError(f"renhu computes no metric {name!r}")
    return f"{column} is not null and not ({ok})", column


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _referenced_columns(domain: Mapping[str, Any]) -> list[str]:
    return [domain[k] for k in ("column", "column_A", "column_B") if domain.get(k) is not None]


def _compute_metrics(
    tally: _Tally, plans: list[tuple[str, Any]]
) -> tuple[dict[tuple[str, Any], Any], dict[tuple[str, int], str]]:
    """Values of the metrics ``plans`` asks for, and the checks that name a missing column.

    ``plans``: (batch, validation dependencies of one expectation). Returns (batch, metric
    configuration id) -> value, and (batch, index in ``plans``) -> missing column. One
    grouped query gives every count and example list of the suite; each uniqueness check
    is one more grouped query.
    """
    frame, batch_sql = tally.params["frame"], tally.params["batch"]
    aggregates: dict[str, str] = {}  # sql -> alias
    uniques: dict[str, str] = {}
    wanted: list[tuple[str, Any, str, str]] = []  # batch, metric id, kind, key
    missing: dict[tuple[str, int], str] = {}
    for index, (batch, deps) in enumerate(plans):
        configs = deps.metric_configurations
        absent = [
            c
            for config in configs.values()
            for c in _referenced_columns(config.metric_domain_kwargs)
            if c not in tally.columns
        ]
        if absent:
            missing[(batch, index)] = absent[0]
            continue
        for name, config in configs.items():
            domain, value = config.metric_domain_kwargs, config.metric_value_kwargs
            if name == "table.row_count":
                wanted.append((batch, config.id, "rows", ""))
                continue
            if name == "table.columns":
                wanted.append((batch, config.id, "columns", ""))
                continue
            suffix = name.rpartition(".")[2]
            if suffix in ("unexpected_index_list", "unexpected_index_query"):
                # Row positions of a frame built for the check mean nothing to a reader.
                wanted.append((batch, config.id, "none", ""))
                continue
            planned = _metric_sql(name, domain, value)
            if planned is None:  # uniqueness
                column = _quote(domain["column"])
                uniques.setdefault(column, f"u{len(uniques)}")
                wanted.append((batch, config.id, f"unique_{suffix}", uniques[column]))
                continue
            predicate, shown = planned
            if suffix in ("unexpected_count", "filtered_row_count"):
                sql = f"count(*) filter (where {predicate})"
            elif shown.startswith("pair:"):
                _, a, b = shown.split(":")
                sql = f"min({{'a': {a}, 'b': {b}}}, {EXAMPLES_PER_CHECK}) filter (where {predicate})"
            elif predicate.endswith(" is null"):
                sql = f"count(*) filter (where {predicate})"  # examples of missing values are all None
                suffix = "null_values"
            else:
                sql = f"min({shown}, {EXAMPLES_PER_CHECK}) filter (where {predicate})"
            alias = aggregates.setdefault(sql, f"m{len(aggregates)}")
            wanted.append((batch, config.id, suffix, alias))

    values: dict[tuple[str, str], Any] = {}
    if aggregates:
        query = f"select {batch_sql} as {_BATCH}, " + ", ".join(f"{s} as {a}" for s, a in aggregates.items())
        cursor = tally.con.execute(f"{query} from {frame} group by all")
        names = [d[0] for d in cursor.description]
        for row in cursor.fetchall():
            values.update({(row[0], n): v for n, v in zip(names[1:], row[1:], strict=True)})
    for column, alias in uniques.items():
        rows = tally.con.execute(
            f"""
            with repeated as (
                select {batch_sql} as {_BATCH}, {column} as value, count(*) as n
                from {frame} where {column} is not null group by all having count(*) > 1
            )
            select {_BATCH}, sum(n)::bigint,
                list_slice(flatten(list(list_resize([value], least(n, {EXAMPLES_PER_CHECK}), value) order by value)),
                           1, {EXAMPLES_PER_CHECK})
            from repeated group by all
            """
        ).fetchall()
        for batch, count, examples in rows:
            values[(batch, f"{alias}_count")] = count
            values[(batch, f"{alias}_values")] = examples

    metrics: dict[tuple[str, Any], Any] = {}
    for batch, metric_id, kind, key in wanted:
        if kind == "rows":
            value: Any = tally.rows.get(batch, 0)
        elif kind == "columns":
            value = [c for c in tally.columns if not _empty_field_column(c, tally.filled.get(batch, set()))]
        elif kind == "none":
            value = None
        elif kind == "unique_unexpected_count":
            value = values.get((batch, f"{key}_count")) or 0
        elif kind == "unique_unexpected_values":
            value = values.get((batch, f"{key}_values")) or []
        elif kind in ("unexpected_count", "filtered_row_count"):
            value = values.get((batch, key)) or 0
        elif kind == "null_values":
            value = [None] * min(values.get((batch, key)) or 0, EXAMPLES_PER_CHECK)
        else:
            value = values.get((batch, key)) or []
            if value and isinstance(value[0], dict):
                value = [tuple(v.values()) for v in value]
        metrics[(batch, metric_id)] = value
    return metrics, missing


def _empty_field_column(column: str, filled: set[str]) -> bool:
    # has_<field> columns exist only for fields that hold a value somewhere in the batch,
    # which is what "the mapped columns arrived" is checked against.
    return (
        column.startswith("has_") and column.removeprefix("has_") in OPTIONAL_FIELDS and column not in filled
    )


# ---------------------------------------------------------------------------------------
# Great Expectations: suites, verdicts, Data Docs


def _mapped_field_columns(mapped_fields: Mapping[str, list[str]] | None, source: str | None) -> list[str]:
    fields = ["record_id"]
    if mapped_fields and source is not None:
        fields += [f for f in mapped_fields.get(source, []) if f != "record_id"]
    return [f"has_{f}" for f in fields]


def _resolve(value: Any, thresholds: dict[str, float], run_values: dict[str, Any]) -> Any:
    if isinstance(value, dict) and set(value) == {"threshold"}:
        return thresholds[value["threshold"]]
    if isinstance(value, dict) and set(value) == {"run_value"}:
        return run_values[value["run_value"]]
    return value


def _expectation_class(name: str) -> type:
    import great_expectations as gx

    class_name = "".join(part.capitalize() for part in name.split("_"))
    try:
        return getattr(gx.expectations, class_name)
    except AttributeError:
        raise ValueError(f"unknown expectation {name!r}") from None


def _build_suite(batch: _Batch) -> Any:
    import great_expectations as gx

    spec = batch.suite
    notes = [
        f"**{spec.table}** — {spec.description}",
        f"Grain: {spec.grain}.",
        f"Batch: {'source ' + batch.name if batch.name != RUN_BATCH else 'the whole run'}; {batch.rows} rows.",
        f"Checked columns are built by `expectations/{spec.frame_file}`; DuckDB computes, over that frame, "
        "the counts and examples each expectation asks for, and Great Expectations judges the expectation "
        "from them:",
        f"```sql\n{spec.frame_sql.strip()}\n```",
    ]
    suite = gx.ExpectationSuite(
        name=batch.gx_suite_name, notes=notes, meta={"table": spec.table, "batch": batch.name}
    )
    for item in spec.expectations:
        kwargs = {k: _resolve(v, batch.thresholds, batch.run_values) for k, v in item.kwargs.items()}
        note = f"**{item.severity.upper()}** `{item.check}` — {item.why}"
        if item.mostly is not None:
            kwargs["mostly"] = batch.thresholds[item.mostly]
            note += (
                f" Threshold `{item.mostly}` = {kwargs['mostly']}: at least {threshold_percent(kwargs['mostly'])} "
                "of the non-empty values must pass; an empty value is not checked and not counted."
            )
        meta = {"check": item.check, "severity": item.severity}
        suite.add_expectation(_expectation_class(item.expectation)(**kwargs, meta=meta, notes=note))
    return suite


def _gx_context(site_dir: Path) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    # Ephemeral (in-memory stores) and new on every call: the Data Docs builder renders
    # every stored result, so a context reused across nights would bring old ones back.
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.add_data_docs_site(
        DOCS_SITE_NAME,
        {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            # GX refuses a relative base directory: `renhu demo` publishes into ./renhu-demo.
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir.resolve())},
        },
    )
    return context


def _judge(
    tallies: list[_Tally],
    limits: Thresholds,
    mapped_fields: Mapping[str, list[str]] | None,
    used_thresholds: dict[str, dict[str, float]],
    site_dir: Path,
    run_id: str,
    timings: dict[str, float],
    not_run: list[tuple[SuiteSpec, str]] | None = None,
) -> list[SuiteResult]:
    """Have GX judge every expectation of every batch from DuckDB's metrics, store the
    results in an ephemeral context and build the Data Docs site from them. A suite of
    ``not_run`` (with the reason it could not be validated) gets a failed result with no
    check, whose page states the reason: the site would otherwise show every suite passed."""
    import great_expectations as gx
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.validator.validator import calc_validation_statistics

    started = time.perf_counter()
    context = _gx_context(site_dir)
    run = RunIdentifier(run_name=run_id, run_time=datetime.now(UTC))
    timings["gx_context"] = time.perf_counter() - started
    metrics_seconds = 0.0
    results: list[SuiteResult] = []
    for tally in tallies:
        batches = []
        for name, rows in tally.rows.items():
            source = None if name == RUN_BATCH else name
            limits_here = limits.for_source(source)
            used_thresholds[name] = limits_here if source else limits.defaults
            run_values = {"mapped_field_columns": _mapped_field_columns(mapped_fields, source)}
            batches.append(_Batch(tally.suite, name, rows, limits_here, run_values))
        suites = {batch.name: context.suites.add(_build_suite(batch)) for batch in batches}
        expectations = [(b.name, e) for b in batches for e in suites[b.name].expectations]
        # Sources share their checks' metrics (thresholds change `mostly`, which GX applies
        # to the metrics, not the metrics themselves): ask GX once per distinct check.
        dependencies: dict[str, Any] = {}
        plans = []
        for name, expectation in expectations:
            config = expectation.configuration
            key = json.dumps([config.type, config.kwargs], sort_keys=True, default=str)
            if key not in dependencies:
                dependencies[key] = expectation.get_validation_dependencies(
                    runtime_configuration={"result_format": dict(_RESULT_FORMAT)}
                )
            plans.append((name, dependencies[key]))
        counted = time.perf_counter()
        metrics, missing = _compute_metrics(tally, plans)
        metrics_seconds += time.perf_counter() - counted
        verdicts: dict[str, list[Any]] = {b.name: [] for b in batches}
        for index, ((name, expectation), (_, deps)) in enumerate(zip(expectations, plans, strict=True)):
            if (name, index) in missing:
                message = f'The column "{missing[(name, index)]}" is not in the checked frame ({tally.suite.frame_file}).'
                verdict = ExpectationValidationResult(
                    success=False,
                    expectation_config=expectation.configuration,
                    exception_info={
                        "raised_exception": True,
                        "exception_message": message,
                        "exception_traceback": message,
                    },
                )
            else:
                provided = {c.id: metrics[(name, c.id)] for c in deps.metric_configurations.values()}
                try:
                    verdict = expectation.metrics_validate(
                        provided, runtime_configuration={"result_format": dict(_RESULT_FORMAT)}
                    )
                except Exception as exc:  # noqa: BLE001 - as GX's catch_exceptions: the check fails with its reason
                    verdict = ExpectationValidationResult(
                        success=False,
                        expectation_config=expectation.configuration,
                        exception_info={"raised_exception": True, "exception_message": f"{type(exc).__name__}: {exc}",
                                        "exception_traceback": traceback.format_exc()},
                    )  # fmt: skip
            verdicts[name].append(verdict)
        for batch in batches:
            suite_name = batch.gx_suite_name
            statistics = calc_validation_statistics(verdicts[batch.name])
            batch_id = f"duckdb-{suite_name}"
            suite_result = ExpectationSuiteValidationResult(
                results=verdicts[batch.name],
                success=statistics.success,
                suite_name=suite_name,
                statistics={
                    "evaluated_expectations": statistics.evaluated_expectations,
                    "successful_expectations": statistics.successful_expectations,
                    "unsuccessful_expectations": statistics.unsuccessful_expectations,
                    "success_percent": statistics.success_percent,
                },
                meta={
                    "great_expectations_version": gx.__version__,
                    "batch_spec": {
                        "data_asset_name": suite_name,
                        "frame": f"expectations/{tally.suite.frame_file}",
                        "batch": batch.name if batch.name != RUN_BATCH else "the whole run",
                        "rows": batch.rows,
                        "metrics_computed_by": f"DuckDB {duckdb.__version__}",
                    },
                    "batch_markers": {},
                    "run_id": run,
                    "validation_time": run.run_time,
                },
                batch_id=batch_id,
            )
            suite_id = ExpectationSuiteIdentifier(name=suite_name)
            context.validation_results_store.store_validation_results(
                suite_validation_result=suite_result,
                suite_validation_result_identifier=ValidationResultIdentifier(
                    expectation_suite_identifier=suite_id, run_id=run, batch_identifier=batch_id
                ),
                expectation_suite_identifier=suite_id,
            )
            summary = SuiteResult(suite=batch.suite.suite, batch=batch.name, rows=batch.rows)
            summary.checks.extend(_check_result(batch, verdict) for verdict in verdicts[batch.name])
            results.append(summary)
    for spec, reason in not_run or []:
        batch = _Batch(spec, RUN_BATCH, 0, limits.defaults, {"mapped_field_columns": _mapped_field_columns(None, None)})
        suite_id = ExpectationSuiteIdentifier(name=context.suites.add(_build_suite(batch)).name)
        batch_id = f"duckdb-{spec.suite}"
        context.validation_results_store.store_validation_results(
            suite_validation_result=ExpectationSuiteValidationResult(
                results=[],
                success=False,
                suite_name=spec.suite,
                statistics={"evaluated_expectations": 0, "successful_expectations": 0,
                            "unsuccessful_expectations": 0, "success_percent": None},
                meta={
                    "great_expectations_version": gx.__version__,
                    "batch_spec": {
                        "data_asset_name": spec.suite,
                        "frame": f"expectations/{spec.frame_file}",
                        "could_not_validate": f"{reason} (no check ran; the night fails as on a failed critical check)",
                    },
                    "batch_markers": {},
                    "run_id": run,
                    "validation_time": run.run_time,
                },
                batch_id=batch_id,
            ),
            suite_validation_result_identifier=ValidationResultIdentifier(
                expectation_suite_identifier=suite_id, run_id=run, batch_identifier=batch_id
            ),
            expectation_suite_identifier=suite_id,
        )  # fmt: skip
    timings["metrics"] = metrics_seconds
    timings["gx_verdicts"] = time.perf_counter() - started - metrics_seconds - timings["gx_context"]
    started = time.perf_counter()
    # GX's own text calls a share of the non-empty values one "of N total rows": each map
    # check's statement and observed value are drawn from its counts instead
    # (flows/validation_figures.py).
    register_count_renderers({check.expectation for tally in tallies for check in tally.suite.expectations})
    context.build_data_docs(site_names=[DOCS_SITE_NAME])
    timings["data_docs"] = time.perf_counter() - started
    return results


def _check_result(batch: _Batch, item: Any) -> CheckResult:
    config = item.expectation_config
    meta = config.meta or {}
    result = item.result or {}
    severity = meta.get("severity", "warning")
    check = meta.get("check", config.type)
    exception = _raised_exception(item.exception_info)
    raised = exception is not None
    examples = _distinct(result.get("partial_unexpected_list") or [])[:3]
    element_count = result.get("element_count")
    unexpected_count = result.get("unexpected_count")
    unexpected_percent = result.get("unexpected_percent")
    observed = result.get("observed_value")
    figures = None if raised else map_figures(config.type, config.kwargs, result)
    if exception is not None:
        detail = f"could not be evaluated: {exception}"
    elif figures is not None:
        detail = f"{figures.unexpected} of {figures.checked} checked values fail"
        if figures.checked:
            shares = [percent(figures.unexpected, figures.checked)]
            if figures.not_checked:
                shares.append(f"{figures.not_checked} of {figures.rows} rows not checked")
            detail += f" ({'; '.join(shares)})"
        if "mostly" in config.kwargs:
            detail += f", at least {threshold_percent(figures.mostly)} must pass"
        elif config.kwargs.get("min_value") is not None and config.kwargs.get("max_value") is not None:
            # A ratio such as row_count_in_band's is the same on every row: the bounds say
            # what "fail" means (tonight's rows 0.5 of the last night's, allowed 0.7 to 1.5).
            detail += f", allowed {config.kwargs['min_value']} to {config.kwargs['max_value']}"
        if examples:
            detail += f"; e.g. {', '.join(map(str, examples))}"
    elif config.type == "expect_table_columns_to_match_set":
        missing = (result.get("details") or {}).get("mismatched", {}).get("missing") or []
        detail = f"missing {', '.join(c.removeprefix('has_') for c in missing) or 'none'}"
    else:
        detail = f"observed {observed}"
    status = "ok" if item.success else detail
    where = batch.suite.suite if batch.name == RUN_BATCH else f"{batch.suite.suite}[{batch.name}]"
    return CheckResult(
        suite=batch.suite.suite,
        batch=batch.name,
        check=check,
        severity=severity,
        success=bool(item.success) and not raised,
        expectation=config.type,
        element_count=element_count,
        unexpected_count=unexpected_count,
        unexpected_percent=unexpected_percent,
        observed_value=observed,
        examples=examples,
        message=f"{severity.upper()} {where} {check}: {status}",
        missing_count=None if figures is None else figures.not_checked,
        mostly=None if figures is None else figures.mostly,
    )


def _raised_exception(info: Any) -> str | None:
    """The message of an exception GX caught while checking, if any. GX reports it either
    directly ({raised_exception, exception_message}) or per metric ({metric id: {...}})."""
    if not isinstance(info, dict):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info.get("raised_exception") else None
    for value in info.values():
        message = _raised_exception(value)
        if message is not None:
            return message
    return None


def _distinct(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        value = tuple(value) if isinstance(value, list) else value
        if value not in seen:
            seen.append(value)
    return seen


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _serve_assets_locally(site_dir: Path) -> None:
    """Point every Data Docs page at local copies of its scripts, styles and icons, so the
    site works from the file system without internet access and calls out to no one."""
    vendor = site_dir / "static" / "vendor"
    shutil.copytree(DOCS_ASSETS_DIR, vendor, dirs_exist_ok=True)
    logo = site_dir / "static" / "images" / "logo-long.png"
    for page in site_dir.rglob("*.html"):
        if vendor in page.parents:
            continue
        text = page.read_text(encoding="utf-8")
        prefix = Path(os.path.relpath(vendor, page.parent)).as_posix()
        for url, local in CDN_ASSETS.items():
            if local is None:
                text = re.sub(rf'<(script|link)\b[^>]*"{re.escape(url)}"[^>]*>(\s*</script>)?', "", text)
            else:
                text = text.replace(f'"{url}"', f'"{prefix}/{local}"')
        text = _GX_LOGO.sub(Path(os.path.relpath(logo, page.parent)).as_posix(), text)
        # The footer invites the reader to GX's newsletter: not for an audit page.
        text = _NEWSLETTER_FOOTER.sub("", text)
        # GX counts folders wrongly for some pages (a suite name with a dot is one folder
        # deeper), leaving their own styles and icons unfound: recompute every static/ path.
        static = Path(os.path.relpath(site_dir / "static", page.parent)).as_posix()
        text = _RELATIVE_STATIC.sub(lambda m, static=static: f"{m.group(1)}{static}/", text)
        page.write_text(text, encoding="utf-8")


def _write_results_json(summary: ValidationSummary, path: Path) -> None:
    # Every check's outcome, passed ones included, for auditors who compare nights by machine.
    document = {
        "run_id": summary.run_id,
        **{k: v for k, v in summary.to_metrics().items() if k not in ("failures", "messages")},
        "checks": [c.to_dict() for c in summary.checks],
    }
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")


def _copy_suite_files(suites_dir: Path, target: Path, used: dict[str, dict[str, float]]) -> None:
    # The run folder alone must say what was checked: the suite files as of tonight.
    target.mkdir(parents=True, exist_ok=True)
    for path in (
        sorted(suites_dir.glob("*.yaml")) + sorted(suites_dir.glob("*.sql")) + [suites_dir / "README.md"]
    ):
        if not path.is_file():
            continue
        shutil.copy2(path, target / path.name)
    (target / "thresholds_used.json").write_text(
        json.dumps(used, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


# ---------------------------------------------------------------------------------------
# Prefect artifacts


def share_rates_table(share_rates: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows of the share-rate table artifact: one per source, the rate rounded to 4 places."""
    rows = []
    for row in share_rates.sort("source").iter_rows(named=True):
        rate = row.get("share_rate")
        rows.append(
            {
                "source": row["source"],
                "records": row.get("records"),
                "persons": row.get("persons"),
                "shared_persons": row.get("shared_persons"),
                "share_rate": None if rate is None else round(float(rate), 4),
            }
        )
    return rows


# Headline keys of metrics.json shown in the run-summary artifact, in this order; rates
# ({numerator, denominator, value}) are shown as a percentage with their fraction.
HEADLINE_KEYS = (
    "records_in",
    "accepted",
    "quarantined",
    "persons",
    "duplicate_records",
    "duplicate_rate",
    "share_rate",
    "household_consistency_rate",
    "floating_registration_rate",
)


def headline_markdown(headline: Mapping[str, Any], docs_path: Path) -> str:
    """The markdown artifact: the night's headline figures and a file:// link to the Data Docs.

    ``headline`` may be the whole metrics.json: the figures of HEADLINE_KEYS, any other
    top-level number or rate, and the validation counts are shown; per-source detail is not.
    """
    docs_path = Path(docs_path).resolve()
    index = docs_path / "index.html" if docs_path.suffix != ".html" else docs_path
    title = f"renhu run {headline['run_id']}" if "run_id" in headline else "renhu run"
    keys = [k for k in HEADLINE_KEYS if k in headline]
    keys += [k for k, v in headline.items() if k not in keys and (_is_rate(v) or _is_number(v))]
    lines = [f"# {title}", "", "| figure | value |", "| --- | --- |"]
    lines += [f"| {key} | {_figure(headline[key])} |" for key in keys]
    validation = headline.get("validation")
    if isinstance(validation, Mapping) and validation:
        verdict = "passed" if validation.get("success") else "found problems"
        could_not_run = validation.get("could_not_run") or 0
        lines += [
            "",
            f"Validation {verdict}: {validation.get('evaluated', 0)} checks, {validation.get('failed', 0)} failed "
            f"({validation.get('critical_failed', 0)} critical)"
            + (f"; {could_not_run} could not be validated (critical)." if could_not_run else "."),
        ]
    lines += ["", f"Data Docs (Great Expectations): [{index}]({index.as_uri()})", ""]
    return "\n".join(lines)


def _is_rate(value: Any) -> bool:
    return isinstance(value, Mapping) and {"numerator", "denominator"} <= set(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _figure(value: Any) -> str:
    if _is_rate(value):
        rate = value.get("value")
        shown = "n/a" if rate is None else f"{100 * float(rate):.2f} %"
        return f"{shown} ({value['numerator']} / {value['denominator']})"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def publish_prefect_artifacts(share_rates: pl.DataFrame, headline: dict, docs_path: Path) -> None:
    """Attach the share rates (table) and headline figures with the docs link (markdown) to
    the current Prefect flow run. Call inside a flow run."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    create_table_artifact(
        table=share_rates_table(share_rates),
        key="renhu-share-rates",
        description="Share rate per source: persons that at least one other source also holds / persons.",
    )
    create_markdown_artifact(
        markdown=headline_markdown(headline, docs_path),
        key="renhu-run-summary",
        description="Headline figures of the night and the link to the validation Data Docs.",
    )
