"""Department reports as frames: sheets, own values in full, other departments' values masked.

The city: the police register holds 王建国 (person PA) twice (a duplicate registration)
and his wife 李秀英 (PB). The residence registration office holds PA as 王建图 with another
id number and birth date, PB in Latin script (LI XIUYING, not a disagreement), and the
civil-affairs roster lists the family without PB (a roster conflict).
"""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl
import pytest

from linkage.households import PUBLISHED_FINDING_COLUMNS, find_household_findings
from linkage.reports import (
    REPORT_COLUMNS,
    DepartmentReport,
    build_department_reports,
    describe_difference,
    iter_department_reports,
)
from tests.linkage.city_builders import city_frames, record

ID_A = "330602198003010017"
ID_A_OTHER = "330602198003110015"
ID_B = "330602198205020029"
HOME, ELSEWHERE = "330602001", "330602003"
AS_OF = date(2026, 11, 23)

SOURCES = {
    "police_hukou": ("公安局户政科", "hukou"),
    "residence_reg": ("流动人口服务中心", "residence"),
    "civil_roster": ("民政局", "roster"),
}


def rec(source: str, record_id: str, person_id: str, **fields: object) -> dict[str, object]:
    return record(SOURCES, source, record_id, person_id, **fields)


ROWS = [
    rec(
        "police_hukou",
        "h1",
        "PA",
        name="王建国",
        name_raw="王建国",
        name_script="han",
        id_number=ID_A,
        birth_date=date(1980, 3, 1),
        sex="M",
        household_id="H001",
        relation_to_head="head",
        hukou_township=HOME,
    ),
    rec(
        "police_hukou",
        "h1b",
        "PA",
        name="王建国",
        name_raw="王 建国",
        name_script="han",
        id_number=ID_A,
        birth_date=date(1980, 3, 1),
        sex="M",
        household_id="H001",
        relation_to_head="head",
        hukou_township=HOME,
    ),
    rec(
        "police_hukou",
        "h2",
        "PB",
        name="李秀英",
        name_raw="李秀英",
        name_script="han",
        id_number=ID_B,
        birth_date=date(1982, 5, 2),
        sex="F",
        household_id="H001",
        relation_to_head="spouse",
        hukou_township=HOME,
    ),
    rec(
        "residence_reg",
        "r1",
        "PA",
        name="王建图",
        name_raw="王建图",
        name_script="han",
        id_number=ID_A_OTHER,
        birth_date=date(1980, 3, 11),
        sex="M",
        residence_township=HOME,
    ),
    rec(
        "residence_reg",
        "r2",
        "PB",
        name="LI XIUYING",
        name_raw="Li Xiuying",
        name_script="latin",
        id_number=ID_B,
        birth_date=date(1982, 5, 2),
        sex="F",
        residence_township=HOME,
    ),
    rec(
        "civil_roster",
        "c1",
        "PA",
        name="王建国",
        name_raw="王建国",
        name_script="han",
        household_id="MZ1",
        relation_to_head="head",
    ),
]


def city() -> tuple[pl.DataFrame, pl.DataFrame]:
    schema = {
        "source": pl.String,
        "department": pl.String,
        "source_kind": pl.String,
        "record_id": pl.String,
        "person_id": pl.String,
        "name": pl.String,
        "name_raw": pl.String,
        "name_script": pl.String,
        "id_number": pl.String,
        "birth_date": pl.Date,
        "sex": pl.String,
        "household_id": pl.String,
        "relation_to_head": pl.String,
        "hukou_township": pl.String,
        "residence_township": pl.String,
    }
    return city_frames(ROWS, schema)


@pytest.fixture(scope="module")
def reports() -> dict[str, DepartmentReport]:
    std, entity_map = city()
    findings = find_household_findings(std, entity_map, as_of=AS_OF)
    return build_department_reports(std, entity_map, findings)


def all_cells(report: DepartmentReport) -> set[str]:
    cells: set[str] = set()
    for sheet in report.sheets:
        cells.update(sheet.frame.columns)
        for row in sheet.frame.iter_rows():
            cells.update(str(v) for v in row if v is not None)
    return cells


