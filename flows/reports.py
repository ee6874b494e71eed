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
from collections.abc import Iterable, Mapping
from pathlib import Path

import polars as pl
import xlsxwriter

from linkage.reports import DepartmentReport

WORKBOOK_NAME = "mismatch_report.xlsx"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"
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


def _escaped(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with every formula-like text cell quoted (vectorised: reports run to 10^5 rows)."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(name).str.contains(_FORMULA_PATTERN))
        .then(pl.lit("'") + pl.col(name))
        .otherwise(pl.col(name))
        .alias(name)
        for name in text
    )


def _column_widths(frame: pl.DataFrame) -> list[int]:
    """Excel column widths: a Han character takes two columns, so (bytes + chars) / 2 in UTF-8."""
    widths = []
    for name in frame.columns:
        cells = frame.get_column(name).cast(pl.String)
        header = (len(name.encode()) + len(name)) // 2
        longest = (cells.str.len_bytes() + cells.str.len_chars()).max() if frame.height else None
        content = int(longest) // 2 if longest is not None else 0
        widths.append(min(max(header, content) + 2, _MAX_WIDTH))
    return widths


def _write_csv(path: Path, frame: pl.DataFrame) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(frame.columns)
        writer.writerows(["" if v is None else v for v in row] for row in _escaped(frame).iter_rows())


def _write_workbook(path: Path, report: DepartmentReport) -> None:
    workbook = xlsxwriter.Workbook(
        str(path),
        # Never turn text into formulas, links or numbers: ids like 330602199001011234 stay text.
        {
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
            # rows go to disk as written: a big department report never sits in memory twice
            "constant_memory": True,
        },
    )
    header = workbook.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True})
    text = workbook.add_format({"num_format": "@"})
    try:
        for sheet in report.sheets:
            worksheet = workbook.add_worksheet(sheet.title[:31])
            frame = _escaped(sheet.frame.with_columns(pl.col(pl.String).str.slice(0, _XLSX_MAX_CELL)))
            for col, (width, dtype) in enumerate(zip(_column_widths(frame), frame.dtypes, strict=True)):
                # Text columns are formatted as text, so a typed-in id stays an id.
                worksheet.set_column(col, col, max(width, 8), text if dtype == pl.String else None)
            worksheet.write_row(0, 0, frame.columns, header)
            for r, row in enumerate(frame.iter_rows(), start=1):
                # write_row dispatches on type: str -> string (never a formula, see the
                # options above), int/float -> number, None -> nothing.
                worksheet.write_row(r, 0, row)
            worksheet.freeze_panes(1, 0)
            # Clerks print these: landscape, all columns on the page width, header on every page.
            worksheet.set_landscape()
            worksheet.fit_to_pages(1, 0)
            worksheet.repeat_rows(0)
            worksheet.autofilter(0, 0, max(frame.height, 1), max(len(frame.columns) - 1, 0))
    finally:
        workbook.close()


def write_department_report(reports_dir: Path, report: DepartmentReport) -> list[Path]:
    """Write one department's workbook and CSVs; return the paths written."""
    folder = Path(reports_dir) / department_folder(report.department)
    folder.mkdir(parents=True, exist_ok=True)
    workbook = folder / WORKBOOK_NAME
    _write_workbook(workbook, report)
    written = [workbook]
    for number, sheet in enumerate(report.sheets, start=1):
        path = folder / f"{number:02d}_{sheet.key}.csv"
        _write_csv(path, sheet.frame)
        written.append(path)
    return written


def write_department_reports(
    reports_dir: Path, reports: Mapping[str, DepartmentReport] | Iterable[DepartmentReport]
) -> list[Path]:
    """Write every department's workbook and CSVs; return the paths written.

    ``reports`` may be a generator (``iter_department_reports``): each report is written
    before the next is built, so only one department's sheets are in memory.
    """
    written: list[Path] = []
    for report in reports.values() if isinstance(reports, Mapping) else reports:
        written.extend(write_department_report(reports_dir, report))
    return written
