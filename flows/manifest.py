"""The run manifest (``manifest.json``) and ``renhu verify``.

An auditor holding only a published run folder must be able to tell whether any file in
it changed since the night wrote it, and whether its numbers add up. ``write_manifest``
records, when the run publishes: the renhu version, the hashes of the lock file and the
sources file, every input file (path, size, sha256), the row counts of each stage, the
expectation results, start and end times, and the sha256, size and row count (parquet,
csv) of every file in the run folder. ``verify_run`` recomputes all of it from the files
and also redoes the contract's arithmetic from the published files alone:
entity_map rows + quarantine rows = records in, and per source
share_rate = shared_persons / persons with persons and shared_persons recounted from
entity_map.parquet, and metrics.json's figures (counts, rates, overlap, findings) recounted
from entity_map, quarantine and household_findings, and each department report's 汇总 and
sheet of rejected rows (未入库记录) against household_findings and quarantine;
validation/results.json's figures (each check's unexpected share of its checked values, its
verdict against ``mostly``, the counts of failed checks, as metrics.json states them too) and
the same figures on each Data Docs page; and it searches every published file but the
departments' own reports for a full resident identity number (check character and birth
date valid).

The manifest is not signed: someone who can rewrite a file and the manifest together is
not caught here; keep a copy of manifest.json (or its sha256, printed by ``renhu verify``)
where the run folder's writers cannot reach.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import platform
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
# share_rates.csv may carry the rate rounded to 4 places.
SHARE_RATE_TOLERANCE = 0.00005
_CHUNK = 1 << 20
# Two line breaks in a row (an empty line) hold one of these: "\r\n" is one break, so a
# "\r" then a "\n" never make two.
_EMPTY_LINE = ("\n\n", "\r\r", "\n\r")


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def count_rows(path: Path) -> int | None:
    """Data rows of a parquet or CSV file (CSV: header not counted); None for other files
    and for files that do not read as their suffix says."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if suffix == ".csv":
            return _count_csv_rows(path)
    except Exception:  # noqa: BLE001 - a damaged file counts as unreadable; verify reports it
        return None
    return None


def _count_csv_rows(path: Path) -> int:
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ValueError(f"{path.name}: neither UTF-8 nor GB18030")
    if '"' in text or "\x00" in text or text.startswith(("\r", "\n")) or any(p in text for p in _EMPTY_LINE):
        rows = sum(1 for row in csv.reader(io.StringIO(text, newline="")) if row)
    else:
        # Without a quote every line break (\r\n, \r or \n) ends a row, as csv.reader
        # reads it, and without an empty line every line is a row: the rows are counted
        # from the line breaks, without building every row's fields (a city's reports
        # hold 10^5 rows). csv.reader refuses a NUL byte: such a text goes to it.
        breaks = text.count("\n") + text.count("\r") - text.count("\r\n")
        rows = breaks + (1 if text and not text.endswith(("\r", "\n")) else 0)
    return max(rows - 1, 0)


def describe_file(path: Path, root: Path, rows: int | None = None) -> dict[str, Any]:
    """path (relative, /-separated), size_bytes, sha256 and rows of one published file.

    ``rows``: the data rows, when the writer of the file knows them; else they are counted.
    """
    return {
        "path": path.relative_to(root).as_posix(),
        "size_bytes": path.stat().st_size,
        "sha256": sha256_of(path),
        "rows": count_rows(path) if rows is None else int(rows),
    }


def _describe_files(
    paths: list[Path], root: Path, known_rows: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """``describe_file`` of each path, in order; two at a time, as hashing releases the GIL
    (a million-record night publishes ~100 MB)."""
    known = known_rows or {}
    rows = [known.get(p.relative_to(root).as_posix()) for p in paths]
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="manifest") as pool:
        return list(pool.map(describe_file, paths, [root] * len(paths), rows))


