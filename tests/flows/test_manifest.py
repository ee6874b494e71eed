"""manifest.json and `renhu verify`: an untampered run passes; changed bytes, a deleted
row, a deleted or added file, and numbers that do not add up are each reported."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from flows.manifest import (
    check_no_full_id_numbers,
    count_rows,
    is_resident_id,
    sha256_of,
    verify_command,
    verify_run,
    write_manifest,
)
from flows.validation_figures import MapFigures, statement_text

RUN_ID = "20261123T020000Z-ab12cd"
# The example number of GB 11643 (check character X).
EXAMPLE_ID = "11010519491231002X"


def make_run(root: Path) -> Path:
    """A small published run: 5 records of 2 sources (3 persons, 1 shared), 2 quarantined."""
    run_dir = root / "runs" / RUN_ID
    (run_dir / "validation").mkdir(parents=True)
    (run_dir / "reports" / "公安局户政科").mkdir(parents=True)
    pl.DataFrame(
        {
            "source": ["police_hukou", "police_hukou", "police_hukou", "residence", "residence"],
            "record_id": ["HJ1", "HJ2", "HJ3", "JZ1", "JZ2"],
            "person_id": [
                "P000000000001",
                "P000000000002",
                "P000000000003",
                "P000000000001",
                "P000000000004",
            ],
        }
    ).write_parquet(run_dir / "entity_map.parquet")
    pl.DataFrame(
        {
            "source": ["police_hukou", "residence"],
            "file": ["hukou.csv", "residence.csv"],
            "row_number": [4, 3],
            "record_id": ["", "JZ9"],
            "reason": ["记录编号为空 / record_id is empty", "无姓名无证件 / no name or id"],
        }
    ).write_parquet(run_dir / "quarantine.parquet")
    # police_hukou: 3 persons, 1 shared (P..1); residence: 2 persons, 1 shared.
    (run_dir / "share_rates.csv").write_text(
        "source,records,persons,shared_persons,share_rate\npolice_hukou,3,3,1,0.3333\nresidence,2,2,1,0.5\n",
        encoding="utf-8",
    )
    (run_dir / "metrics.json").write_text(
        json.dumps({"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2}), encoding="utf-8"
    )
    (run_dir / "validation" / "index.html").write_text("<html>Data Docs</html>", encoding="utf-8")
    # A department's own report may carry full identity numbers.
    (run_dir / "reports" / "公安局户政科" / "人户分离.csv").write_text(
        f'\ufeffkind,record_id,id_number,detail\nhukou_residence_split,HJ1,{EXAMPLE_ID},"两行\n说明"\n',
        encoding="utf-8",
    )
    sources = root / "sources.yaml"
    sources.write_text("sources: []\n", encoding="utf-8")
    lock = root / "requirements.lock"
    lock.write_text("duckdb==2.0.0\n", encoding="utf-8")
    write_manifest(
        run_dir,
        run_id=RUN_ID,
        started_at=datetime(2026, 11, 23, 2, 0, tzinfo=UTC),
        finished_at=datetime(2026, 11, 23, 2, 7, 30, tzinfo=UTC),
        sources_file=sources,
        lock_file=lock,
        input_files=[
            {
                "path": "extracts/hukou.csv",
                "size_bytes": 120,
                "sha256": "a" * 64,
                "rows": 4,
                "source": "police_hukou",
            },
            {
                "path": "extracts/residence.csv",
                "size_bytes": 90,
                "sha256": "b" * 64,
                "rows": 3,
                "source": "residence",
            },
        ],
        stage_counts=[{"stage": "ingest", "seconds": 0.5, "rows_in": 7, "rows_out": 5}],
        validation={"success": True, "evaluated": 55, "failed": 0, "critical_failed": 0, "suites": ["..."]},
    )
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path)


def test_manifest_records_what_an_auditor_needs(run_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))

    assert manifest["run_id"] == RUN_ID and manifest["renhu_version"]
    assert manifest["started_at"] == "2026-11-23T02:00:00+00:00"
    assert manifest["finished_at"] == "2026-11-23T02:07:30+00:00"
    assert manifest["sources_file"]["sha256"] == sha256_of(tmp_path / "sources.yaml")
    assert manifest["lock_file"]["sha256"] == sha256_of(tmp_path / "requirements.lock")
    assert [f["path"] for f in manifest["input_files"]] == ["extracts/hukou.csv", "extracts/residence.csv"]
    assert manifest["records_in"] == 7
    assert manifest["stage_counts"][0]["rows_in"] == 7
    assert manifest["validation"] == {"success": True, "evaluated": 55, "failed": 0, "critical_failed": 0}
    files = {f["path"]: f for f in manifest["published_files"]}
    assert set(files) == {
        "entity_map.parquet",
        "quarantine.parquet",
        "share_rates.csv",
        "metrics.json",
        "validation/index.html",
        "reports/公安局户政科/人户分离.csv",
    }
    assert files["entity_map.parquet"]["rows"] == 5
    assert files["quarantine.parquet"]["rows"] == 2
    assert files["share_rates.csv"]["rows"] == 2
    assert files["reports/公安局户政科/人户分离.csv"]["rows"] == 1  # a quoted line break is one row
    assert files["metrics.json"]["rows"] is None
    assert files["share_rates.csv"]["sha256"] == sha256_of(run_dir / "share_rates.csv")
    assert files["share_rates.csv"]["size_bytes"] == (run_dir / "share_rates.csv").stat().st_size


def test_untampered_run_verifies(run_dir: Path, capsys) -> None:
    assert verify_run(run_dir) == []
    assert verify_command([str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK: {run_dir} (run {RUN_ID}): 6 files match manifest.json")
    assert "records in 7 = 5 in entity_map + 2 in quarantine" in out


def test_latest_symlink_verifies(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "latest").symlink_to(Path("runs") / RUN_ID, target_is_directory=True)
    assert verify_run(tmp_path / "latest") == []


def test_changed_bytes_are_reported(run_dir: Path, capsys) -> None:
    page = run_dir / "validation" / "index.html"
    page.write_bytes(page.read_bytes().replace(b"Data", b"Date"))  # same size, other bytes

    problems = verify_run(run_dir)
    assert len(problems) == 1 and problems[0].startswith("validation/index.html: sha256 ")
    assert verify_command([str(run_dir)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("validation/index.html: sha256")
    assert "1 difference(s)" in captured.err


def test_deleted_row_is_reported(run_dir: Path) -> None:
    quarantine = pl.read_parquet(run_dir / "quarantine.parquet")
    quarantine.head(1).write_parquet(run_dir / "quarantine.parquet")

    problems = verify_run(run_dir)
    assert "quarantine.parquet: 1 rows, manifest says 2" in problems
    assert any(p.startswith("quarantine.parquet: sha256") for p in problems)
    assert (
        "accounting: entity_map.parquet 5 rows + quarantine.parquet 1 rows = 6, but metrics.json records_in = 7"
        in problems
    )
    assert "accounting: metrics.json quarantined = 2, but quarantine.parquet has 1 rows" in problems


def test_deleted_csv_row_is_reported_even_with_the_manifest_rewritten(run_dir: Path, tmp_path: Path) -> None:
    # Whoever drops a row and rewrites the manifest still has the arithmetic against them.
    rates = run_dir / "share_rates.csv"
    rates.write_text(rates.read_text(encoding="utf-8").splitlines()[0] + "\npolice_hukou,3,3,1,0.3333\n")
    entity_map = pl.read_parquet(run_dir / "entity_map.parquet")
    entity_map.filter(pl.col("record_id") != "HJ3").write_parquet(run_dir / "entity_map.parquet")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")

    problems = verify_run(run_dir)
    assert any(
        p.startswith("accounting: entity_map.parquet 4 rows + quarantine.parquet 2 rows = 6")
        for p in problems
    )
    assert "share_rates.csv: police_hukou: records 3, but entity_map.parquet gives 2" in problems
    assert "share_rates.csv: no row for source residence, which entity_map.parquet holds" in problems


def test_wrong_share_rate_is_reported(run_dir: Path) -> None:
    rates = run_dir / "share_rates.csv"
    rates.write_text(rates.read_text(encoding="utf-8").replace("0.5\n", "0.6\n"), encoding="utf-8")

    problems = verify_run(run_dir)
    assert (
        "share_rates.csv: residence: share_rate 0.6, but shared_persons / persons = 1 / 2 = 0.500000"
        in problems
    )


def test_missing_and_extra_files_are_reported(run_dir: Path) -> None:
    (run_dir / "reports" / "公安局户政科" / "人户分离.csv").unlink()
    (run_dir / "validation" / "injected.html").write_text("<html></html>", encoding="utf-8")

    assert verify_run(run_dir) == [
        "reports/公安局户政科/人户分离.csv: missing",
        "validation/injected.html: not in the manifest",
    ]


def test_record_in_two_clusters_is_reported(run_dir: Path) -> None:
    entity_map = pl.read_parquet(run_dir / "entity_map.parquet")
    pl.concat([entity_map, entity_map.head(1)]).write_parquet(run_dir / "entity_map.parquet")

    problems = verify_run(run_dir)
    assert "entity_map.parquet: 1 (source, record_id) rows repeat: a record in two clusters" in problems


def test_folder_without_manifest(tmp_path: Path, capsys) -> None:
    assert verify_run(tmp_path) == [f"manifest.json: missing in {tmp_path}"]
    assert verify_command([str(tmp_path / "nope")]) == 1
    assert "no such run folder" in capsys.readouterr().err


def test_count_rows_of_unreadable_parquet_is_none(tmp_path: Path) -> None:
    broken = tmp_path / "x.parquet"
    broken.write_bytes(b"not parquet")
    assert count_rows(broken) is None
    assert count_rows(tmp_path / "x.json") is None


def test_verify_help_exits_cleanly(capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        verify_command(["--help"])
    assert raised.value.code == 0
    assert "RUNDIR" in capsys.readouterr().out


def test_resident_id_recognition() -> None:
    assert is_resident_id(EXAMPLE_ID)
    assert not is_resident_id("110105194912310021")  # wrong check character
    assert not is_resident_id("110105194913310026")  # month 13
    assert not is_resident_id("11010519491231002")


def test_full_id_number_outside_the_reports_is_reported(run_dir: Path) -> None:
    (run_dir / "validation" / "leak.html").write_text(
        f"<td>{EXAMPLE_ID}</td><td>{'9' * 18}</td>", encoding="utf-8"
    )
    entity_map = pl.read_parquet(run_dir / "entity_map.parquet")
    entity_map.with_columns(
        pl.when(pl.col("record_id") == "HJ2").then(pl.lit(f"HJ{EXAMPLE_ID}")).otherwise(pl.col("record_id"))
    ).write_parquet(run_dir / "entity_map.parquet")

    assert check_no_full_id_numbers(run_dir) == [
        "entity_map.parquet: holds 1 full identity number(s), e.g. 110105********002X; only a department's own report may",
        "validation/leak.html: holds 1 full identity number(s), e.g. 110105********002X; only a department's own report may",
    ]
    assert (
        "entity_map.parquet: holds 1 full identity number(s), e.g. 110105********002X; only a department's own report may"
        in verify_run(run_dir)
    )


@pytest.mark.parametrize(
    "text",
    [
        "a,b\r\n1,2\r\n3,4\r\n",
        "a,b\n1,2\n\n3,4",  # an empty line is no row; no line end after the last
        "a,b\r1,2\r\n\r\n3,4\n",  # a lone carriage return ends a row too
        "\ufeffa,b\r\n张三,2\r\n 　,\r\n",  # BOM; a line of spaces is a row
        'a,b\r\n"x\r\ny",2\r\n3,"4"\r\n',  # quoted line break: one row
        "a,b\r\n1,\x0c2\x1c\r\n",  # form feed and file separator do not end a csv row
        "",
    ],
)
def test_csv_rows_counted_as_csv_reader_reads_them(tmp_path: Path, text: str) -> None:
    import csv
    import io

    path = tmp_path / "x.csv"
    path.write_bytes(text.encode("utf-8"))
    expected = sum(1 for row in csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline="")) if row)
    assert count_rows(path) == max(expected - 1, 0)


def test_csv_rows_of_random_texts(tmp_path: Path) -> None:
    import csv
    import io
    import random

    rng = random.Random(7)
    path = tmp_path / "x.csv"
    for _ in range(500):
        text = "".join(rng.choice(["a", ",", "\r", "\n", "\r\n", " ", "张"]) for _ in range(rng.randint(0, 12)))
        path.write_bytes(text.encode("utf-8"))
        expected = sum(1 for row in csv.reader(io.StringIO(text, newline="")) if row)
        assert count_rows(path) == max(expected - 1, 0), repr(text)


def test_known_rows_are_listed_without_counting_and_others_are_counted(tmp_path: Path) -> None:
    # A writer's own count is taken as it is (here deliberately not the file's, to show it is
    # not recounted); files without one are counted.
    run_dir = make_run(tmp_path)
    write_manifest(
        run_dir,
        run_id=RUN_ID,
        started_at=datetime(2026, 11, 23, 2, 0, tzinfo=UTC),
        finished_at=datetime(2026, 11, 23, 2, 7, 30, tzinfo=UTC),
        sources_file=tmp_path / "sources.yaml",
        lock_file=None,
        input_files=[],
        stage_counts=[],
        validation=None,
        known_rows={"reports/公安局户政科/人户分离.csv": 41},
    )
    files = {f["path"]: f for f in json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["published_files"]}
    assert files["reports/公安局户政科/人户分离.csv"]["rows"] == 41
    assert files["share_rates.csv"]["rows"] == 2
    assert files["entity_map.parquet"]["rows"] == 5


def _rewrite_manifest(run_dir: Path, sources_file: Path, *, keep_validation: bool = False) -> None:
    """A manifest written afresh for the run folder as it now is: the tampering a check of
    hashes alone would not see. Its validation summary is metrics.json's, as the run writes
    it, or (``keep_validation``) the manifest's own, as a tamperer who left it would."""
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    (run_dir / "manifest.json").unlink()
    # The run writes metrics.json's validation summary into the manifest too.
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    write_manifest(
        run_dir,
        run_id=RUN_ID,
        started_at=manifest["started_at"],
        finished_at=manifest["finished_at"],
        sources_file=sources_file,
        lock_file=None,
        input_files=manifest["input_files"],
        stage_counts=manifest["stage_counts"],
        validation=manifest["validation"] if keep_validation else metrics.get("validation", manifest["validation"]),
    )


