"""Writing extracts the way each department's system exports them, damaged rows included."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from linkage.demo_city.sources import Extract

# Bytes a CSV row can never decode from: 0xFF is no lead byte in GB18030/GBK, nor valid UTF-8.
_MARK = "\x01"
_BAD = b"\xff"
_CHUNK = 200_000
_EXCEL_EPOCH = dt.date(1899, 12, 30)
XLSX_MAX_ROWS = 1_000_000


def write_extract(ex: Extract, out_dir: Path, rng: np.random.Generator) -> list[Path]:
    path = out_dir / ex.file
    path.parent.mkdir(parents=True, exist_ok=True)
    if ex.format == "csv":
        return [_write_csv(ex, path, rng)]
    if ex.format == "jsonl":
        return [_write_jsonl(ex, path, rng)]
    if ex.format == "parquet":
        ex.cells.write_parquet(path)
        return [path]
    if ex.format == "xlsx":
        if ex.cells.height <= XLSX_MAX_ROWS:
            return [_write_xlsx(ex.cells, path)]
        # A sheet holds 1,048,575 data rows: the system exports one workbook per million
        # rows, and the sources file names them with a glob.
        stem = Path(ex.file).stem
        written, parts = [], []
        for k, start in enumerate(range(0, ex.cells.height, XLSX_MAX_ROWS), start=1):
            rel = str(Path(ex.file).with_name(f"{stem}_{k:02d}.xlsx"))
            chunk = ex.cells.slice(start, XLSX_MAX_ROWS)
            written.append(_write_xlsx(chunk, out_dir / rel))
            parts.append((rel, chunk.height))
        ex.file = str(Path(ex.file).with_name(f"{stem}_*.xlsx"))
        ex.parts = parts
        return written
    raise ValueError(f"unknown format {ex.format}")


def _write_csv(ex: Extract, path: Path, rng: np.random.Generator) -> Path:
    cells = ex.cells
    # Department systems export without quoting: no field may hold a separator.
    cells = cells.with_columns(pl.col(pl.String).str.replace_all(r"[,\r\n\"]", "，"))
    line = cells.select(
        pl.concat_str([pl.col(c).cast(pl.String).fill_null("") for c in cells.columns], separator=",").alias("l")
    ).to_series()
    corrupt = ex.rows["corrupt"]
    bad = np.flatnonzero(corrupt.is_not_null().to_numpy())
    if len(bad):
        fixed = []
        for i, (text, how) in enumerate(zip(line.gather(bad).to_list(), corrupt.gather(bad).to_list(), strict=True)):
            if how == "wrong_column_count":
                # an address typed with an ASCII comma, or a row cut short by the export
                fixed.append(text + ",备注：见附件" if (i + int(rng.integers(2))) % 2 else text.rsplit(",", 1)[0])
            elif how == "undecodable_bytes":
                first = text.index(",") + 1
                fixed.append(text[:first] + _MARK + text[first + 1:])
            else:
                raise ValueError(how)
        line = line.scatter(bad, fixed)
    crlf = ex.encoding in ("gb18030", "gbk")  # the Windows-era systems
    nl = "\r\n" if crlf else "\n"
    encoding = ex.encoding or "utf-8"
    with path.open("wb") as f:
        if ex.bom:
            f.write(b"\xef\xbb\xbf")
        f.write((",".join(cells.columns) + nl).encode(encoding))
        for start in range(0, len(line), _CHUNK):
            chunk = line.slice(start, _CHUNK).to_list()
            f.write((nl.join(chunk) + nl).encode(encoding).replace(_MARK.encode(), _BAD))
    return path


def _write_jsonl(ex: Extract, path: Path, rng: np.random.Generator) -> Path:
    line = ex.cells.select(pl.struct(pl.all()).struct.json_encode().alias("l")).to_series()
    bad = np.flatnonzero((ex.rows["corrupt"] == "unreadable_row").fill_null(False).to_numpy())
    if len(bad):
        # the export was cut mid-record
        cut = [t[: max(5, int(len(t) * float(rng.uniform(0.3, 0.8))))] for t in line.gather(bad).to_list()]
        line = line.scatter(bad, cut)
    with path.open("wb") as f:
        for start in range(0, len(line), _CHUNK):
            f.write(("\n".join(line.slice(start, _CHUNK).to_list()) + "\n").encode("utf-8"))
    return path


def _col_letter(j: int) -> str:
    out = ""
    j += 1
    while j:
        j, r = divmod(j - 1, 26)
        out = chr(65 + r) + out
    return out


def _xml_text(e: pl.Expr) -> pl.Expr:
    return e.str.replace_all("&", "&amp;", literal=True).str.replace_all("<", "&lt;", literal=True) \
        .str.replace_all(">", "&gt;", literal=True)


_XLSX_STATIC = {
    "[Content_Types].xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/styles.xml" '
        'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
        '</Types>'
    ),
    "_rels/.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'officeDocument" Target="xl/workbook.xml"/></Relationships>'
    ),
    "xl/workbook.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheets><sheet name="居住登记" sheetId="1" r:id="rId1"/></sheets></workbook>'
    ),
    "xl/_rels/workbook.xml.rels": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'worksheet" Target="worksheets/sheet1.xml"/>'
        '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'styles" Target="styles.xml"/></Relationships>'
    ),
    "xl/styles.xml": (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/></numFmts>'
        '<fonts count="1"><font><sz val="11"/><name val="等线"/></font></fonts>'
        '<fills count="2"><fill><patternFill patternType="none"/></fill>'
        '<fill><patternFill patternType="gray125"/></fill></fills>'
        '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
        '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        '</styleSheet>'
    ),
}


def _write_xlsx(cells: pl.DataFrame, path: Path) -> Path:
    """An Office Open XML workbook of one sheet, its XML built column-wise.

    Dates are Excel date cells (a serial number with a date format); a `<col>__text`
    column holds what a clerk typed instead of a date (text, or digits in a number cell).
    """
    text_alt = {c.removesuffix("__text"): c for c in cells.columns if c.endswith("__text")}
    headers = [c for c in cells.columns if not c.endswith("__text")]
    n = cells.height
    row_no = (pl.int_range(pl.len()) + 2).cast(pl.String)
    parts: list[pl.Expr] = [pl.lit("<row r=\""), row_no, pl.lit("\">")]
    for j, h in enumerate(headers):
        ref = pl.lit(f'<c r="{_col_letter(j)}') + row_no
        if cells.schema[h] == pl.Date:
            serial = (pl.col(h) - pl.lit(_EXCEL_EPOCH)).dt.total_days().cast(pl.String)
            cell = pl.when(pl.col(h).is_not_null()).then(ref + pl.lit('" s="1"><v>') + serial + pl.lit("</v></c>"))
            if h in text_alt:
                t = pl.col(text_alt[h])
                cell = (
                    cell.when(t.str.contains(r"^\d+$")).then(ref + pl.lit('"><v>') + t + pl.lit("</v></c>"))
                    .when(t.is_not_null())
                    .then(ref + pl.lit('" t="inlineStr"><is><t>') + _xml_text(t) + pl.lit("</t></is></c>"))
                )
        else:
            v = pl.col(h).cast(pl.String)
            cell = pl.when(v.is_not_null()).then(
                ref + pl.lit('" t="inlineStr"><is><t>') + _xml_text(v) + pl.lit("</t></is></c>"))
        parts.append(cell.otherwise(pl.lit("")))
    parts.append(pl.lit("</row>"))
    rows = cells.select(pl.concat_str(parts).alias("x")).to_series()
    head = "".join(
        f'<c r="{_col_letter(j)}1" t="inlineStr"><is><t>{h}</t></is></c>' for j, h in enumerate(headers)
    )
    last = f"{_col_letter(len(headers) - 1)}{n + 1}"
    def entry(name: str) -> zipfile.ZipInfo:
        # a fixed timestamp: the same seed gives the same bytes
        info = zipfile.ZipInfo(name, date_time=(2026, 11, 20, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, text in _XLSX_STATIC.items():
            z.writestr(entry(name), text)
        with z.open(entry("xl/worksheets/sheet1.xml"), "w", force_zip64=True) as f:
            f.write((
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                f'<dimension ref="A1:{last}"/><sheetData><row r="1">{head}</row>'
            ).encode())
            for start in range(0, n, _CHUNK):
                f.write("".join(rows.slice(start, _CHUNK).to_list()).encode("utf-8"))
            f.write(b"</sheetData></worksheet>")
    return path


def write_sources_yaml(extracts: list[Extract], path: Path) -> None:
    doc = {"sources": []}
    for ex in extracts:
        entry: dict = {"name": ex.name, "department": ex.department, "kind": ex.kind, "path": ex.file,
                       "format": ex.format}
        if ex.format == "csv":
            entry["encoding"] = ex.encoding
        entry["columns"] = ex.columns
        doc["sources"].append(entry)
    header = (
        "# renhu demo city: seven department extracts of 浙江省绍兴市 (synthetic people).\n"
        "# Paths are relative to this file.\n"
    )
    path.write_text(header + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