def _hashed(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        return {"path": str(path), "size_bytes": None, "sha256": None}
    return {"path": str(path), "size_bytes": path.stat().st_size, "sha256": sha256_of(path)}


def _timestamp(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def _published(run_dir: Path, published_files: Iterable[Path] | None) -> list[Path]:
    if published_files is None:
        candidates = [p for p in run_dir.rglob("*") if p.is_file()]
    else:
        candidates = [p if Path(p).is_absolute() else run_dir / p for p in map(Path, published_files)]
    return sorted(
        (p for p in candidates if p.resolve() != (run_dir / MANIFEST_NAME).resolve()),
        key=lambda p: p.relative_to(run_dir).as_posix(),
    )


def _validation_summary(validation: Mapping[str, Any] | None) -> dict[str, Any]:
    keys = ("success", "evaluated", "failed", "critical_failed", "warnings_failed", "could_not_run", "docs", "messages")
    return {k: validation[k] for k in keys if validation and k in validation}


def write_manifest(
    run_dir: Path,
    *,
    run_id: str,
    started_at: datetime | str,
    finished_at: datetime | str,
    sources_file: Path,
    lock_file: Path | None,
    input_files: list[dict],
    stage_counts: list[dict],
    validation: Mapping[str, Any] | None,
    published_files: Iterable[Path] | None = None,
    known_rows: Mapping[str, int] | None = None,
) -> Path:
    """Write ``run_dir/manifest.json`` and return its path.

    ``input_files``: one dict per extract read, at least ``path``, ``size_bytes`` and
    ``sha256`` (other keys such as ``source`` and ``rows`` are kept). ``stage_counts``: the
    stages' ledger entries. ``published_files``: the files to list; by default every file
    under ``run_dir`` but the manifest itself. ``known_rows``: data rows of published files
    (path relative to ``run_dir``, /-separated) as their writers counted them: the reports'
    CSVs of a million-record night took 0.45 s to count again. Other files are counted.
    Write it last.
    """
    from flows import __version__

    run_dir = Path(run_dir)
    inputs = []
    for item in input_files:
        missing = {"path", "size_bytes", "sha256"} - set(item)
        if missing:
            raise ValueError(f"input file entry {item!r} lacks {sorted(missing)}")
        inputs.append({**item, "path": str(item["path"])})
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "run_id": run_id,
        "renhu_version": __version__,
        "python_version": platform.python_version(),
        "started_at": _timestamp(started_at),
        "finished_at": _timestamp(finished_at),
        "sources_file": _hashed(sources_file),
        "lock_file": _hashed(lock_file),
        "input_files": inputs,
        "records_in": _sum_rows(inputs),
        "stage_counts": list(stage_counts),
        "validation": _validation_summary(validation),
        "published_files": _describe_files(_published(run_dir, published_files), run_dir, known_rows),
    }
    path = run_dir / MANIFEST_NAME
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _sum_rows(inputs: list[dict]) -> int | None:
    rows = [item.get("rows") for item in inputs]
    if not rows or any(r is None for r in rows):
        return None
    return int(sum(rows))


# ---------------------------------------------------------------------------------------
# Verification


def verify_run(run_dir: Path) -> list[str]:
    """Re-check a run folder against its manifest; one line per difference, [] when all agree."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        return [f"{MANIFEST_NAME}: missing in {run_dir}"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed = {entry["path"]: entry for entry in manifest["published_files"]}
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST_NAME}: unreadable ({exc})"]

    problems = _check_files(run_dir, listed)
    problems += _check_accounting(run_dir, manifest)
    problems += _check_share_rates(run_dir)
    metrics = _read_metrics(run_dir)
    findings = _published_findings(run_dir, metrics)
    # Read once for the checks below; None where unreadable (reported by the accounting check).
    entity_persons = _read_published(run_dir, "entity_map.parquet", ["source", "person_id"])
    quarantine = _read_published(run_dir, "quarantine.parquet")
    problems += _check_metrics_figures(metrics, findings, entity_persons, quarantine)
    problems += _check_report_summaries(run_dir, findings)
    problems += _check_summary_rows(run_dir, metrics, entity_persons)
    problems += _check_rejected_sheets(run_dir, metrics, quarantine)
    problems += _check_validation_figures(run_dir, metrics, manifest)
    problems += check_no_full_id_numbers(run_dir)
    return problems


def _check_files(run_dir: Path, listed: dict[str, dict]) -> list[str]:
    problems = []
    for rel, entry in listed.items():
        path = run_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        size = path.stat().st_size
        if size != entry.get("size_bytes"):
            problems.append(f"{rel}: size {size} bytes, manifest says {entry.get('size_bytes')}")
        digest = sha256_of(path)
        if digest != entry.get("sha256"):
            problems.append(f"{rel}: sha256 {digest[:12]}…, manifest says {str(entry.get('sha256'))[:12]}…")
        rows = count_rows(path)
        if rows != entry.get("rows"):
            problems.append(f"{rel}: {rows} rows, manifest says {entry.get('rows')}")
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(run_dir).as_posix()
        if rel != MANIFEST_NAME and rel not in listed:
            problems.append(f"{rel}: not in the manifest")
    return problems


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _check_accounting(run_dir: Path, manifest: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    entity_rows = count_rows(run_dir / "entity_map.parquet")
    quarantine_rows = count_rows(run_dir / "quarantine.parquet")
    if entity_rows is None or quarantine_rows is None:
        for name, rows in (("entity_map.parquet", entity_rows), ("quarantine.parquet", quarantine_rows)):
            if rows is None:
                problems.append(
                    f"{name}: missing or unreadable, cannot check that every input row is accounted for"
                )
        return problems
    metrics = _read_metrics(run_dir)
    claims = [
        ("metrics.json records_in", metrics.get("records_in")),
        ("manifest.json input_files rows", manifest.get("records_in")),
    ]
    known = [(where, value) for where, value in claims if value is not None]
    if not known:
        problems.append("records in: neither metrics.json nor manifest.json says how many rows came in")
    for where, value in known:
        if entity_rows + quarantine_rows != value:
            problems.append(
                f"accounting: entity_map.parquet {entity_rows} rows + quarantine.parquet {quarantine_rows} rows "
                f"= {entity_rows + quarantine_rows}, but {where} = {value}"
            )
    for key, rows, name in (
        ("accepted", entity_rows, "entity_map.parquet"),
        ("quarantined", quarantine_rows, "quarantine.parquet"),
    ):
        if metrics.get(key) is not None and metrics[key] != rows:
            problems.append(f"accounting: metrics.json {key} = {metrics[key]}, but {name} has {rows} rows")
    try:
        import polars as pl

        keys = pl.read_parquet(run_dir / "entity_map.parquet", columns=["source", "record_id"])
        repeated = keys.height - keys.unique().height
        if repeated:
            problems.append(
                f"entity_map.parquet: {repeated} (source, record_id) rows repeat: a record in two clusters"
            )
    except Exception as exc:  # noqa: BLE001 - reported as a difference, not raised
        problems.append(f"entity_map.parquet: unreadable ({type(exc).__name__})")
    return problems


def _held_persons(held: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """From distinct (source, person_id) rows: how many sources hold each person
    (`person_id, sources_holding`), and per source its `persons` and `shared_persons` (those
    another source holds too), as share_rates.csv and metrics.json count them."""
    import polars as pl

    holders = held.group_by("person_id").len("sources_holding")
    persons_by_source = (
        held.join(holders, on="person_id")
        .group_by("source")
        .agg(pl.len().alias("persons"), (pl.col("sources_holding") > 1).sum().alias("shared_persons"))
    )
    return holders, persons_by_source


def _check_share_rates(run_dir: Path) -> list[str]:
    import polars as pl

    path = run_dir / "share_rates.csv"
    if not path.is_file():
        return ["share_rates.csv: missing"]
    try:
        rates = pl.read_csv(path, infer_schema_length=None)
        entity_map = pl.read_parquet(run_dir / "entity_map.parquet", columns=["source", "person_id"])
    except Exception as exc:  # noqa: BLE001 - reported as a difference, not raised
        return [f"share_rates.csv: cannot be checked ({type(exc).__name__}: {exc})"]
    missing = {"source", "records", "persons", "shared_persons", "share_rate"} - set(rates.columns)
    if missing:
        return [f"share_rates.csv: columns {sorted(missing)} missing"]

    _, persons_by_source = _held_persons(entity_map.unique())
    recount = {
        row["source"]: row
        for row in entity_map.group_by("source")
        .agg(pl.len().alias("records"))
        .join(persons_by_source, on="source")
        .iter_rows(named=True)
    }
    problems = []
    for row in rates.iter_rows(named=True):
        source, persons, shared, rate = (
            row["source"],
            row["persons"],
            row["shared_persons"],
            row["share_rate"],
        )
        if persons:
            expected = shared / persons
            if rate is None or abs(float(rate) - expected) > SHARE_RATE_TOLERANCE:
                problems.append(
                    f"share_rates.csv: {source}: share_rate {rate}, but shared_persons / persons = "
                    f"{shared} / {persons} = {expected:.6f}"
                )
        found = recount.pop(source, {"records": 0, "persons": 0, "shared_persons": 0})
        for column in ("records", "persons", "shared_persons"):
            if row[column] != found[column]:
                problems.append(
                    f"share_rates.csv: {source}: {column} {row[column]}, but entity_map.parquet gives {found[column]}"
                )
    for source in sorted(recount):
        problems.append(f"share_rates.csv: no row for source {source}, which entity_map.parquet holds")
    return problems


def _rate(numerator: int, denominator: int) -> float | None:
    """A rate's value as metrics.json writes it (linkage.rates): 6 places, empty when the
    denominator is 0."""
    return round(numerator / denominator, 6) if denominator else None


# Rates whose numerator and denominator come from tables that are not published (the
# household register against residence evidence): only their division can be redone.
_UNRECOUNTED_RATES = ("household_consistency_rate", "floating_registration_rate")


def _read_published(run_dir: Path, name: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    """A published parquet file (``columns`` of it); None when it cannot be read."""
    import polars as pl

    try:
        return pl.read_parquet(run_dir / name, columns=columns)
    except Exception:  # noqa: BLE001 - reported against the manifest and by the accounting check
        return None


def _department_sources(metrics: Mapping[str, Any]) -> dict[str, set[str]]:
    """Each department's report folder and its sources, as metrics.json names the sources'
    departments (empty for a run from before it did)."""
    from flows.config import department_folder

    sources_of: dict[str, set[str]] = {}
    for name, entry in (metrics.get("sources") or {}).items():
        if isinstance(entry, dict) and entry.get("department"):
            sources_of.setdefault(department_folder(entry["department"]), set()).add(name)
    return sources_of


def _published_findings(run_dir: Path, metrics: Mapping[str, Any]) -> pl.DataFrame | None:
    """household_findings.parquet with each row's department (a file from before the column
    gets it from its source, as metrics.json names the sources' departments); None when the
    file cannot be read (reported against the manifest)."""
    import polars as pl

    try:
        findings = pl.read_parquet(run_dir / "household_findings.parquet")
    except Exception:  # noqa: BLE001
        return None
    if "department" not in findings.columns:
        departments = {name: (src or {}).get("department") for name, src in (metrics.get("sources") or {}).items()}
        findings = findings.with_columns(
            department=pl.col("source").replace_strict(departments, default=None, return_dtype=pl.String)
        )
    return findings


def _findings_by_department_kind(findings: pl.DataFrame) -> dict[tuple[str, str], int]:
    return {(department, kind): n for department, kind, n in findings.group_by("department", "kind").len().iter_rows()}


def _check_metrics_figures(
    metrics: Mapping[str, Any],
    findings: pl.DataFrame | None,
    entity_map: pl.DataFrame | None,
    quarantine: pl.DataFrame | None,
) -> list[str]:
    """metrics.json's figures, recounted from entity_map.parquet, quarantine.parquet and
    household_findings.parquet: persons, duplicate records, the overall share and duplicate
    rates, per source records in, accepted, quarantined, persons, shared persons, duplicate
    records and the two rates, the overlap of every pair of sources, and the findings per
    kind (rows and persons) and per department and kind; of the rates whose counts are not
    published (人户一致率, 流动人口登记率), value = numerator / denominator. A figure
    metrics.json does not carry is not checked."""
    import polars as pl

    if not metrics or entity_map is None or quarantine is None:
        return []
    reasons: dict[str, dict[str, int]] = {}
    if "reason_code" in quarantine.columns:
        for source, code, n in quarantine.group_by("source", "reason_code").len().iter_rows():
            reasons.setdefault(source, {})[code] = n
    held = entity_map.drop_nulls("person_id").unique()
    holders, persons_by_source = _held_persons(held)
    accepted = dict(entity_map.group_by("source").len().iter_rows())
    quarantined = dict(quarantine.group_by("source").len().iter_rows())
    persons_of = dict(persons_by_source.select("source", "persons").iter_rows())
    shared_of = dict(persons_by_source.select("source", "shared_persons").iter_rows())
    persons = holders.height
    shared = holders.filter(pl.col("sources_holding") > 1).height
    duplicates = {s: accepted.get(s, 0) - persons_of.get(s, 0) for s in accepted}
    problems: list[str] = []

    def compare(path: tuple[str, ...], value: object) -> None:
        claimed: object = metrics
        for part in path:
            claimed = claimed.get(part) if isinstance(claimed, dict) else None
        if claimed is not None and claimed != value:
            problems.append(f"metrics.json: {'.'.join(path)} = {claimed}, but the published files give {value}")

    for path, value in (
        (("persons",), persons),
        (("duplicate_records",), sum(duplicates.values())),
        (("share_rate", "numerator"), shared),
        (("share_rate", "denominator"), persons),
        (("share_rate", "value"), _rate(shared, persons)),
        (("duplicate_rate", "numerator"), sum(duplicates.values())),
        (("duplicate_rate", "denominator"), entity_map.height),
        (("duplicate_rate", "value"), _rate(sum(duplicates.values()), entity_map.height)),
        # The same counts restated by the link stage and the stage ledger.
        (("linkage", "records"), entity_map.height),
        (("linkage", "persons"), persons),
    ):
        compare(path, value)
    for index, stage in enumerate(metrics.get("stages") or []):
        if isinstance(stage, dict) and stage.get("stage") == "ingest":
            for key, value in (("rows_in", entity_map.height + quarantine.height), ("rows_out", entity_map.height)):
                if stage.get(key) is not None and stage[key] != value:
                    problems.append(f"metrics.json: stages[{index}] (ingest) {key} = {stage[key]}, but the published files give {value}")
    for key in _UNRECOUNTED_RATES:
        claimed_rate = metrics.get(key)
        if not isinstance(claimed_rate, dict):
            continue
        numerator, denominator = claimed_rate.get("numerator"), claimed_rate.get("denominator")
        if not isinstance(numerator, int) or not isinstance(denominator, int):
            continue
        value, expected = claimed_rate.get("value"), _rate(numerator, denominator)
        if value != expected:
            problems.append(
                f"metrics.json: {key}.value = {value}, but "
                + (f"numerator / denominator = {numerator} / {denominator} gives {expected}" if denominator
                   else "the denominator is 0: the value is empty")
            )
    sources = metrics.get("sources") or {}
    for source in sorted(set(sources) | set(accepted) | set(quarantined)) if sources else []:
        if source not in sources:
            problems.append(f"metrics.json: no entry for source {source}, which the published files hold")
            continue
        for field, value in (
            ("records_in", accepted.get(source, 0) + quarantined.get(source, 0)),
            ("accepted", accepted.get(source, 0)),
            ("quarantined", quarantined.get(source, 0)),
            ("persons", persons_of.get(source, 0)),
            ("shared_persons", shared_of.get(source, 0)),
            ("share_rate", _rate(shared_of.get(source, 0), persons_of.get(source, 0))),
            ("duplicate_records", duplicates.get(source, 0)),
            ("duplicate_rate", _rate(duplicates.get(source, 0), accepted.get(source, 0))),
        ):
            compare(("sources", source, field), value)
        entry = sources[source] if isinstance(sources[source], dict) else {}
        # Field completeness is each field's filled records (standardization) of the accepted.
        for field, share in sorted((entry.get("field_completeness") or {}).items()):
            filled = ((entry.get("standardization") or {}).get(field) or {}).get("filled")
            if isinstance(filled, int) and accepted.get(source) and share != _rate(filled, accepted[source]):
                problems.append(
                    f"metrics.json: sources.{source}.field_completeness.{field} = {share}, but its "
                    f"standardization.{field}.filled / accepted = {filled} / {accepted[source]} gives "
                    f"{_rate(filled, accepted[source])}"
                )
        stated_reasons = sources[source].get("quarantine_reasons") if isinstance(sources[source], dict) else None
        if "reason_code" in quarantine.columns and isinstance(stated_reasons, dict):
            found_reasons = reasons.get(source, {})
            for code in sorted(set(stated_reasons) | set(found_reasons)):
                if stated_reasons.get(code, 0) != found_reasons.get(code, 0):
                    problems.append(
                        f"metrics.json: sources.{source}.quarantine_reasons.{code} = {stated_reasons.get(code, 0)}, "
                        f"but quarantine.parquet holds {found_reasons.get(code, 0)} rows of {source} with that reason_code"
                    )
    overlap = metrics.get("overlap")
    if isinstance(overlap, dict):
        pairs = (
            held.join(held, on="person_id", suffix="_r")
            .filter(pl.col("source") != pl.col("source_r"))
            .group_by("source", "source_r")
            .len()
        )
        both = {(left, right): n for left, right, n in pairs.iter_rows()}
        for left, row in sorted(overlap.items()):
            for right in sorted(row or {}):
                compare(("overlap", left, right), both.get((left, right), 0))
    problems += _check_findings_figures(metrics, findings)
    return problems


def _check_findings_figures(metrics: Mapping[str, Any], findings: pl.DataFrame | None) -> list[str]:
    """metrics.json's findings (rows and persons per kind, rows per department and kind)
    against household_findings.parquet (``findings``, from `_published_findings`)."""
    import polars as pl

    claimed = metrics.get("findings")
    if not isinstance(claimed, dict) or findings is None:
        return []
    recount: dict[str, dict] = {
        "by_kind": dict(findings.group_by("kind").len().iter_rows()),
        "persons_by_kind": dict(findings.group_by("kind").agg(pl.col("person_id").n_unique()).iter_rows()),
        "by_department": {},
    }
    for (department, kind), n in _findings_by_department_kind(findings).items():
        recount["by_department"].setdefault(department, {})[kind] = n
    problems = []

    def compare(path: tuple[str, ...], found: dict, stated: object) -> None:
        if not isinstance(stated, dict):
            return
        for key in sorted(set(stated) | set(found), key=str):
            if isinstance(stated.get(key), dict) or isinstance(found.get(key), dict):
                compare((*path, str(key)), found.get(key) or {}, stated.get(key) or {})
            elif key in stated and stated[key] != found.get(key, 0):
                problems.append(
                    f"metrics.json: findings.{'.'.join((*path, str(key)))} = {stated[key]}, "
                    f"but the published files give {found.get(key, 0)}"
                )
            elif key not in stated and found[key]:
                problems.append(
                    f"metrics.json: findings.{'.'.join((*path, str(key)))} missing, "
                    f"but the published files give {found[key]}"
                )

    for part in ("by_kind", "persons_by_kind", "by_department"):
        compare((part,), recount[part], claimed.get(part))
    return problems


def _check_report_summaries(run_dir: Path, findings: pl.DataFrame | None) -> list[str]:
    """Each department report's 汇总 against household_findings.parquet (``findings``, from
    `_published_findings`): for every finding sheet, its rows less those shown on another
    department's record (其中他部门记录) are the findings whose evidence is the department's
    own record. Reports written before that column existed are not checked."""
    import polars as pl

    from linkage.reports import KIND_LABELS

    if findings is None:
        return []
    counted = _findings_by_department_kind(findings)
    kinds_by_title = {title: kind for kind, title in KIND_LABELS.items()}
    problems = []
    for summary in sorted((run_dir / "reports").glob("*/01_summary.csv")):
        department = summary.parent.name
        try:
            rows = pl.read_csv(summary, encoding="utf8-lossy", infer_schema=False)
        except Exception:  # noqa: BLE001
            problems.append(f"{summary.relative_to(run_dir)}: unreadable")
            continue
        if "其中他部门记录" not in rows.columns:
            continue
        for title, in_sheet, on_others in rows.select("项目", "记录数", "其中他部门记录").iter_rows():
            kind = kinds_by_title.get(title)
            if kind is None:
                continue
            own = int(in_sheet) - int(on_others)
            if own != counted.get((department, kind), 0):
                problems.append(
                    f"{summary.relative_to(run_dir)}: {title} {in_sheet} rows less {on_others} on other departments' "
                    f"records = {own}, but household_findings.parquet holds {counted.get((department, kind), 0)} "
                    f"{kind} findings of {department}"
                )
    return problems


def _check_summary_rows(run_dir: Path, metrics: Mapping[str, Any], entity_map: pl.DataFrame | None) -> list[str]:
    """Each department report's 汇总 (01_summary.csv) against its own sheets and entity_map:
    every sheet's (but 未入库记录's) 记录数 is its CSV's rows, its 人数 the CSV's distinct 人员编号 and its
    其中他部门记录 the CSV's rows shown on another department's record; 本部门数据源's 记录数 and
    人数 are entity_map's records and persons of the department's sources (as metrics.json
    names their departments), and 重复登记's those of the records that share a person with
    another record of their source. A 汇总 row whose figure is empty is not checked."""
    import polars as pl

    from linkage.reports import KIND_LABELS

    # 未入库记录 is checked against quarantine.parquet (_check_rejected_sheets).
    keys_by_title = {title: kind for kind, title in KIND_LABELS.items()}
    keys_by_title.update({"重复登记": "duplicates", "与其他部门不一致": "conflicts"})

    sources_of = _department_sources(metrics)
    problems = []
    for summary in sorted((run_dir / "reports").glob("*/01_summary.csv")):
        folder = summary.parent
        where = summary.relative_to(run_dir).as_posix()
        try:
            rows = pl.read_csv(summary, encoding="utf8-lossy", infer_schema=False).to_dicts()
        except Exception:  # noqa: BLE001 - reported by _check_report_summaries
            continue

        def compare(item: str, column: str, stated: Any, found: int, of: str, where: str = where) -> None:
            if stated not in (None, "") and str(stated).strip() != str(found):
                problems.append(f"{where}: {item} {column} {stated}, but {of} gives {found}")

        for row in rows:
            key = keys_by_title.get(str(row.get("项目")))
            sheets = sorted(folder.glob(f"[0-9][0-9]_{key}.csv")) if key else []
            if len(sheets) != 1:
                continue  # a sheet without its CSV is reported against the manifest
            item = row.get("项目")
            of = sheets[0].name
            try:
                sheet = pl.read_csv(sheets[0], encoding="utf8-lossy", infer_schema=False)
            except Exception:  # noqa: BLE001
                problems.append(f"{folder.relative_to(run_dir).as_posix()}/{of}: unreadable")
                continue
            compare(item, "记录数", row.get("记录数"), sheet.height, of)
            if "人员编号" in sheet.columns:
                compare(item, "人数", row.get("人数"), sheet.get_column("人员编号").drop_nulls().n_unique(), of)
            if {"数据源", "记录编号"} <= set(sheet.columns):
                others = sheet.filter(pl.col("数据源").str.starts_with("（") & pl.col("记录编号").is_null()).height
                compare(item, "其中他部门记录", row.get("其中他部门记录"), others, of)
        sources = sources_of.get(folder.name)
        if entity_map is None or sources is None:
            continue
        own = entity_map.filter(pl.col("source").is_in(sorted(sources)))
        shared = own.filter(pl.len().over("source", "person_id") > 1)
        for row in rows:
            if row.get("项目") == "本部门数据源":
                compare("本部门数据源", "记录数", row.get("记录数"), own.height, "entity_map.parquet")
                compare("本部门数据源", "人数", row.get("人数"), own.get_column("person_id").n_unique(), "entity_map.parquet")
            elif row.get("项目") == "重复登记":
                compare("重复登记", "记录数", row.get("记录数"), shared.height, "entity_map.parquet")
                compare("重复登记", "人数", row.get("人数"), shared.get_column("person_id").n_unique(), "entity_map.parquet")
    return problems


def _check_rejected_sheets(run_dir: Path, metrics: Mapping[str, Any], quarantine: pl.DataFrame | None) -> list[str]:
    """Each department report's sheet of rejected rows (未入库记录) against quarantine.parquet:
    its count in the 汇总 and the rows of its CSV are the rows of the department's sources
    (by metrics.json's sources and their departments), the CSV names no other source, and
    each of its rows is one of those rows as quarantine.parquet names it (数据源, 文件, 数据行号
    and 原因, and 文件中的行号 where quarantine.parquet has file_row). A run whose metrics.json names no department, and a report from before the sheet (no
    such 汇总 row and no such CSV), are not checked."""
    import polars as pl

    from linkage.reports import REJECTED_KEY, REJECTED_TITLE

    sources_of = _department_sources(metrics)
    if not sources_of or quarantine is None:
        return []
    rejected = dict(quarantine.group_by("source").len().iter_rows())
    # Each row as the sheet shows it: 数据源, 文件, 数据行号, 原因, and 文件中的行号 where
    # quarantine.parquet has file_row (a run from before it has not).
    has_file_row = "file_row" in quarantine.columns
    row_keys = [c for c in ("source", "file", "row_number", "reason") if c in quarantine.columns]
    quarantined_rows: dict[str, Counter] = {}
    for row in quarantine.select(*row_keys, *(["file_row"] if has_file_row else [])).iter_rows():
        quarantined_rows.setdefault(row[0], Counter())[_sheet_key(row, has_file_row)] += 1
    problems = []
    for folder, sources in sorted(sources_of.items()):
        expected = sum(rejected.get(source, 0) for source in sources)
        where = f"reports/{folder}"
        summary_path = run_dir / where / "01_summary.csv"
        sheets = sorted((run_dir / where).glob(f"[0-9][0-9]_{REJECTED_KEY}.csv"))
        counted: list[str] | None = None
        if summary_path.is_file():
            try:
                summary = pl.read_csv(summary_path, encoding="utf8-lossy", infer_schema=False)
                counted = summary.filter(pl.col("项目") == REJECTED_TITLE).get_column("记录数").to_list()
            except Exception:  # noqa: BLE001
                problems.append(f"{where}/01_summary.csv: unreadable")
                continue
        if not counted and not sheets:
            continue  # a report from before the sheet
        name = f"{where}/01_summary.csv"
        if counted is None:
            problems.append(f"{name}: missing, but {where} has a {REJECTED_TITLE} sheet")
        elif len(counted) != 1:
            problems.append(f"{name}: {len(counted)} {REJECTED_TITLE} rows, expected 1")
        elif str(counted[0]).strip() != str(expected):
            problems.append(
                f"{name}: {REJECTED_TITLE} {counted[0]} rows, but quarantine.parquet holds {expected} rows of "
                f"{'、'.join(sorted(sources))}"
            )
        if len(sheets) != 1:
            problems.append(f"{where}: {len(sheets)} *_{REJECTED_KEY}.csv files, expected 1")
            continue
        sheet_name = sheets[0].relative_to(run_dir).as_posix()
        try:
            rows = pl.read_csv(sheets[0], encoding="utf8-lossy", infer_schema=False)
            shown = set(rows.get_column("数据源").drop_nulls().to_list())
        except Exception:  # noqa: BLE001
            problems.append(f"{sheet_name}: unreadable")
            continue
        if rows.height != expected:
            problems.append(
                f"{sheet_name}: {rows.height} rows, but quarantine.parquet holds {expected} rows of "
                f"{'、'.join(sorted(sources))}"
            )
        if shown - sources:
            problems.append(f"{sheet_name}: holds rows of {'、'.join(sorted(shown - sources))}, not its department's")
        elif rows.height == expected and len(row_keys) == 4:
            # As many rows as quarantine holds, of the department's sources: each must be one of
            # them as quarantine names it (the row a clerk is sent to, and why).
            columns = ["数据源", "文件", "数据行号（不含表头）", "原因"]
            compare_file_row = has_file_row and "文件中的行号" in rows.columns
            if not set(columns) <= set(rows.columns):
                problems.append(f"{sheet_name}: lacks a column of {', '.join(columns)}")
                continue
            wanted = sum((quarantined_rows.get(source, Counter()) for source in sources), Counter())
            listed = Counter(
                _sheet_key(tuple(_unescaped(v) for v in row), compare_file_row)
                for row in rows.select(*columns, *(["文件中的行号"] if compare_file_row else [])).iter_rows()
            )
            if not compare_file_row:
                wanted = Counter({key[:4]: n for key, n in wanted.items()})
            differ = listed - wanted
            if differ:
                source, file, row_number = next(iter(differ))[:3]
                problems.append(
                    f"{sheet_name}: {sum(differ.values())} row(s) not as quarantine.parquet has them (数据源, 文件, "
                    f"文件中的行号, 数据行号, 原因), e.g. {source} {file} 数据行号 {row_number}"
                )
    return problems


def _sheet_key(row: tuple, with_file_row: bool) -> tuple[str, ...]:
    """A rejected row as text, to compare quarantine.parquet's with a report CSV's:
    (source, file, row_number, reason[, file_row]), an empty cell as ''."""
    texts = tuple("" if value is None else str(value) for value in row)
    return texts if with_file_row else texts[:4]


def _unescaped(value: str | None) -> str | None:
    """A report cell as written before the reports quoted a formula-like text ('=1+1 -> =1+1)."""
    if value is not None and len(value) > 1 and value[0] == "'" and value[1] in "=+-@\t\r":
        return value[1:]
    return value


# A resident identity number: 17 digits and a check character, not part of a longer run of
# digits (hashes, timestamps). Letters around it do not matter: "HJ" + an id still holds it.
_ID_CANDIDATE = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9])")
# The same for polars, whose regex engine has no look-around: maximal digit runs, kept
# when 18 characters long.
_DIGIT_RUN = r"[0-9]+[Xx]?"
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_TEXT_SUFFIXES = {".html", ".htm", ".json", ".csv", ".md", ".txt", ".yaml", ".yml", ".sql", ".xml"}
# Published files that may hold full identity numbers: each department's own report.
_ID_NUMBERS_ALLOWED_UNDER = ("reports/",)