def test_every_department_has_every_sheet_in_order(reports) -> None:
    assert list(reports) == ["公安局户政科", "流动人口服务中心", "民政局"]
    titles = [s.title for s in reports["民政局"].sheets]
    assert titles == [
        "汇总",
        "重复登记",
        "与其他部门不一致",
        "人户分离",
        "一人多户",
        "户成员不一致",
        "居住未登记",
        "一户多个户主",
        "户无户主",
        "子女年长于父母",
        "配偶未达法定婚龄",
        "未入库记录",
    ]
    assert reports["公安局户政科"].sources == ("police_hukou",)


def test_duplicates_grouped_per_person_with_own_raw_values(reports) -> None:
    dup = reports["公安局户政科"].sheet("duplicates").frame
    assert dup.get_column("记录编号").to_list() == ["h1", "h1b"]
    assert dup.get_column("重复组").to_list() == [1, 1]
    assert dup.get_column("组内记录数").to_list() == [2, 2]
    # the two entries differ only in how the name was typed
    assert dup.get_column("组内不同的字段").to_list() == ["姓名", "姓名"]
    # the clerk's own cell as typed, in full
    assert dup.get_column("姓名").to_list() == ["王建国", "王 建国"]
    assert dup.get_column("公民身份号码").to_list() == [ID_A, ID_A]
    assert reports["流动人口服务中心"].sheet("duplicates").frame.is_empty()


def test_conflicts_show_own_value_in_full_and_the_other_masked(reports) -> None:
    conflicts = reports["公安局户政科"].sheet("conflicts").frame
    rows = {(r["记录编号"], r["不一致字段"]): r for r in conflicts.iter_rows(named=True)}
    assert set(rows) == {
        ("h1", "姓名"),
        ("h1", "公民身份号码"),
        ("h1", "出生日期"),
        ("h1b", "姓名"),
        ("h1b", "公民身份号码"),
        ("h1b", "出生日期"),
    }
    name = rows[("h1", "姓名")]
    assert (name["本部门值"], name["对方值（已脱敏）"]) == ("王建国", "王**")
    assert (name["对方部门"], name["对方数据源"]) == ("流动人口服务中心", "residence_reg")
    assert rows[("h1", "公民身份号码")]["本部门值"] == ID_A
    assert rows[("h1", "公民身份号码")]["对方值（已脱敏）"] == "330602********0015"
    # another department's birth date is masked like the id's birth digits: shown, it would
    # complete 330602********0015 into that department's full id
    assert rows[("h1", "出生日期")]["对方值（已脱敏）"] == "****-**-**"
    assert rows[("h1", "出生日期")]["本部门值"] == "1980-03-01"
    # Where to look, among the characters the masked value shows; nothing about the hidden
    # ones, whose sameness would hand the clerk the other department's characters there.
    assert rows[("h1", "公民身份号码")]["差异位置"] == "第18位不同（第7-14位不显示）"
    assert rows[("h1", "姓名")]["差异位置"] == "第2-3字中有不同"
    assert rows[("h1", "出生日期")]["差异位置"] == "出生日期不同"
    # the roster agrees with the register on the name; nobody else holds the id
    assert rows[("h1", "姓名")]["与本部门一致的其他数据源数"] == 1
    assert rows[("h1", "公民身份号码")]["与本部门一致的其他数据源数"] == 0
    # PB's Latin-script name on the residence side is no disagreement
    assert "h2" not in conflicts.get_column("记录编号").to_list()

    theirs = reports["流动人口服务中心"].sheet("conflicts").frame
    own_name = theirs.filter((pl.col("记录编号") == "r1") & (pl.col("不一致字段") == "姓名"))
    assert own_name.get_column("本部门值").to_list() == ["王建图", "王建图"]  # vs police and vs roster
    assert sorted(own_name.get_column("对方数据源")) == ["civil_roster", "police_hukou"]


def test_no_department_sees_another_departments_full_values(reports) -> None:
    police = all_cells(reports["公安局户政科"])
    assert "王建图" not in police and ID_A_OTHER not in police and "LI XIUYING" not in police
    # nor the birth date that would complete the masked other id into ID_A_OTHER
    assert not any(other_date in cell for cell in police for other_date in ("1980-03-11", "19800311"))
    residence = all_cells(reports["流动人口服务中心"])
    assert ID_A not in residence and "王建国" not in residence and "李秀英" not in residence
    roster = all_cells(reports["民政局"])
    assert not {ID_A, ID_B, ID_A_OTHER, "李秀英", "王建图"} & roster
    # nor another department's record ids
    assert "h2" not in roster and "r1" not in police


