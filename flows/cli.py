"""The `renhu` command line (CONTRACT.md section 1).

Exit status: 0 when the run published; 2 for a sources file, extract or mapping that
stops the night (one line on stderr naming the file and column); 1 when the run
failed after it started (validation found a critical problem, or a stage broke).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import importlib
import json
import os
import sys
import threading
import time
from pathlib import Path

EXIT_FAILED = 1
EXIT_CONFIG = 2


def _err(message: str) -> None:
    # One line, whatever the message holds (a library's error text can run over several).
    print("renhu: " + " ".join(line.strip() for line in message.splitlines() if line.strip()), file=sys.stderr)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="renhu",
        description="renhu (人户): link a city's population records across departments into one record per "
        "person (一人一档), check households, validate, and publish share rates and mismatch reports.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="make a synthetic city's department extracts and run the nightly flow on them",
        description="Generate a realistic synthetic city (seven department extracts with their noise, and the "
        "ground truth beside them) and run the nightly flow on it.",
    )
    demo.add_argument("--out", type=Path, default=Path("renhu-demo"), help="output folder (default: ./renhu-demo)")
    demo.add_argument("--persons", type=int, default=5000, help="people in the city (default: 5000)")
    demo.add_argument("--seed", type=int, default=20261123, help="random seed (default: 20261123)")

    run = commands.add_parser(
        "run",
        help="the nightly flow: ingest, standardize, link, households, validate, publish",
        description="Run the nightly flow over every source in the sources file and publish into OUT/runs/<run_id>, "
        "pointing OUT/latest at it.",
    )
    run.add_argument("--sources", type=Path, required=True, help="the sources file (YAML)")
    run.add_argument("--out", type=Path, required=True, help="output folder")
    run.add_argument("--db", type=Path, default=None, help="DuckDB file kept between nights (default: OUT/renhu.duckdb)")
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="re-standardize and re-link every record and refit the linkage model instead of reusing last "
        "night's work for unchanged records",
    )

    explain = commands.add_parser(
        "explain",
        help="why two records are (or are not) one person, or why a record joined its person",
        add_help=False,
    )
    explain.add_argument("rest", nargs=argparse.REMAINDER)

    verify = commands.add_parser("verify", help="re-check a published run folder against its manifest", add_help=False)
    verify.add_argument("rest", nargs=argparse.REMAINDER)

    serve = commands.add_parser(
        "serve",
        help="serve the nightly flow as a Prefect deployment on a schedule",
        description="Register and serve a Prefect deployment of the nightly flow (schedule, retries, logs and "
        "artifacts in the Prefect UI). Needs a Prefect server: set PREFECT_API_URL.",
    )
    serve.add_argument("--sources", type=Path, required=True)
    serve.add_argument("--out", type=Path, required=True)
    serve.add_argument("--db", type=Path, default=None)
    serve.add_argument("--cron", default="0 2 * * *", help="schedule (default: 02:00 every night)")
    serve.add_argument("--name", default="renhu-nightly", help="deployment name")
    return parser


# Prefect (the flow waits for it) and then the stages' libraries (GX, recordlinkage with
# scikit-learn, OpenCC, plotly) take seconds to import; importing them while the extracts are
# read and Prefect's server starts takes that off the night's clock.
STAGE_MODULES = ("flows.nightly", "flows.validation", "linkage.standardize", "linkage.link", "linkage.households",
                 "linkage.reports", "flows.reports", "flows.dashboard", "great_expectations")


def _import_stage_modules(owns_process: bool) -> None:
    try:
        for module in STAGE_MODULES:
            try:
                importlib.import_module(module)
            except Exception:  # the stage itself will import it again and report properly
                return
    finally:
        if owns_process:
            # The few million objects these imports made live as long as the process: the
            # collector need not walk them again on every full collection of the night.
            gc.freeze()
            gc.enable()


def run_flow(sources: Path, out: Path, db: Path | None, full_refresh: bool = False,
             owns_process: bool = False) -> int:
    """The nightly flow as `renhu run` starts it; returns the exit status.

    `owns_process`: the run is this process's whole life (the command line), so objects that
    live to its end may be frozen out of the garbage collector's sight.
    """
    from flows.settings import Settings

    started = time.perf_counter()
    if owns_process:
        # Each full collection while the libraries are imported walks every object imported
        # so far (seven of them, 1.5-4.5 s in all); the importer thread freezes the lot and
        # switches collection back on when it is done.
        gc.disable()
    server = None
    if not Settings.prefect_api_configured():
        from flows.prefect_server import TemporaryPrefectServer

        # Launched first: its 3-4 s of start-up overlap the checks, reads and imports below.
        server = TemporaryPrefectServer.launch()
        # A safety net: atexit runs after Prefect's exit hooks have sent the logs they hold.
        atexit.register(server.stop)
    try:
        return _run(sources, out, db, full_refresh, server, started, owns_process)
    finally:
        if server is not None:
            server.stop()


def _run(sources: Path, out: Path, db: Path | None, full_refresh: bool, server, started: float,
         owns_process: bool) -> int:
    from flows.config import ConfigError, check_output_paths
    from flows.preflight import preflight

    try:
        config = preflight(sources, reading_next=True)
        check_output_paths(out, db)
    except ConfigError as error:
        _err(str(error))
        return EXIT_CONFIG
    threading.Thread(target=_import_stage_modules, args=(owns_process,), name="import-stages", daemon=True).start()
    from flows.ingest import check_extracts, prefetch_extracts

    try:
        prefetch_extracts(config)
        # Files past the read-ahead budget are read by the flow, after it has opened the
        # DuckDB file: each is known readable to its end first, so a bad one stops here.
        check_extracts(config)
    except ConfigError as error:
        _err(str(error))
        return EXIT_CONFIG
    from flows.nightly import RunFailed, nightly

    serving = contextlib.nullcontext()
    if server is not None:
        from flows.prefect_server import ServerStartError, prefect_api_url

        if prefect_api_url():  # a Prefect profile or prefect.toml names a server: use that one
            server.stop()
            server = None
        else:
            print(
                "renhu: the run's Prefect API is a temporary local server, started with the run "
                "(set PREFECT_API_URL to use a running one)",
                file=sys.stderr,
                flush=True,
            )
            try:
                server.wait_until_ready()
            except ServerStartError as error:
                _err(f"the run did not publish: {error}")
                return EXIT_FAILED
            serving = server.serving()
    try:
        with serving:
            # Absolute paths: the flow run's parameters in Prefect name the folders whatever
            # directory the steward ran the command from.
            run_dir = Path(nightly(str(sources.resolve()), str(out.resolve()), str(db.resolve()) if db else None,
                                   full_refresh=full_refresh))
    except ConfigError as error:
        _err(str(error))
        return EXIT_CONFIG
    except RunFailed as error:
        _err(f"the run did not publish: {error}")
        return EXIT_FAILED
    except Exception as error:  # a stage broke: one line here, the traceback is in Prefect's log above
        first_line = str(error).splitlines()[0] if str(error) else ""
        _err(f"the run did not publish: {type(error).__name__}: {first_line}")
        return EXIT_FAILED
    finally:
        if server is not None:
            server.terminate()  # it shuts down while the summary is printed
    _print_summary(run_dir, time.perf_counter() - started)
    return 0


SUMMARY_WARNINGS = 10


def _print_summary(run_dir: Path, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    console = Console(stderr=False)
    table = Table(title=f"renhu run {metrics['run_id']} published in {seconds:.1f} s", show_header=True)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, key in [("records in", "records_in"), ("accepted", "accepted"), ("quarantined", "quarantined"),
                       ("persons", "persons")]:
        table.add_row(label, f"{metrics.get(key, 0):,}")
    for label, key in [("share rate", "share_rate"), ("duplicate rate", "duplicate_rate"),
                       ("人户一致率", "household_consistency_rate"), ("流动人口登记率", "floating_registration_rate")]:
        value = metrics.get(key) or {}
        if isinstance(value, dict) and value.get("value") is not None:
            table.add_row(label, f"{value['value']:.1%} ({value['numerator']:,}/{value['denominator']:,})")
    console.print(table)
    # Warnings do not stop a night, so this is where the steward hears of them: a register
    # delivered with half its rows (row_count_in_band) published with exit 0 and a summary
    # that did not say so; it was in metrics.json and the dashboard only.
    validation = metrics.get("validation") or {}
    warnings = [m for m in validation.get("messages") or [] if m.startswith("WARNING ")]
    if warnings:
        console.print(f"validation warnings: {len(warnings)}", markup=False)
        for message in warnings[:SUMMARY_WARNINGS]:
            console.print(f"  {message}", markup=False, highlight=False, soft_wrap=True)
        if len(warnings) > SUMMARY_WARNINGS:
            console.print(f"  … and {len(warnings) - SUMMARY_WARNINGS} more in metrics.json", markup=False)
    console.print(f"run folder: {run_dir}")
    console.print(f"dashboard:  {run_dir / 'index.html'}")


def demo(out: Path, persons: int, seed: int, owns_process: bool = False) -> int:
    from flows.config import ConfigError, check_output_paths
    from linkage.demo_city import generate_city

    if persons < 1:
        _err("--persons must be at least 1")
        return EXIT_CONFIG
    try:
        check_output_paths(out)
    except ConfigError as error:
        _err(str(error))
        return EXIT_CONFIG
    city_dir = out / "city"
    started = time.perf_counter()
    print(f"renhu: generating a synthetic city of {persons:,} persons in {city_dir} …", file=sys.stderr, flush=True)
    city = generate_city(city_dir, persons, seed)
    print(
        f"renhu: {city.records:,} records in {len(city.extract_files)} extracts, {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return run_flow(city.sources_file, out, None, owns_process=owns_process)


def serve(args: argparse.Namespace) -> int:
    from flows.config import ConfigError
    from flows.preflight import preflight

    try:
        preflight(args.sources)
    except ConfigError as error:
        _err(str(error))
        return EXIT_CONFIG
    from prefect import serve as prefect_serve

    from flows.nightly import nightly_deployment

    prefect_serve(nightly_deployment(args.sources, args.out, args.db, cron=args.cron, name=args.name))
    return 0


def main(argv: list[str] | None = None) -> int:
    # Called without arguments, main is the process's command line, not a test's call.
    owns_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    # The machines renhu runs on have no way out; Prefect's telemetry would only log DNS errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parser = _build_parser()
    if argv and argv[0] == "explain":
        from flows.explain import explain_command

        try:
            return explain_command(argv[1:])
        except BrokenPipeError:  # `renhu explain … | head` closed the pipe: not an error
            sys.stderr.close()
            return 0
    if argv and argv[0] == "verify":
        from flows.manifest import verify_command

        return verify_command(argv[1:])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    if args.command == "serve":
        return serve(args)
    if args.command not in {"demo", "run"}:
        parser.print_help()
        return EXIT_CONFIG
    if args.command == "demo":
        status = demo(args.out, args.persons, args.seed, owns_process)
    else:
        status = run_flow(args.sources, args.out, args.db, args.full_refresh, owns_process)
    if owns_process:
        # Everything still alive dies with the process: without this, the interpreter's last
        # collections walk every object the night made (1.5-2 s at exit).
        gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(main())
