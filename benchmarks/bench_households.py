"""Household findings scored on the demo city, and the time each households/report step takes.

    .venv/bin/python benchmarks/bench_households.py --persons 20000 [--seed N] [--linkage truth|real|both]

1. generates the demo city (`linkage.demo_city.generate_city`) into a temporary folder;
2. ingests it with the flow's own reader (`flows.ingest.ingest_sources`) and standardizes it
   (`linkage.standardize.standardize_records`);
3. entity map: `truth` takes each record's true person (truth/records.parquet), so the
   findings are scored free of linkage errors; `real` runs `linkage.link.link_records`;
4. `find_household_findings` with `as_of` = the city's extract date;
5. scores per kind at person level against truth/findings.parquet: a finding's person is
   the true person of its evidence record; precision = found ∩ true / found, recall =
   found ∩ true / true. The bar: precision >= 0.95 and recall >= 0.90 for every kind;
6. times compute_rates, build_department_reports and write_department_reports;
7. prints a table and writes benchmarks/results/<UTC time>_households-<persons>.json.

The flow's own households stage alone, on a run's kept DuckDB file (one that `renhu run` or
`bench_stages.py` left, with int_persons_standardized and entity_map):

    .venv/bin/python benchmarks/bench_households.py --db COPY.duckdb --sources CITY/sources.yaml \
        [--as-of 2026-11-23] [--save DIR]

runs `flows.stages.households` in a fresh process and prints its seconds, the RSS before it
and the process's peak RSS (getrusage: exact, not sampled), so the stage's own memory is the
difference. The stage replaces household_findings and share_rates in that file: give it a
copy. `--save DIR` writes the findings, share rates, overlap and rate metrics (sorted, as
parquet and JSON) so two versions of the stage can be compared row for row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl
from bench_stages import RssSampler

from flows.config import load_sources
from flows.ingest import ingest_sources
from flows.reports import write_department_reports
from linkage.households import FINDING_KINDS, find_household_findings
from linkage.rates import compute_rates
from linkage.reports import build_department_reports

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PRECISION_BAR, RECALL_BAR = 0.95, 0.90


def _extract_date() -> dt.date:
    from linkage.demo_city.people import EXTRACT_DATE

    return dt.date.fromisoformat(str(EXTRACT_DATE))


def score(
    findings: pl.DataFrame, truth_records: pl.DataFrame, truth_findings: pl.DataFrame
) -> dict[str, dict]:
    """Per kind: found/true persons, hits, precision, recall (person level)."""
    found = (
        findings.join(
            truth_records.select("source", "record_id", "true_person_id"), on=["source", "record_id"]
        )
        .select("kind", "true_person_id")
        .unique()
    )
    true = truth_findings.select("kind", "true_person_id").unique()
    kinds = list(FINDING_KINDS) + sorted(set(true.get_column("kind")) - set(FINDING_KINDS))
    out: dict[str, dict] = {}
    for kind in kinds:
        f = set(found.filter(pl.col("kind") == kind).get_column("true_person_id"))
        t = set(true.filter(pl.col("kind") == kind).get_column("true_person_id"))
        hits = len(f & t)
        out[kind] = {
            "found": len(f),
            "true": len(t),
            "hits": hits,
            "precision": round(hits / len(f), 4) if f else None,
            "recall": round(hits / len(t), 4) if t else None,
        }
    return out


def _timed(label: str, timings: dict[str, float], fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    timings[label] = round(time.perf_counter() - started, 3)
    return result


def _print_scores(title: str, scores: dict[str, dict]) -> bool:
    print(f"\n{title}")
    print(f"{'kind':<26}{'true':>7}{'found':>7}{'hits':>7}{'precision':>11}{'recall':>8}  bar")
    ok_all = True
    for kind, s in scores.items():
        p, r = s["precision"], s["recall"]
        ok = (p is None or p >= PRECISION_BAR) and (r is None or r >= RECALL_BAR)
        ok_all &= ok
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(
            f"{kind:<26}{s['true']:>7}{s['found']:>7}{s['hits']:>7}{fmt(p):>11}{fmt(r):>8}  {'ok' if ok else 'MISS'}"
        )
    return ok_all


def stage_on_db(db: Path, sources: Path, as_of: dt.date, save: Path | None) -> int:
    """Time `flows.stages.households` on a kept run database; optionally save what it made."""
    import resource

    from flows import stages
    from flows.settings import Settings

    settings = Settings.from_env()
    # The night's date in China is as_of: noon UTC falls on it there too.
    started_at = dt.datetime.combine(as_of, dt.time(4, 0), tzinfo=dt.UTC)
    ctx = stages.RunContext(
        config=load_sources(sources),
        out_dir=db.parent,
        db_path=db,
        con=stages.connect(db, settings),
        settings=settings,
        run_id=stages.new_run_id(started_at),
        started_at=started_at,
        sources_sha256="",
    )
    # Imports the stage makes on first call, so they do not count as the stage's memory or time
    # (in the flow, earlier stages have loaded them: pyarrow, for one, hands frames to DuckDB).
    import pyarrow  # noqa: F401

    import linkage.households  # noqa: F401
    import linkage.rates  # noqa: F401

    before = RssSampler.current()
    result = stages.households(ctx)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    records = ctx.con.execute("select count(*) from entity_map").fetchone()[0]
    print(
        f"households stage: {result.seconds:.2f} s  records {records:,}  findings {result.rows_out:,}  "
        f"RSS before {before / 1e9:.2f} GB  peak {peak / 1e9:.2f} GB  (stage +{(peak - before) / 1e9:.2f} GB)"
    )
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        findings = ctx.con.execute("select * from household_findings").pl()
        findings.sort(findings.columns, nulls_last=True).write_parquet(save / "household_findings.parquet")
        ctx.con.execute("select * from share_rates order by source").pl().write_parquet(
            save / "share_rates.parquet"
        )
        rates = ctx.rates
        rates.overlap.sort("source_l", "source_r").write_parquet(save / "overlap.parquet")
        (save / "metrics.json").write_text(
            json.dumps(rates.metrics, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8"
        )
        print(f"saved: {save}")
    ctx.con.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", type=Path, default=None, help="time the flow's households stage on this run database"
    )
    parser.add_argument("--sources", type=Path, default=None, help="with --db: the sources file of that run")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2026, 11, 23))
    parser.add_argument("--save", type=Path, default=None, help="with --db: write the stage's outputs here")
    parser.add_argument("--persons", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--linkage", choices=("truth", "real", "both"), default="both")
    parser.add_argument("--keep", type=Path, default=None, help="generate into this folder and keep it")
    args = parser.parse_args()
    if args.db is not None:
        if args.sources is None:
            parser.error("--db needs --sources")
        return stage_on_db(args.db, args.sources, args.as_of, args.save)

    from linkage.demo_city import generate_city
    from linkage.standardize import standardize_records

    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_households_") as tmp:
        city_dir = args.keep or Path(tmp) / "city"
        city = _timed("generate_city", timings, generate_city, city_dir, args.persons, args.seed)
        con = duckdb.connect()
        config = load_sources(Path(city.sources_file))
        _timed("ingest", timings, ingest_sources, con, config, "bench")
        raw = con.execute("select * from raw_records order by record_key").pl()
        std = _timed("standardize", timings, standardize_records, raw)
        # Superseded copies share their record id with the accepted row: only accepted rows are records.
        truth_records = (
            pl.read_parquet(city_dir / "truth" / "records.parquet")
            .filter(pl.col("expected_outcome") == "accepted")
            .with_columns(pl.col("true_person_id").cast(pl.String))
        )
        truth_findings = pl.read_parquet(city_dir / "truth" / "findings.parquet").with_columns(
            pl.col("true_person_id").cast(pl.String)
        )
        as_of = _extract_date()
        maps: dict[str, pl.DataFrame] = {}
        if args.linkage in ("truth", "both"):
            maps["truth"] = std.select("record_key", "source", "record_id").join(
                truth_records.select("source", "record_id", person_id="true_person_id"),
                on=["source", "record_id"],
                how="left",
            )
        if args.linkage in ("real", "both"):
            from linkage.link import link_records

            result = _timed("link", timings, link_records, con, std, None)
            maps["real"] = result.entity_map
        results: dict[str, dict] = {}
        all_ok = True
        for name, entity_map in maps.items():
            findings = _timed(
                f"households[{name}]", timings, find_household_findings, std, entity_map, as_of=as_of
            )
            scores = score(findings, truth_records, truth_findings)
            all_ok &= _print_scores(f"entity map: {name} ({findings.height} evidence rows)", scores)
            results[name] = {"evidence_rows": findings.height, "scores": scores}
            if name == args.linkage or (args.linkage == "both" and name == "real"):
                rates = _timed("rates", timings, compute_rates, std, entity_map, findings)
                reports = _timed(
                    "build_reports", timings, build_department_reports, std, entity_map, findings
                )
                written = _timed(
                    "write_reports", timings, write_department_reports, Path(tmp) / "reports", reports
                )
                results["rates"] = {
                    k: rates.metrics[k]
                    for k in (
                        "share_rate",
                        "duplicate_rate",
                        "household_consistency_rate",
                        "floating_registration_rate",
                    )
                }
                results["report_files"] = len(written)
    print(f"\nrecords: {std.height}  persons: {args.persons}  seed: {args.seed}")
    print("seconds: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    if "rates" in results:
        print("rates:   " + ", ".join(f"{k} {v['value']}" for k, v in results["rates"].items()))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"{stamp}_households-{args.persons}.json"
    out.write_text(
        json.dumps(
            {
                "persons": args.persons,
                "seed": args.seed,
                "records": std.height,
                "seconds": timings,
                **results,
            },
            ensure_ascii=False,
            indent=2,
        ),
        encoding="utf-8",
    )
    print(f"written: {out}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