def test_findings_on_own_records_and_those_concerning_the_department(reports) -> None:
    # PB is in the register household but not on the roster.
    police = reports["公安局户政科"].sheet("roster_conflict").frame
    assert police.select("人员编号", "记录编号", "姓名", "相关部门").rows() == [
        ("PB", "h2", "李秀英", "民政局")
    ]
    roster = reports["民政局"].sheet("roster_conflict").frame
    assert roster.height == 1
    row = roster.row(0, named=True)
    assert row["人员编号"] == "PB" and row["记录编号"] is None and row["姓名"] is None
    assert row["数据源"] == "（公安局户政科记录）" and "李*" in row["说明"] and "户号M*1" in row["说明"]
    assert "MZ1" not in row["说明"]  # the roster's own number in full is only in its own rows


def _heads_swapped_city() -> tuple[pl.DataFrame, pl.DataFrame]:
    """A register household whose roster names its spouse as the head: roster conflicts shown
    to each department on the other's record."""
    rows = [
        rec("police_hukou", "h1", "PA", name="王建国", name_script="han", household_id="H001",
            relation_to_head="head", hukou_township=HOME),
        rec("police_hukou", "h2", "PB", name="李秀英", name_script="han", household_id="H001",
            relation_to_head="spouse", hukou_township=HOME),
        rec("civil_roster", "c1", "PA", name="王建国", name_script="han", household_id="MZ1",
            relation_to_head="spouse"),
        rec("civil_roster", "c2", "PB", name="李秀英", name_script="han", household_id="MZ1",
            relation_to_head="head"),
    ]  # fmt: skip
    return city_frames(rows, {k: v for k, v in city()[0].schema.items() if k != "record_key"}
                       | {"person_id": pl.String})


def test_a_row_on_another_departments_record_names_the_departments_own_household(reports) -> None:
    # Found reading the demo's 民政局 report: a row on a police record (register member not on
    # the roster) named the roster household only masked (户号MZ***********06), and a roster of
    # many households has many that mask alike: the clerk could not tell which one to correct.
    roster = reports["民政局"].sheet("roster_conflict").frame
    assert roster.select("人员编号", "数据源", "户号").rows() == [("PB", "（公安局户政科记录）", "MZ1")]
    # The other way: the roster's head is not the register's head; the register's clerk gets the
    # row on the roster's record with the register's own household number, and only that.
    std, entity_map = _heads_swapped_city()
    findings = find_household_findings(std, entity_map, as_of=AS_OF)
    built = build_department_reports(std, entity_map, findings)
    police = built["公安局户政科"].sheet("roster_conflict").frame
    assert police.select("人员编号", "数据源", "记录编号", "户号").rows() == [
        ("PB", "（民政局记录）", None, "H001")
    ]
    assert "MZ1" not in all_cells(built["公安局户政科"])
    # The number in full travels beside the finding for the reports only: the published columns
    # (household_findings.parquet, city-wide) leave it out and the detail masks it.
    published = findings.select(PUBLISHED_FINDING_COLUMNS)
    assert not {"MZ1", "H001"} & {v for row in published.iter_rows() for v in row}


def test_summary_counts_each_sheet(reports) -> None:
    summary = reports["公安局户政科"].sheet("summary").frame
    counts = {r["项目"]: (r["记录数"], r["人数"]) for r in summary.iter_rows(named=True)}
    assert counts["本部门数据源"] == (3, 2)
    assert counts["重复登记"] == (2, 1)
    assert counts["与其他部门不一致"] == (6, 1)
    assert counts["户成员不一致"] == (1, 1)
    assert counts["人户分离"] == (0, 0)
    assert summary.get_column("说明").null_count() == 0
    # None of this department's rows here sit on another department's record.
    assert summary.get_column("其中他部门记录").to_list() == [0] * summary.height


def test_summary_counts_rows_on_other_departments_records_apart() -> None:
    # The roster's head is not the register's: 公安局户政科's roster_conflict sheet holds the row
    # on 民政局's record, which metrics.json counts under 民政局 (a review found a sheet of 7
    # rows against 6 in by_department). The summary says how many such rows the sheet has.
    std, entity_map = _heads_swapped_city()
    findings = find_household_findings(std, entity_map, as_of=AS_OF)
    report = build_department_reports(std, entity_map, findings)["公安局户政科"]
    sheet = report.sheet("roster_conflict").frame
    on_others = sheet.filter(pl.col("记录编号").is_null()).height
    assert on_others >= 1
    summary = {r["项目"]: r for r in report.sheet("summary").frame.iter_rows(named=True)}
    assert summary["户成员不一致"]["记录数"] == sheet.height
    assert summary["户成员不一致"]["其中他部门记录"] == on_others


