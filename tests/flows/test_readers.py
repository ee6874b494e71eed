"""Readers: the fast paths (whole-file decoding, whole-column timestamps, the workbook
preflight already parsed) give exactly what cell-by-cell and line-by-line reading gives."""

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook, load_workbook

from flows import readers
from flows.config import ConfigError, Source
from flows.ingest import read_extract
from flows.preflight import check_source_files
from flows.readers import cell_text, read_csv, read_jsonl, read_parquet, read_xlsx, xlsx_header

HEADER = "记录编号,姓名,公民身份号码"


@pytest.mark.parametrize(("encoding", "bom"), [("gb18030", False), ("utf-8", True), ("utf-8", False)])
def test_bad_bytes_cost_only_their_line(tmp_path: Path, encoding: str, bom: bool) -> None:
    good = [f"r{i},张伟{i},33060219900102123{i % 10}" for i in range(1, 7)]
    lines = [HEADER.encode(encoding)] + [line.encode(encoding) for line in good]
    # Row 3 carries a byte that is valid in neither encoding; row 5 a real U+FFFD, which
    # must survive as text (it is not a decoding error).
    lines[3] = b"r3,\xff\xfe\xff," + "张三".encode(encoding)
    lines[5] = "r5,王\ufffd五,330602199001021235".encode(encoding)
    path = tmp_path / "people.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + b"\r\n".join(lines) + b"\r\n")

    extract = read_csv(path, encoding, ["记录编号", "姓名"], "police", "记录编号")

    assert [r.row_number for r in extract.rejected] == [3]
    assert extract.rejected[0].reason_code == "undecodable_bytes"
    assert extract.frame["记录编号"].to_list() == ["r1", "r2", "r4", "r5", "r6"]
    assert extract.frame.filter(pl.col("记录编号") == "r5")["姓名"].item() == "王\ufffd五"
    assert extract.frame["row_number"].to_list() == [1, 2, 4, 5, 6]


def test_a_real_replacement_character_alone_is_not_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(f'{HEADER}\nr1,"王\ufffd五",330602199001021235\n'.encode("gb18030"))
    extract = read_csv(path, "gb18030", ["记录编号", "姓名"], "police", "记录编号")
    assert extract.rejected == []
    assert extract.frame["姓名"].to_list() == ["王\ufffd五"]  # quoted: read by the csv module


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_parquet_timestamps_match_cell_text(tmp_path: Path, unit: str) -> None:
    stamps = [
        dt.datetime(2026, 11, 23, 0, 0),
        dt.datetime(2026, 11, 23, 8, 30, 5),
        dt.datetime(1999, 1, 2, 23, 59, 59, 123000 if unit != "s" else 0),
        dt.datetime(2001, 2, 3, 4, 5, 6, 7 if unit == "us" else 0),
        None,
    ]
    table = pa.table({
        "记录编号": [f"r{i}" for i in range(len(stamps))],
        "更新时间": pa.array(stamps, type=pa.timestamp(unit)),
    })
    path = tmp_path / "social.parquet"
    pq.write_table(table, path)

    extract = read_parquet(path, ["记录编号", "更新时间"], "social")

    expected = [cell_text(v) for v in table.column("更新时间").to_pylist()]
    assert extract.frame["更新时间"].to_list() == expected
    assert expected[:2] == ["2026-11-23", "2026-11-23 08:30:05"]


def test_parquet_zoned_and_far_timestamps_take_the_cell_path(tmp_path: Path) -> None:
    zoned = pa.array([dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)], type=pa.timestamp("us", tz="UTC"))
    far = pa.array([dt.datetime(999, 1, 1, 8)], type=pa.timestamp("us"))
    table = pa.table({"记录编号": ["r1"], "zoned": zoned, "far": far})
    path = tmp_path / "odd.parquet"
    pq.write_table(table, path)
    extract = read_parquet(path, ["记录编号"], "social")
    assert extract.frame["zoned"].to_list() == ["2026-01-01 16:00:00"]  # Beijing time
    assert extract.frame["far"].to_list() == ["0999-01-01 08:00:00"]


def _workbook(path: Path, names: list[str]) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["记录编号", "姓名", "出生日期"])
    for i, name in enumerate(names, start=1):
        sheet.append([f"r{i}", name, dt.datetime(1990, 1, i)])
    book.save(path)


def test_workbook_parsed_for_its_header_is_read_once_and_only_if_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "residence.xlsx"
    _workbook(path, ["张伟", "李娜"])
    assert xlsx_header(path, keep_open=True) == ["记录编号", "姓名", "出生日期"]
    assert len(readers._opened_sheet) == 1
    first = read_xlsx(path, ["姓名"], "residence")
    assert readers._opened_sheet == {}  # handed over, not kept
    assert first.frame["姓名"].to_list() == ["张伟", "李娜"]
    assert first.frame["出生日期"].to_list() == ["1990-01-01", "1990-01-02"]

    # Kept after preflight, then the clerk saves a new version before the read: the read
    # sees the new file, not the sheet parsed earlier.
    xlsx_header(path, keep_open=True)
    _workbook(path, ["王芳", "刘洋", "陈静"])
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = read_xlsx(path, ["姓名"], "residence")
    assert second.frame["姓名"].to_list() == ["王芳", "刘洋", "陈静"]


