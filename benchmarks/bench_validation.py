"""Time and peak memory of the validate stage (flows.validation.run_validation).

    .venv/bin/python benchmarks/bench_validation.py [--records 1000000] [--sources 7]
    .venv/bin/python benchmarks/bench_validation.py --db /tmp/renhu-stages/renhu.duckdb

With --db it validates the latest night kept in a flow's DuckDB file (read only; e.g. the
one benchmarks/bench_stages.py leaves in its --out folder) instead of building one:

1. builds, in an in-memory DuckDB, the tables the flow keeps for one night, all in SQL:
   `records / 2.2` persons with valid resident id numbers (ISO 7064 check character)
   and Han names, spread over `--sources` sources so that they hold `--records` accepted
   records in all; 1 % more rows quarantined; raw_records, int_persons_standardized,
   entity_map, quarantine, run_source_counts (tonight and a previous night 2 % smaller),
   ingest_files, share_rates and household_findings, consistent with each other;
2. runs run_validation into a temporary run folder (Data Docs included), twice: the
   first pays Great Expectations' import, the second is what every later night of a
   long-running process pays;
3. prints the seconds (total and per phase: frames and metrics in DuckDB, waiting for
   GX's import, GX's verdicts, Data Docs), the peak RSS of the process during each
   run (sampled every 20 ms), the checks evaluated and failed, and writes
   benchmarks/results/<UTC time>_validation-<records>.json.

A clean night must report 0 failed checks: the benchmark also shows the suites raise
no false alarm at this size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import duckdb

from flows.validation import run_validation
from linkage.fields import RAW_VALUES_VIEW
from linkage.sql import create_view

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RUN_ID = "20261123T020000Z-bench0"
PREVIOUS_RUN_ID = "20261122T020000Z-bench0"
CANONICAL = [
    "name", "id_number", "sex", "birth_date", "ethnicity", "phone", "hukou_address", "hukou_region",
    "residence_address", "residence_region", "household_id", "relation_to_head", "house_id", "employer",
    "registered_at", "updated_at",
]  # fmt: skip


def build_night(con: duckdb.DuckDBPyConnection, records: int, sources: int) -> dict[str, int]:
    persons = int(records / 2.2)
    # Each source holds a person with probability `share`, chosen so the sources hold
    # `records` records in all; hash() spreads the choice evenly and reproducibly.
    share = min(records / persons / sources, 1.0)
    con.execute(
        f"""
        create or replace table bench_persons as
        with base as (
            select
                i as person,
                'P' || lpad(printf('%x', i + 1), 12, '0') as person_id,
                ['330602', '330603', '330604', '330621', '330624', '330681', '330683'][1 + i % 7]
                    || strftime(date '1935-01-01' + (i * 37 % 30000)::integer, '%Y%m%d')
                    || lpad((i % 1000)::varchar, 3, '0') as first17,
                date '1935-01-01' + (i * 37 % 30000)::integer as birth_date,
                case when i % 2 = 1 then 'M' else 'F' end as sex,
                ['王', '李', '张', '刘', '陈', '杨', '黄', '赵', '吴', '周', '欧阳'][1 + i % 11]
                    || ['伟', '芳', '娜', '秀英', '敏', '静', '丽', '强', '磊', '军', '洋'][1 + (i // 11) % 11]
                    || ['', '华', '平', '明', '兰'][1 + (i // 121) % 5] as name
            from range({persons}) as t(i)
        )
        select
            *,
            first17 || substr('10X98765432', 1 + (list_sum(list_transform(range(17),
                lambda k: (ascii(substr(first17, k::integer + 1, 1)) - 48)
                    * [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2][k + 1])) % 11)::integer, 1) as id_number
        from base
        """
    )
    con.execute(
        f"""
        create or replace table bench_records as
        select
            row_number() over (order by s, person) as record_key,
            'source_' || s as source,
            'R' || s || '-' || lpad(person::varchar, 9, '0') as record_id,
            person
        from range({sources}) as r(s), bench_persons
        where (hash(person * 31 + s) % 1000000) < {int(share * 1_000_000)}
        """
    )
    fields = ", ".join(f"null::varchar as {c}" for c in CANONICAL if c not in ("name", "id_number", "sex", "birth_date", "updated_at"))  # fmt: skip
    con.execute(
        f"""
        create or replace table raw_records as
        select
            record_key, source, source || '科' as department, 'generic' as source_kind,
            'extracts/' || source || '.csv' as file,
            row_number() over (partition by source order by record_key)::integer as row_number,
            repeat('0', 64) as file_sha256, '{RUN_ID}' as load_batch, record_id,
            p.name, p.id_number, case p.sex when 'M' then '男' else '女' end as sex,
            strftime(p.birth_date, '%Y%m%d') as birth_date, '2026-11-20 08:00:00' as updated_at,
            {fields}
        from bench_records join bench_persons as p using (person)
        """
    )
    con.execute(
        """
        create or replace table int_persons_standardized as
        select r.record_key, r.source, r.record_id, p.name, p.id_number,
               'resident_id' as id_type, true as id_valid, p.birth_date, p.sex,
               false as birth_date_conflicts_id, false as sex_conflicts_id
        from bench_records as r join bench_persons as p using (person)
        """
    )
    # As the standardize stage leaves it: the raw cells are raw_records', shown by a view.
    create_view(con, RAW_VALUES_VIEW)
    con.execute(
        """
        create or replace table entity_map as
        select r.record_key, r.source, r.record_id, p.person_id
        from bench_records as r join bench_persons as p using (person)
        """
    )
    con.execute(
        """
        create or replace table quarantine as
        select source, 'extracts/' || source || '.csv' as file, (n + i + 1)::integer as row_number,
               null::varchar as record_id, 'missing_record_id' as reason_code,
               '记录编号为空 / record_id is empty' as reason
        from (select source, count(*) as n from bench_records group by source),
             lateral (select unnest(range((n // 100)::bigint)) as i)
        """
    )
    con.execute(
        f"""
        create or replace table run_source_counts as
        with c as (
            select source, count(*) as accepted,
                   (select count(*) from quarantine as q where q.source = r.source) as quarantined
            from bench_records as r group by source
        )
        select '{RUN_ID}' as run_id, source, accepted + quarantined as rows_in, accepted, quarantined from c
        union all
        select '{PREVIOUS_RUN_ID}', source, ((accepted + quarantined) * 0.98)::bigint, accepted, quarantined from c
        """
    )
    con.execute(
        f"""
        create or replace table ingest_files as
        select run_id, source, 'extracts/' || source || '.csv' as file, 0 as size_bytes,
               repeat('0', 64) as sha256, rows_in as rows
        from run_source_counts where run_id = '{RUN_ID}'
        """
    )
    con.execute(
        """
        create or replace table share_rates as
        with held as (select distinct source, person_id from entity_map),
        holders as (select person_id, count(*) as n from held group by person_id)
        select held.source,
               (select count(*) from entity_map as e where e.source = held.source) as records,
               count(*) as persons,
               count(*) filter (where holders.n > 1) as shared_persons,
               count(*) filter (where holders.n > 1) / count(*) as share_rate
        from held join holders using (person_id)
        group by held.source
        """
    )
    # About one finding per ten persons, on records of persons held by two sources or more,
    # as the households stage writes them (masked household numbers, no identity number).
    con.execute(
        """
        create or replace table household_findings as
        select 'hukou_residence_split' as kind, person_id, source, record_id,
               '人户分离：户籍登记在越城区北海街道（330602001）（police_hukou，户号00****' || (record_key % 100)
               || '），实际居住在越城区城南街道（330602003）（据 residence（流动人口服务中心），自2024-05-14起）' as detail
        from entity_map
        where hash(person_id) % 10 = 0
        """
    )
    con.execute("drop table bench_records")
    con.execute("drop table bench_persons")
    return {
        "persons": persons,
        "accepted": con.execute("select count(*) from raw_records").fetchone()[0],
        "quarantined": con.execute("select count(*) from quarantine").fetchone()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--sources", type=int, default=7)
    parser.add_argument("--db", type=Path, help="a flow's DuckDB file: validate its latest night")
    args = parser.parse_args()

    from bench_stages import RssSampler

    sampler = RssSampler()
    started = time.perf_counter()
    if args.db:
        con = duckdb.connect(str(args.db), read_only=True)
        run_id = con.execute("select max(run_id) from run_source_counts").fetchone()[0]
        sizes = {
            "persons": con.execute("select count(distinct person_id) from entity_map").fetchone()[0],
            "accepted": con.execute("select count(*) from raw_records").fetchone()[0],
            "quarantined": con.execute("select count(*) from quarantine").fetchone()[0],
        }
        args.sources = con.execute("select count(distinct source) from raw_records").fetchone()[0]
        args.records = sizes["accepted"]
        print(
            f"night {run_id} of {args.db}: {sizes['accepted']:,} accepted records in {args.sources} sources"
        )
    else:
        con = duckdb.connect()
        run_id = RUN_ID
        sizes = build_night(con, args.records, args.sources)
        print(
            f"built {sizes['accepted']:,} accepted + {sizes['quarantined']:,} quarantined records "
            f"of {sizes['persons']:,} persons in {args.sources} sources in {time.perf_counter() - started:.1f} s"
        )
    build_seconds = time.perf_counter() - started

    runs = []
    with tempfile.TemporaryDirectory(prefix="renhu-bench-validation-") as tmp:
        for attempt in ("first (GX import included)", "second (same process)"):
            run_dir = Path(tmp) / attempt.split()[0]
            sampler.reset()
            summary = run_validation(con, run_dir, run_id)
            peak = sampler.peak
            files = [p for p in (run_dir / "validation").rglob("*") if p.is_file()]
            run = {
                "run": attempt,
                "seconds": round(summary.seconds, 2),
                "timings": {k: round(v, 2) for k, v in summary.timings.items()},
                "evaluated": summary.evaluated,
                "failed": summary.failed,
                "critical_failed": summary.critical_failed,
                "docs_files": len(files),
                "docs_bytes": sum(p.stat().st_size for p in files),
                "peak_rss_gb": round(peak / 1e9, 3),
            }
            runs.append(run)
            phases = ", ".join(f"{k} {v:.2f} s" for k, v in run["timings"].items())
            print(
                f"validate, {attempt}: {summary.seconds:.2f} s, peak RSS {peak / 1e9:.2f} GB ({phases}); "
                f"{summary.evaluated} checks, {summary.failed} failed; Data Docs {len(files)} files, "
                f"{run['docs_bytes'] / 1e6:.1f} MB"
            )
            for line in summary.messages:
                print("  " + line)

    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    sampler.stop()
    result = {
        "benchmark": "validation",
        "db": str(args.db) if args.db else None,
        "records": sizes["accepted"],
        "quarantined": sizes["quarantined"],
        "persons": sizes["persons"],
        "sources": args.sources,
        "build_seconds": round(build_seconds, 2),
        "runs": runs,
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_average": os.getloadavg(),
    }
    path = RESULTS_DIR / f"{stamp}_validation-{args.records}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written {path}")


if __name__ == "__main__":
    main()