def test_findings_without_department_columns_still_reach_the_owner() -> None:
    std, entity_map = city()
    findings = pl.DataFrame(
        {
            "kind": ["no_head"],
            "person_id": ["PA"],
            "source": ["civil_roster"],
            "record_id": ["c1"],
            "detail": ["户无户主：测试"],
        }
    )
    reports = build_department_reports(std, entity_map, findings)
    assert reports["民政局"].sheet("no_head").frame.get_column("记录编号").to_list() == ["c1"]
    assert reports["公安局户政科"].sheet("no_head").frame.is_empty()


@pytest.mark.parametrize(
    ("field", "own", "other", "hint"),
    [
        ("id_number", "330602198003010017", "330602198003110015", "第18位不同（第7-14位不显示）"),
        ("id_number", "330602198003010017", "330602199114010017", "第7-14位中有不同"),
        ("id_number", "33068120130926787X", "33086120130926787X", "第4-5位不同（第7-14位不显示）"),
        ("id_number", "330602800301001", "330602800301002", "第15位不同（第7-11位不显示）"),
        ("id_number", "12345", "12346", "第3-5位中有不同"),
        ("id_number", "330602198003010017", "330602800301001", "长度不同（本部门18位，对方15位）"),
        ("name", "欧阳娜娜", "欧阳娜", "长度不同（本部门4字，对方3字）"),
        ("name", "王豪林", "玉豪林", "第1字不同（第2-3字不显示）"),
        ("name", "王豪", "王浩", "第2字不同"),
        ("name", "张", "李", "第1字不同"),
        ("birth_date", date(1980, 3, 1), date(1979, 3, 1), "出生日期不同"),
        ("birth_date", date(1980, 3, 1), date(1980, 1, 3), "出生日期不同"),
        ("sex", "M", "F", "性别不同"),
    ],
)
def test_describe_difference(field: str, own: object, other: object, hint: str) -> None:
    assert describe_difference(field, own, other) == hint


def test_no_findings_at_all_still_gives_every_sheet() -> None:
    std, entity_map = city()
    untyped = pl.DataFrame({c: [] for c in ("kind", "person_id", "source", "record_id", "detail")})
    reports = build_department_reports(std, entity_map, untyped)
    assert all(reports["民政局"].sheet(kind).frame.is_empty() for kind in ("no_head", "roster_conflict"))
    assert reports["公安局户政科"].sheet("duplicates").frame.height == 2


def _with_raw_cells(std: pl.DataFrame) -> pl.DataFrame:
    """The city with raw cells that differ from the standardized ones and a column no report reads."""
    return std.with_columns(
        name_raw=pl.lit("原:") + pl.col("name"),
        id_number_raw=pl.col("id_number").str.to_lowercase() + pl.lit(" "),
        hukou_address_raw=pl.lit("原址"),
        relation_to_head_raw=pl.lit("户主"),
        file=pl.lit("extract.csv"),
    )


def test_report_columns_are_all_the_reports_read() -> None:
    std, entity_map = city()
    std = _with_raw_cells(std)
    findings = find_household_findings(std, entity_map, as_of=AS_OF)
    full = build_department_reports(std, entity_map, findings)
    narrow_std = std.select([c for c in REPORT_COLUMNS if c in std.columns])
    assert "file" not in narrow_std.columns and "name_raw" in narrow_std.columns
    narrow = build_department_reports(narrow_std, entity_map, findings)
    assert list(full) == list(narrow)
    for department, report in full.items():
        assert [s.key for s in report.sheets] == [s.key for s in narrow[department].sheets]
        for sheet, other in zip(report.sheets, narrow[department].sheets, strict=True):
            assert sheet.frame.equals(other.frame), (department, sheet.key)
    # The raw cell is what the department's own sheet shows.
    police = full["公安局户政科"].sheet("duplicates").frame
    assert police.get_column("姓名").str.starts_with("原:").all()


