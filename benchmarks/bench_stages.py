"""Seconds and peak RSS of each nightly stage, run in-process without Prefect.

    .venv/bin/python benchmarks/bench_stages.py --sources /tmp/renhu-bench/records-1000000/city/sources.yaml \
        [--out /tmp/renhu-stages] [--nights 2] [--keep]

`bench_city.py` times the flow as a steward runs it (`renhu run`, Prefect included) and
sees the RSS of the whole process tree; this one calls the stage functions of
`flows/stages.py` one after the other, as the Prefect tasks do, and samples this
process's own RSS every 20 ms, so a change to one stage shows in that stage's figures
and nowhere else. `--nights 2` runs the flow twice on the same DuckDB file (the
sources as they are on disk: change them between nights yourself, or use
`bench_city.py`'s night 2). Prints one line per stage: seconds, CPU seconds and the
cores kept busy on average (CPU / wall: below 2 on this machine, a core sat idle part
of the stage), peak RSS and rows; writes nothing under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import threading
import time
from pathlib import Path


class RssSampler:
    """The largest VmRSS of this process since the last `reset`, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def current() -> int:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.current())
            time.sleep(0.02)

    def reset(self) -> None:
        self.peak = self.current()

    def stop(self) -> None:
        self._stop.set()


def cpu_seconds() -> float:
    """User + system CPU of this process so far, every thread (polars', DuckDB's) included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_night(sources: Path, out: Path, sampler: RssSampler) -> list[tuple[str, float, int, int, int]]:
    from flows import stages
    from flows.nightly import open_run
    from flows.publish import publish
    from flows.settings import Settings
    from flows.validation import preload_great_expectations

    # As the nightly flow does: GX's import overlaps the stages before validate.
    preload_great_expectations()
    settings = Settings.from_env()
    ctx = open_run(sources, out, None, Settings(**{**settings.__dict__, "show_progress": False}))
    rows: list[tuple[str, float, int, int, int]] = []
    try:
        stages.ledger_start(ctx)
        for name in ("ingest", "standardize", "link", "households", "validate", "publish"):
            sampler.reset()
            started, cpu_started = time.perf_counter(), cpu_seconds()
            if name == "publish":
                _, result = publish(ctx)
            else:
                result = getattr(stages, name)(ctx)
                stages.ledger_record_stage(ctx, result)
            if name == "ingest":
                stages.prepare_staging_dir(ctx)
            rows.append((name, time.perf_counter() - started, sampler.peak, result.rows_in, result.rows_out))
            cpu = cpu_seconds() - cpu_started
            # CPU / wall: how many of the machine's cores the stage kept busy on average.
            print(f"  {name:<12} {rows[-1][1]:7.1f} s  cpu {cpu:6.1f} s ({cpu / max(rows[-1][1], 1e-9):4.2f} cores)  "
                  f"peak {sampler.peak / 1e9:5.2f} GB  rows {result.rows_in:>10,} → {result.rows_out:>10,}", flush=True)
        stages.ledger_finish(ctx, "published")
    finally:
        ctx.con.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=Path, required=True, help="a city's sources.yaml")
    parser.add_argument("--out", type=Path, default=Path("/tmp/renhu-stages"), help="output folder (wiped first)")
    parser.add_argument("--nights", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the output folder of an earlier call")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.keep:
        shutil.rmtree(args.out)
    sampler = RssSampler()
    started = time.perf_counter()
    for night in range(1, args.nights + 1):
        print(f"night {night}:", flush=True)
        night_started = time.perf_counter()
        rows = run_night(args.sources, args.out, sampler)
        total = time.perf_counter() - night_started
        print(f"  {'all stages':<12} {total:7.1f} s  peak {max(r[2] for r in rows) / 1e9:5.2f} GB", flush=True)
    sampler.stop()
    print(f"wall {time.perf_counter() - started:.1f} s (imports included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
