"""`renhu explain`: why two records are (or are not) one person, or why a record joined its person.

    renhu explain --run OUT/runs/<run_id> SOURCE:RECORD [SOURCE:RECORD] [--db FILE]

Reads the run's ``linkage_model.json`` and the DuckDB file (default RUNDIR/../../renhu.duckdb,
OUT/renhu.duckdb when RUNDIR is OUT/latest), read-only. Output masks identity numbers and names.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

from flows.stages import PAIRS_KEYS_RUN, STANDARDIZED_KEYS_RUN
from linkage.explain import RecordNotFound, explain_pair, explain_record, format_pair, format_record
from linkage.sql import relation_exists


def _record(text: str) -> tuple[str, str]:
    source, sep, record_id = text.partition(":")
    if not sep or not source or not record_id:
        raise argparse.ArgumentTypeError(f"expected SOURCE:RECORD, got {text!r}")
    return source, record_id


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="renhu explain",
        description="Explain a linkage decision: with two records, each comparison, its weight, the total and "
        "the decision; with one record, the matched pairs that joined it to its person.",
    )
    p.add_argument("--run", required=True, type=Path, metavar="RUNDIR", help="the run folder, OUT/runs/<run_id>")
    p.add_argument("--db", type=Path, metavar="FILE", help="DuckDB file (default RUNDIR/../../renhu.duckdb)")
    p.add_argument("records", nargs="+", type=_record, metavar="SOURCE:RECORD", help="one or two records")
    return p


def _default_db(run: Path) -> Path:
    """OUT/renhu.duckdb for a run folder OUT/runs/<run_id>, also when given as OUT/latest
    (a symlink, resolved first, or a copy of the run, one level below OUT)."""
    resolved = run.resolve()
    for candidate in (resolved.parent.parent / "renhu.duckdb", run.absolute().parent / "renhu.duckdb"):
        if candidate.is_file():
            return candidate
    return resolved.parent.parent / "renhu.duckdb"


def night_mismatch(con: duckdb.DuckDBPyConnection, run: Path) -> str | None:
    """Why the DuckDB file cannot explain RUNDIR's night, or None when it can.

    The file keeps one night's standardized records and entity map, the last one that ran
    (published or not): a run folder of an earlier night, or a night after which another one
    stopped part way, would be explained with other records and other person ids.
    """
    try:
        run_id = json.loads((run / "metrics.json").read_text(encoding="utf-8")).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None  # no metrics to say which night the folder is
    if not run_id or not relation_exists(con, "pipeline_state"):
        return None
    state = dict(con.execute(
        "select key, value from pipeline_state where key in ($s, $l)", {"s": STANDARDIZED_KEYS_RUN, "l": PAIRS_KEYS_RUN}
    ).fetchall())
    standardized, linked = state.get(STANDARDIZED_KEYS_RUN), state.get(PAIRS_KEYS_RUN)
    if standardized is None and linked is None:
        return None  # a file from before renhu kept them: nothing to check against
    if standardized == linked == run_id:
        return None
    held = standardized if standardized == linked else f"{standardized} (standardized; linked: {linked})"
    return (f"{run} is run {run_id} but the DuckDB file holds run {held}: explain recomputes only the "
            "night the DuckDB file holds")


def explain_command(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed
        return int(exc.code or 0)
    if len(args.records) > 2:
        print("renhu explain: give one or two SOURCE:RECORD", file=sys.stderr)
        return 2
    model_path = args.run / "linkage_model.json"
    db = args.db or _default_db(args.run)
    if not model_path.is_file():
        print(f"renhu explain: no linkage model at {model_path}", file=sys.stderr)
        return 1
    if not db.is_file():
        print(f"renhu explain: no DuckDB file at {db}", file=sys.stderr)
        return 1
    try:
        model = json.loads(model_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"renhu explain: cannot read {model_path}: {exc}", file=sys.stderr)
        return 1
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        print(f"renhu explain: cannot open {db}: {exc}", file=sys.stderr)
        return 1
    try:
        mismatch = night_mismatch(con, args.run)
        if mismatch:
            print(f"renhu explain: {mismatch}", file=sys.stderr)
            return 1
        if len(args.records) == 2:
            text = format_pair(explain_pair(con, model, args.records[0], args.records[1]))
        else:
            text = format_record(explain_record(con, model, args.records[0]))
    except (RecordNotFound, ValueError, duckdb.Error) as exc:
        print(f"renhu explain: {exc}", file=sys.stderr)
        return 1
    finally:
        con.close()
    print(text)
    return 0
