"""Generation time and peak memory of the demo city (`linkage.demo_city.generate_city`).

    .venv/bin/python benchmarks/bench_demo_city.py                  # 100,000 persons
    .venv/bin/python benchmarks/bench_demo_city.py --persons 1000000
    .venv/bin/python benchmarks/bench_demo_city.py --persons 4500000 --out /tmp/city-4.5m

Prints wall-clock seconds (total and per step), the process's peak resident set size
(`ru_maxrss`, which includes the Python interpreter and imported libraries), records
written, bytes on disk, and writes the figures to `benchmarks/results/`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--out", type=Path, default=None, help="keep the city here (default: a temporary folder)")
    ap.add_argument("--results-dir", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()

    from linkage.demo_city import generate_city

    rss_before = _rss_mb()
    out = args.out or Path(tempfile.mkdtemp(prefix="renhu-demo-city-"))
    started = time.perf_counter()
    city = generate_city(out, args.persons, args.seed)
    seconds = time.perf_counter() - started
    peak = _rss_mb()
    size = sum(p.stat().st_size for p in city.extract_files)

    print(f"persons            {city.persons:>14,}")
    print(f"records            {city.records:>14,}  ({city.records / city.persons:.2f} per person)")
    print(f"seconds            {seconds:>14.1f}  ({city.records / seconds:,.0f} records/s)")
    print(f"peak RSS (MB)      {peak:>14,.0f}  (after imports: {rss_before:,.0f})")
    print(f"extracts on disk   {size / 1e6:>14,.1f} MB")
    print("per step (s):      " + ", ".join(f"{k} {v:.1f}" for k, v in city.seconds_by_step.items()))
    print("records by source:  " + ", ".join(f"{k} {v:,}" for k, v in city.records_by_source.items()))
    print("findings by kind:   " + ", ".join(f"{k} {v:,}" for k, v in city.findings_by_kind.items()))

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "benchmark": "demo_city", "utc": stamp, "commit": commit, "persons": city.persons,
        "records": city.records, "seconds": round(seconds, 2), "peak_rss_mb": round(peak),
        "rss_after_imports_mb": round(rss_before), "extract_bytes": size,
        "seconds_by_step": city.seconds_by_step, "records_by_source": city.records_by_source,
        "findings_by_kind": city.findings_by_kind,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"{stamp}_demo-city-{city.persons}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written            {path}")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