def test_iter_department_reports_yields_the_reports_one_by_one_in_order(reports) -> None:
    std, entity_map = city()
    findings = find_household_findings(std, entity_map, as_of=AS_OF)
    streamed = iter_department_reports(std, entity_map, findings)
    assert not isinstance(streamed, dict)
    first = next(streamed)
    assert first.department == next(iter(reports))
    rest = list(streamed)
    assert [r.department for r in [first, *rest]] == list(reports)
    for report in [first, *rest]:
        for sheet, other in zip(report.sheets, reports[report.department].sheets, strict=True):
            assert sheet.frame.equals(other.frame)


def _wider_city() -> tuple[pl.DataFrame, pl.DataFrame]:
    """The city and: a second 民政局 source whose 李秀英 has another birth date, a source with
    no department (its own name stands in), and a police record the entity map lacks."""
    std, entity_map = city()
    std = _with_raw_cells(std).drop("file")
    extra = pl.DataFrame(
        [
            ("civil_extra", "民政局", "roster", "x1", "李秀英", "李秀英", "han", ID_B, date(1982, 5, 3), "F", "PB"),
            ("schools", None, "generic", "s1", "赵六", "赵六", "han", None, None, "M", "PC"),
            ("schools", None, "generic", "s2", "赵六", "赵 六", "han", None, None, "M", "PC"),
            ("police_hukou", "公安局户政科", "hukou", "h9", "孙七", "孙七", "han", None, None, None, None),
        ],
        schema=["source", "department", "source_kind", "record_id", "name", "name_raw", "name_script",
                "id_number", "birth_date", "sex", "person_id"],
        orient="row",
    ).with_columns(record_key=pl.int_range(std.height, std.height + 4, dtype=pl.UInt32))
    wider = pl.concat([std, extra.drop("person_id")], how="diagonal_relaxed")
    mapped = extra.filter(pl.col("person_id").is_not_null()).select("record_key", "source", "record_id", "person_id")
    return wider, pl.concat([entity_map, mapped], how="vertical_relaxed")


def _quarantine_rows(rows: list[tuple]) -> pl.DataFrame:
    """The quarantine table from (source, file, row_number, record_id as published, own record
    id, reason_code) rows; each reason is its code and 的原因."""
    return pl.DataFrame(
        rows,
        schema={"source": pl.String, "file": pl.String, "row_number": pl.Int32, "record_id": pl.String,
                "own_record_id": pl.String, "reason_code": pl.String},
        orient="row",
    ).with_columns(reason=pl.col("reason_code") + " 的原因")