def test_metrics_figures_that_contradict_the_published_files_are_reported(run_dir: Path, tmp_path: Path) -> None:
    # metrics.json as the run writes it: 4 persons, 1 of them in both sources; each source's counts.
    metrics = {
        "run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2, "persons": 4,
        "duplicate_records": 0, "duplicate_rate": {"numerator": 0, "denominator": 5, "value": 0.0},
        "share_rate": {"numerator": 1, "denominator": 4, "value": 0.25},
        "sources": {
            "police_hukou": {"records_in": 4, "accepted": 3, "quarantined": 1, "persons": 3,
                             "shared_persons": 1, "duplicate_records": 0},
            "residence": {"records_in": 3, "accepted": 2, "quarantined": 1, "persons": 2,
                          "shared_persons": 1, "duplicate_records": 0},
        },
    }  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == []

    # Whoever changes a figure and rewrites the manifest still has the recount against them.
    metrics["persons"] = 3
    metrics["share_rate"]["numerator"] = 2
    metrics["sources"]["residence"]["persons"] = 1
    metrics["sources"]["police_hukou"]["quarantined"] = 0
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == [
        "metrics.json: persons = 3, but the published files give 4",
        "metrics.json: share_rate.numerator = 2, but the published files give 1",
        "metrics.json: sources.police_hukou.quarantined = 0, but the published files give 1",
        "metrics.json: sources.residence.persons = 1, but the published files give 2",
    ]


