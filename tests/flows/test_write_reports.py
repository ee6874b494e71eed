"""The written reports, opened as a clerk would: openpyxl for the workbook, csv for the CSVs.

Two departments: the police register (王建国, whose name cell holds a formula-like
"=王建国" typed by someone, and 李秀英 registered twice) and the residence registration
office, which holds 王建国 as "+王建图" with another id number.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from flows.reports import WORKBOOK_NAME, department_folder, escape_cell, write_department_reports
from linkage.households import find_household_findings
from linkage.reports import build_department_reports

ID_A = "330602198003010017"
ID_A_OTHER = "330602198003110015"
ID_B = "330602198205020029"


def city() -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = [
        (
            "police_hukou",
            "公安局户政科",
            "hukou",
            "h1",
            "PA",
            "=王建国",
            ID_A,
            date(1980, 3, 1),
            "H001",
            "head",
        ),
        (
            "police_hukou",
            "公安局户政科",
            "hukou",
            "h2",
            "PB",
            "李秀英",
            ID_B,
            date(1982, 5, 2),
            "H001",
            "spouse",
        ),
        (
            "police_hukou",
            "公安局户政科",
            "hukou",
            "h3",
            "PB",
            "李秀英",
            ID_B,
            date(1982, 5, 2),
            "-H001",
            "spouse",
        ),
        (
            "residence_reg",
            "流动人口服务中心",
            "residence",
            "@r1",
            "PA",
            "+王建图",
            ID_A_OTHER,
            date(1980, 3, 11),
            None,
            None,
        ),
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "source": pl.String,
            "department": pl.String,
            "source_kind": pl.String,
            "record_id": pl.String,
            "person_id": pl.String,
            "name": pl.String,
            "id_number": pl.String,
            "birth_date": pl.Date,
            "household_id": pl.String,
            "relation_to_head": pl.String,
        },
        orient="row",
    ).with_columns(hukou_township=pl.when(pl.col("source_kind") == "hukou").then(pl.lit("330602001")))
    return frame.drop("person_id"), frame.select("source", "record_id", "person_id")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    std, entity_map = city()
    findings = find_household_findings(std, entity_map, as_of=date(2026, 11, 23))
    reports = build_department_reports(std, entity_map, findings)
    out = tmp_path_factory.mktemp("reports")
    return out, write_department_reports(out, reports)


def test_one_folder_per_department_with_workbook_and_csvs(written) -> None:
    out, paths = written
    assert sorted(p.name for p in out.iterdir()) == ["公安局户政科", "流动人口服务中心"]
    police = out / "公安局户政科"
    assert (police / WORKBOOK_NAME) in paths
    assert sorted(p.name for p in police.glob("*.csv"))[:3] == [
        "01_summary.csv",
        "02_duplicates.csv",
        "03_conflicts.csv",
    ]
    assert len(list(police.glob("*.csv"))) == 12
    assert sorted(p.name for p in police.glob("*.csv"))[-1] == "12_rejected.csv"
    assert all(p.exists() for p in paths)


def test_workbook_layout(written) -> None:
    out, _ = written
    expected = [
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
    for department in ("公安局户政科", "流动人口服务中心"):
        workbook = openpyxl.load_workbook(out / department / WORKBOOK_NAME)
        assert workbook.sheetnames == expected
        for sheet in workbook.worksheets:
            assert sheet.freeze_panes == "A2"
            assert sheet.auto_filter.ref is not None and sheet.auto_filter.ref.startswith("A1:")
            headers = [c.value for c in sheet[1]]
            assert headers and all(isinstance(h, str) and h for h in headers)
            # every column given a width, wide enough for its Chinese header
            for cell in sheet[1]:
                assert sheet.column_dimensions[cell.column_letter].width >= 2 * len(cell.value)
    book = openpyxl.load_workbook(out / "公安局户政科" / WORKBOOK_NAME)
    conflicts = book["与其他部门不一致"]
    assert [c.value for c in conflicts[1]] == [
        "人员编号",
        "数据源",
        "记录编号",
        "不一致字段",
        "本部门值",
        "对方部门",
        "对方数据源",
        "对方值（已脱敏）",
        "差异位置",
        "与本部门一致的其他数据源数",
    ]
    duplicates = book["重复登记"]
    headers = [c.value for c in duplicates[1]]
    assert headers[:6] == ["重复组", "组内记录数", "组内不同的字段", "人员编号", "数据源", "记录编号"]
    # the id number stays text, all 18 digits
    ids = [row[headers.index("公民身份号码")] for row in duplicates.iter_rows(min_row=2, values_only=True)]
    assert ids == [ID_B, ID_B]


def test_other_departments_values_masked_in_the_workbook(written) -> None:
    out, _ = written
    book = openpyxl.load_workbook(out / "公安局户政科" / WORKBOOK_NAME)
    values = {
        str(c.value) for s in book.worksheets for row in s.iter_rows() for c in row if c.value is not None
    }
    assert ID_A_OTHER not in values and "+王建图" not in values and "'+王建图" not in values
    assert "330602********0015" in values
    assert "'+***" in values  # the other side's masked name, still escaped: it starts with +
    assert "@r1" not in values and "'@r1" not in values  # nor their record id


def test_formula_like_cells_are_escaped_text(written) -> None:
    out, _ = written
    book = openpyxl.load_workbook(out / "公安局户政科" / WORKBOOK_NAME)
    found = {}
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                if isinstance(cell.value, str) and cell.value[:1] in "=+-@":
                    pytest.fail(f"unescaped {cell.value!r} in {sheet.title}!{cell.coordinate}")
                if cell.value in ("'=王建国", "'-H001"):
                    found[cell.value] = cell.data_type
    assert found == {"'=王建国": "s", "'-H001": "s"}
    residence = openpyxl.load_workbook(out / "流动人口服务中心" / WORKBOOK_NAME)
    own = [c.value for row in residence["与其他部门不一致"].iter_rows(min_row=2) for c in row]
    assert "'@r1" in own and "'+王建图" in own


def test_csvs_are_utf8_with_bom_and_escaped(written) -> None:
    out, _ = written
    path = out / "公安局户政科" / "03_conflicts.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:3] == ["人员编号", "数据源", "记录编号"]
    own_values = {r[4] for r in rows[1:]}
    assert "'=王建国" in own_values
    assert all(not cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r)


def test_escape_cell_and_folder_names() -> None:
    assert escape_cell("=1+1") == "'=1+1"
    assert escape_cell("\t=cmd") == "'\t=cmd"
    assert escape_cell("王建国") == "王建国"
    assert escape_cell(-3) == -3
    assert department_folder("公安局/户政科") == "公安局_户政科"
    assert department_folder("民政局") == "民政局"


# ------------------------------------------------------------------ the fast writers
# The sheet XML and the CSVs are built column by column in polars; these check them byte
# for byte against what xlsxwriter's own write_row and Python's csv module write.

AWKWARD = [
    "王建国",
    "",
    None,
    "'=HYPERLINK(\"x\")",
    "a & b < c > d \"q\"",
    " leading space",
    "trailing space ",
    "\u3000全角空格",
    "不换行\xa0",
    "tab\tinside",
    "line\nbreak",
    "\rcarriage",
    "ctrl\x01\x1f char",
    "_x0041_ looks escaped",
    "_x004g_ does not",
    "non\ufffechar",
    "𠮷 outside the BMP",
    "x,y",
]


def awkward_frame() -> pl.DataFrame:
    n = len(AWKWARD)
    return pl.DataFrame(
        {
            "文本": AWKWARD,
            "计数": [i if i % 4 else None for i in range(n)],
            "空列": [None] * n,
            "负数": [-i for i in range(n)],
            "末列": ["x" if i % 3 == 0 else None for i in range(n)],
        },
        schema={"文本": pl.String, "计数": pl.Int64, "空列": pl.String, "负数": pl.Int32, "末列": pl.String},
    ).with_columns(
        # a row with no cell at all: xlsxwriter writes no <row> for it
        pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("文本", "计数", "负数", "末列")
    )


def _members(path: Path) -> dict[str, bytes]:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        # docProps/core.xml holds the time the workbook was made
        return {n: archive.read(n) for n in archive.namelist() if n != "docProps/core.xml"}


@pytest.mark.parametrize(
    "frames",
    [
        [awkward_frame()],
        [awkward_frame().head(0), awkward_frame()],  # an empty sheet before a full one
        [awkward_frame().select("计数", "负数")],  # numbers only
        [awkward_frame().filter(pl.col("文本").is_null())],  # rows without a single cell
    ],
)
def test_sheet_xml_is_what_xlsxwriter_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames) -> None:
    import flows.reports as reports_module
    from linkage.reports import DepartmentReport, ReportSheet

    report = DepartmentReport(
        "部门", ("src",), tuple(ReportSheet(f"s{i}", f"表{i}", frame) for i, frame in enumerate(frames))
    )
    assert all(reports_module._rows_as_xml(reports_module._escaped(f)) for f in frames)
    reports_module._write_workbook(tmp_path / "fast.xlsx", report)
    monkeypatch.setattr(reports_module, "_rows_as_xml", lambda frame: False)
    reports_module._write_workbook(tmp_path / "slow.xlsx", report)
    fast, slow = _members(tmp_path / "fast.xlsx"), _members(tmp_path / "slow.xlsx")
    assert fast.keys() == slow.keys()
    for name in slow:
        assert fast[name] == slow[name], name
    # and it opens, with the values as written
    sheet = openpyxl.load_workbook(tmp_path / "fast.xlsx")[f"表{len(frames) - 1}"]
    assert sheet.cell(1, 1).value == frames[-1].columns[0]


def test_sheets_xlsxwriter_must_write_itself() -> None:
    from flows.reports import _rows_as_xml

    assert not _rows_as_xml(pl.DataFrame({"a": ["<r><t>rich</t></r>"]}))
    assert not _rows_as_xml(pl.DataFrame({"a": ["长" * 20_000]}))
    assert not _rows_as_xml(pl.DataFrame({"a": [10**15]}))
    assert not _rows_as_xml(pl.DataFrame({"a": [1.5]}))
    assert _rows_as_xml(pl.DataFrame({"a": ["长" * 16_000], "b": [10**15 - 1]}))


def test_preserved_spaces_are_pythons() -> None:
    """xlsxwriter marks a text xml:space="preserve" when Python's \\s matches its first or
    last character; control characters are escaped before, so they never count."""
    import re

    from flows.reports import _XLSX_CONTROL, _XLSX_PRESERVE

    python = {chr(c) for c in range(0x110000) if re.match(r"\s", chr(c))} - set(_XLSX_CONTROL)
    candidates = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    ours = pl.Series(candidates).str.contains(_XLSX_PRESERVE)
    assert {c for c, hit in zip(candidates, ours, strict=True) if hit} == python


def test_csv_is_what_the_csv_module_writes(tmp_path: Path) -> None:
    import io

    from flows.reports import _csv_by_polars, _escaped, _write_csv

    frame = awkward_frame()
    assert _csv_by_polars(frame)
    _write_csv(tmp_path / "fast.csv", frame)
    expected = io.StringIO(newline="")
    writer = csv.writer(expected)
    writer.writerow(frame.columns)
    writer.writerows(["" if v is None else v for v in row] for row in _escaped(frame).iter_rows())
    assert (tmp_path / "fast.csv").read_bytes() == "\ufeff".encode() + expected.getvalue().encode()


def test_reports_written_in_threads_come_back_in_order(tmp_path: Path) -> None:
    from flows.reports import write_department_report

    std, entity_map = city()
    findings = find_household_findings(std, entity_map, as_of=date(2026, 11, 23))
    reports = list(build_department_reports(std, entity_map, findings).values())
    one_by_one = [p.relative_to(tmp_path / "a") for r in reports for p in write_department_report(tmp_path / "a", r)]
    threaded = write_department_reports(tmp_path / "b", iter(reports * 2))
    assert [p.relative_to(tmp_path / "b") for p in threaded] == one_by_one * 2
    for path in one_by_one:
        if path.suffix == ".csv":
            assert (tmp_path / "b" / path).read_bytes() == (tmp_path / "a" / path).read_bytes()


def test_a_failing_report_stops_the_writing(tmp_path: Path) -> None:
    std, entity_map = city()
    findings = find_household_findings(std, entity_map, as_of=date(2026, 11, 23))
    first = next(iter(build_department_reports(std, entity_map, findings).values()))

    def reports():
        yield first
        raise RuntimeError("building the second report failed")

    with pytest.raises(RuntimeError, match="second report"):
        write_department_reports(tmp_path, reports())


def test_workbook_is_deflated(written) -> None:
    import zipfile

    out, _ = written
    with zipfile.ZipFile(out / "公安局户政科" / WORKBOOK_NAME) as archive:
        assert archive.testzip() is None
        sheets = [i for i in archive.infolist() if i.filename.startswith("xl/worksheets/")]
        assert sheets and all(i.compress_type == zipfile.ZIP_DEFLATED for i in sheets)
        assert sum(i.compress_size for i in sheets) < sum(i.file_size for i in sheets)


def test_a_text_past_excels_cell_limit_is_cut_in_the_workbook_only(tmp_path: Path) -> None:
    from linkage.reports import DepartmentReport, ReportSheet

    long = "=" + "长" * 40_000
    frame = pl.DataFrame({"说明": [long, "短"], "数": [1, 2]})
    written = write_department_reports(tmp_path, [DepartmentReport("部门", ("s",), (ReportSheet("x", "表", frame),))])
    cell = openpyxl.load_workbook(tmp_path / "部门" / WORKBOOK_NAME)["表"]["A2"].value
    assert len(cell) == 32767 and cell.startswith("'=长")
    with (tmp_path / "部门" / "01_x.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[1][0] == "'" + long and len(written) == 2


def test_csv_rows_are_the_rows_the_manifest_would_count(tmp_path: Path) -> None:
    # publish hands csv_rows to the manifest instead of counting the CSVs again: on the city's
    # reports and on awkward sheets (line breaks inside cells, a row with no cell, a
    # one-column sheet of empty texts, an empty sheet) they must be what count_rows reads.
    from flows.manifest import count_rows
    from flows.reports import csv_rows, write_department_report
    from linkage.reports import DepartmentReport, ReportSheet

    std, entity_map = city()
    findings = find_household_findings(std, entity_map, as_of=date(2026, 11, 23))
    reports = list(build_department_reports(std, entity_map, findings).values())
    awkward = awkward_frame()
    reports.append(
        DepartmentReport(
            "怪/部门",
            ("src",),
            (
                ReportSheet("awkward", "怪", awkward),
                ReportSheet("one_column", "单列", pl.DataFrame({"值": ["", None, "a\nb", "=1"]})),
                ReportSheet("empty", "空", awkward.head(0)),
            ),
        )
    )
    known: dict[str, int] = {}
    written: list[Path] = []
    for report in reports:
        known.update(csv_rows(report))
        written += [p for p in write_department_report(tmp_path, report) if p.suffix == ".csv"]
    assert sorted(known) == sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert {path: count_rows(tmp_path / path) for path in known} == known
    assert known["怪_部门/01_awkward.csv"] == awkward.height
    assert sum(known.values()) > 50


# ------------------------------------------------------------------ the rejected rows
# Real extracts through ingest (flows.ingest.ingest_sources), then the reports as publish
# builds them (report_inputs_from_duckdb over the run's tables) and writes them.

EXTRACT_HEADER = "记录编号,姓名,公民身份号码"
ID_C = "330602199001021237"  # a valid identity number, used as a record id: rejected


def _rejected_city(tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    """Three departments' extracts ingested, their reports written; returns the reports
    folder and the quarantine table.

    公安局户政科 (police_hukou): row 1 accepted; 2 has a field too many and the record id
    "=1+1"; 3 has no record id; 4 names nobody (record id "-5"); 5's record id is an
    identity number. 流动人口服务中心 has two sources: residence_a (row 2 a field short)
    and residence_b, whose only row has no record id (so the source has no record at all).
    民政局 (civil_roster) has nothing rejected. 教育局 (schools) has one row, with no
    record id: a department without a single record.
    """
    import yaml


    extracts = {
        "hukou.csv": ["h1,王建国,330602198003010017", "=1+1,李秀英,330602198205020029,多余", ",张三,",
                      "-5,不详,", f"{ID_C},赵六,{ID_C}"],
        "residence_a.csv": ["r1,王建图,330602198003110015", "r2,孙七"],
        "residence_b.csv": [",周八,330602198205020029"],
        "roster.csv": ["c1,王建国,330602198003010017"],
        "schools.csv": [",吴九,"],
    }
    for name, rows in extracts.items():
        (tmp_path / name).write_text("\n".join([EXTRACT_HEADER, *rows]) + "\n", encoding="utf-8")
    columns = {"record_id": "记录编号", "name": "姓名", "id_number": "公民身份号码"}
    sources = [
        ("police_hukou", "公安局户政科", "hukou.csv"),
        ("residence_a", "流动人口服务中心", "residence_a.csv"),
        ("residence_b", "流动人口服务中心", "residence_b.csv"),
        ("civil_roster", "民政局", "roster.csv"),
        ("schools", "教育局", "schools.csv"),
    ]
    (tmp_path / "sources.yaml").write_text(
        yaml.safe_dump(
            {"sources": [{"name": n, "department": d, "path": p, "format": "csv", "columns": columns}
                         for n, d, p in sources]},
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    return _reports_of_sources_file(tmp_path)


def _reports_of_sources_file(tmp_path: Path) -> tuple[Path, pl.DataFrame]:
    """tmp_path/sources.yaml ingested and reported as publish does; the reports' folder and
    the quarantine table. The later stages' tables are as small as the reports allow: each
    record its own person, no finding."""
    import duckdb

    from flows.config import load_sources
    from flows.ingest import ingest_sources
    from linkage.reports import iter_reports, report_inputs_from_duckdb

    config = load_sources(tmp_path / "sources.yaml")
    con = duckdb.connect()
    ingest_sources(con, config, "test-run")
    con.execute("create table int_persons_standardized as select * from raw_records")
    con.execute("create table entity_map as select record_key, source, record_id, record_id as person_id from raw_records")
    con.execute(
        "create table household_findings (kind varchar, person_id varchar, source varchar, record_id varchar, detail varchar)"
    )
    named = {source.name: source.department for source in config.sources}
    out = tmp_path / "reports"
    write_department_reports(out, iter_reports(report_inputs_from_duckdb(con, source_departments=named)))
    return out, con.execute("select * from quarantine").pl()


@pytest.fixture(scope="module")
def rejected_city(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    return _rejected_city(tmp_path_factory.mktemp("rejected"))


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def _reason(quarantine: pl.DataFrame, source: str, row: int) -> str:
    return quarantine.filter((pl.col("source") == source) & (pl.col("row_number") == row)).item(0, "reason")


def test_each_department_lists_exactly_its_own_rejected_rows(rejected_city) -> None:
    out, quarantine = rejected_city
    header = ["数据源", "文件", "工作表", "文件中的行号", "数据行号（不含表头）", "记录编号", "原因"]
    police = _csv_rows(out / "公安局户政科" / "12_rejected.csv")
    assert police[0] == header
    # By file and row (the line the clerk opens, the header being line 1, and the data row);
    # the record id as the department wrote it (escaped), in full.
    assert police[1:] == [
        ["police_hukou", "hukou.csv", "", "3", "2", "'=1+1", _reason(quarantine, "police_hukou", 2)],
        ["police_hukou", "hukou.csv", "", "4", "3", "", _reason(quarantine, "police_hukou", 3)],
        ["police_hukou", "hukou.csv", "", "5", "4", "'-5", _reason(quarantine, "police_hukou", 4)],
        ["police_hukou", "hukou.csv", "", "6", "5", ID_C, _reason(quarantine, "police_hukou", 5)],
    ]
    assert quarantine.filter(pl.col("source") == "police_hukou").sort("row_number")["reason_code"].to_list() == [
        "wrong_column_count", "missing_record_id", "no_name_or_id", "record_id_is_id_number"
    ]
    # A department of two sources sees both, one of them with no accepted record at all.
    residence = _csv_rows(out / "流动人口服务中心" / "12_rejected.csv")
    assert [row[:6] for row in residence[1:]] == [
        ["residence_a", "residence_a.csv", "", "3", "2", "r2"],
        ["residence_b", "residence_b.csv", "", "2", "1", ""],
    ]
    assert residence[1][6] == _reason(quarantine, "residence_a", 2) and "列" in residence[1][6]
    # Nothing rejected: the sheet with its header alone, as every empty sheet.
    assert _csv_rows(out / "民政局" / "12_rejected.csv") == [header]
    # No department sees another's rejected rows.
    for department, own in (("公安局户政科", {"police_hukou"}), ("流动人口服务中心", {"residence_a", "residence_b"}),
                            ("民政局", set()), ("教育局", {"schools"})):
        book = openpyxl.load_workbook(out / department / WORKBOOK_NAME)
        assert book.sheetnames[-1] == "未入库记录"
        rows = list(book["未入库记录"].iter_rows(values_only=True))
        assert list(rows[0]) == header
        assert {row[0] for row in rows[1:]} == own


def test_the_rejected_sheet_is_escaped_and_shows_the_own_id_in_full(rejected_city) -> None:
    out, quarantine = rejected_city
    sheet = openpyxl.load_workbook(out / "公安局户政科" / WORKBOOK_NAME)["未入库记录"]
    record_ids = [row[5] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert record_ids == ["'=1+1", None, "'-5", ID_C]
    assert [row[2:5] for row in sheet.iter_rows(min_row=2, values_only=True)] == [
        (None, 3, 2), (None, 4, 3), (None, 5, 4), (None, 6, 5)
    ]
    # quarantine.parquet (published city-wide) keeps the identity number masked.
    published = quarantine.filter(pl.col("row_number") == 5).filter(pl.col("source") == "police_hukou")
    assert published.item(0, "record_id") == "330602********1237"


def test_a_rejected_row_of_a_workbook_split_over_sheets_names_its_sheet(tmp_path: Path) -> None:
    # A department's workbook split over two sheets (Sheet2 continues Sheet1, its columns in
    # another order): the row rejected on Sheet2 is its Excel row 3, the workbook's data row 4.
    # Before, the sheet showed 文件中的行号 3 with nothing to say which sheet: a clerk opening
    # the workbook lands on Sheet1, whose row 3 is another person's (王建国's neighbour 李秀英).
    import yaml


    book = openpyxl.Workbook()
    first = book.active
    first.title = "Sheet1"
    for row in (["记录编号", "姓名"], ["m1", "王建国"], ["m2", "李秀英"]):
        first.append(row)
    second = book.create_sheet("Sheet2")
    for row in (["姓名", "记录编号"], ["张三", "m3"], ["不详", "m4"]):
        second.append(row)
    book.save(tmp_path / "roster.xlsx")
    source = {"name": "civil_roster", "department": "民政局", "path": "roster.xlsx", "format": "xlsx",
              "columns": {"record_id": "记录编号", "name": "姓名"}}
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump({"sources": [source]}, allow_unicode=True), encoding="utf-8")
    out, quarantine = _reports_of_sources_file(tmp_path)
    rows = _csv_rows(out / "民政局" / "12_rejected.csv")
    assert [row[:6] for row in rows] == [
        ["数据源", "文件", "工作表", "文件中的行号", "数据行号（不含表头）", "记录编号"],
        ["civil_roster", "roster.xlsx", "Sheet2", "3", "4", "m4"],
    ]
    assert rows[1][6].startswith("工作表 Sheet2 第3行(数据第4行)")
    sheet = openpyxl.load_workbook(out / "民政局" / WORKBOOK_NAME)["未入库记录"]
    assert [row[2:5] for row in sheet.iter_rows(min_row=2, values_only=True)] == [("Sheet2", 3, 4)]
    # quarantine.parquet keeps the contract's columns (and reason_code, file_row): the sheet is the report's.
    assert "sheet" in quarantine.columns


def test_the_summary_counts_the_rejected_rows(rejected_city) -> None:
    out, _ = rejected_city
    for department, rows in (("公安局户政科", "4"), ("流动人口服务中心", "2"), ("民政局", "0"), ("教育局", "1")):
        summary = {row[0]: row for row in _csv_rows(out / department / "01_summary.csv")[1:]}
        # 记录数, 人数 (empty: a rejected row is nobody's), 说明, 其中他部门记录
        assert summary["未入库记录"][1:] == [rows, "", summary["未入库记录"][3], "0"]
        assert summary["未入库记录"][3].startswith("本部门报送文件中未能入库的行")
    # The department of two sources lists both, residence_b with no record among them.
    summary = _csv_rows(out / "流动人口服务中心" / "01_summary.csv")
    assert summary[1][:4] == ["本部门数据源", "1", "1", "residence_a、residence_b"]
    # A department without a single record still gets its report, its one row in it.
    assert _csv_rows(out / "教育局" / "01_summary.csv")[1][:4] == ["本部门数据源", "0", "0", "schools"]
    assert [row[:6] for row in _csv_rows(out / "教育局" / "12_rejected.csv")[1:]] == [
        ["schools", "schools.csv", "", "2", "1", ""]
    ]