def _run_tables(std: pl.DataFrame, entity_map: pl.DataFrame, findings: pl.DataFrame, quarantine: pl.DataFrame,
                raw_apart: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    """The run's tables the reports read, in a new DuckDB; ``raw_apart``: these raw columns go
    to a table of their own (``raw_cells``: record_key, source and them) instead."""
    con = duckdb.connect()
    con.register("std_frame", std)
    kept = f" exclude ({', '.join(raw_apart)})" if raw_apart else ""
    con.execute(f"create table int_persons_standardized as select *{kept} from std_frame")
    if raw_apart:
        con.execute(f"create table raw_cells as select record_key, source, {', '.join(raw_apart)} from std_frame")
    for table, frame in (("entity_map", entity_map), ("household_findings", findings), ("quarantine", quarantine)):
        con.register(f"{table}_frame", frame)
        con.execute(f"create table {table} as select * from {table}_frame")
    return con


def test_duckdb_inputs_with_the_raw_cells_kept_apart_give_the_same_reports() -> None:
    """As in the flow: the standardized table without its raw cells, which a view over the
    raw rows gives by record_key. The clerk's own spellings in the reports are the same."""
    from linkage.fields import RAW_VALUES_VIEW
    from linkage.reports import iter_reports, report_inputs_from_duckdb

    std, entity_map = _wider_city()
    findings = find_household_findings(std, entity_map, as_of=AS_OF)
    quarantine = _quarantine_rows([]).with_columns(file_row=pl.col("row_number") + 1)
    expected = build_department_reports(std, entity_map, findings, quarantine)
    raw_columns = [c for c in std.columns if c.endswith("_raw")]
    assert "name_raw" in raw_columns
    con = _run_tables(std, entity_map, findings, quarantine, raw_apart=raw_columns)
    con.execute(f"create view {RAW_VALUES_VIEW} as select * from raw_cells")
    got = {r.department: r for r in iter_reports(report_inputs_from_duckdb(con))}
    assert list(got) == list(expected)
    shown = 0
    for department, report in expected.items():
        for sheet in report.sheets:
            assert got[department].sheet(sheet.key).frame.equals(sheet.frame), (department, sheet.key)
            shown += sheet.frame.height
    assert shown


def test_duckdb_inputs_give_the_same_reports() -> None:
    """report_inputs_from_duckdb reduces the tables in SQL; the reports must not change."""
    from linkage.reports import iter_reports, report_inputs_from_duckdb

    std, entity_map = _wider_city()
    findings = find_household_findings(std, entity_map, as_of=AS_OF)
    # Rejected rows, out of order, with the row as the file shows it (file_row) and a column
    # the reports do not read (reason_code); one of a source whose every row was rejected
    # (civil_lost, 民政局's by the sources file).
    quarantine = _quarantine_rows(
        [
            ("civil_lost", "lost.csv", 2, "L2", "L2", "missing_name"),
            ("police_hukou", "hukou.csv", 9, None, None, "missing_record_id"),
            ("police_hukou", "hukou.csv", 3, "330602********0017", ID_A, "record_id_is_id_number"),
        ]
    ).with_columns(file_row=pl.col("row_number") + 1)
    named = {"civil_lost": "民政局", "police_hukou": "公安局户政科"}
    expected = build_department_reports(std, entity_map, findings, quarantine, named)
    con = _run_tables(std, entity_map, findings, quarantine)
    got = list(iter_reports(report_inputs_from_duckdb(con, source_departments=named)))
    assert [r.department for r in got] == list(expected) == ["公安局户政科", "流动人口服务中心", "民政局", "schools"]
    assert expected["民政局"].sources == ("civil_roster", "civil_extra", "civil_lost")
    assert expected["民政局"].sheet("rejected").frame.get_column("记录编号").to_list() == ["L2"]
    # The own value in full, where the table keeps it; by file and row.
    assert expected["公安局户政科"].sheet("rejected").frame.rows() == [
        ("police_hukou", "hukou.csv", None, 4, 3, ID_A, "record_id_is_id_number 的原因"),
        ("police_hukou", "hukou.csv", None, 10, 9, None, "missing_record_id 的原因"),
    ]
    # the police summary counts the record without a person: 4 records, 3 persons (one unknown)
    assert expected["公安局户政科"].sheet("summary").frame.row(0)[1:3] == (4, 3)
    assert expected["schools"].sheet("duplicates").frame.height == 2
    assert expected["民政局"].sheet("conflicts").frame.height > 0
    for report in got:
        want = expected[report.department]
        assert report.sources == want.sources
        assert [s.key for s in report.sheets] == [s.key for s in want.sheets]
        for sheet, other in zip(report.sheets, want.sheets, strict=True):
            assert sheet.frame.equals(other.frame), (report.department, sheet.key)
            assert sheet.frame.schema == other.frame.schema, (report.department, sheet.key)


def test_difference_hints_are_describe_difference_row_by_row() -> None:
    """The vectorised hints against the one-pair function, on random texts and dates."""
    import random
    from datetime import timedelta

    from linkage.reports import difference_hints

    rng = random.Random(11)
    alphabet = ["3", "0", "6", "X", "张", "欧", "𠮷", "A", " "]

    def text() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 3, 15, 18, 18, 18])))

    pairs = []
    while len(pairs) < 400:
        own = text()
        # mostly same-length variants with a few characters changed, as real conflicts are
        other = "".join(c if rng.random() < 0.7 else rng.choice(alphabet) for c in own) if rng.random() < 0.8 else text()
        if own != other:
            pairs.append((own, other))
    for field in ("id_number", "name"):
        frame = pl.DataFrame(pairs, schema={field: pl.String, f"{field}_other": pl.String}, orient="row")
        expected = [describe_difference(field, a, b) for a, b in pairs]
        assert difference_hints(frame, field).to_list() == expected
    days = [(date(1980, 1, 1) + timedelta(rng.randint(0, 20000)), date(1980, 1, 1) + timedelta(rng.randint(0, 20000)))
            for _ in range(50)]
    frame = pl.DataFrame(days, schema={"birth_date": pl.Date, "birth_date_other": pl.Date}, orient="row")
    assert difference_hints(frame, "birth_date").to_list() == [describe_difference("birth_date", a, b) for a, b in days]
    sexes = pl.DataFrame({"sex": ["M", "F"], "sex_other": ["F", "M"]})
    assert difference_hints(sexes, "sex").to_list() == ["性别不同", "性别不同"]
    assert difference_hints(frame.head(0), "birth_date").to_list() == []