def _write_findings(run_dir: Path, rows: list[tuple]) -> None:
    """household_findings.parquet from (kind, person_id, source, record_id, detail, department,
    related_department) rows."""
    columns = ["kind", "person_id", "source", "record_id", "detail", "department", "related_department"]
    pl.DataFrame(rows, schema={c: pl.String for c in columns}, orient="row").write_parquet(
        run_dir / "household_findings.parquet"
    )


def test_metrics_rates_overlap_and_findings_that_do_not_add_up_are_reported(run_dir: Path, tmp_path: Path) -> None:
    # Found by tampering a demo run's metrics.json (a per-source share_rate, an overlap cell, a
    # finding count, a rate's value) and rewriting the manifest: verify said OK.
    _write_findings(run_dir, [
        ("hukou_residence_split", "P000000000001", "police_hukou", "HJ1", "人户分离", "公安局户政科", "流动人口管理大队"),
        ("hukou_residence_split", "P000000000001", "residence", "JZ1", "人户分离", "流动人口管理大队", "公安局户政科"),
        ("no_head", "P000000000002", "police_hukou", "HJ2", "户无户主", "公安局户政科", None),
    ])  # fmt: skip
    metrics = {
        "run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2, "persons": 4,
        "duplicate_records": 0, "duplicate_rate": {"numerator": 0, "denominator": 5, "value": 0.0},
        "share_rate": {"numerator": 1, "denominator": 4, "value": 0.25},
        "household_consistency_rate": {"numerator": 2, "denominator": 3, "value": 0.666667},
        "floating_registration_rate": {"numerator": 0, "denominator": 0, "value": None},
        "sources": {
            "police_hukou": {"department": "公安局户政科", "records_in": 4, "accepted": 3, "quarantined": 1,
                             "persons": 3, "shared_persons": 1, "share_rate": 0.333333,
                             "duplicate_records": 0, "duplicate_rate": 0.0},
            "residence": {"department": "流动人口管理大队", "records_in": 3, "accepted": 2, "quarantined": 1,
                          "persons": 2, "shared_persons": 1, "share_rate": 0.5,
                          "duplicate_records": 0, "duplicate_rate": 0.0},
        },
        "overlap": {"police_hukou": {"residence": 1}, "residence": {"police_hukou": 1}},
        "findings": {
            "by_kind": {"hukou_residence_split": 2, "multi_household": 0, "no_head": 1},
            "persons_by_kind": {"hukou_residence_split": 1, "multi_household": 0, "no_head": 1},
            "by_department": {
                "公安局户政科": {"hukou_residence_split": 1, "multi_household": 0, "no_head": 1},
                "流动人口管理大队": {"hukou_residence_split": 1, "multi_household": 0, "no_head": 0},
            },
        },
    }  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == []

    metrics["household_consistency_rate"]["value"] = 0.9
    metrics["floating_registration_rate"]["value"] = 0.5
    metrics["sources"]["police_hukou"]["share_rate"] = 0.9
    metrics["sources"]["residence"]["duplicate_rate"] = 0.5
    metrics["overlap"]["residence"]["police_hukou"] = 2
    metrics["findings"]["by_kind"]["multi_household"] = 3
    metrics["findings"]["persons_by_kind"]["hukou_residence_split"] = 2
    metrics["findings"]["by_department"]["流动人口管理大队"]["no_head"] = 1
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == [
        "metrics.json: household_consistency_rate.value = 0.9, but numerator / denominator = 2 / 3 gives 0.666667",
        "metrics.json: floating_registration_rate.value = 0.5, but the denominator is 0: the value is empty",
        "metrics.json: sources.police_hukou.share_rate = 0.9, but the published files give 0.333333",
        "metrics.json: sources.residence.duplicate_rate = 0.5, but the published files give 0.0",
        "metrics.json: overlap.residence.police_hukou = 2, but the published files give 1",
        "metrics.json: findings.by_kind.multi_household = 3, but the published files give 0",
        "metrics.json: findings.persons_by_kind.hukou_residence_split = 2, but the published files give 1",
        "metrics.json: findings.by_department.流动人口管理大队.no_head = 1, but the published files give 0",
    ]


