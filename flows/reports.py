"""Write each department's mismatch report: reports/<department>/mismatch_report.xlsx and CSVs.

The workbook has one sheet per problem (汇总 first), a bold frozen header row, an
autofilter and widths fitted to the content. Next to it, one UTF-8-with-BOM CSV per
sheet, numbered in sheet order (``01_summary.csv`` ...), which Excel opens without
garbling the Chinese.

Cells that a spreadsheet would read as a formula (starting with = + - @, or a tab or
carriage return that hides one) are written as text with a leading single quote, in the
CSVs and the workbook alike: a name or an address typed as ``=HYPERLINK(...)`` in some
department's system must not run on a clerk's machine.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from pathlib import Path

import polars as pl
import xlsxwriter

from linkage.reports import DepartmentReport

WORKBOOK_NAME = "mismatch_report.xlsx"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_UNSAFE_PATH = re.compile(r'[\\/:*?"<>|\x00-\x1f]')
_MAX_WIDTH = 60
_XLSX_MAX_CELL = 32767


def escape_cell(value: object) -> object:
    """Text a spreadsheet could take for a formula gets a leading single quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def department_folder(department: str) -> str:
    """The department's name as its folder name, with characters no file system allows replaced."""
    name = _UNSAFE_PATH.sub("_", department).strip().strip(".")
    return name or "_"


def _display_width(text: str) -> int:
    # A Han character takes two columns in Excel's default fonts.
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _cells(frame: pl.DataFrame) -> list[list[object]]:
    return [[escape_cell(v) for v in row] for row in frame.iter_rows()]


def _write_csv(path: Path, frame: pl.DataFrame) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(frame.columns)
        for row in _cells(frame):
            writer.writerow(["" if v is None else v for v in row])


def _write_workbook(path: Path, report: DepartmentReport) -> None:
    workbook = xlsxwriter.Workbook(
        str(path),
        # Never turn text into formulas, links or numbers: ids like 330602199001011234 stay text.
        {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False},
    )
    header = workbook.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True})
    text = workbook.add_format({"num_format": "@"})
    try:
        for sheet in report.sheets:
            worksheet = workbook.add_worksheet(sheet.title[:31])
            frame = sheet.frame
            widths = [_display_width(c) for c in frame.columns]
            for col, name in enumerate(frame.columns):
                worksheet.write_string(0, col, name, header)
            for r, row in enumerate(_cells(frame), start=1):
                for col, value in enumerate(row):
                    if value is None:
                        continue
                    if isinstance(value, bool):
                        worksheet.write_string(r, col, "是" if value else "否", text)
                    elif isinstance(value, int | float):
                        worksheet.write_number(r, col, value)
                    else:
                        value = str(value)[:_XLSX_MAX_CELL]
                        worksheet.write_string(r, col, value, text)
                    widths[col] = max(widths[col], _display_width(str(value)))
            for col, width in enumerate(widths):
                worksheet.set_column(col, col, min(max(width + 2, 8), _MAX_WIDTH))
            worksheet.freeze_panes(1, 0)
            worksheet.autofilter(0, 0, max(frame.height, 1), max(len(frame.columns) - 1, 0))
    finally:
        workbook.close()


def write_department_reports(reports_dir: Path, reports: dict[str, DepartmentReport]) -> list[Path]:
    """Write every department's workbook and CSVs; return the paths written."""
    written: list[Path] = []
    for department, report in reports.items():
        folder = Path(reports_dir) / department_folder(department)
        folder.mkdir(parents=True, exist_ok=True)
        workbook = folder / WORKBOOK_NAME
        _write_workbook(workbook, report)
        written.append(workbook)
        for number, sheet in enumerate(report.sheets, start=1):
            path = folder / f"{number:02d}_{sheet.key}.csv"
            _write_csv(path, sheet.frame)
            written.append(path)
    return written