VALIDATION_RESULTS = "validation/results.json"


def _check_validation_figures(
    run_dir: Path, metrics: Mapping[str, Any], manifest: Mapping[str, Any] | None = None
) -> list[str]:
    """validation/results.json's figures add up, metrics.json counts its checks as it lists
    them, and each Data Docs validation page states the figures it holds.

    Per map check: 0 <= unexpected_count <= checked (element_count - missing_count),
    unexpected_percent = 100 * unexpected_count / checked, and success = (checked -
    unexpected) / checked >= mostly (nothing checked passes). Runs written before
    results.json carried missing_count are not checked.
    """
    path = run_dir / VALIDATION_RESULTS
    if not path.is_file():
        return []
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        checks = list(results.get("checks") or [])
    except (ValueError, AttributeError, TypeError) as exc:
        return [f"{VALIDATION_RESULTS}: unreadable ({exc})"]
    if not any("missing_count" in c for c in checks):
        return []
    problems: list[str] = []
    # (unexpected, checked, rows, mostly, success) of every map check per suite and batch, as
    # each page's Observed Values (the first two) and statements must say them.
    verdicts: dict[tuple[str, str], list[tuple[int, int, int, float, bool]]] = {}
    # (evaluated, successful) of every check, map or not, per suite and batch: each page's
    # Status and Statistics.
    outcomes: dict[tuple[str, str], list[int]] = {}
    for c in checks:
        tally = outcomes.setdefault((str(c.get("suite")), str(c.get("batch"))), [0, 0])
        tally[0] += 1
        tally[1] += bool(c.get("success"))
    for c in checks:
        rows, missing, unexpected = c.get("element_count"), c.get("missing_count"), c.get("unexpected_count")
        if rows is None or missing is None or unexpected is None:
            continue
        name = f"{c.get('suite')}[{c.get('batch')}] {c.get('check')}"
        checked = rows - missing
        verdicts.setdefault((str(c.get("suite")), str(c.get("batch"))), []).append(
            # Nothing to check states no threshold.
            (unexpected, checked, rows, float(c.get("mostly") or 1.0) if checked else 1.0, bool(c.get("success")))
        )
        if not 0 <= unexpected <= checked:
            problems.append(
                f"{VALIDATION_RESULTS}: {name}: {unexpected} unexpected of {checked} checked values "
                f"({rows} rows, {missing} not checked)"
            )
            continue
        stated = c.get("unexpected_percent")
        share = None if checked == 0 else 100 * unexpected / checked
        if (stated is None) != (share is None) or (share is not None and abs(stated - share) > 1e-9):
            problems.append(
                f"{VALIDATION_RESULTS}: {name}: unexpected_percent = {stated}, "
                f"but {unexpected} of {checked} checked values give {share}"
            )
        mostly = c.get("mostly")
        if mostly is not None:
            # GX's own rule (expectation._mostly_success), in the same floating point.
            passes = checked == 0 or (float(checked) - float(unexpected)) / float(checked) >= mostly
            if bool(c.get("success")) != passes:
                problems.append(
                    f"{VALIDATION_RESULTS}: {name}: success = {c.get('success')}, but {checked - unexpected} "
                    f"of {checked} checked values pass and mostly = {mostly}"
                )
    problems += _check_against_suite_files(run_dir, checks)
    failed = [c for c in checks if not c.get("success")]
    errors = results.get("errors") or []
    recount = {
        "evaluated": len(checks),
        "failed": len(failed),
        "critical_failed": sum(c.get("severity") == "critical" for c in failed),
        "warnings_failed": sum(c.get("severity") == "warning" for c in failed),
        "could_not_run": len(errors),
        "success": not failed and not errors,
    }
    for where, stated_counts in (
        (VALIDATION_RESULTS, results),
        ("metrics.json", metrics.get("validation") or {}),
        (MANIFEST_NAME, (manifest or {}).get("validation") or {}),
    ):
        if not isinstance(stated_counts, dict):
            continue
        for key, value in recount.items():
            if key in stated_counts and stated_counts[key] != value:
                problems.append(
                    f"{where}: validation {key} = {stated_counts[key]}, but the checks in {VALIDATION_RESULTS} give {value}"
                )
    problems += _check_docs_pages(run_dir, verdicts, outcomes)
    return problems