def test_masks_as_expressions_are_the_households_masks() -> None:
    from linkage.households import mask_id_number, mask_name
    from linkage.reports import masked_id_number, masked_name

    values = [None, "", "张", "张三", "欧阳娜娜", "ZHANG WEI", "𠮷", "𠮷野家", "3", "33", "330", "3306021990",
              "33060219900", ID_A, "E12345678", "33060219900101123X", "12345678901234567890"]
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    assert frame.select(masked_name(pl.col("v"))).to_series().to_list() == [mask_name(v) for v in values]
    assert frame.select(masked_id_number(pl.col("v"))).to_series().to_list() == [mask_id_number(v) for v in values]


def test_a_hint_tells_nothing_of_the_characters_the_mask_hides() -> None:
    """Two other values that a clerk sees alike (the same masked value) get the same hint.

    Otherwise the clerk's own value, the mask and the hint together gave the other
    department's value back: "第4-5位不同" said every hidden digit was the clerk's own.
    """
    import random

    from linkage.reports import difference_hints, masked_id_number, masked_name

    rng = random.Random(7)
    digits, hanzi = "0123456789X", "王玉豪林浩张李欧阳娜"
    masks = {"id_number": masked_id_number, "name": masked_name}
    for field, alphabet, lengths in (("id_number", digits, (5, 15, 18)), ("name", hanzi, (2, 3, 4))):
        triples = []
        while len(triples) < 300:
            length = rng.choice(lengths)
            own = "".join(rng.choice(alphabet) for _ in range(length))
            # the other value and a variant of it that differs only where the mask hides
            other = "".join(c if rng.random() < 0.8 else rng.choice(alphabet) for c in own)
            variant = pl.DataFrame({"v": [other]}).select(masks[field](pl.col("v"))).item()
            variant = "".join(o if m != "*" else rng.choice(alphabet) for o, m in zip(other, variant, strict=False))
            seen = pl.DataFrame({"a": [other, variant]}).select(masks[field](pl.col("a"))).to_series().to_list()
            if own not in (other, variant) and seen[0] == seen[1]:
                triples.append((own, other, variant))
        for own, other, variant in triples:
            assert describe_difference(field, own, other) == describe_difference(field, own, variant), (own, other, variant)
        frame = pl.DataFrame(
            [(own, other) for own, other, _ in triples] + [(own, variant) for own, _, variant in triples],
            schema={field: pl.String, f"{field}_other": pl.String},
            orient="row",
        )
        hints = difference_hints(frame, field).to_list()
        assert hints[: len(triples)] == hints[len(triples) :]


def test_rejected_rows_reach_their_department_only() -> None:
    std, entity_map = city()
    findings = find_household_findings(std, entity_map, as_of=AS_OF)
    quarantine = _quarantine_rows(
        [
            ("residence_reg", "b.csv", 1, "R9", "R9", "no_name_or_id"),
            ("police_hukou", "h.csv", 7, None, None, "missing_record_id"),
            ("residence_reg", "a.csv", 4, "R4", "R4", "wrong_column_count"),
            ("schools", "s.csv", 2, "S2", "S2", "missing_name"),  # a source nothing places
        ]
    )
    reports = build_department_reports(std, entity_map, findings, quarantine)
    rejected = {d: r.sheet("rejected").frame for d, r in reports.items()}
    assert rejected["流动人口服务中心"].select("文件", "数据行号（不含表头）").rows() == [("a.csv", 4), ("b.csv", 1)]
    assert rejected["公安局户政科"].get_column("原因").to_list() == ["missing_record_id 的原因"]
    assert rejected["民政局"].is_empty() and rejected["民政局"].columns == rejected["公安局户政科"].columns
    # A source the records do not place stands for a department of its own, as a record without one does.
    assert reports["schools"].sources == ("schools",) and rejected["schools"].height == 1
    summary = {r["项目"]: r for r in reports["流动人口服务中心"].sheet("summary").frame.iter_rows(named=True)}
    assert (summary["未入库记录"]["记录数"], summary["未入库记录"]["人数"]) == (2, None)