def test_metrics_restated_counts_and_completeness_that_do_not_add_up_are_reported(run_dir: Path, tmp_path: Path) -> None:
    # The link stage's records and persons and the ingest stage's rows restate entity_map and
    # quarantine (5 + 2 rows, 4 persons); a field's completeness is its filled records of the
    # accepted (police_hukou: id numbers in 2 of 3 records = 0.666667). Before, none was
    # checked: the demo's police_hukou id_number could read 1.0 (the dashboard's "100%")
    # beside standardization's 4,032 filled of 4,036.
    metrics = {"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2,
               "linkage": {"records": 5, "persons": 4},
               "stages": [{"stage": "ingest", "rows_in": 7, "rows_out": 5}, {"stage": "link", "rows_in": 5}],
               "sources": {"police_hukou": {"field_completeness": {"id_number": 0.666667, "name": 1.0},
                                            "standardization": {"id_number": {"filled": 2}}}}}  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    problems = verify_run(run_dir)
    assert [p for p in problems if "no entry for source" not in p] == []

    metrics["linkage"] = {"records": 5, "persons": 5}
    metrics["stages"][0]["rows_in"] = 6
    metrics["sources"]["police_hukou"]["field_completeness"]["id_number"] = 1.0
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert [p for p in verify_run(run_dir) if "no entry for source" not in p] == [
        "metrics.json: linkage.persons = 5, but the published files give 4",
        "metrics.json: stages[0] (ingest) rows_in = 6, but the published files give 7",
        "metrics.json: sources.police_hukou.field_completeness.id_number = 1.0, but its "
        "standardization.id_number.filled / accepted = 2 / 3 gives 0.666667",
    ]


def test_metrics_quarantine_reasons_that_contradict_quarantine_are_reported(run_dir: Path, tmp_path: Path) -> None:
    # quarantine.parquet's reason_code per source is what metrics.json's quarantine_reasons count
    # (and the dashboard's reasons table shows). Before, they were not recounted: the demo's
    # police_hukou could claim 2 missing_record_id and 0 no_name_or_id where quarantine holds 1 and 1.
    quarantine = pl.read_parquet(run_dir / "quarantine.parquet").with_columns(
        reason_code=pl.Series(["missing_record_id", "no_name_or_id"])
    )
    quarantine.write_parquet(run_dir / "quarantine.parquet")
    metrics = {"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2, "sources": {
        "police_hukou": {"quarantined": 1, "quarantine_reasons": {"missing_record_id": 1}},
        "residence": {"quarantined": 1, "quarantine_reasons": {"no_name_or_id": 1}},
    }}  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == []

    metrics["sources"]["police_hukou"]["quarantine_reasons"] = {"missing_record_id": 0, "no_name_or_id": 1}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == [
        "metrics.json: sources.police_hukou.quarantine_reasons.missing_record_id = 0, "
        "but quarantine.parquet holds 1 rows of police_hukou with that reason_code",
        "metrics.json: sources.police_hukou.quarantine_reasons.no_name_or_id = 1, "
        "but quarantine.parquet holds 0 rows of police_hukou with that reason_code",
    ]


def test_a_report_summary_that_disagrees_with_the_findings_is_reported(run_dir: Path, tmp_path: Path) -> None:
    # A department's 汇总 counts its sheets' rows, rows on other departments' records apart
    # (其中他部门记录); the rest must be the department's findings in household_findings.parquet.
    _write_findings(run_dir, [
        ("roster_conflict", "P000000000001", "police_hukou", "HJ1", "户成员不一致", "公安局户政科", "民政局"),
        ("roster_conflict", "P000000000002", "police_hukou", "HJ2", "户成员不一致", "公安局户政科", "民政局"),
        ("no_head", "P000000000003", "police_hukou", "HJ3", "户无户主", "公安局户政科", None),
    ])  # fmt: skip
    summary = run_dir / "reports" / "公安局户政科" / "01_summary.csv"

    def write_summary(roster_rows: int, on_others: int) -> None:
        summary.write_text(
            "\ufeff项目,记录数,人数,说明,其中他部门记录\n本部门数据源,3,3,police_hukou,0\n"
            f"户成员不一致,{roster_rows},2,核对,{on_others}\n户无户主,1,1,核对,0\n人户分离,0,0,核对,0\n",
            encoding="utf-8",
        )
        _rewrite_manifest(run_dir, tmp_path / "sources.yaml")

    write_summary(3, 1)  # 2 own findings and 1 row on 民政局's record
    assert [p for p in verify_run(run_dir) if "01_summary" in p] == []
    write_summary(3, 0)
    assert [p for p in verify_run(run_dir) if "01_summary" in p] == [
        "reports/公安局户政科/01_summary.csv: 户成员不一致 3 rows less 0 on other departments' records = 3, "
        "but household_findings.parquet holds 2 roster_conflict findings of 公安局户政科"
    ]