def test_header_check_without_a_read_keeps_nothing(tmp_path: Path) -> None:
    readers._opened_sheet.clear()
    path = tmp_path / "residence.xlsx"
    _workbook(path, ["张伟"])
    xlsx_header(path)
    assert readers._opened_sheet == {}


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8"])
def test_bad_bytes_in_a_quoted_file_cost_only_their_record(tmp_path: Path, encoding: str) -> None:
    # A file with one undecodable byte still has its quoted fields: a comma or a line break
    # inside quotes is part of the value, not a new field or a new row.
    rows = [
        HEADER + ",户籍地址",
        'r1,张伟,330602199001021231,"绍兴市越城区,北海街道"',
        "r2,李\udcff四,330602199001021232,绍兴市",
        'r3,王五,330602199001021233,"绍兴市\n柯桥区"',
        'r4,"赵六",330602199001021234,绍兴市',
    ]
    text = "\n".join(rows) + "\n"
    path = tmp_path / "people.csv"
    path.write_bytes(text.encode(encoding, errors="surrogateescape"))

    extract = read_csv(path, encoding, ["记录编号", "姓名"], "police", "记录编号")

    assert extract.rows_in == 4
    assert [(r.row_number, r.reason_code, r.record_id) for r in extract.rejected] == [
        (2, "undecodable_bytes", "r2")
    ]
    assert extract.frame.select("记录编号", "姓名", "户籍地址", "row_number").rows() == [
        ("r1", "张伟", "绍兴市越城区,北海街道", 1),
        ("r3", "王五", "绍兴市\n柯桥区", 3),
        ("r4", "赵六", "绍兴市", 4),
    ]


def test_an_undecodable_row_keeps_its_record_id_where_it_decodes(tmp_path: Path) -> None:
    lines = [
        HEADER.encode("gb18030"),
        "r1,张伟,330602199001021231".encode("gb18030"),
        b"r2,\xff\xfe," + "330602199001021232".encode("gb18030"),
        b"\xffr3,x,330602199001021233",
    ]
    path = tmp_path / "people.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")

    extract = read_csv(path, "gb18030", ["记录编号", "姓名"], "police", "记录编号")

    assert [(r.row_number, r.reason_code, r.record_id) for r in extract.rejected] == [
        (2, "undecodable_bytes", "r2"),
        (3, "undecodable_bytes", None),
    ]
    assert extract.frame["记录编号"].to_list() == ["r1"]
# ---------------------------------------------------------------- bad files found in review

PEOPLE = "编号,姓名,身份证号\n"


def _source(path: Path, fmt: str, encoding: str = "utf-8", **columns: str) -> Source:
    mapping = {"record_id": ("编号",), "name": ("姓名",), **{k: (v,) for k, v in columns.items()}}
    return Source(name="s", department="d", kind="generic", path=path.name, format=fmt, encoding=encoding,
                  columns=mapping, files=(path,))


@pytest.mark.parametrize("quoted", [False, True])
def test_repeated_and_blank_names_of_unmapped_csv_columns_are_read(tmp_path: Path, quoted: bool) -> None:
    # Exports often end every line in a comma (a blank last column) or carry two 备注 columns.
    path = tmp_path / "people.csv"
    first = '"r1"' if quoted else "r1"
    path.write_text(f"编号,姓名,,备注,备注,\n{first},张伟,x,a,b,\nr2,李娜,,,,\n", encoding="utf-8")
    extract = read_csv(path, "utf-8", ["编号", "姓名"], "s", "编号")
    assert extract.frame.select("编号", "姓名").rows() == [("r1", "张伟"), ("r2", "李娜")]
    assert len(set(extract.header)) == len(extract.header) == 6
    assert extract.rejected == []


