"""Writing extracts the way each department's system exports them, damaged rows included."""

from __future__ import annotations

import datetime as dt
import json
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
    cols = ex.cells.columns
    corrupt = ex.rows["corrupt"].to_list()
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for start in range(0, ex.cells.height, _CHUNK):
            chunk = ex.cells.slice(start, _CHUNK)
            out = []
            for k, row in enumerate(chunk.iter_rows()):
                text = json.dumps(dict(zip(cols, row, strict=True)), ensure_ascii=False)
                if corrupt[start + k] == "unreadable_row":
                    # the export was cut mid-record
                    text = text[: max(5, int(len(text) * float(rng.uniform(0.3, 0.8))))]
                out.append(text)
            f.write("\n".join(out) + "\n")
    return path


def _write_xlsx(cells: pl.DataFrame, path: Path) -> Path:
    import xlsxwriter

    text_alt = {c.removesuffix("__text"): c for c in cells.columns if c.endswith("__text")}
    headers = [c for c in cells.columns if not c.endswith("__text")]
    date_cols = {c for c in headers if cells.schema[c] == pl.Date}
    # dates as Excel serial numbers: a number with a date format is what Excel calls a date cell
    frame = cells.with_columns(
        [(pl.col(c) - pl.lit(_EXCEL_EPOCH)).dt.total_days().alias(c) for c in date_cols]
    )
    wb = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_numbers": False})
    ws = wb.add_worksheet("居住登记")
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    for j, h in enumerate(headers):
        ws.write_string(0, j, h)
    col_idx = {c: i for i, c in enumerate(frame.columns)}
    plan = []
    for j, h in enumerate(headers):
        plan.append((j, col_idx[h], h in date_cols, col_idx.get(text_alt.get(h, ""), -1)))
    for r, row in enumerate(frame.iter_rows(), start=1):
        for j, ci, is_date, alt in plan:
            v = row[ci]
            if v is None:
                if alt >= 0 and row[alt] is not None:
                    t = row[alt]
                    # some clerks type 19900102 into a number cell
                    if t.isdigit():
                        ws.write_number(r, j, int(t))
                    else:
                        ws.write_string(r, j, t)
                continue
            if is_date:
                ws.write_number(r, j, v, date_fmt)
            else:
                ws.write_string(r, j, str(v))
    wb.close()
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
