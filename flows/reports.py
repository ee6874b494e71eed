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
import zipfile
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import xlsxwriter
import xlsxwriter.workbook
from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.worksheet import Worksheet

from flows.config import department_folder
from linkage.reports import DepartmentReport

WORKBOOK_NAME = "mismatch_report.xlsx"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_PATTERN = r"^[=+\-@\t\r]"
_MAX_WIDTH = 60
_XLSX_MAX_CELL = 32767
_XLSX_COMPRESSLEVEL = 1
# Departments written at once, each in its own thread.
_WRITERS = 2


class _QuickZipFile(zipfile.ZipFile):
    """The workbook's zip deflated at level 1 instead of zlib's default 6.

    The sheets' XML runs to ~165 MB at a million records; level 6 took 2.2 s of one core to
    pack it into 17.6 MB, level 1 takes 0.8 s for 21.7 MB. The workbook's contents are the
    same (its bytes already differ from night to night: it records when it was made).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("compresslevel", _XLSX_COMPRESSLEVEL)
        super().__init__(*args, **kwargs)


# xlsxwriter offers no compression setting: its Workbook.close() makes the zip through
# this module-level name, and nothing else in xlsxwriter writes a zip through it.
xlsxwriter.workbook.ZipFile = _QuickZipFile


def escape_cell(value: object) -> object:
    """Text a spreadsheet could take for a formula gets a leading single quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


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
    longest: tuple[int | None, ...] = (None,) * frame.width
    if frame.height:
        # Every column's longest cell in one pass over the sheet.
        longest = frame.select(
            (pl.col(name).cast(pl.String).str.len_bytes() + pl.col(name).cast(pl.String).str.len_chars())
            .max()
            .alias(f"_{i}")
            for i, name in enumerate(frame.columns)
        ).row(0)
    widths = []
    for name, cells in zip(frame.columns, longest, strict=True):
        header = (len(name.encode()) + len(name)) // 2
        content = int(cells) // 2 if cells is not None else 0
        widths.append(min(max(header, content) + 2, _MAX_WIDTH))
    return widths


def _csv_by_polars(frame: pl.DataFrame) -> bool:
    """Whether polars writes ``frame`` byte for byte as Python's ``csv.writer`` does.

    They agree on quoting and line ends for text and whole numbers once empty strings are
    nulls (polars quotes an empty string, csv does not); a one-column row holding an empty
    value (csv quotes it) and other types (floats, dates) are left to csv.
    """
    return frame.width >= 2 and all(dtype == pl.String or dtype.is_integer() for dtype in frame.dtypes)


def _write_csv(path: Path, frame: pl.DataFrame, escaped: pl.DataFrame | None = None) -> None:
    """Write the sheet as CSV; ``escaped``: ``_escaped(frame)``, when the caller has it."""
    escaped = _escaped(frame) if escaped is None else escaped
    if _csv_by_polars(escaped):
        with path.open("wb") as handle:
            handle.write("\ufeff".encode())
            escaped.with_columns(pl.col(pl.String).replace("", None)).write_csv(
                handle, line_terminator="\r\n", null_value=""
            )
        return
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(frame.columns)
        writer.writerows(["" if v is None else v for v in row] for row in escaped.iter_rows())


# What xlsxwriter's constant_memory mode writes for a cell, rebuilt column by column in
# polars: a department's sheets run to 10^5 rows, and xlsxwriter's per-cell Python took
# two thirds of the publish stage at a million records. Same XML, byte for byte
# (tests/flows/test_write_reports.py compares the two on awkward values).
_XLSX_ROW_LIMIT = 1_048_576
# Control characters Excel cannot hold become _xHHHH_; a literal "_xHHHH_" is escaped first.
_XLSX_ESCAPED_ESCAPE = r"(_x[0-9a-fA-F]{4}_)"
_XLSX_CONTROL = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20))] + ["\ufffe", "\uffff"]
# What Python's re calls \s, less the control characters escaped before the check: a text
# with one of these first or last gets xml:space="preserve", as xlsxwriter decides it.
_XLSX_SPACE = "\t\n \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_XLSX_PRESERVE = f"^[{_XLSX_SPACE}]|[{_XLSX_SPACE}]$"
# The 1-based row number, beside the sheet's own (Chinese-headed) columns.
_ROW = "__xlsx_row"
# Rows per piece of sheet XML joined and written at once.
_XLSX_CHUNK_ROWS = 50_000