def _check_against_suite_files(run_dir: Path, checks: list[dict[str, Any]]) -> list[str]:
    """Each check's severity and mostly in results.json are those of the suite files the run
    copied to validation/suites/ (the check's severity, its threshold key) and of the
    thresholds it used there (thresholds_used.json, per batch). A run without the copies is
    not checked."""
    import yaml

    suites_dir = run_dir / "validation" / "suites"
    try:
        used = json.loads((suites_dir / "thresholds_used.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    specs: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(suites_dir.glob("*.yaml")):
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for item in spec.get("expectations") or []:
                specs[(str(spec.get("suite")), str(item.get("check")))] = item
        except (yaml.YAMLError, AttributeError, TypeError):
            continue
    problems = []
    for c in checks:
        spec = specs.get((str(c.get("suite")), str(c.get("check"))))
        if spec is None:
            continue
        name = f"{c.get('suite')}[{c.get('batch')}] {c.get('check')}"
        if c.get("severity") != spec.get("severity"):
            problems.append(
                f"{VALIDATION_RESULTS}: {name}: severity {c.get('severity')}, but "
                f"validation/suites/{c.get('suite')}.yaml says {spec.get('severity')}"
            )
        key, mostly = spec.get("mostly"), c.get("mostly")
        threshold = (used.get(str(c.get("batch"))) or {}).get(key) if key else None
        if threshold is not None and mostly is not None and float(mostly) != float(threshold):
            problems.append(
                f"{VALIDATION_RESULTS}: {name}: mostly {mostly}, but the run used {key} = {threshold} "
                "(validation/suites/thresholds_used.json)"
            )
    return problems


def _check_docs_pages(
    run_dir: Path,
    verdicts: Mapping[tuple[str, str], list[tuple[int, int, int, float, bool]]],
    outcomes: Mapping[tuple[str, str], list[int]],
) -> list[str]:
    """Each Data Docs validation page (validations/**/duckdb-<suite>[.<batch>].html) states
    the unexpected and checked counts results.json holds for its suite and batch, each with
    its percentage right, in the Observed Value cell and in the statement under each check;
    the statement's rows not checked, its threshold (mostly) and its verdict are results.json's
    too, and its own figures add up."""
    from flows.validation_figures import percent, stated_checks, stated_figures

    problems = []
    recorded = {key: [(unexpected, checked) for unexpected, checked, *_ in checks] for key, checks in verdicts.items()}
    pages = sorted((run_dir / "validation" / "validations").rglob("duckdb-*.html"))
    seen = set()
    for page in pages:
        rel = page.relative_to(run_dir).as_posix()
        suite, _, batch = page.stem.removeprefix("duckdb-").partition(".")
        key = (suite, batch or "run")
        seen.add(key)
        text = page.read_text(encoding="utf-8", errors="replace")
        stated = stated_figures(text)
        for unexpected, checked, shown in stated:
            if checked and shown != percent(unexpected, checked):
                problems.append(f"{rel}: shows {shown} for {unexpected} of {checked}, which is {percent(unexpected, checked)}")
        if sorted((u, c) for u, c, _ in stated) != sorted(recorded.get(key, [])):
            problems.append(
                f"{rel}: states (unexpected, checked) {sorted((u, c) for u, c, _ in stated)}, "
                f"{VALIDATION_RESULTS} holds {sorted(recorded.get(key, []))}"
            )
        if key in outcomes:
            problems += _check_page_status(rel, text, *outcomes[key])
        statements = stated_checks(text)
        for statement in statements:
            problems += [f"{rel}: a check's statement says {issue}" for issue in statement.problems]
        said = sorted(
            (s.unexpected, s.checked, s.checked if s.rows is None else s.rows, s.mostly, s.success) for s in statements
        )
        if said != sorted(verdicts.get(key, [])):
            problems.append(
                f"{rel}: its statements say (unexpected, checked, rows, mostly, passes) {said}, "
                f"{VALIDATION_RESULTS} holds {sorted(verdicts.get(key, []))}"
            )
    if pages:
        problems += [
            f"validation/: no Data Docs page for {suite}[{batch}], which {VALIDATION_RESULTS} lists"
            for suite, batch in sorted(set(recorded) - seen)
        ]
    return problems


_PAGE_STATUS = re.compile(
    r"Status:\s*(Succeeded|Failed)\s*Statistics\s*Evaluated Expectations\s*([0-9]+)\s*"
    r"Successful Expectations\s*([0-9]+)\s*Unsuccessful Expectations\s*([0-9]+)"
)


def _check_page_status(rel: str, page: str, evaluated: int, successful: int) -> list[str]:
    """A validation page's Status and Statistics against results.json's checks of its suite
    and batch (a page without them, one not drawn by GX, is not checked)."""
    import html

    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S))).split())
    found = _PAGE_STATUS.search(text)
    if found is None:
        return []
    status, shown = found.group(1), tuple(int(g) for g in found.groups()[1:])
    expected = (evaluated, successful, evaluated - successful)
    problems = []
    if shown != expected:
        problems.append(
            f"{rel}: states {shown[0]} evaluated, {shown[1]} successful, {shown[2]} unsuccessful expectations, "
            f"{VALIDATION_RESULTS} holds {expected[0]}, {expected[1]}, {expected[2]}"
        )
    if (status == "Succeeded") != (successful == evaluated):
        problems.append(
            f"{rel}: Status: {status}, but {VALIDATION_RESULTS} holds {evaluated - successful} failed check(s) of {evaluated}"
        )
    return problems


