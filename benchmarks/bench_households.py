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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--linkage", choices=("truth", "real", "both"), default="both")
    parser.add_argument("--keep", type=Path, default=None, help="generate into this folder and keep it")
    args = parser.parse_args()

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