def _rows_as_xml(frame: pl.DataFrame) -> bool:
    """Whether ``_write_rows_xml`` writes exactly what xlsxwriter would for ``frame``.

    Text and whole numbers (shorter than 16 digits, which xlsxwriter prints as they are)
    only; a text that xlsxwriter might shorten to 32767 UTF-16 units, rows past Excel's
    last, or an "<r>...</r>" text (which constant_memory mode writes unescaped, as rich
    text) go through xlsxwriter itself.
    """
    if frame.height + 1 > _XLSX_ROW_LIMIT:
        return False
    checks = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if dtype == pl.String:
            checks.append((column.str.len_chars() > _XLSX_MAX_CELL // 2).any())
            checks.append((column.str.starts_with("<r>") & column.str.ends_with("</r>")).any())
        elif dtype.is_integer():
            checks.append((column.cast(pl.Int64, strict=False).abs() >= 10**15).any())
            checks.append((column.cast(pl.Int64, strict=False).is_null() & column.is_not_null()).any())
        else:
            return False
    # One pass over the frame for every column's checks.
    return not checks or not any(frame.select(c.alias(f"_{i}") for i, c in enumerate(checks)).row(0))


def _cell_xml(column: pl.Series, letter: str, text_style: int | None) -> pl.Expr:
    """One column's cells as xlsxwriter writes them; null where it writes no cell."""
    name = column.name
    reference = pl.lit(f'<c r="{letter}') + pl.col(_ROW)
    if column.dtype != pl.String:
        return pl.concat_str([reference, pl.lit('"><v>'), pl.col(name).cast(pl.String), pl.lit("</v></c>")])
    value = pl.col(name)
    if column.str.contains(_XLSX_ESCAPED_ESCAPE).any():
        value = value.str.replace_all(_XLSX_ESCAPED_ESCAPE, "_x005F${1}")
    # Most columns hold no control character: their text skips the 32 replacements.
    if column.str.contains(f"[{''.join(_XLSX_CONTROL)}]").any():
        for char in _XLSX_CONTROL:
            value = value.str.replace_all(char, f"_x{ord(char):04X}_", literal=True)
    preserve = pl.when(value.str.contains(_XLSX_PRESERVE)).then(pl.lit(' xml:space="preserve"')).otherwise(pl.lit(""))
    data = value
    if column.str.contains("[&<>]").any():
        data = (
            value.str.replace_all("&", "&amp;", literal=True)
            .str.replace_all("<", "&lt;", literal=True)
            .str.replace_all(">", "&gt;", literal=True)
        )
    cell = pl.concat_str(
        [reference, pl.lit(f'" s="{text_style}" t="inlineStr"><is><t'), preserve, pl.lit(">"), data, pl.lit("</t></is></c>")]
    )
    # An empty text is a blank cell, and xlsxwriter writes no blank cell without a format.
    return pl.when(pl.col(name) != "").then(cell)


def _write_rows_xml(worksheet: Worksheet, frame: pl.DataFrame, text: xlsxwriter.workbook.Format) -> None:
    """Write ``frame`` under the header row of a constant_memory worksheet, as ``write_row`` would."""
    if frame.is_empty():
        return
    # The header row goes to the sheet's row file first; the text format then takes the
    # next style number, as it does when xlsxwriter writes the first data cell.
    worksheet._write_single_row(1)
    text_style = text._get_xf_index() if pl.String in frame.dtypes else None
    names = [f"_c{col}" for col in range(frame.width)]
    cells = frame.with_columns(pl.int_range(2, frame.height + 2).cast(pl.String).alias(_ROW)).select(
        _cell_xml(column, xl_col_to_name(col), text_style).alias(names[col])
        for col, column in enumerate(frame.iter_columns())
    )
    written = cells.select(pl.any_horizontal(pl.col(names).is_not_null())).to_series()
    if not written.any():
        return
    # The sheet's dimension covers the cells written, as xlsxwriter's own bookkeeping does.
    filled = [col for col, name in enumerate(names) if cells.get_column(name).is_not_null().any()]
    rows = written.arg_true()
    worksheet._check_dimensions(int(rows.min()) + 1, filled[0])
    worksheet._check_dimensions(int(rows.max()) + 1, filled[-1])
    # A row with no cell at all is not written.
    lines = (
        cells.filter(written)
        .with_columns((rows + 2).cast(pl.String).alias(_ROW))
        .select(
            pl.concat_str(
                [pl.lit('<row r="'), pl.col(_ROW), pl.lit('">'), *map(pl.col, names), pl.lit("</row>")],
                ignore_nulls=True,
            )
        )
        .to_series()
    )
    for start in range(0, lines.len(), _XLSX_CHUNK_ROWS):
        worksheet.row_data_fh.write("".join(lines.slice(start, _XLSX_CHUNK_ROWS).to_list()))
    worksheet.previous_row = frame.height


def _xlsx_frame(frame: pl.DataFrame, escaped: pl.DataFrame | None = None) -> pl.DataFrame:
    """The sheet as the workbook holds it: texts cut to Excel's cell limit, then escaped.

    ``escaped``: ``_escaped(frame)`` when the caller has it; it is the same frame unless a
    text runs past the limit.
    """
    texts = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    too_long = bool(texts) and frame.select(
        pl.any_horizontal((pl.col(name).str.len_chars() > _XLSX_MAX_CELL).any() for name in texts)
    ).item()
    if escaped is not None and not too_long:
        return escaped
    return _escaped(frame.with_columns(pl.col(pl.String).str.slice(0, _XLSX_MAX_CELL)))


def _write_workbook(path: Path, report: DepartmentReport, escaped: list[pl.DataFrame] | None = None) -> None:
    """Write the report's workbook; ``escaped``: each sheet's ``_escaped`` frame, when the caller has them."""
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
        for number, sheet in enumerate(report.sheets):
            worksheet = workbook.add_worksheet(sheet.title[:31])
            frame = _xlsx_frame(sheet.frame, escaped[number] if escaped is not None else None)
            for col, (width, dtype) in enumerate(zip(_column_widths(frame), frame.dtypes, strict=True)):
                # Text columns are formatted as text, so a typed-in id stays an id.
                worksheet.set_column(col, col, max(width, 8), text if dtype == pl.String else None)
            worksheet.write_row(0, 0, frame.columns, header)
            if _rows_as_xml(frame):
                _write_rows_xml(worksheet, frame, text)
            else:
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


def sheet_csv_name(number: int, key: str) -> str:
    """The CSV file of a report's sheet ``number`` (1-based, in sheet order): ``01_summary.csv``."""
    return f"{number:02d}_{key}.csv"


def csv_rows(report: DepartmentReport) -> dict[str, int]:
    """Data rows of each CSV ``write_department_report`` writes for ``report``, by path
    relative to the reports folder (/-separated): one line per row of the sheet."""
    folder = department_folder(report.department)
    return {
        f"{folder}/{sheet_csv_name(number, sheet.key)}": sheet.frame.height
        for number, sheet in enumerate(report.sheets, start=1)
    }


def write_department_report(reports_dir: Path, report: DepartmentReport) -> list[Path]:
    """Write one department's workbook and CSVs; return the paths written."""
    folder = Path(reports_dir) / department_folder(report.department)
    folder.mkdir(parents=True, exist_ok=True)
    workbook = folder / WORKBOOK_NAME
    # Escaped once for the workbook and the CSVs alike.
    escaped = [_escaped(sheet.frame) for sheet in report.sheets]
    _write_workbook(workbook, report, escaped)
    written = [workbook]
    for number, (sheet, frame) in enumerate(zip(report.sheets, escaped, strict=True), start=1):
        path = folder / sheet_csv_name(number, sheet.key)
        _write_csv(path, sheet.frame, frame)
        written.append(path)
    return written


def write_department_reports(
    reports_dir: Path, reports: Mapping[str, DepartmentReport] | Iterable[DepartmentReport]
) -> list[Path]:
    """Write every department's workbook and CSVs; return the paths written, in report order.

    ``reports`` may be a generator (``iter_reports``): a report is built while the two
    before it are written, in two threads, and no more are asked for, so at most three
    departments' sheets are in memory. A workbook's zip compression and polars' work
    release the GIL, so the writing of one and the building of the next share the cores.
    """
    written: list[Path] = []
    pending: deque[Future[list[Path]]] = deque()
    with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="report-writer") as pool:
        try:
            for report in reports.values() if isinstance(reports, Mapping) else reports:
                pending.append(pool.submit(write_department_report, reports_dir, report))
                if len(pending) >= _WRITERS:
                    written.extend(pending.popleft().result())
            while pending:
                written.extend(pending.popleft().result())
        finally:
            # A failure stops the writing: reports not yet started are not written.
            for future in pending:
                future.cancel()
    return written