def _has_birth_date(text: str) -> bool:
    """17 digits and a digit or X, with a real birth date from 1900 to this year at 7-14."""
    if len(text) != 18 or not text[:17].isdigit() or text[17] not in "0123456789Xx":
        return False
    try:
        born = datetime.strptime(text[6:14], "%Y%m%d")
    except ValueError:
        return False
    return 1900 <= born.year <= datetime.now().year


def is_resident_id(text: str) -> bool:
    """18 characters with a correct ISO 7064 MOD 11-2 check character and a real birth date."""
    if not _has_birth_date(text):
        return False
    expected = "10X98765432"[sum(int(d) * w for d, w in zip(text[:17], _ID_WEIGHTS, strict=True)) % 11]
    return text[17].upper() == expected


def record_numbers_that_check(run_dir: Path) -> set[str]:
    """Record ids published in entity_map.parquet or quarantine.parquet that pass the check
    character by chance, in a source whose record ids are not identity numbers.

    Ingest decides per source (stg_ingest_rows_rejected, id_number_sources): among a source's
    record ids of 18 characters around a real birth date, identity numbers pass the check
    character almost always, and record numbers of the same layout (region code + date +
    sequence) about once in 11; under half passing, the source's record ids are its own
    record numbers and are published, the few that check among them too. The same count over
    the published record ids tells them from a leak: a source whose published ones pass at
    least half the time (and at least once) publishes identity numbers, and its ids stay
    reported. (The published count can only lean further to record numbers than the night's:
    what ingest masked in quarantine, it masked because it passed.)
    """
    import polars as pl

    frames = []
    for name in ("entity_map.parquet", "quarantine.parquet"):
        path = Path(run_dir) / name
        try:
            frames.append(pl.read_parquet(path, columns=["source", "record_id"]))
        except Exception:  # noqa: BLE001 - a missing or unreadable file is reported elsewhere
            continue
    if not frames:
        return set()
    candidates = (
        pl.concat(frames)
        .filter(pl.col("record_id").str.contains(r"^[1-9][0-9]{16}[0-9Xx]$"))
        .select("source", "record_id")
        .rows()
    )
    tally: dict[str, list[int]] = {}
    passing: dict[str, set[str]] = {}
    for source, record_id in candidates:
        if not _has_birth_date(record_id):
            continue
        counts = tally.setdefault(source, [0, 0])
        counts[1] += 1
        if is_resident_id(record_id):
            counts[0] += 1
            passing.setdefault(source, set()).add(record_id)
    return {
        record_id
        for source, (checked, of_form) in tally.items()
        if not (checked >= 1 and 2 * checked >= of_form)
        for record_id in passing.get(source, ())
    }


