"""The command line: usage, and the one-line errors that stop a night before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows import cli
from flows.cli import EXIT_CONFIG, main

RENHU = [sys.executable, "-m", "flows.cli"]


def test_help_lists_the_commands(capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["--help"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "run", "explain", "verify"):
        assert command in out


def test_run_help_names_its_options(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "--sources" in out and "--out" in out and "--db" in out and "--full-refresh" in out
    assert (
        "re-standardize and re-link every record and refit the linkage model instead of reusing last night's "
        "work for unchanged records"
    ) in " ".join(out.split())


@pytest.mark.parametrize(("flag", "expected"), [([], False), (["--full-refresh"], True)])
def test_full_refresh_reaches_the_run(monkeypatch, flag: list[str], expected: bool) -> None:
    calls = []
    monkeypatch.setattr(cli, "run_flow", lambda *args: calls.append(args) or 0)
    assert main(["run", "--sources", "s.yaml", "--out", "o", *flag]) == 0
    # sources, out, db, full_refresh, owns_process: a test's call does not own the process.
    assert calls == [(Path("s.yaml"), Path("o"), None, expected, False)]


@pytest.mark.parametrize(
    ("files", "sources", "expected"),
    [
        ({}, None, "sources file not found"),
        ({}, "sources: [oops\n", "does not parse as YAML"),
        (
            {},
            "sources:\n  - {name: a, department: x, path: gone.csv, columns: {record_id: id, name: xm}}\n",
            "gone.csv: file not found",
        ),
        (
            {"a.csv": "id,xm\n1,张伟\n"},
            "sources:\n  - {name: a, department: x, path: a.csv, columns: {record_id: id, name: xm, phone: lxdh}}\n",
            "a.csv: column 'lxdh' (mapped for source 'a') is not in the extract",
        ),
    ],
)
def test_fatal_errors_exit_non_zero_with_one_line_and_write_nothing(
    tmp_path: Path, files: dict, sources: str | None, expected: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    sources_file = tmp_path / "sources.yaml"
    if sources is not None:
        sources_file.write_text(sources, encoding="utf-8")
    out = tmp_path / "out"
    completed = subprocess.run(
        [*RENHU, "run", "--sources", str(sources_file), "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == EXIT_CONFIG
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert expected in lines[0]
    assert not out.exists()


def test_serve_builds_a_scheduled_deployment_of_the_nightly_flow(tmp_path: Path) -> None:
    from flows.nightly import nightly_deployment

    deployment = nightly_deployment(tmp_path / "sources.yaml", tmp_path / "out", None, cron="30 1 * * *")
    assert deployment.flow_name == "nightly"
    assert deployment.parameters["sources_file"] == str((tmp_path / "sources.yaml").resolve())
    assert deployment.parameters["db_path"] is None
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "30 1 * * *"


def test_an_error_of_several_lines_is_printed_as_one(capsys) -> None:
    # A library's error text (pyarrow prints a schema) can run over lines; stderr gets one.
    cli._err("people.parquet: not a readable Parquet file (Multiple matches for x in a: string\nb: string\n)")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == "renhu: people.parquet: not a readable Parquet file (Multiple matches for x in a: string b: string )\n"


# `renhu run` with a read-ahead budget of 0 rows: every extract is left to the flow, as
# on a night of more than 2.5M rows (flows.ingest.PREFETCH_ROW_BUDGET).
RENHU_NO_READ_AHEAD = [
    sys.executable, "-c",
    "import sys, flows.ingest as ingest; read_ahead = ingest.prefetch_extracts; "
    "ingest.prefetch_extracts = lambda config, row_budget=None: read_ahead(config, 0); "
    "from flows.cli import main; sys.exit(main(sys.argv[1:]))",
]

SOCIAL_INSURANCE = (
    "sources:\n  - {name: si, department: 人社局, path: si.parquet, format: parquet, "
    "columns: {record_id: grbh, name: xm, id_number: sfzh}}\n"
)


def _wrong_encoding_csv(path: Path) -> None:
    rows = [f"x{i},张伟{i},浙江省绍兴市越城区" for i in range(50)]
    path.write_bytes(("xsbh,xm,jzdz\n" + "\n".join(rows) + "\n").encode("gbk"))


@pytest.mark.parametrize("bad", ["corrupt_parquet", "csv_in_another_encoding"])
def test_a_bad_file_past_the_read_ahead_stops_the_night_before_anything_is_written(
    tmp_path: Path, write_corrupt_parquet, bad: str
) -> None:
    # Before, such a file was found by the ingest task: exit 2, but the run had created
    # out/renhu.duckdb with a failed ledger row, and stderr held ~100 lines of Prefect's logs.
    if bad == "corrupt_parquet":
        write_corrupt_parquet(tmp_path / "si.parquet")
        (tmp_path / "sources.yaml").write_text(SOCIAL_INSURANCE, encoding="utf-8")
        named = "si.parquet: not a readable Parquet file"
    else:
        _wrong_encoding_csv(tmp_path / "schools.csv")
        (tmp_path / "sources.yaml").write_text(
            "sources:\n  - {name: schools, department: 教育局, path: schools.csv, "
            "columns: {record_id: xsbh, name: xm}}\n", encoding="utf-8")
        named = "schools.csv: 50 of its 50 lines with Chinese text are not valid utf-8"
    out = tmp_path / "out"
    completed = subprocess.run(
        [*RENHU_NO_READ_AHEAD, "run", "--sources", str(tmp_path / "sources.yaml"), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == EXIT_CONFIG, completed.stderr[-2000:]
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr[-2000:]
    assert named in lines[0]
    assert not out.exists()