def test_a_report_summary_that_disagrees_with_its_sheets_or_entity_map_is_reported(
    run_dir: Path, tmp_path: Path
) -> None:
    # The 汇总 states each sheet's rows (记录数), persons (人数) and rows on other departments'
    # records, and 本部门数据源 / 重复登记 count the department's records and persons, which
    # entity_map.parquet holds: police_hukou's HJ1-HJ3 are 3 persons, none duplicated.
    # Before, only 记录数 less 其中他部门记录 of a finding sheet and 未入库记录 were checked, so
    # a 汇总 saying 3,900 persons where entity_map holds 3,980 (the demo's 公安局户政科), or
    # 12 rows and 5 on others where the sheet holds 11 and 4, passed verify.
    metrics = {"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2,
               "sources": {"police_hukou": {"department": "公安局户政科"}, "residence": {"department": "流动人口"}}}  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    folder = run_dir / "reports" / "公安局户政科"
    (folder / "02_duplicates.csv").write_text("\ufeff人员编号,数据源,记录编号\n", encoding="utf-8")
    (folder / "03_roster_conflict.csv").write_text(
        "\ufeff人员编号,数据源,记录编号,说明\nP000000000001,police_hukou,HJ1,a\nP000000000002,（民政局记录）,,b\n",
        encoding="utf-8",
    )
    (folder / "04_rejected.csv").write_text("\ufeff数据源,记录编号\npolice_hukou,\n", encoding="utf-8")

    def write_summary(own: str, duplicates: str, roster: tuple[str, int]) -> list[str]:
        (folder / "01_summary.csv").write_text(
            f"\ufeff项目,记录数,人数,说明,其中他部门记录\n本部门数据源,{own},police_hukou,0\n"
            f"重复登记,{duplicates},核实,0\n户成员不一致,{roster[0]},核对,{roster[1]}\n未入库记录,1,,重报,0\n",
            encoding="utf-8",
        )
        _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
        return [p for p in verify_run(run_dir) if "01_summary" in p and "household_findings" not in p]

    assert write_summary("3,3", "0,0", ("2,2", 1)) == []
    assert write_summary("3,2", "2,1", ("3,2", 2)) == [
        "reports/公安局户政科/01_summary.csv: 重复登记 记录数 2, but 02_duplicates.csv gives 0",
        "reports/公安局户政科/01_summary.csv: 重复登记 人数 1, but 02_duplicates.csv gives 0",
        "reports/公安局户政科/01_summary.csv: 户成员不一致 记录数 3, but 03_roster_conflict.csv gives 2",
        "reports/公安局户政科/01_summary.csv: 户成员不一致 其中他部门记录 2, but 03_roster_conflict.csv gives 1",
        "reports/公安局户政科/01_summary.csv: 本部门数据源 人数 2, but entity_map.parquet gives 3",
        "reports/公安局户政科/01_summary.csv: 重复登记 记录数 2, but entity_map.parquet gives 0",
        "reports/公安局户政科/01_summary.csv: 重复登记 人数 1, but entity_map.parquet gives 0",
    ]