def _mask(id_number: str) -> str:
    return f"{id_number[:6]}********{id_number[-4:]}"


def _ids_in_text(text: str) -> list[str]:
    return [m for m in _ID_CANDIDATE.findall(text) if is_resident_id(m)]


def _ids_in_parquet(path: Path) -> list[str]:
    import polars as pl

    frame = pl.read_parquet(path)
    found: list[str] = []
    for name, dtype in frame.schema.items():
        if dtype != pl.Utf8:
            continue
        candidates = (
            frame.select(pl.col(name).str.extract_all(_DIGIT_RUN))
            .explode(name)
            .drop_nulls()
            .unique()
            .to_series()
            .to_list()
        )
        found += [c for c in candidates if len(c) == 18 and is_resident_id(c)]
    return found


def check_no_full_id_numbers(run_dir: Path) -> list[str]:
    """One line per published file (department reports excepted) holding a full resident
    identity number; the examples are masked. A source's own record numbers that pass the
    check character by chance (`record_numbers_that_check`) are not identity numbers."""
    problems = []
    record_numbers = record_numbers_that_check(run_dir)
    for path in sorted(p for p in Path(run_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(run_dir).as_posix()
        if rel.startswith(_ID_NUMBERS_ALLOWED_UNDER) or "/static/" in f"/{rel}":
            continue
        suffix = path.suffix.lower()
        try:
            if suffix == ".parquet":
                found = _ids_in_parquet(path)
            elif suffix in _TEXT_SUFFIXES:
                found = _ids_in_text(path.read_bytes().decode("utf-8", errors="ignore"))
            else:
                continue
        except Exception as exc:  # noqa: BLE001 - reported as a difference, not raised
            problems.append(f"{rel}: cannot be searched for identity numbers ({type(exc).__name__})")
            continue
        found = [f for f in found if f not in record_numbers]
        if found:
            distinct = sorted(set(found))
            problems.append(
                f"{rel}: holds {len(distinct)} full identity number(s), e.g. {_mask(distinct[0])}; "
                "only a department's own report may"
            )
    return problems


def verify_command(argv: list[str]) -> int:
    """``renhu verify RUNDIR``: 0 and an OK line when the folder matches its manifest, else 1."""
    parser = argparse.ArgumentParser(
        prog="renhu verify",
        description=(
            "Re-check a published run folder against its manifest.json: every file's sha256, "
            "size and row count, that entity_map rows + quarantine rows = records in, that "
            "each share_rate = shared_persons / persons as recounted from entity_map.parquet, "
            "that metrics.json's counts of records and persons (also as the link and ingest stages restate them), its quarantine "
            "reasons per source, its field completeness (filled / accepted) and its rates (overall and per source), "
            "its overlap of sources and its findings counts agree with entity_map.parquet, "
            "quarantine.parquet and household_findings.parquet, that each department report's 汇总 "
            "counts the department's own findings as household_findings.parquet does and its records, persons and "
            "duplicates as entity_map.parquet does, and each sheet's rows and persons as the sheet's CSV holds them, that its "
            "未入库记录 sheet (in the 汇总 and its CSV) holds as many rows as quarantine.parquet holds of "
            "the department's sources, each as quarantine.parquet names it, and none of another's, that validation/results.json's "
            "figures add up (unexpected_percent = unexpected / checked values, success against mostly, each check's severity "
            "and mostly as the run's copy of the suite files and thresholds says, the counts "
            "of failed checks in it and in metrics.json) and each Data Docs page states them (each check's "
            "observed value, and its statement: rows not checked, threshold and verdict; the page's status and "
            "counts of expectations), "
            "and that no published file but a department's own report holds a full identity number."
        ),
    )
    parser.add_argument(
        "run_dir", metavar="RUNDIR", type=Path, help="a run folder (DIR/runs/<run_id> or DIR/latest)"
    )
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        print(f"renhu verify: {run_dir}: no such run folder", file=sys.stderr)
        return 1
    problems = verify_run(run_dir)
    if problems:
        for line in problems:
            print(line)
        print(f"renhu verify: {run_dir}: {len(problems)} difference(s) from manifest.json", file=sys.stderr)
        return 1
    manifest_path = run_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    metrics = _read_metrics(run_dir)
    entity_rows = count_rows(run_dir / "entity_map.parquet")
    quarantine_rows = count_rows(run_dir / "quarantine.parquet")
    records_in = metrics.get("records_in", manifest.get("records_in"))
    print(
        f"OK: {run_dir} (run {manifest.get('run_id')}): {len(manifest['published_files'])} files match "
        f"manifest.json (sha256, size, rows); records in {records_in} = {entity_rows} in entity_map "
        f"+ {quarantine_rows} in quarantine; share rates, metrics.json's figures and the reports' 汇总 and 未入库记录 agree with the published files; "
        "the validation figures add up and the Data Docs state them; "
        "no full identity number outside the departments' reports; "
        f"manifest.json sha256 {sha256_of(manifest_path)}"
    )
    return 0