def test_repeated_and_blank_names_of_unmapped_xlsx_and_parquet_columns_are_read(tmp_path: Path) -> None:
    book = Workbook()
    book.active.append(["编号", "姓名", None, "备注", "备注", "x"])
    book.active.append(["r1", "张伟", "a", "b", "c", "d"])
    book.save(tmp_path / "people.xlsx")
    assert read_xlsx(tmp_path / "people.xlsx", ["编号", "姓名"], "s").frame["姓名"].to_list() == ["张伟"]

    table = pa.Table.from_arrays([pa.array(["r1"]), pa.array(["张伟"]), pa.array(["a"]), pa.array(["b"])],
                                 names=["编号", "姓名", "备注", "备注"])
    pq.write_table(table, tmp_path / "people.parquet")
    extract = read_parquet(tmp_path / "people.parquet", ["编号", "姓名"], "s")
    assert extract.frame.select("编号", "姓名").rows() == [("r1", "张伟")]


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_a_mapped_column_named_twice_is_one_line_naming_it(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"people.{fmt}"
    header, row = ["编号", "姓名", "姓名"], ["r1", "张伟", "张三"]
    if fmt == "csv":
        path.write_text(",".join(header) + "\n" + ",".join(row) + "\n", encoding="utf-8")
    elif fmt == "xlsx":
        book = Workbook()
        book.active.append(header)
        book.active.append(row)
        book.save(path)
    else:
        pq.write_table(pa.Table.from_arrays([pa.array([v]) for v in row], names=header), path)
    with pytest.raises(ConfigError) as preflight_error:
        check_source_files(_source(path, fmt))
    with pytest.raises(ConfigError) as read_error:
        read_extract(_source(path, fmt), path)
    for error in (preflight_error, read_error):
        message = str(error.value)
        assert "\n" not in message and "people." in message and "'姓名'" in message and "2 times" in message


def test_a_quote_that_never_closes_costs_only_its_line(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(PEOPLE + 'r1,"张伟,330602199001021237\nr2,李娜,x\nr3,王芳,y\n', encoding="utf-8")
    extract = read_csv(path, "utf-8", ["编号", "姓名"], "s", "编号")
    assert extract.frame.select("编号", "row_number").rows() == [("r2", 2), ("r3", 3)]
    assert [(r.row_number, r.record_id, r.reason_code) for r in extract.rejected] == [(1, "r1", "wrong_column_count")]
    assert "引号" in extract.rejected[0].reason and extract.rows_in == 3


def test_a_quote_that_never_closes_in_a_large_file_costs_only_its_line(tmp_path: Path) -> None:
    # Past 128 KB the csv module gives up on the field ("field larger than field limit").
    rows = "".join(f"r{i},张伟{'x' * 30},330602199001021237\n" for i in range(2, 5002))
    path = tmp_path / "people.csv"
    path.write_text(PEOPLE + 'r1,"张伟,330602199001021237\n' + rows, encoding="utf-8")
    extract = read_csv(path, "utf-8", ["编号", "姓名"], "s", "编号")
    assert [r.row_number for r in extract.rejected] == [1]
    assert extract.frame.height == 5000 and extract.frame["row_number"].to_list()[:2] == [2, 3]


def test_one_bad_byte_in_a_quoted_csv_costs_only_its_row(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    good = PEOPLE + '"r1","张伟",330602199001021237\n"r2","赵,六",330602199001021237\n'
    path.write_bytes(good.encode("utf-8") + b'r3,\xff\xfe,x\n' + "r4,王芳,y\n".encode())
    extract = read_csv(path, "utf-8", ["编号", "姓名"], "s", "编号")
    # Quotes still read as quotes: the record ids are the department's, not '"r1"'.
    assert extract.frame.select("编号", "姓名", "row_number").rows() == [
        ("r1", "张伟", 1), ("r2", "赵,六", 2), ("r4", "王芳", 4)]
    assert [(r.row_number, r.reason_code) for r in extract.rejected] == [(3, "undecodable_bytes")]


def test_a_csv_whose_lines_end_in_cr_alone_is_read(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes((PEOPLE + "r1,张伟,x\nr2,李娜,y\n").replace("\n", "\r").encode("utf-8"))
    check_source_files(_source(path, "csv"))
    extract = read_csv(path, "utf-8", ["编号", "姓名"], "s", "编号")
    assert extract.frame.select("编号", "姓名").rows() == [("r1", "张伟"), ("r2", "李娜")]


@pytest.mark.parametrize(("written", "declared"), [("gbk", "utf-8"), ("utf-8", "gb18030")])
@pytest.mark.parametrize("quoted", [False, True])
def test_a_csv_in_another_encoding_than_declared_is_a_bad_file(
    tmp_path: Path, written: str, declared: str, quoted: bool
) -> None:
    # An ASCII header (xsbh, xm: pinyin initials) passes the header check in any encoding.
    quote = '"' if quoted else ""
    rows = [f"{quote}x{i}{quote},张伟{i},浙江省绍兴市越城区" for i in range(5)]
    path = tmp_path / "schools.csv"
    path.write_bytes(("xsbh,xm,jzdz\n" + "\n".join(rows) + "\n").encode(written))
    check_source_files(_source(path, "csv", declared, record_id="xsbh", name="xm"))  # the header is fine
    with pytest.raises(ConfigError, match=rf"schools\.csv: 5 of its 5 lines .* not valid {declared}"):
        read_csv(path, declared, ["xsbh", "xm"], "s", "xsbh")


def test_parquet_text_stored_as_binary_is_read_as_text(tmp_path: Path) -> None:
    table = pa.table({
        "编号": ["r1", "r2", "r3"],
        "姓名": pa.array(["张伟".encode(), b"\xff\xfe", None], type=pa.binary()),
    })
    pq.write_table(table, tmp_path / "social.parquet")
    extract = read_parquet(tmp_path / "social.parquet", ["编号", "姓名"], "s")
    assert extract.frame.select("编号", "姓名").rows() == [("r1", "张伟"), ("r3", None)]
    assert [(r.row_number, r.reason_code) for r in extract.rejected] == [(2, "undecodable_bytes")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        ('{"id": "1", "name": "张伟"}\n'.encode("gb18030") * 3, "none of its 3 lines is valid utf-8"),
        (b"not json\n[1, 2]\n", "none of its 2 lines is a JSON object"),
    ],
)
def test_a_jsonl_file_with_no_record_says_why(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "roster.jsonl"
    path.write_bytes(content)
    source = _source(path, "jsonl")
    with pytest.raises(ConfigError, match=message):
        check_source_files(source)
    with pytest.raises(ConfigError, match=message):
        read_jsonl(path, "utf-8", ["编号", "姓名"], "s", "编号")


def _sheets(path: Path, sheets: dict[str, list[list]]) -> None:
    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)


def test_an_export_split_over_sheets_is_read_whole_in_sheet_order(tmp_path: Path) -> None:
    # Excel's row limit makes a large export run on over Sheet2, Sheet3 …; a 说明 sheet of a
    # few lines of text is no data. Before, only the first sheet was read: r3-r5 were lost.
    path = tmp_path / "people.xlsx"
    _sheets(path, {
        "Sheet1": [["编号", "姓名", "出生日期"], ["r1", "张伟", dt.datetime(1990, 1, 2)], ["r2", "李娜", None]],
        "说明": [["本表由社区填报"], ["出生日期为公历", "2026年"]],
        "Sheet2": [[None], ["编号", "姓名", "出生日期"], ["r3", "王芳", None], [None, None, None], ["r4", "刘洋", None]],
        # The same columns in another order, and one more: read by name.
        "Sheet3": [["姓名", "备注", "编号"], ["陈静", "x", "r5"]],
        "空白": [],
    })
    source = _source(path, "xlsx")
    check_source_files(source)
    extract = read_extract(source, path)
    assert extract.frame.select("编号", "姓名", "row_number").rows() == [
        ("r1", "张伟", 1), ("r2", "李娜", 2), ("r3", "王芳", 3), ("r4", "刘洋", 4), ("r5", "陈静", 5),
    ]
    assert extract.frame["出生日期"].to_list() == ["1990-01-02", None, None, None, None]
    assert extract.sheets == [("Sheet1", 1, 2), ("Sheet2", 3, 4), ("Sheet3", 5, 5)]
    readers.check_xlsx_sheets(path, ["编号", "姓名"], "s")  # nothing to refuse


def test_a_single_sheet_workbook_names_no_sheet(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    _sheets(path, {"Sheet1": [["编号", "姓名"], ["r1", "张伟"]], "说明": [["填表说明"]]})
    assert read_xlsx(path, ["编号", "姓名"], "s").sheets == []


def test_the_workbook_preflight_opened_is_not_opened_again_for_later_sheets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import python_calamine

    path = tmp_path / "people.xlsx"
    _sheets(path, {"Sheet1": [["编号", "姓名"], ["r1", "张伟"]], "Sheet2": [["编号", "姓名"], ["r2", "李娜"]]})
    opened: list[str] = []
    real = python_calamine.CalamineWorkbook

    class Counting:
        @staticmethod
        def from_path(name):
            opened.append(name)
            return real.from_path(name)

    monkeypatch.setattr(python_calamine, "CalamineWorkbook", Counting)
    readers._opened_sheet.clear()
    xlsx_header(path, keep_open=True)
    readers.check_xlsx_sheets(path, ["编号", "姓名"], "s")
    assert read_xlsx(path, ["编号", "姓名"], "s").frame["编号"].to_list() == ["r1", "r2"]
    assert len(opened) == 1 and readers._opened_sheet == {}


@pytest.mark.parametrize(
    ("later", "expected"),
    [
        # Continued without repeating the header: which column is which cannot be told.
        ([["r3", "王芳", "1990-01-02"], ["r4", "刘洋", "1991-02-03"]], r"sheet 'Sheet2' holds data \(row 1 has 3"),
        # A header that has one mapped column but names the other differently.
        ([["编号", "名字"], ["r3", "王芳"]], r"sheet 'Sheet2' has the mapped column '编号' but not '姓名'"),
        # Too long for a notes sheet: a list of 120 names is data.
        ([[f"王{i}"] for i in range(120)], r"sheet 'Sheet2' holds data \(row 101 has 1"),
    ],
)
def test_a_later_sheet_with_data_that_does_not_continue_the_first_stops_the_night(
    tmp_path: Path, later: list[list], expected: str
) -> None:
    path = tmp_path / "people.xlsx"
    _sheets(path, {"Sheet1": [["编号", "姓名", "出生日期"], ["r1", "张伟", None]], "Sheet2": later})
    for check in (lambda: read_extract(_source(path, "xlsx"), path),
                  lambda: readers.check_xlsx_sheets(path, ["编号", "姓名"], "s")):
        with pytest.raises(ConfigError, match=expected) as error:
            check()
        message = str(error.value)
        assert "\n" not in message and message.startswith(str(path))


def test_a_notes_sheet_beside_a_narrow_export_may_not_hold_a_row_like_a_record(tmp_path: Path) -> None:
    # Two columns: a row of two text cells on a later sheet could be a record.
    path = tmp_path / "people.xlsx"
    _sheets(path, {"Sheet1": [["编号", "姓名"], ["r1", "张伟"]], "Sheet2": [["r2", "李娜"]]})
    with pytest.raises(ConfigError, match="sheet 'Sheet2' holds data"):
        read_xlsx(path, ["编号", "姓名"], "s")


def test_data_after_a_notes_sheet_put_first_is_read(tmp_path: Path) -> None:
    # A clerk's workbook that opens on its 填表说明, the export on the second sheet below a
    # blank row, running on over a third. Before, the night stopped:
    # "column '编号' ... is not in the extract; it has: 本表为居住登记导出".
    path = tmp_path / "people.xlsx"
    _sheets(path, {
        "填表说明": [["本表为居住登记导出，2026年12月"], [], ["出生日期填 yyyy-mm-dd"]],
        "数据": [[None], ["编号", "姓名", "出生日期"], ["r1", "张伟", "1990-01-02"], [None, None, None],
                 ["r2", "李娜", None]],
        "续表": [["编号", "姓名", "出生日期"], ["r3", "王芳", None]],
    })  # fmt: skip
    source = _source(path, "xlsx")
    readers._opened_sheet.clear()
    check_source_files(source, keep_open=True)  # preflight finds the header on 数据's row 2
    readers.check_xlsx_sheets(path, ["编号", "姓名"], "s")
    extract = read_extract(source, path)
    assert extract.header == ["编号", "姓名", "出生日期"]
    # Excel rows within each sheet: 数据's data start under its header on row 2 (row 4 is empty).
    assert extract.frame.select("编号", "row_number", "file_row").rows() == [("r1", 1, 3), ("r2", 2, 5), ("r3", 3, 2)]
    # The sheet is named even for one data sheet: the workbook opens on another.
    assert extract.sheets == [("数据", 1, 2), ("续表", 3, 3)]
    only_one = tmp_path / "one.xlsx"
    _sheets(only_one, {"说明": [["见第二页"]], "Sheet2": [["编号", "姓名"], ["r1", "张伟"]]})
    assert read_xlsx(only_one, ["编号", "姓名"], "s").sheets == [("Sheet2", 1, 1)]


@pytest.mark.parametrize(
    "first",
    [
        # A data sheet under a header without the mapped column: refused as before, not
        # skipped for a later sheet that has it (its rows would be lost unseen).
        [["编码", "姓名"], ["r1", "张伟"], ["r2", "李娜"], ["r3", "王芳"]],
        # Notes too long for notes (NOTES_MAX_CELLS).
        [[f"第{i}条说明"] for i in range(120)],
    ],
)
def test_a_first_sheet_that_is_not_notes_keeps_its_header_refused(tmp_path: Path, first: list[list]) -> None:
    path = tmp_path / "people.xlsx"
    _sheets(path, {"Sheet1": first, "Sheet2": [["编号", "姓名"], ["r9", "赵六"]]})
    readers._opened_sheet.clear()
    with pytest.raises(ConfigError, match="column '(编号|姓名)' \\(mapped for source 's'\\) is not in the extract; it has: "):
        check_source_files(_source(path, "xlsx"))
    with pytest.raises(ConfigError, match="column '编号' \\(mapped for source 's'\\) is not in the extract"):
        read_xlsx(path, ["编号", "姓名"], "s")


@pytest.mark.parametrize("quoted", [False, True])
def test_a_misaligned_row_does_not_give_a_shifted_cell_as_its_record_id(tmp_path: Path, quoted: bool) -> None:
    # quarantine.parquet is published city-wide. In a row with a comma inside a name (one
    # field too many) or a field missing, the cell under a record-id column that is not the
    # first is its neighbour's: here the identity number, which must not become the record id.
    ids = ["330602199001021231", "330602199001021232", "330602199001021233", "330602199001021234"]
    rows = [
        "姓名,身份证号,编号,电话",
        f"张伟,{ids[0]},r1,138",
        f"欧阳,娜,{ids[1]},r2,139",  # a comma inside the name: the id sits under 编号
        f"王芳,{ids[2]}",  # cut short after the id
        ('"赵六"' if quoted else "赵六") + f",{ids[3]},r4,137",  # quotes: the csv module reads the file
    ]
    path = tmp_path / "people.csv"
    # and a row with bad bytes and a comma too many (a name of two fields before the id)
    bad = b"\xff\xfe,\xff\xfe," + ids[3].encode() + b",r5,x\n"
    path.write_bytes(("\n".join(rows) + "\n").encode("gb18030") + bad)

    extract = read_csv(path, "gb18030", ["编号", "姓名", "身份证号"], "s", "编号")

    assert extract.frame["编号"].to_list() == ["r1", "r4"]
    assert [(r.row_number, r.reason_code, r.record_id) for r in extract.rejected] == [
        (2, "wrong_column_count", None),
        (3, "wrong_column_count", None),
        (5, "undecodable_bytes", None),
    ]


def test_a_merged_household_cell_belongs_to_every_row_it_covers(tmp_path: Path) -> None:
    # Hand-kept rosters merge 户号 down a household's members: Excel shows it on every
    # member's row, but the file holds it in the first cell only. Before, the other members
    # were read without a household (found in review: a roster workbook so merged lost 65% of
    # its household ids and every roster_conflict finding). A merge across columns (a 合计
    # or notes line at the bottom) is not spread: it would make a row of its text.
    path = tmp_path / "roster.xlsx"
    _sheets(path, {
        "Sheet1": [["编号", "户号", "姓名"], ["r1", "H1", "张伟"], ["r2", None, "张娜"], ["r3", None, "张芳"],
                   ["r4", "H2", "李洋"], ["合计：4人", None, None]],
        "Sheet2": [["编号", "户号", "姓名"], ["r5", "H3", "王静"], ["r6", None, "王敏"]],
    })
    book = load_workbook(path)
    book["Sheet1"].merge_cells("B2:B4")
    book["Sheet1"].merge_cells("A6:C6")
    book["Sheet2"].merge_cells("B2:B3")
    book.save(path)

    extract = read_xlsx(path, ["编号", "户号", "姓名"], "s")

    assert extract.frame.select("编号", "户号", "姓名").rows() == [
        ("r1", "H1", "张伟"), ("r2", "H1", "张娜"), ("r3", "H1", "张芳"), ("r4", "H2", "李洋"),
        ("合计：4人", None, None), ("r5", "H3", "王静"), ("r6", "H3", "王敏"),
    ]


@pytest.mark.parametrize("quoted", [False, True])
def test_blank_lines_before_the_header_are_not_an_empty_file(tmp_path: Path, quoted: bool) -> None:
    # The reader skips them; the preflight read only the first line and stopped the night
    # with "the file is empty (no header row)" for a file of many rows.
    path = tmp_path / "people.csv"
    first = '"r1"' if quoted else "r1"
    path.write_bytes(b"\xef\xbb\xbf\r\n \r\n" + f"编号,姓名\r\n{first},张伟\r\nr2,李娜\r\n".encode())
    source = _source(path, "csv")
    check_source_files(source)
    assert read_extract(source, path).frame.select("编号", "row_number").rows() == [("r1", 1), ("r2", 2)]
    path.write_bytes(b"\r\n \r\n\r\n")
    with pytest.raises(ConfigError, match="the file is empty"):
        check_source_files(source)


@pytest.mark.parametrize("fmt", ["csv", "quoted csv", "jsonl"])
def test_a_gb18030_file_with_a_byte_order_mark_is_read(tmp_path: Path, fmt: str) -> None:
    # GB18030 has a BOM of its own (84 31 95 33, U+FEFF). It stayed on the first column's
    # name: "column '编号' … is not in the extract; it has: 编号, 姓名" (the BOM unseen), or,
    # in JSON lines, the first record went to quarantine as not JSON.
    bom = "\ufeff".encode("gb18030")
    if fmt == "jsonl":
        path = tmp_path / "people.jsonl"
        text = '{"编号": "r1", "姓名": "张伟"}\n{"编号": "r2", "姓名": "李娜"}\n'
    else:
        path = tmp_path / "people.csv"
        text = "编号,姓名\n" + ('"r1",张伟\n' if fmt == "quoted csv" else "r1,张伟\n") + "r2,李娜\n"
    path.write_bytes(bom + text.encode("gb18030"))
    source = _source(path, fmt.split()[-1], encoding="gb18030")
    check_source_files(source)
    extract = read_extract(source, path)
    assert extract.rejected == []
    assert extract.frame.select("编号", "姓名").rows() == [("r1", "张伟"), ("r2", "李娜")]


@pytest.mark.parametrize("quoted", [False, True])
def test_a_csv_row_of_empty_fields_is_not_a_data_row(tmp_path: Path, quoted: bool) -> None:
    # Excel saves a row that was cleared but keeps its formatting as ",,": a workbook's empty
    # row, which read_xlsx skips. Read from the CSV it became a record with no record id, and
    # an export with 300 such rows at its end put 300 "缺少记录编号" rows in the quarantine.
    path = tmp_path / "people.csv"
    first = '"r1"' if quoted else "r1"
    path.write_text(f"编号,姓名,身份证号\r\n{first},张伟,1\r\n,,\r\n , ,\r\nr2,李娜,2\r\n,,\r\n,,\r\n", encoding="utf-8")
    extract = read_csv(path, "utf-8", ["编号", "姓名"], "s", "编号")
    assert extract.frame.select("编号", "row_number").rows() == [("r1", 1), ("r2", 2)]
    assert extract.rejected == []


def test_an_id_number_a_spreadsheet_rounded_is_no_id(tmp_path: Path) -> None:
    # Excel keeps 15 significant digits of a number cell. The rounded id used to read as
    # 330602199001021000, and one in 11 such ids passes its check character: that person's
    # records were then kept apart by the different-valid-ids rule (14 of 1,500 persons split
    # in a review's demo with one workbook's ids stored as numbers).
    from openpyxl import Workbook

    from linkage.id_numbers import check_character, standardize_id_numbers

    prefix = next(
        p for p in (f"33060219900102{i}" for i in range(10)) if check_character(p + "00") == "0"
    )
    assert cell_text(float(prefix + "000")) == prefix + "###"
    assert cell_text(3306021990010212.0) == "330602199001021#"
    assert cell_text(-3306021990010212.0) == "-330602199001021#"
    assert cell_text(123456789012345.0) == "123456789012345"
    workbook = Workbook()
    workbook.active.append(["记录编号", "公民身份号码"])
    workbook.active.append(["r1", float(prefix + "123")])
    workbook.save(tmp_path / "ids.xlsx")
    extract = read_xlsx(tmp_path / "ids.xlsx", ["记录编号", "公民身份号码"], "ids")
    read = extract.frame["公民身份号码"].to_list()
    assert read == [prefix + "###"]
    standardized = standardize_id_numbers(pl.DataFrame({"id_number": read + [prefix + "000"]}), as_of=dt.date(2026, 12, 7))
    # The rounded value would pass as a valid id; what the reader now gives is no id at all.
    assert standardized["id_valid"].to_list() == [None, True]
    assert standardized["id_number"].to_list() == [None, prefix + "000"]


def test_a_workbook_with_a_blank_first_row_says_the_header_must_be_there(tmp_path: Path) -> None:
    # Before: "column '记录编号' … is not in the extract; it has: " and nothing after it.
    from openpyxl import Workbook

    from flows.config import ConfigError, load_sources
    from flows.preflight import check_source_files

    workbook = Workbook()
    workbook.active.append([None, None])
    workbook.active.append(["记录编号", "姓名"])
    workbook.active.append(["r1", "张伟"])
    workbook.save(tmp_path / "roster.xlsx")
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - {name: roster, department: 民政局, path: roster.xlsx, columns: {record_id: 记录编号, name: 姓名}}\n",
        encoding="utf-8",
    )
    (source,) = load_sources(tmp_path / "sources.yaml").sources
    with pytest.raises(ConfigError) as raised:
        check_source_files(source)
    assert str(raised.value) == (
        f"{tmp_path / 'roster.xlsx'}: column '姓名' (mapped for source 'roster') is not in the extract: its first "
        "row is empty, and the header (the column names) must be on the first row"
    )


def test_a_parquet_timestamp_stored_in_utc_reads_as_beijing_time(tmp_path: Path) -> None:
    # Spark writes UTC: 2025-08-30 16:30 UTC is 00:30 on the 31st in Beijing. It was shown as
    # "2025-08-30 16:30:00+00:00", and a reason naming the fresher row gave the day before.
    stamps = pa.array(
        [dt.datetime(2025, 8, 30, 16, 30, tzinfo=dt.UTC), dt.datetime(2025, 8, 30, 1, 0, tzinfo=dt.UTC), None],
        type=pa.timestamp("us", tz="UTC"),
    )
    pq.write_table(pa.table({"grbh": ["a", "b", "c"], "gxsj": stamps}), tmp_path / "si.parquet")
    extract = read_parquet(tmp_path / "si.parquet", ["grbh", "gxsj"], "si")
    assert extract.frame["gxsj"].to_list() == ["2025-08-31 00:30:00", "2025-08-30 09:00:00", None]
    assert cell_text(dt.datetime(2025, 8, 30, 16, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))) == "2025-08-30 16:00:00"


# Where a clerk finds a row: the reasons and the file_row column name the file's own line or
# Excel row, not the data row (before, "第5行" was the 5th data row: line 6 and more of the
# file, Excel row 6 and more of the sheet). The data row stays beside it, as row_number.


def test_a_workbook_row_is_named_by_its_excel_row_in_its_own_sheet(tmp_path: Path) -> None:
    path = tmp_path / "people.xlsx"
    book = Workbook()
    first = book.active
    first.title = "Sheet1"
    # The used range starts at column B (A left empty); Excel row 4 is empty inside the data.
    for row, values in enumerate([["编号", "姓名"], ["r1", "张伟"], ["r2", "李娜"], [None, None], ["r3", "王芳"]],
                                 start=1):
        for column, value in enumerate(values, start=2):
            first.cell(row=row, column=column, value=value)
    # A later sheet whose header is on row 3 and in column C: its used range starts at C3.
    second = book.create_sheet("Sheet2")
    for row, values in enumerate([["姓名", "编号"], ["刘洋", "r4"], [None, None], [None, None], ["陈静", "r5"]],
                                 start=3):
        for column, value in enumerate(values, start=3):
            second.cell(row=row, column=column, value=value)
    book.save(path)
    extract = read_xlsx(path, ["编号", "姓名"], "s")
    assert extract.frame.select("编号", "row_number", "file_row").rows() == [
        ("r1", 1, 2), ("r2", 2, 3), ("r3", 3, 5), ("r4", 4, 4), ("r5", 5, 7),
    ]
    assert extract.frame["file_row"].dtype == pl.Int32
    assert extract.sheets == [("Sheet1", 1, 3), ("Sheet2", 4, 5)]


def test_a_csv_row_is_named_by_the_line_its_record_starts_on(tmp_path: Path) -> None:
    # GB18030, two blank lines before the header, a quoted field running over two lines, a
    # row of empty fields and a blank line: the bad rows are the 2nd and 4th data rows, on
    # lines 8 and 10 of the file.
    lines = [
        b"",
        b"",
        "编号,姓名,公民身份号码,住址".encode("gb18030"),  # line 3
        'r1,张伟,330602199001021237,"浙江省'.encode("gb18030"),  # line 4: data row 1 starts
        '绍兴市"'.encode("gb18030"),  # line 5
        b",,,",  # line 6: no data row
        b"",  # line 7
        "r2,李娜,,府山街道,多余".encode("gb18030"),  # line 8: data row 2, five fields
        'r3,王芳,,"越城区"'.encode("gb18030"),  # line 9: data row 3
        b"r4,\x81\x20\xff,,",  # line 10: data row 4, not GB18030
        "r5,刘洋,,".encode("gb18030"),  # line 11: data row 5
    ]
    path = tmp_path / "people.csv"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    extract = read_csv(path, "gb18030", ["编号", "姓名"], "s", "编号")
    assert extract.frame.select("编号", "row_number", "file_row").rows() == [("r1", 1, 4), ("r3", 3, 9), ("r5", 5, 11)]
    assert extract.frame["住址"][0] == "浙江省\r\n绍兴市"
    assert [(r.row_number, r.file_row, r.record_id) for r in extract.rejected] == [(2, 8, "r2"), (4, 10, "r4")]
    assert [r.reason for r in extract.rejected] == [
        "文件第8行(数据第2行)有5列，表头有4列，可能是字段中含逗号或换行 (line 8, data row 2: 5 fields, the header has 4)",
        "文件第10行(数据第4行)含有无法按 gb18030 解码的字节，请检查导出编码 (line 10, data row 4: bytes that are not "
        "valid gb18030)",
    ]


@pytest.mark.parametrize("bad_bytes", [False, True])
def test_an_unquoted_csv_row_is_named_by_its_line(tmp_path: Path, bad_bytes: bool) -> None:
    # The fast path (no quote in the file): the same lines, by the line index it keeps.
    lines = [b" ", "编号,姓名,身份证号".encode("gb18030"), "r1,张伟,1".encode("gb18030"), b",,", b"",
             "r2,李娜".encode("gb18030"), "r3,王芳,3".encode("gb18030")]
    if bad_bytes:
        lines.append(b"r4,\x81\x20\xff,4")
    path = tmp_path / "people.csv"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    extract = read_csv(path, "gb18030", ["编号", "姓名"], "s", "编号")
    assert extract.frame.select("编号", "row_number", "file_row").rows() == [("r1", 1, 3), ("r3", 3, 7)]
    assert [(r.row_number, r.file_row) for r in extract.rejected] == [(2, 6)] + ([(4, 8)] if bad_bytes else [])
    assert extract.rejected[0].reason.startswith("文件第6行(数据第2行)有2列")
    if bad_bytes:
        assert extract.rejected[1].reason.startswith("文件第8行(数据第4行)含有无法按 gb18030 解码的字节")


def test_a_json_line_is_named_by_its_line_and_an_undecodable_one_by_its_record_id(tmp_path: Path) -> None:
    # read_jsonl took the record id's key and did not use it: an undecodable line was
    # quarantined without its record id, where the CSV reader names it.
    lines = [
        '{"区号": "GA", "序号": 1, "姓名": "张伟"}'.encode(),  # line 1: data row 1
        b"",  # line 2
        b'{"\xe5\x8c\xba\xe5\x8f\xb7": "GA", "\xe5\xba\x8f\xe5\x8f\xb7": 2, "name": "\xff\xfe"}',  # line 3: row 2
        b"{broken",  # line 4: data row 3
        b'{"\xe5\x8c\xba\xe5\x8f\xb7": "G\xff", "\xe5\xba\x8f\xe5\x8f\xb7": 4}',  # line 5: row 4, its id not readable
        '{"区号": "GA", "序号": 5, "姓名": "李娜"}'.encode(),  # line 6: data row 5
    ]
    path = tmp_path / "people.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    extract = read_jsonl(path, "utf-8", ["区号", "姓名"], "s", ("区号", "序号"))
    assert extract.frame.select("序号", "row_number", "file_row").rows() == [("1", 1, 1), ("5", 5, 6)]
    assert [(r.row_number, r.file_row, r.record_id, r.reason_code) for r in extract.rejected] == [
        (2, 3, "GA 2", "undecodable_bytes"), (3, 4, None, "unreadable_row"), (4, 5, None, "undecodable_bytes"),
    ]
    assert extract.rejected[1].reason == (
        "文件第4行(数据第3行)不是完整的 JSON 记录，可能被截断 (line 4, data row 3: not valid JSON: Expecting property "
        "name enclosed in double quotes)"
    )


def test_a_parquet_row_is_its_data_row(tmp_path: Path) -> None:
    # No header, no blank row: the file's row is the data row, and a reason says just 第N行.
    path = tmp_path / "people.parquet"
    pq.write_table(pa.table({"编号": ["r1", "r2", "r3"], "姓名": pa.array([b"a", b"\xff", b"c"], pa.binary())}), path)
    extract = read_parquet(path, ["编号", "姓名"], "s")
    assert extract.frame.select("编号", "row_number", "file_row").rows() == [("r1", 1, 1), ("r3", 3, 3)]
    assert [(r.row_number, r.file_row) for r in extract.rejected] == [(2, 2)]
    assert extract.rejected[0].reason == "第2行含有无法按 utf-8 解码的字节，请检查导出编码 (row 2: bytes that are not valid utf-8)"
