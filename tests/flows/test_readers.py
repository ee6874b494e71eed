"""Readers: the fast paths (whole-file decoding, whole-column timestamps, the workbook
preflight already parsed) give exactly what cell-by-cell and line-by-line reading gives."""

import datetime as dt
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from flows import readers
from flows.readers import cell_text, read_csv, read_parquet, read_xlsx, xlsx_header

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
    assert extract.frame["zoned"].to_list() == ["2026-01-01 08:00:00+00:00"]
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
