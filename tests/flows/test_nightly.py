"""The nightly flow end to end, under one Prefect test server for the session.

The demo city (2,000 persons) and a hand-made file of malformed rows go through every
stage; the contract's files must all be published, every input row must end in exactly
one of entity_map or quarantine, and a second night over the same files changes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from flows.publish import CONTRACT_FILES

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


@pytest.fixture(scope="module")
def demo_city(tmp_path_factory):
    from linkage.demo_city import generate_city

    return generate_city(tmp_path_factory.mktemp("city"), persons=2000, seed=7)


@pytest.fixture(scope="module")
def two_nights(demo_city, prefect_harness, tmp_path_factory):
    from flows.nightly import nightly

    out = tmp_path_factory.mktemp("out")
    first = Path(nightly(str(demo_city.sources_file), str(out)))
    second = Path(nightly(str(demo_city.sources_file), str(out)))
    return out, first, second


def test_every_contract_file_is_published(two_nights) -> None:
    out, first, second = two_nights
    for run in (first, second):
        for name in CONTRACT_FILES:
            assert (run / name).is_file(), name
        assert (run / "validation" / "index.html").is_file()
        assert any((run / "reports").iterdir())
        assert (run / "manifest.json").is_file() and (run / "index.html").is_file()
    assert (out / "latest").resolve() == second.resolve()
    from flows.manifest import verify_run

    assert verify_run(first) == [] and verify_run(second) == []
    assert pl.read_parquet(first / "entity_map.parquet").columns == ["source", "record_id", "person_id"]
    assert pl.read_parquet(first / "quarantine.parquet").columns[:5] == ["source", "file", "row_number", "record_id", "reason"]
    # Beyond the contract's columns: reason_code, and the row where the clerk finds the row in the file.
    assert pl.read_parquet_schema(first / "quarantine.parquet") == {
        "source": pl.String, "file": pl.String, "row_number": pl.Int32, "record_id": pl.String, "reason": pl.String,
        "reason_code": pl.String, "file_row": pl.Int32,
    }
    assert pl.read_parquet(first / "quarantine.parquet")["file_row"].null_count() == 0  # every reader knows it
    assert pl.read_csv(first / "share_rates.csv").columns == ["source", "records", "persons", "shared_persons", "share_rate"]
    # The contract's columns and the two departments; not the household number a report shows.
    assert pl.read_parquet(first / "household_findings.parquet").columns == [
        "kind", "person_id", "source", "record_id", "detail", "department", "related_department"
    ]


def test_every_demo_row_ends_in_exactly_one_output(demo_city, two_nights) -> None:
    _, first, _ = two_nights
    truth = pl.read_parquet(demo_city.truth_dir / "records.parquet")
    entity_map = pl.read_parquet(first / "entity_map.parquet")
    quarantine = pl.read_parquet(first / "quarantine.parquet")
    assert truth.height == entity_map.height + quarantine.height
    assert entity_map.select("source", "record_id").is_duplicated().sum() == 0
    quarantined_rows = quarantine.select("source", "file", "row_number")
    expected_quarantined = truth.filter(pl.col("expected_outcome") == "quarantined").select("source", "file", "row_number")
    assert quarantined_rows.sort(pl.all()).equals(expected_quarantined.with_columns(
        pl.col("row_number").cast(quarantined_rows["row_number"].dtype)).sort(pl.all()))
    accepted = truth.filter(pl.col("expected_outcome") == "accepted").select("source", "record_id")
    assert accepted.sort(pl.all()).equals(entity_map.select("source", "record_id").sort(pl.all()))
    metrics = json.loads((first / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["records_in"] == truth.height
    assert metrics["accepted"] + metrics["quarantined"] == metrics["records_in"]
    assert metrics["linkage_method"]


def test_id_conflicts_are_kept_for_the_steward(two_nights) -> None:
    import duckdb

    out, first, _ = two_nights
    run_id = first.name
    with duckdb.connect(str(out / "renhu.duckdb"), read_only=True) as con:
        kinds = dict(con.execute(
            "select kind, count(*) from link_conflicts where run_id = $run_id group by kind", {"run_id": run_id}
        ).fetchall())
    # The demo city enrols some pupils under a parent's id number: flagged, not merged.
    assert kinds.get("id_conflict", 0) > 0


def test_second_night_over_the_same_files_changes_nothing(two_nights) -> None:
    _, first, second = two_nights
    one = json.loads((first / "metrics.json").read_text(encoding="utf-8"))
    two = json.loads((second / "metrics.json").read_text(encoding="utf-8"))
    for key in ("records_in", "accepted", "quarantined", "persons"):
        assert one[key] == two[key], key
    map_one = pl.read_parquet(first / "entity_map.parquet")
    map_two = pl.read_parquet(second / "entity_map.parquet")
    assert map_one.sort("source", "record_id").equals(map_two.sort("source", "record_id"))


def test_no_published_file_but_reports_holds_a_full_id_number(demo_city, two_nights) -> None:
    _, first, _ = two_nights
    persons = pl.read_parquet(demo_city.truth_dir / "persons.parquet")
    ids = [i for i in persons["id_number"].drop_nulls().to_list() if len(i) == 18]
    for path in first.rglob("*"):
        if path.is_dir() or "reports" in path.parts or path.suffix == ".parquet" and path.name == "entity_map.parquet":
            continue
        data = path.read_bytes()
        leaked = [i for i in ids[:400] if i.encode() in data]
        assert not leaked, f"{path} holds full id numbers"


def test_malformed_file_rows_each_end_in_one_output(prefect_harness, tmp_path: Path) -> None:
    from flows.nightly import nightly

    lines = [
        "编号,姓名,身份证号,出生日期".encode("gb18030"),
        "1,张伟,330602199001021237,1990-01-02".encode("gb18030"),
        "2,李娜,,1991/2/3,多余".encode("gb18030"),
        "3,无,,".encode("gb18030"),
        ",王芳,,1992年3月4日".encode("gb18030"),
        b"5,\xff\xfe,,",
        "6,張偉,330602199001021237,19900102".encode("gb18030"),
        "1,张伟,330602199001021237,1990-01-02".encode("gb18030"),
        "7,ZHANG WEI,,1990-01-02".encode("gb18030"),
    ]
    (tmp_path / "bad.csv").write_bytes(b"\r\n".join(lines) + b"\r\n")
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - name: messy\n    department: 测试科\n    path: bad.csv\n    encoding: gb18030\n"
        "    columns: {record_id: 编号, name: 姓名, id_number: 身份证号, birth_date: 出生日期}\n",
        encoding="utf-8",
    )
    run = Path(nightly(str(tmp_path / "sources.yaml"), str(tmp_path / "out")))
    entity_map = pl.read_parquet(run / "entity_map.parquet")
    quarantine = pl.read_parquet(run / "quarantine.parquet")
    assert entity_map.height + quarantine.height == 8
    assert sorted(quarantine["reason_code"].to_list()) == sorted(
        ["wrong_column_count", "no_name_or_id", "missing_record_id", "undecodable_bytes", "superseded_duplicate_record_id"]
    )
    assert sorted(entity_map["record_id"].to_list()) == ["1", "6", "7"]


def test_a_source_whose_every_row_is_quarantined_keeps_its_share_rate_row(prefect_harness, tmp_path: Path) -> None:
    # Found in review: such a source (an empty export, or one whose names and ids all came
    # out blank) vanished from share_rates.csv, and its metrics.json entry had no persons.
    from flows.manifest import verify_run
    from flows.nightly import nightly

    (tmp_path / "good.csv").write_text("编号,姓名,身份证号\n1,张伟,330602199001021237\n2,李娜,\n", encoding="utf-8")
    (tmp_path / "blank.csv").write_text("编号,姓名,身份证号\nb1,无,\nb2,不详,无\n", encoding="utf-8")
    (tmp_path / "sources.yaml").write_text(
        "sources:\n"
        "  - {name: good, department: 卫健委, path: good.csv, columns: {record_id: 编号, name: 姓名, id_number: 身份证号}}\n"
        "  - {name: blank, department: 残联, path: blank.csv, columns: {record_id: 编号, name: 姓名, id_number: 身份证号}}\n",
        encoding="utf-8",
    )
    run = Path(nightly(str(tmp_path / "sources.yaml"), str(tmp_path / "out")))
    share_rates = pl.read_csv(run / "share_rates.csv")
    assert share_rates.rows() == [("blank", 0, 0, 0, None), ("good", 2, 2, 0, 0.0)]
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    blank = metrics["sources"]["blank"]
    assert (blank["records_in"], blank["quarantined"], blank["persons"], blank["share_rate"]) == (2, 2, 0, None)
    assert metrics["findings"]["by_department"]["残联"]["multi_household"] == 0
    assert metrics["validation"]["critical_failed"] == 0
    assert verify_run(run) == []


def _prefect_database() -> Path:
    """The database Prefect's server uses for a command run with this environment."""
    completed = subprocess.run(
        [sys.executable, "-c", "from prefect.settings import get_current_settings as s; "
         "print(s().server.database.connection_url.get_secret_value())"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    url = completed.stdout.strip()
    assert url.startswith("sqlite+aiosqlite:///"), url
    return Path(url.removeprefix("sqlite+aiosqlite:///"))


def _recorded_runs(database: Path, out_dir: Path) -> list[dict]:
    """The flow runs Prefect recorded for `out_dir`, oldest first, with their tasks, logs and artifacts."""
    import sqlite3

    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as con:
        runs = []
        for run_id, state, parameters in con.execute(
            "select id, state_type, parameters from flow_run where json_extract(parameters, '$.out_dir') = ? "
            "order by created",
            (str(out_dir),),
        ):
            runs.append({
                "state": state,
                "parameters": json.loads(parameters),
                "tasks": sorted(name.rsplit("-", 1)[0] for (name,) in con.execute(
                    "select name from task_run where flow_run_id = ? and state_type = 'COMPLETED'", (run_id,))),
                "logs": [m for (m,) in con.execute("select message from log where flow_run_id = ?", (run_id,))],
                "artifacts": sorted(k for (k,) in con.execute(
                    "select key from artifact where flow_run_id = ?", (run_id,))),
            })
    return runs


def test_renhu_demo_command_publishes_every_contract_file(tmp_path: Path) -> None:
    # A relative --out, as the README's `python3 tasks.py demo` runs it (./renhu-demo).
    completed = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--persons", "300", "--out", "demo"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    latest = tmp_path / "demo" / "latest"
    for name in (*CONTRACT_FILES, "reports", "validation"):
        assert (latest / name).exists(), name
    # A second night over the same city, asked to redo everything.
    completed = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--sources", str(tmp_path / "demo" / "city" / "sources.yaml"),
         "--out", str(tmp_path / "demo"), "--full-refresh"],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr and "Failed to send" not in completed.stderr
    # Both nights are in Prefect (the temporary server writes Prefect's own database): the
    # flow with its parameters, every task, the logs to the last line, and the artifacts.
    first, second = _recorded_runs(_prefect_database(), tmp_path / "demo")
    assert first["parameters"]["full_refresh"] is False and second["parameters"]["full_refresh"] is True
    for run in (first, second):
        assert run["state"] == "COMPLETED"
        assert run["tasks"] == sorted(["ingest", "standardize", "link", "households", "validate", "publish"])
        assert run["artifacts"] == ["renhu-run-summary", "renhu-share-rates"]
        assert any(m.startswith("published ") for m in run["logs"])
        assert "Finished in state Completed()" in run["logs"]
    assert any(m.startswith("full refresh:") for m in second["logs"])


def test_a_second_run_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    # Two runs into one OUT, each with its own DuckDB file, both published, with their own
    # person ids, and moved `latest` in turn: the second is refused before it opens anything.
    from flows.nightly import RunFailed, out_lock

    out = tmp_path / "out"
    with out_lock(out):
        with pytest.raises(RunFailed, match=f"another renhu run \\(pid {os.getpid()}\\) is running into"):
            with out_lock(out):
                pass
    with out_lock(out):  # released when the first run ends
        pass


def _tree(folder: Path) -> dict[str, bytes | str]:
    """Every file's bytes and every link's target under `folder`."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(folder))] = os.readlink(path)
        elif path.is_file():
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def test_a_bad_file_past_the_read_ahead_leaves_a_good_nights_folder_as_it_was(
    prefect_harness, tmp_path: Path, write_corrupt_parquet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.nightly import nightly

    (tmp_path / "people.csv").write_text("编号,姓名\n1,张伟\n2,李娜\n", encoding="utf-8")
    people = "  - {name: people, department: 测试科, path: people.csv, columns: {record_id: 编号, name: 姓名}}\n"
    (tmp_path / "sources.yaml").write_text("sources:\n" + people, encoding="utf-8")
    out = tmp_path / "out"
    good = Path(nightly(str(tmp_path / "sources.yaml"), str(out)))
    before = _tree(out)
    assert (out / "latest").resolve() == good.resolve() and "renhu.duckdb" in before

    write_corrupt_parquet(tmp_path / "si.parquet")
    (tmp_path / "sources.yaml").write_text(
        "sources:\n" + people + "  - {name: si, department: 人社局, path: si.parquet, format: parquet, "
        "columns: {record_id: grbh, name: xm, id_number: sfzh}}\n", encoding="utf-8")
    # As `renhu run` does on a night past the read-ahead budget: the steward's one line.
    completed = subprocess.run(
        [sys.executable, "-c",
         "import sys, flows.ingest as ingest; read_ahead = ingest.prefetch_extracts; "
         "ingest.prefetch_extracts = lambda config, row_budget=None: read_ahead(config, 0); "
         "from flows.cli import main; sys.exit(main(sys.argv[1:]))",
         "run", "--sources", str(tmp_path / "sources.yaml"), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert completed.stderr.count("\n") == 1 and "si.parquet: not a readable Parquet file" in completed.stderr
    assert _tree(out) == before  # the DuckDB file's bytes, runs/, latest: all as the good night left them

    # A deployment's run (the flow without the command line before it) stops before writing too.
    import flows.ingest as ingest

    monkeypatch.setattr(ingest, "PREFETCH_ROW_BUDGET", 0)
    from flows.config import ConfigError

    with pytest.raises(ConfigError, match="si.parquet"):
        nightly(str(tmp_path / "sources.yaml"), str(out))
    assert _tree(out) == before
    fresh = tmp_path / "fresh"
    with pytest.raises(ConfigError, match="si.parquet"):
        nightly(str(tmp_path / "sources.yaml"), str(fresh))
    assert not fresh.exists()


def test_a_refused_night_is_logged_without_a_traceback_and_a_crash_with_one() -> None:
    import logging
    import sys

    from flows.config import ConfigError
    from flows.nightly import RunFailed

    logger = logging.getLogger("prefect.flow_runs")  # where Prefect logs a flow's exception
    lines = []
    for error in (
        RunFailed("validation failed (1 critical): share_rate_is_shared_over_persons"),
        ConfigError("extracts/police_hukou.csv: no column 姓名 (mapped for source 'police_hukou')"),
        KeyError("record_key"),
    ):
        try:
            raise error
        except Exception as caught:
            record = logger.makeRecord(
                logger.name, logging.ERROR, __file__, 0, "Encountered exception during execution: %r", (caught,),
                sys.exc_info(),
            )
        # The logger's own filters, as Logger.handle applies them before any handler.
        assert logger.filter(record)
        lines.append(logging.Formatter().format(record))
    text = "\n".join(lines)
    assert "RunFailed('validation failed (1 critical): share_rate_is_shared_over_persons')" in text
    assert "ConfigError(" in text
    # Only the crash carries a traceback.
    assert text.count("Traceback (most recent call last)") == 1
    assert text.rstrip().endswith("KeyError: 'record_key'")


def test_a_new_database_keeps_the_published_person_ids(prefect_harness, tmp_path: Path) -> None:
    # Found in review: after a source was renamed (police_hukou → hukou_register), persons
    # shared with other sources kept their published ids; renhu.duckdb deleted (or --db at a
    # new file) with runs/ kept, the next night minted ids afresh from each person's first
    # record: 311 of 1,345 records changed person id, with no person_id_changes and exit 0.
    from flows.manifest import verify_run
    from flows.nightly import nightly
    from linkage.demo_city import generate_city

    city = generate_city(tmp_path / "city", persons=300, seed=5)
    sources = city.sources_file
    out = tmp_path / "out"
    nightly(str(sources), str(out))
    sources.write_text(sources.read_text(encoding="utf-8").replace("name: police_hukou\n", "name: hukou_register\n"),
                       encoding="utf-8")
    renamed = Path(nightly(str(sources), str(out)))
    published = pl.read_parquet(renamed / "entity_map.parquet")
    (out / "renhu.duckdb").unlink()
    for db in (None, tmp_path / "elsewhere.duckdb"):
        run = Path(nightly(str(sources), str(out), str(db) if db else None))
        tonight = pl.read_parquet(run / "entity_map.parquet")
        joined = published.join(tonight, on=["source", "record_id"])
        assert joined.height == published.height
        assert joined.filter(pl.col("person_id") != pl.col("person_id_right")).height == 0
        assert verify_run(run) == []


def test_a_renamed_source_keeps_its_person_ids_with_renamed_from(prefect_harness, tmp_path: Path) -> None:
    # Records are keyed by (source, record_id): renamed without a word, police_hukou's records
    # looked new and everyone only the register held got a new person id, with no change row
    # (89 persons in a review's demo). `renamed_from` says the two names are one source.
    from flows.nightly import nightly
    from linkage.demo_city import generate_city

    city = generate_city(tmp_path / "city", persons=300, seed=5)
    sources = city.sources_file
    out = tmp_path / "out"
    first = pl.read_parquet(Path(nightly(str(sources), str(out))) / "entity_map.parquet")
    text = sources.read_text(encoding="utf-8")
    renamed_text = text.replace("name: police_hukou\n", "name: hukou_register\n  renamed_from: police_hukou\n", 1)
    assert renamed_text != text
    sources.write_text(renamed_text, encoding="utf-8")
    for _night in range(2):  # the night of the rename, and one after it with the key still there
        run = Path(nightly(str(sources), str(out)))
        tonight = pl.read_parquet(run / "entity_map.parquet")
        assert "police_hukou" not in tonight["source"].to_list()
        joined = first.with_columns(
            pl.col("source").replace("police_hukou", "hukou_register")
        ).join(tonight, on=["source", "record_id"])
        assert joined.height == first.height
        assert joined.filter(pl.col("person_id") != pl.col("person_id_right")).height == 0
    # Without the key the same rename gives the register-only persons new ids: the test can fail.
    sources.write_text(text.replace("name: police_hukou\n", "name: hukou_register2\n", 1), encoding="utf-8")
    tonight = pl.read_parquet(Path(nightly(str(sources), str(out))) / "entity_map.parquet")
    joined = first.with_columns(pl.col("source").replace("police_hukou", "hukou_register2")).join(
        tonight, on=["source", "record_id"]
    )
    assert joined.filter(pl.col("person_id") != pl.col("person_id_right")).height > 0