def test_a_rejected_sheet_that_disagrees_with_quarantine_is_reported(run_dir: Path, tmp_path: Path) -> None:
    # Each department's 未入库记录 holds the rows of quarantine.parquet of its sources: the
    # fixture's quarantine holds one row of police_hukou (公安局户政科) and one of residence
    # (流动人口管理大队). Counted in the 汇总 and listed in its CSV.
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics["sources"] = {
        "police_hukou": {"department": "公安局户政科"},
        "residence": {"department": "流动人口管理大队"},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    header = "数据源,文件,文件中的行号,数据行号（不含表头）,记录编号,原因\n"

    def write_report(department: str, summary_rows: int, rows: list[str]) -> None:
        folder = run_dir / "reports" / department
        folder.mkdir(parents=True, exist_ok=True)
        own = 3 if department == "公安局户政科" else 2
        (folder / "01_summary.csv").write_text(
            # entity_map: police_hukou 3 records of 3 persons, residence 2 of 2.
            f"\ufeff项目,记录数,人数,说明,其中他部门记录\n本部门数据源,{own},{own},x,0\n未入库记录,{summary_rows},,更正,0\n",
            encoding="utf-8",
        )
        (folder / "12_rejected.csv").write_text("\ufeff" + header + "".join(f"{r}\n" for r in rows), encoding="utf-8")

    police_row = "police_hukou,hukou.csv,5,4,,记录编号为空 / record_id is empty"
    residence_row = "residence,residence.csv,4,3,JZ9,无姓名无证件 / no name or id"
    write_report("公安局户政科", 1, [police_row])
    write_report("流动人口管理大队", 1, [residence_row])
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == []

    # The police report counts none and lists the residence's row instead of its own; the
    # residence report lost its row (the 汇总 still says 1). Manifest rewritten each time.
    write_report("公安局户政科", 0, [residence_row])
    write_report("流动人口管理大队", 1, [])
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == [
        "reports/公安局户政科/01_summary.csv: 未入库记录 0 rows, but quarantine.parquet holds 1 rows of police_hukou",
        "reports/公安局户政科/12_rejected.csv: holds rows of residence, not its department's",
        "reports/流动人口管理大队/12_rejected.csv: 0 rows, but quarantine.parquet holds 1 rows of residence",
    ]

    # A report whose 汇总 is gone while its sheet is not; the 汇总 counting the sheet twice.
    (run_dir / "reports" / "流动人口管理大队" / "01_summary.csv").unlink()
    write_report("公安局户政科", 1, [police_row])
    summary = run_dir / "reports" / "公安局户政科" / "01_summary.csv"
    summary.write_text(summary.read_text(encoding="utf-8") + "未入库记录,1,,更正,0\n", encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == [
        "reports/公安局户政科/01_summary.csv: 2 未入库记录 rows, expected 1",
        "reports/流动人口管理大队/01_summary.csv: missing, but reports/流动人口管理大队 has a 未入库记录 sheet",
        "reports/流动人口管理大队/12_rejected.csv: 0 rows, but quarantine.parquet holds 1 rows of residence",
    ]


def test_a_rejected_sheet_row_that_sends_the_clerk_elsewhere_is_reported(run_dir: Path, tmp_path: Path) -> None:
    # The right number of rows, of the right source, but not the row quarantine.parquet names:
    # before, only the counts and the sources were checked, and a sheet sending the clerk to
    # Excel row 18 of civil.xlsx for a row quarantined at row 17 (data row 36) passed.
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics["sources"] = {"police_hukou": {"department": "公安局户政科"}, "residence": {"department": "流动人口管理大队"}}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    quarantine = pl.read_parquet(run_dir / "quarantine.parquet").with_columns(
        file_row=pl.Series([5, 4], dtype=pl.Int32)
    )
    quarantine.write_parquet(run_dir / "quarantine.parquet")
    header = "数据源,文件,工作表,文件中的行号,数据行号（不含表头）,记录编号,原因\n"

    def write_report(department: str, row: str) -> None:
        folder = run_dir / "reports" / department
        folder.mkdir(parents=True, exist_ok=True)
        own = 3 if department == "公安局户政科" else 2  # entity_map: police_hukou 3 of 3 persons, residence 2 of 2
        (folder / "01_summary.csv").write_text(
            f"\ufeff项目,记录数,人数,说明,其中他部门记录\n本部门数据源,{own},{own},x,0\n未入库记录,1,,更正,0\n",
            encoding="utf-8",
        )
        (folder / "12_rejected.csv").write_text("\ufeff" + header + row + "\n", encoding="utf-8")

    write_report("公安局户政科", "police_hukou,hukou.csv,,5,4,,记录编号为空 / record_id is empty")
    write_report("流动人口管理大队", "residence,residence.csv,,4,3,JZ9,无姓名无证件 / no name or id")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == []

    write_report("公安局户政科", "police_hukou,hukou.csv,,6,4,,记录编号为空 / record_id is empty")  # another line
    write_report("流动人口管理大队", "residence,residence.csv,,4,2,JZ9,无姓名无证件 / no name or id")  # another row
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == [
        "reports/公安局户政科/12_rejected.csv: 1 row(s) not as quarantine.parquet has them (数据源, 文件, 文件中的行号, "
        "数据行号, 原因), e.g. police_hukou hukou.csv 数据行号 4",
        "reports/流动人口管理大队/12_rejected.csv: 1 row(s) not as quarantine.parquet has them (数据源, 文件, 文件中的行号, "
        "数据行号, 原因), e.g. residence residence.csv 数据行号 2",
    ]


def _validation_check(check: str, rows: int, missing: int, unexpected: int, mostly: float, success: bool) -> dict:
    checked = rows - missing
    return {
        "suite": "raw_records", "batch": "police_hukou", "check": check, "severity": "warning",
        "success": success, "expectation": "expect_column_values_to_be_in_set", "element_count": rows,
        "missing_count": missing, "unexpected_count": unexpected,
        "unexpected_percent": 100 * unexpected / checked if checked else None, "mostly": mostly,
    }  # fmt: skip


def test_validation_figures_that_do_not_add_up_are_reported(run_dir: Path, tmp_path: Path) -> None:
    # birth_date_parses: 2 of the 39 non-empty values of 42 rows fail, 98 % must pass: fails.
    checks = [
        _validation_check("birth_date_parses", 42, 3, 2, 0.98, False),
        _validation_check("row_count_in_band", 42, 42, 0, 1.0, True),
        {"suite": "raw_records", "batch": "police_hukou", "check": "mapped_columns_present", "success": True,
         "severity": "warning", "element_count": None, "missing_count": None, "unexpected_count": None},
    ]  # fmt: skip
    counts = {"evaluated": 3, "failed": 1, "critical_failed": 0, "warnings_failed": 1}
    results = {"run_id": RUN_ID, **counts, "errors": [], "checks": checks}
    (run_dir / "validation" / "results.json").write_text(json.dumps(results), encoding="utf-8")
    metrics = {"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2, "validation": dict(counts)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    page = run_dir / "validation" / "validations" / "raw_records" / "police_hukou" / RUN_ID / "t"
    page.mkdir(parents=True)
    cells = "<td>≈5.128% unexpected (2 of 39 non-empty values)</td><td>nothing to check (0 of 42 rows checked)</td>"
    statements = _statements((MapFigures(42, 3, 2, 0.98), False), (MapFigures(42, 42, 0, 1.0), True))
    (page / "duckdb-raw_records.police_hukou.html").write_text(f"<table>{cells}</table>{statements}", encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == []

    # A share of the 42 rows where GX judged 39 values, a verdict that does not follow from
    # mostly, a failed check more in metrics.json, and a page showing other figures.
    checks[0]["unexpected_percent"] = 100 * 2 / 42
    checks[1]["success"] = False
    metrics["validation"]["failed"] = 2
    (run_dir / "validation" / "results.json").write_text(json.dumps(results), encoding="utf-8")
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (page / "duckdb-raw_records.police_hukou.html").write_text(
        "<td>≈4.878% unexpected (2 of 41 non-empty values)</td><td>nothing to check (0 of 42 rows checked)</td>"
        + statements,
        encoding="utf-8",
    )
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml", keep_validation=True)
    rel = f"validation/validations/raw_records/police_hukou/{RUN_ID}/t/duckdb-raw_records.police_hukou.html"
    assert verify_run(run_dir) == [
        "validation/results.json: raw_records[police_hukou] birth_date_parses: unexpected_percent = "
        f"{100 * 2 / 42}, but 2 of 39 checked values give {100 * 2 / 39}",
        "validation/results.json: raw_records[police_hukou] row_count_in_band: success = False, "
        "but 0 of 0 checked values pass and mostly = 1.0",
        "validation/results.json: validation failed = 1, but the checks in validation/results.json give 2",
        "validation/results.json: validation warnings_failed = 1, but the checks in validation/results.json give 2",
        "metrics.json: validation warnings_failed = 1, but the checks in validation/results.json give 2",
        "manifest.json: validation failed = 1, but the checks in validation/results.json give 2",
        "manifest.json: validation warnings_failed = 1, but the checks in validation/results.json give 2",
        f"{rel}: states (unexpected, checked) [(0, 0), (2, 41)], validation/results.json holds [(0, 0), (2, 39)]",
        f"{rel}: its statements say (unexpected, checked, rows, mostly, passes) [(0, 0, 42, 1.0, True), "
        "(2, 39, 42, 0.98, False)], validation/results.json holds [(0, 0, 42, 1.0, False), (2, 39, 42, 0.98, False)]",
    ]


def _statements(*checks: tuple[MapFigures, bool]) -> str:
    """The statements under checks as a Data Docs page shows them (lines broken by <br>)."""
    return "".join(
        f"<strong>{html.escape(statement_text(figures, success)).replace(chr(10), '<br>')}</strong>"
        for figures, success in checks
    )


def test_data_docs_statements_that_disagree_with_the_results_are_reported(run_dir: Path, tmp_path: Path) -> None:
    # The statement under a check ("Unexpected: 2 of 39 non-empty values (≈5.128%) … mostly =
    # 0.98; 37 of 39 do (≈94.872%), so the check fails.") is what an auditor reads; before,
    # verify read only the Observed Value cell, so a statement saying 1 of 39, or a threshold
    # and verdict of its own, went unnoticed.
    checks = [_validation_check("birth_date_parses", 42, 3, 2, 0.98, False)]
    counts = {"evaluated": 1, "failed": 1, "critical_failed": 0, "warnings_failed": 1}
    results = {"run_id": RUN_ID, **counts, "errors": [], "checks": checks}
    (run_dir / "validation" / "results.json").write_text(json.dumps(results), encoding="utf-8")
    metrics = {"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2, "validation": counts}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    page = run_dir / "validation" / "validations" / "raw_records" / "police_hukou" / RUN_ID / "t"
    page.mkdir(parents=True)
    cell = "<td>≈5.128% unexpected (2 of 39 non-empty values)</td>"
    honest = _statements((MapFigures(42, 3, 2, 0.98), False))
    (page / "duckdb-raw_records.police_hukou.html").write_text(cell + honest, encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == []

    rel = f"validation/validations/raw_records/police_hukou/{RUN_ID}/t/duckdb-raw_records.police_hukou.html"
    for tampered, expected in (
        (
            honest.replace("Unexpected: 2 of 39", "Unexpected: 1 of 39"),
            [
                f"{rel}: a check's statement says ≈5.128% for 1 of 39, which is ≈2.564%",
                f"{rel}: a check's statement says 37 of 39 pass stated for 1 unexpected of 39",
                f"{rel}: its statements say (unexpected, checked, rows, mostly, passes) [(1, 39, 42, 0.98, False)], "
                "validation/results.json holds [(2, 39, 42, 0.98, False)]",
            ],
        ),
        (
            _statements((MapFigures(42, 3, 2, 0.9), True)),
            [
                f"{rel}: its statements say (unexpected, checked, rows, mostly, passes) [(2, 39, 42, 0.9, True)], "
                "validation/results.json holds [(2, 39, 42, 0.98, False)]",
            ],
        ),
        ("", [f"{rel}: its statements say (unexpected, checked, rows, mostly, passes) [], "
              "validation/results.json holds [(2, 39, 42, 0.98, False)]"]),
    ):
        (page / "duckdb-raw_records.police_hukou.html").write_text(cell + tampered, encoding="utf-8")
        _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
        assert verify_run(run_dir) == expected


def test_validation_counts_keep_checks_apart_from_suites_that_could_not_run(run_dir: Path, tmp_path: Path) -> None:
    # One warning check failed; one suite could not be validated (its reason in errors).
    # failed = critical_failed + warnings_failed counts checks of results.json; the suite is
    # could_not_run, and success is false for either. Before, critical_failed counted the suite
    # (1 critical of 1 failed check that was a warning), and success was not recounted.
    checks = [_validation_check("birth_date_parses", 42, 3, 2, 0.98, False)]
    errors = ["CRITICAL share_rates: cannot validate, table(s) share_rates missing"]
    counts = {"success": False, "evaluated": 1, "failed": 1, "critical_failed": 0, "warnings_failed": 1,
              "could_not_run": 1}  # fmt: skip
    results = {"run_id": RUN_ID, **counts, "errors": errors, "checks": checks}
    (run_dir / "validation" / "results.json").write_text(json.dumps(results), encoding="utf-8")
    metrics = {"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2, "validation": dict(counts)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == []

    metrics["validation"].update(critical_failed=1, success=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml", keep_validation=True)
    assert verify_run(run_dir) == [
        "metrics.json: validation critical_failed = 1, but the checks in validation/results.json give 0",
        "metrics.json: validation success = True, but the checks in validation/results.json give False",
    ]


def test_a_manifest_whose_validation_summary_contradicts_the_results_is_reported(run_dir: Path, tmp_path: Path) -> None:
    # manifest.json keeps the night's validation summary beside the hashes; before, verify
    # never compared it, so a manifest saying the night passed (failed 0, success true) while
    # results.json lists a failed check went unnoticed.
    checks = [_validation_check("birth_date_parses", 42, 3, 2, 0.98, False)]
    counts = {"success": False, "evaluated": 1, "failed": 1, "critical_failed": 0, "warnings_failed": 1}
    (run_dir / "validation" / "results.json").write_text(
        json.dumps({"run_id": RUN_ID, **counts, "errors": [], "checks": checks}), encoding="utf-8"
    )
    (run_dir / "metrics.json").write_text(
        json.dumps({"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2, "validation": counts}),
        encoding="utf-8",
    )
    _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
    assert verify_run(run_dir) == []

    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    manifest["validation"].update(success=True, failed=0, warnings_failed=0)
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert verify_run(run_dir) == [
        "manifest.json: validation failed = 0, but the checks in validation/results.json give 1",
        "manifest.json: validation warnings_failed = 0, but the checks in validation/results.json give 1",
        "manifest.json: validation success = True, but the checks in validation/results.json give False",
    ]


def test_a_check_whose_severity_or_mostly_is_not_the_suite_files_is_reported(run_dir: Path, tmp_path: Path) -> None:
    # The run copies its suite files and the thresholds it used to validation/suites/; a
    # results.json (and counts) rewritten to call a failed warning critical, or to judge it
    # against a looser mostly, agreed with itself and passed verify before.
    suites = run_dir / "validation" / "suites"
    suites.mkdir()
    (suites / "raw_records.yaml").write_text(
        "suite: raw_records\nexpectations:\n"
        "  - {check: birth_date_parses, severity: warning, mostly: birth_date_parses}\n",
        encoding="utf-8",
    )
    (suites / "thresholds_used.json").write_text(json.dumps({"police_hukou": {"birth_date_parses": 0.98}}))
    checks = [_validation_check("birth_date_parses", 42, 3, 2, 0.98, False)]

    def write(checks: list[dict], counts: dict) -> list[str]:
        results = {"run_id": RUN_ID, **counts, "errors": [], "checks": checks}
        (run_dir / "validation" / "results.json").write_text(json.dumps(results), encoding="utf-8")
        metrics = {"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2, "validation": counts}
        (run_dir / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
        return verify_run(run_dir)

    assert write(checks, {"evaluated": 1, "failed": 1, "critical_failed": 0, "warnings_failed": 1}) == []
    assert write(
        [{**checks[0], "severity": "critical", "mostly": 0.9, "success": True}],
        {"evaluated": 1, "failed": 0, "critical_failed": 0, "warnings_failed": 0},
    ) == [
        "validation/results.json: raw_records[police_hukou] birth_date_parses: severity critical, "
        "but validation/suites/raw_records.yaml says warning",
        "validation/results.json: raw_records[police_hukou] birth_date_parses: mostly 0.9, but the run used "
        "birth_date_parses = 0.98 (validation/suites/thresholds_used.json)",
    ]


def test_a_data_docs_page_whose_status_or_statistics_contradict_the_results_is_reported(
    run_dir: Path, tmp_path: Path
) -> None:
    # GX's page heads each suite and batch with its Status and the counts of evaluated,
    # successful and unsuccessful expectations; before, a page reading "Succeeded, 1 of 1
    # successful" where results.json lists the check failed passed verify.
    checks = [_validation_check("birth_date_parses", 42, 3, 2, 0.98, False)]
    counts = {"evaluated": 1, "failed": 1, "critical_failed": 0, "warnings_failed": 1}
    (run_dir / "validation" / "results.json").write_text(
        json.dumps({"run_id": RUN_ID, **counts, "errors": [], "checks": checks}), encoding="utf-8"
    )
    (run_dir / "metrics.json").write_text(
        json.dumps({"run_id": RUN_ID, "records_in": 7, "accepted": 5, "quarantined": 2, "validation": counts}),
        encoding="utf-8",
    )
    page = run_dir / "validation" / "validations" / "raw_records" / "police_hukou" / RUN_ID / "t"
    page.mkdir(parents=True)
    body = "<td>≈5.128% unexpected (2 of 39 non-empty values)</td>" + _statements((MapFigures(42, 3, 2, 0.98), False))

    def write(status: str, successful: int) -> list[str]:
        head = (
            f"<span>Status:</span> <i></i> {status} </span><h5>Statistics</h5><table><tr><td>Evaluated Expectations"
            f"</td><td>1</td></tr><tr><td>Successful Expectations</td><td>{successful}</td></tr><tr><td>"
            f"Unsuccessful Expectations</td><td>{1 - successful}</td></tr></table>"
        )
        (page / "duckdb-raw_records.police_hukou.html").write_text(head + body, encoding="utf-8")
        _rewrite_manifest(run_dir, tmp_path / "sources.yaml")
        return verify_run(run_dir)

    assert write("Failed", 0) == []
    rel = f"validation/validations/raw_records/police_hukou/{RUN_ID}/t/duckdb-raw_records.police_hukou.html"
    assert write("Succeeded", 1) == [
        f"{rel}: states 1 evaluated, 1 successful, 0 unsuccessful expectations, validation/results.json holds 1, 0, 1",
        f"{rel}: Status: Succeeded, but validation/results.json holds 1 failed check(s) of 1",
    ]


def _region_date_sequence_numbers(count: int) -> list[str]:
    return [f"330602202312{day:02d}{seq:04d}" for day in range(1, 29) for seq in range(1, 11)][:count]


def test_record_numbers_that_pass_the_check_by_chance_are_not_reported(run_dir: Path) -> None:
    # A department numbering its records region code + date + sequence: ingest keeps them all
    # (its record ids are not identity numbers: under half of them check), so entity_map
    # publishes the ~1 in 11 that pass the check character by chance. Before, verify reported
    # every night of such a source as a leak.
    from linkage.id_numbers import check_character

    numbers = _region_date_sequence_numbers(60)
    checking = [n for n in numbers if check_character(n[:17]) == n[17]]
    assert 2 <= len(checking) < 30
    entity_map = pl.read_parquet(run_dir / "entity_map.parquet")
    pl.concat([entity_map, pl.DataFrame({"source": "records", "record_id": numbers,
                                         "person_id": [f"P{i:012d}" for i in range(60)]})]).write_parquet(
        run_dir / "entity_map.parquet"
    )
    quarantine = pl.read_parquet(run_dir / "quarantine.parquet")
    pl.concat([quarantine, pl.DataFrame({"source": ["records"], "file": ["r.csv"], "row_number": [61],
                                         "record_id": [checking[0]],
                                         "reason": [f"记录编号 {checking[0]} 在本来源中重复"]})]).write_parquet(
        run_dir / "quarantine.parquet"
    )
    assert check_no_full_id_numbers(run_dir) == []


def test_a_source_publishing_identity_numbers_as_record_ids_is_reported(run_dir: Path) -> None:
    # The same count the other way: a source whose published record ids mostly check is
    # publishing identity numbers (a typo'd one beside them does not hide them).
    from linkage.id_numbers import check_character

    ids = [f"{first17}{check_character(first17)}" for first17 in ("33060219900102123", "11010519850704002")]
    typo = ids[0][:17] + ("0" if ids[0][17] != "0" else "1")
    entity_map = pl.read_parquet(run_dir / "entity_map.parquet")
    pl.concat([entity_map, pl.DataFrame({"source": "ids", "record_id": [*ids, typo],
                                         "person_id": [f"P{i:012d}" for i in range(3)]})]).write_parquet(
        run_dir / "entity_map.parquet"
    )
    first = min(ids)
    assert check_no_full_id_numbers(run_dir) == [
        f"entity_map.parquet: holds 2 full identity number(s), e.g. {first[:6]}********{first[-4:]}; "
        "only a department's own report may"
    ]
