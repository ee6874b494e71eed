"""The steward's view: a static HTML dashboard per run and a history page across nights.

Built from the PUBLISHED files of a run only (metrics.json, share_rates.csv,
quarantine.parquet, household_findings.parquet, reports/, validation/), so it does
not depend on how the stages compute them. The pages open from the file system
with no network: plotly.js is inlined once per page.

Only aggregates reach the page: the loaders below reduce every parquet file to
counts before anything is rendered, so no identity number or name can leak.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from linkage.fields import CANONICAL_FIELDS

__all__ = [
    "FINDING_KIND_LABELS",
    "QUARANTINE_REASON_LABELS",
    "History",
    "HistoryNight",
    "load_history",
    "night_of",
    "write_history",
    "write_run_dashboard",
]

TEMPLATES = Path(__file__).parent / "templates"

# Stewards read the charts in Chinese; the code stays next to it for the engineers.
FINDING_KIND_LABELS: dict[str, str] = {
    "hukou_residence_split": "人户分离",
    "multi_household": "一人多户",
    "roster_conflict": "户成员冲突",
    "unregistered_resident": "居住未登记",
    "two_heads": "一户两户主",
    "no_head": "户无户主",
    "child_older_than_parent": "子女年长于父母",
    "spouse_under_legal_age": "配偶未达法定婚龄",
}

QUARANTINE_REASON_LABELS: dict[str, str] = {
    "wrong_column_count": "列数不符",
    "undecodable_bytes": "编码无法解析",
    "unreadable_row": "行无法解析",
    "missing_record_id": "缺记录编号",
    "record_id_is_id_number": "记录编号为身份证号",
    "no_name_or_id": "无姓名且无证件号",
    "superseded_duplicate_record_id": "记录编号重复（已被替代）",
}

FIELD_LABELS: dict[str, str] = {
    "record_id": "记录编号", "name": "姓名", "id_number": "身份号码", "sex": "性别",
    "birth_date": "出生日期", "ethnicity": "民族", "phone": "电话", "hukou_address": "户籍地址",
    "hukou_region": "户籍区划", "residence_address": "居住地址", "residence_region": "居住区划",
    "household_id": "户号", "relation_to_head": "与户主关系", "house_id": "房屋编号",
    "employer": "工作单位", "registered_at": "登记日期", "updated_at": "更新日期",
}

STAGE_LABELS: dict[str, str] = {
    "ingest": "导入", "standardize": "标准化", "link": "关联", "households": "户核查",
    "rates": "比率", "validate": "校验", "publish": "发布",
}

FONT_STACK = (
    '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", '
    '"WenQuanYi Micro Hei", sans-serif'
)

PLOTLY_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d"],
}

# A night's batch starts in the evening and may finish after midnight; the city keeps
# China Standard Time, and a run started before noon belongs to the night before.
NIGHT_TZ = timezone(timedelta(hours=8))
NIGHT_CUTOFF = timedelta(hours=12)

# Above this many nights, one tick per night would overlap; plotly picks ticks instead.
MAX_LINKED_TICKS = 31

_RUN_ID_TIME = re.compile(r"^(\d{8}T\d{6}Z)")


# ---------------------------------------------------------------- formatting


def _fmt_int(value: Any) -> str:
    if value is None:
        return "—"
    return f"{int(value):,}"


def _fmt_pct(value: Any, digits: int = 1) -> str:
    """A share as a percentage to ``digits`` places; a share short of all (or above none)
    that would round to 100% (0%) is shown as >99.9% (<0.1%): "100%" says every one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    value = float(value)
    text = f"{100 * value:.{digits}f}%"
    step = 10.0**-digits
    if value < 1 and float(text[:-1]) >= 100:
        return f">{100 - step:.{digits}f}%"
    if value > 0 and float(text[:-1]) <= 0:
        return f"<{step:.{digits}f}%"
    return text


def validation_verdict(validation: dict[str, Any]) -> tuple[str, str]:
    """The night's validation in words, and its style: 通过 (ok), 有警告 n (warn) where only
    warnings failed, 未通过 (ko) where a critical check failed or a suite could not run.

    GX's success is false as soon as any check fails, a warning too, so a night that
    published with a warning read 未通过 in red beside nights that did not publish at all."""
    if not validation:
        return "", ""
    if validation.get("critical_failed") or validation.get("could_not_run"):
        return "未通过", "ko"
    warnings = validation.get("warnings_failed")
    if warnings is None:  # a run from before warnings were counted apart
        warnings = 0 if validation.get("success", True) else validation.get("failed") or 0
    if warnings:
        return f"有警告 {warnings}", "wn"
    return "通过", "ok"


def _ratio(numerator: Any, denominator: Any) -> float | None:
    if not denominator or numerator is None:
        return None
    return float(numerator) / float(denominator)


def _completeness_style(value: float | None) -> str:
    """Red below half filled, through amber, to green when nearly complete."""
    if value is None:
        return "background:#eceff1;color:#78909c"
    hue = round(120 * max(0.0, min(1.0, (value - 0.5) / 0.45)))
    return f"background:hsl({hue},70%,86%)"


# ---------------------------------------------------------------- reading a run


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the dashboard is built from a published run")
    return json.loads(path.read_text(encoding="utf-8"))


def _source_names(metrics: dict[str, Any]) -> list[str]:
    return list((metrics.get("sources") or {}).keys())


def _department_of(metrics: dict[str, Any]) -> dict[str, str]:
    return {name: (src or {}).get("department") or name for name, src in (metrics.get("sources") or {}).items()}


def _share_rows(run_dir: Path, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per source: records, persons, shared_persons, share_rate (share_rates.csv first)."""
    departments = _department_of(metrics)
    path = run_dir / "share_rates.csv"
    rows: list[dict[str, Any]] = []
    if path.is_file():
        frame = pl.read_csv(path, infer_schema_length=None)
        for rec in frame.iter_rows(named=True):
            rows.append({
                "source": str(rec["source"]),
                "records": rec.get("records"),
                "persons": rec.get("persons"),
                "shared_persons": rec.get("shared_persons"),
                "share_rate": rec.get("share_rate"),
            })
    else:
        for name, src in (metrics.get("sources") or {}).items():
            rows.append({
                "source": name,
                "records": src.get("accepted"),
                "persons": src.get("persons"),
                "shared_persons": src.get("shared_persons"),
                "share_rate": src.get("share_rate"),
            })
    order = {name: i for i, name in enumerate(_source_names(metrics))}
    rows.sort(key=lambda r: (order.get(r["source"], len(order)), r["source"]))
    for row in rows:
        row["department"] = departments.get(row["source"], "")
        if row["share_rate"] is None or (isinstance(row["share_rate"], float) and math.isnan(row["share_rate"])):
            row["share_rate"] = _ratio(row["shared_persons"], row["persons"])
    return rows


def _quarantine_counts(run_dir: Path, metrics: dict[str, Any]) -> tuple[dict[tuple[str, str], int], str]:
    """(source, reason_code) -> rows, and where the counts came from."""
    path = run_dir / "quarantine.parquet"
    counts: dict[tuple[str, str], int] = {}
    # Only the stable code is read: the clerk's sentence in `reason` may quote the row's values.
    if path.is_file() and "reason_code" in pl.read_parquet_schema(path):
        frame = pl.read_parquet(path, columns=["source", "reason_code"])
        grouped = frame.group_by("source", "reason_code").len()
        for source, code, n in grouped.iter_rows():
            counts[(str(source), str(code) if code is not None else "unknown")] = int(n)
        return counts, "quarantine.parquet"
    for name, src in (metrics.get("sources") or {}).items():
        for code, n in (src.get("quarantine_reasons") or {}).items():
            if n:
                counts[(name, code)] = int(n)
    return counts, "metrics.json"


@dataclass
class FindingCounts:
    by_department_kind: dict[tuple[str, str], int] = field(default_factory=dict)
    records_by_kind: dict[str, int] = field(default_factory=dict)
    persons_by_kind: dict[str, int | None] = field(default_factory=dict)
    origin: str = "household_findings.parquet"


def _finding_counts(run_dir: Path, metrics: dict[str, Any]) -> FindingCounts:
    path = run_dir / "household_findings.parquet"
    result = FindingCounts()
    if path.is_file():
        # `detail` names people; only the columns that are counted are read.
        wanted = [c for c in ("kind", "person_id", "source", "department") if c in pl.read_parquet_schema(path)]
        frame = pl.read_parquet(path, columns=wanted)
        if "department" not in frame.columns:
            departments = _department_of(metrics)
            frame = frame.with_columns(
                pl.col("source").replace_strict(departments, default=pl.col("source")).alias("department")
            )
        for dept, kind, n in frame.group_by("department", "kind").len().iter_rows():
            result.by_department_kind[(str(dept), str(kind))] = int(n)
        per_kind = frame.group_by("kind").agg(pl.len().alias("records"), pl.col("person_id").n_unique().alias("persons"))
        for kind, records, persons in per_kind.iter_rows():
            result.records_by_kind[str(kind)] = int(records)
            result.persons_by_kind[str(kind)] = int(persons)
        return result
    result.origin = "metrics.json"
    findings = metrics.get("findings") or {}
    for dept, kinds in (findings.get("by_department") or {}).items():
        for kind, n in (kinds or {}).items():
            if n:
                result.by_department_kind[(dept, kind)] = int(n)
    persons = findings.get("persons_by_kind") or {}
    for kind, n in (findings.get("by_kind") or {}).items():
        if n:
            result.records_by_kind[kind] = int(n)
            result.persons_by_kind[kind] = persons.get(kind)
    return result


def _report_links(run_dir: Path) -> list[dict[str, Any]]:
    reports = run_dir / "reports"
    if not reports.is_dir():
        return []
    out = []
    for dept_dir in sorted(p for p in reports.iterdir() if p.is_dir()):
        files = [
            {"name": f.name, "href": "reports/" + quote(dept_dir.name) + "/" + quote(f.name),
             "size": _fmt_size(f.stat().st_size), "workbook": f.suffix.lower() == ".xlsx"}
            for f in sorted(p for p in dept_dir.iterdir() if p.is_file())
        ]
        # The clerk opens the workbook; the per-sheet CSVs are there for machines, folded away.
        out.append({
            "department": dept_dir.name,
            "files": files,
            "workbooks": [f for f in files if f["workbook"]],
            "others": [f for f in files if not f["workbook"]],
        })
    return out


def _fmt_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def warm_up() -> None:
    """Do the first-call work of a dashboard ahead of it: compile the page templates, read
    plotly's bundle, and let plotly import the figure classes and build its templates.

    The publish stage runs this in a thread while DuckDB and the report writers work: on
    the first page of a process this work took 0.25 s of the page's 0.40 s (the page itself
    0.15 s). It writes nothing and changes no page.
    """
    environment = _environment()
    for template in ("run.html.j2", "history.html.j2"):
        environment.get_template(template)
    _plotly_js()
    for trace in (go.Bar(x=["a"], y=[1]), go.Heatmap(z=[[1]]), go.Scatter(x=[1], y=[1])):
        _figure_html(_layout(go.Figure(trace), height=100), "warm-up")


# ---------------------------------------------------------------- charts


# Long legends go under the chart: above it they run into plotly's tool bar.
_LEGEND_BELOW: dict[str, Any] = {"orientation": "h", "yref": "container", "y": 0, "yanchor": "bottom", "x": 0}


def _layout(fig: go.Figure, *, height: int, **kwargs: Any) -> go.Figure:
    settings: dict[str, Any] = {
        "template": "plotly_white",
        "font": {"family": FONT_STACK, "size": 13},
        "height": height,
        "margin": {"l": 10, "r": 20, "t": 30, "b": 10},
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
    }
    settings.update(kwargs)
    fig.update_layout(**settings)
    return fig


def _figure_html(fig: go.Figure, div_id: str) -> Markup:
    html = pio.to_html(
        fig, include_plotlyjs=False, full_html=False, div_id=div_id,
        config=PLOTLY_CONFIG, default_height=f"{fig.layout.height}px", default_width="100%",
    )
    return Markup(html)


def _share_chart(rows: list[dict[str, Any]]) -> go.Figure:
    sources = [r["source"] for r in rows]
    values = [r["share_rate"] if r["share_rate"] is not None else 0.0 for r in rows]
    text = [
        f"{_fmt_pct(r['share_rate'])}  ({_fmt_int(r['shared_persons'])}/{_fmt_int(r['persons'])})" for r in rows
    ]
    fig = go.Figure(go.Bar(
        x=values, y=sources, orientation="h", text=text, textposition="auto",
        customdata=[[r["department"], _fmt_int(r["shared_persons"]), _fmt_int(r["persons"])] for r in rows],
        hovertemplate="%{y}（%{customdata[0]}）<br>共享率 %{x:.1%}<br>%{customdata[1]} / %{customdata[2]} 人<extra></extra>",
        marker_color="#1e88e5",
    ))
    _layout(fig, height=max(220, 60 + 38 * len(rows)))
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title="共享率 share rate = 共享人数 / 人数")
    fig.update_yaxes(autorange="reversed")
    return fig


def _overlap_chart(metrics: dict[str, Any], rows: list[dict[str, Any]]) -> go.Figure | None:
    overlap = metrics.get("overlap") or {}
    sources = _source_names(metrics) or [r["source"] for r in rows]
    if not overlap or not sources:
        return None
    persons = {r["source"]: r["persons"] for r in rows}
    z: list[list[int | None]] = []
    for a in sources:
        line: list[int | None] = []
        for b in sources:
            value = (overlap.get(a) or {}).get(b)
            if value is None:
                value = (overlap.get(b) or {}).get(a)
            if value is None and a == b:
                value = persons.get(a)
            line.append(value)
        z.append(line)
    share = [[_fmt_pct(_ratio(v, persons.get(a))) for v in line] for a, line in zip(sources, z, strict=True)]
    fig = go.Figure(go.Heatmap(
        z=z, x=sources, y=sources, colorscale="Blues", texttemplate="%{z:,}",
        customdata=share,
        hovertemplate="%{y} ∩ %{x}: %{z:,} 人<br>占 %{y} 人数的 %{customdata}<extra></extra>",
        colorbar={"title": "人数"},
    ))
    side = max(320, 90 + 46 * len(sources))
    _layout(fig, height=side)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(side="top")
    return fig


def _quarantine_chart(counts: dict[tuple[str, str], int], sources: list[str]) -> go.Figure | None:
    if not counts:
        return None
    codes = sorted({code for _, code in counts}, key=lambda c: (c not in QUARANTINE_REASON_LABELS, c))
    all_sources = sources + sorted({s for s, _ in counts} - set(sources))
    fig = go.Figure()
    for code in codes:
        fig.add_bar(
            name=QUARANTINE_REASON_LABELS.get(code, code), orientation="h", y=all_sources,
            x=[counts.get((s, code), 0) for s in all_sources],
            hovertemplate="%{y}: %{x:,} 行<extra>" + escape(code) + "</extra>",
        )
    _layout(fig, height=max(300, 150 + 38 * len(all_sources)), barmode="stack", legend=_LEGEND_BELOW)
    fig.update_xaxes(title="隔离行数 quarantined rows")
    fig.update_yaxes(autorange="reversed")
    return fig


def _findings_chart(counts: FindingCounts) -> go.Figure | None:
    if not counts.by_department_kind:
        return None
    departments = sorted({d for d, _ in counts.by_department_kind})
    kinds = sorted({k for _, k in counts.by_department_kind}, key=lambda k: (k not in FINDING_KIND_LABELS, k))
    fig = go.Figure()
    for kind in kinds:
        fig.add_bar(
            name=FINDING_KIND_LABELS.get(kind, kind), x=departments,
            y=[counts.by_department_kind.get((d, kind), 0) for d in departments],
            hovertemplate="%{x}: %{y:,} 条<extra>" + escape(kind) + "</extra>",
        )
    _layout(fig, height=480, barmode="stack", legend=_LEGEND_BELOW)
    fig.update_yaxes(title="发现（证据记录数）findings")
    return fig


# ---------------------------------------------------------------- one run


def _headline(metrics: dict[str, Any]) -> list[dict[str, str]]:
    records_in = metrics.get("records_in")
    accepted = metrics.get("accepted")
    quarantined = metrics.get("quarantined")
    persons = metrics.get("persons")
    cards = []
    balance = None
    if None not in (records_in, accepted, quarantined):
        balance = records_in - accepted - quarantined
    cards.append({
        "label": "输入记录", "en": "records in", "value": _fmt_int(records_in),
        "detail": f"接收 {_fmt_int(accepted)} + 隔离 {_fmt_int(quarantined)}",
        "note": ("无遗漏 nothing lost" if balance == 0 else f"差 {balance:,} 行 rows unaccounted")
        if balance is not None else "",
        "alert": "bad" if balance not in (0, None) else "",
    })
    cards.append({
        "label": "接收记录", "en": "accepted", "value": _fmt_int(accepted),
        "detail": f"{_fmt_int(accepted)} / {_fmt_int(records_in)} 输入", "note": _fmt_pct(_ratio(accepted, records_in)),
        "alert": "",
    })
    cards.append({
        "label": "隔离记录", "en": "quarantined", "value": _fmt_int(quarantined),
        "detail": f"{_fmt_int(quarantined)} / {_fmt_int(records_in)} 输入",
        "note": _fmt_pct(_ratio(quarantined, records_in), 2), "alert": "warn" if quarantined else "",
    })
    per_person = _ratio(accepted, persons)
    cards.append({
        "label": "人数（一人一档）", "en": "persons", "value": _fmt_int(persons),
        "detail": f"{_fmt_int(accepted)} 接收记录 / {_fmt_int(persons)} 人",
        "note": f"每人 {per_person:.2f} 条记录" if per_person is not None else "", "alert": "",
    })
    for key, label, en, num_label, den_label in (
        ("duplicate_rate", "重复记录率", "duplicate rate", "重复记录", "接收记录"),
        # Labels follow linkage/rates.py: same township of hukou and residence, among persons with
        # both known; residence-registered, among persons whose hukou is outside the city.
        ("household_consistency_rate", "人户一致率", "household consistency", "户籍与居住同乡镇街道", "两地均知"),
        ("floating_registration_rate", "流动人口登记率", "floating registration", "已居住登记", "流动人口"),
        ("share_rate", "总体共享率", "overall share rate", "共享人数", "人数"),
    ):
        rate = metrics.get(key) or {}
        cards.append({
            "label": label, "en": en, "value": _fmt_pct(rate.get("value")),
            "detail": f"{num_label} {_fmt_int(rate.get('numerator'))} / {den_label} {_fmt_int(rate.get('denominator'))}",
            "note": "分母为 0" if rate and not rate.get("denominator") else "", "alert": "",
        })
    return cards


def _source_table(metrics: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    share = {r["source"]: r for r in rows}
    out = []
    for name, src in (metrics.get("sources") or {}).items():
        r = share.get(name, {})
        out.append({
            "source": name, "department": src.get("department", ""), "kind": src.get("kind", ""),
            "records_in": _fmt_int(src.get("records_in")), "accepted": _fmt_int(src.get("accepted")),
            "quarantined": _fmt_int(src.get("quarantined")),
            "persons": _fmt_int(r.get("persons", src.get("persons"))),
            "shared_persons": _fmt_int(r.get("shared_persons", src.get("shared_persons"))),
            "share_rate": _fmt_pct(r.get("share_rate", src.get("share_rate"))),
            "duplicate_rate": _fmt_pct(src.get("duplicate_rate")),
        })
    return out


def _completeness(metrics: dict[str, Any]) -> dict[str, Any]:
    sources = metrics.get("sources") or {}
    present = {f for src in sources.values() for f in (src.get("field_completeness") or {})}
    fields = [f for f in CANONICAL_FIELDS if f in present] + sorted(present - set(CANONICAL_FIELDS))
    rows = []
    for name, src in sources.items():
        filled = src.get("field_completeness") or {}
        invalid = {f: (v or {}).get("flagged_invalid") for f, v in (src.get("standardization") or {}).items()}
        cells = []
        for f in fields:
            value = filled.get(f)
            title = f"{name}.{f}: " + ("未映射 not mapped" if value is None else f"{_fmt_pct(value, 2)} 已填")
            if invalid.get(f):
                title += f"，{invalid[f]:,} 个值不合规 flagged invalid"
            cells.append({
                "text": "—" if value is None else _fmt_pct(value, 0),
                "style": _completeness_style(value), "title": title, "flag": bool(invalid.get(f)),
            })
        rows.append({"source": name, "cells": cells})
    return {"fields": [{"code": f, "label": FIELD_LABELS.get(f, f)} for f in fields], "rows": rows}


def _stages(metrics: dict[str, Any]) -> dict[str, Any]:
    stages = metrics.get("stages") or []
    total = sum(float(s.get("seconds") or 0) for s in stages)
    rows = []
    for s in stages:
        seconds = float(s.get("seconds") or 0)
        rows.append({
            "stage": s.get("stage", ""), "label": STAGE_LABELS.get(s.get("stage", ""), ""),
            "seconds": f"{seconds:,.2f}", "rows_in": _fmt_int(s.get("rows_in")),
            "rows_out": _fmt_int(s.get("rows_out")),
            "share": _fmt_pct(_ratio(seconds, total)),
            "width": f"{100 * seconds / total:.1f}" if total else "0",
            # Ingest's reading done before the flow started: not in the stage's seconds.
            "read_ahead": f"{float(s['read_ahead_seconds']):,.2f}" if s.get("read_ahead_seconds") else "",
        })
    return {"rows": rows, "total": f"{total:,.2f}"}


def _linkage_figures(metrics: dict[str, Any]) -> list[dict[str, str]]:
    """The linkage stage's scalar figures (pairs scored, matched, …) as label/value rows."""
    rows = []
    for key, value in (metrics.get("linkage") or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            continue
        if isinstance(value, int):
            shown = _fmt_int(value)
        elif isinstance(value, float):
            shown = f"{value:,.4g}"
        else:
            shown = value
        rows.append({"key": key, "value": shown})
    return rows


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True, lstrip_blocks=True,
    )
    env.globals["font_stack"] = FONT_STACK
    return env


@functools.cache
def _plotly_js() -> Markup:
    # The bundle is inlined in a <script> block, which any "</script" inside it would close;
    # "<\/script" means the same inside a JS string or regex.
    return Markup(get_plotlyjs().replace("</script", "<\\/script"))


def write_run_dashboard(run_dir: Path) -> Path:
    """Write `run_dir/index.html` from the run's published files; return its path."""
    run_dir = Path(run_dir)
    metrics = _read_metrics(run_dir)
    rows = _share_rows(run_dir, metrics)
    quarantine, quarantine_origin = _quarantine_counts(run_dir, metrics)
    findings = _finding_counts(run_dir, metrics)
    sources = _source_names(metrics) or [r["source"] for r in rows]

    charts: dict[str, Markup | None] = {}
    charts["share"] = _figure_html(_share_chart(rows), "chart-share-rate") if rows else None
    overlap = _overlap_chart(metrics, rows)
    charts["overlap"] = _figure_html(overlap, "chart-overlap") if overlap else None
    q_fig = _quarantine_chart(quarantine, sources)
    charts["quarantine"] = _figure_html(q_fig, "chart-quarantine") if q_fig else None
    f_fig = _findings_chart(findings)
    charts["findings"] = _figure_html(f_fig, "chart-findings") if f_fig else None

    quarantine_table = [
        {"code": code, "label": QUARANTINE_REASON_LABELS.get(code, ""),
         "rows": _fmt_int(sum(n for (_, c), n in quarantine.items() if c == code)),
         "sources": ", ".join(sorted(s for (s, c), n in quarantine.items() if c == code and n))}
        for code in sorted({c for _, c in quarantine})
    ]
    findings_table = [
        {"kind": kind, "label": FINDING_KIND_LABELS.get(kind, ""),
         "records": _fmt_int(n), "persons": _fmt_int(findings.persons_by_kind.get(kind))}
        for kind, n in sorted(findings.records_by_kind.items(),
                              key=lambda kv: (-kv[1], kv[0] not in FINDING_KIND_LABELS, kv[0]))
    ]
    validation = metrics.get("validation") or {}
    html = _environment().get_template("run.html.j2").render(
        metrics=metrics,
        run_id=metrics.get("run_id") or run_dir.name,
        headline=_headline(metrics),
        source_table=_source_table(metrics, rows),
        charts=charts,
        quarantine_table=quarantine_table,
        quarantine_origin=quarantine_origin,
        findings_table=findings_table,
        findings_origin=findings.origin,
        completeness=_completeness(metrics),
        stages=_stages(metrics),
        linkage=_linkage_figures(metrics),
        reports=_report_links(run_dir),
        validation=validation,
        validation_verdict=validation_verdict(validation),
        has_validation_site=(run_dir / "validation" / "index.html").is_file(),
        has_manifest=(run_dir / "manifest.json").is_file(),
        plotly_js=_plotly_js(),
        history_href="../../index.html",
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    out = run_dir / "index.html"
    out.write_text(html, encoding="utf-8")
    return out


# ---------------------------------------------------------------- history


@dataclass
class HistoryNight:
    """One point of the history: the last run of a night, and any reruns it replaced."""

    night: date
    run_id: str
    started_at: datetime
    metrics: dict[str, Any]
    href: str
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (run_id, href)
    jumps: list[str] = field(default_factory=list)
    jumped_sources: dict[str, set[str]] = field(default_factory=dict)  # source -> {"records", "share_rate"}


def _started_at(metrics: dict[str, Any], run_dir: Path) -> datetime:
    raw = metrics.get("started_at")
    if isinstance(raw, str) and raw:
        try:
            value = datetime.fromisoformat(raw)
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        except ValueError:
            pass
    match = _RUN_ID_TIME.match(str(metrics.get("run_id") or run_dir.name))
    if match:
        return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return datetime.fromtimestamp((run_dir / "metrics.json").stat().st_mtime, tz=UTC)


def night_of(started_at: datetime) -> date:
    """The night a run belongs to: its start in China Standard Time, less twelve hours."""
    return (started_at.astimezone(NIGHT_TZ) - NIGHT_CUTOFF).date()


def _records_of(metrics: dict[str, Any]) -> dict[str, int | None]:
    return {name: (src or {}).get("records_in") for name, src in (metrics.get("sources") or {}).items()}


def _share_of(metrics: dict[str, Any]) -> dict[str, float | None]:
    return {name: (src or {}).get("share_rate") for name, src in (metrics.get("sources") or {}).items()}


def _mark_jumps(nights: list[HistoryNight], band: float) -> None:
    """Row counts jump when they move by more than `band` relative to the previous night;
    share rates when they move by more than `band` in absolute terms (0.10 = 10 points)."""
    for prev, cur in zip(nights, nights[1:], strict=False):
        prev_rec, cur_rec = _records_of(prev.metrics), _records_of(cur.metrics)
        prev_share, cur_share = _share_of(prev.metrics), _share_of(cur.metrics)
        for source in cur_rec:
            if source not in prev_rec:
                cur.jumps.append(f"{source}: 新来源 new source")
                cur.jumped_sources.setdefault(source, set()).add("records")
                continue
            old, new = prev_rec[source], cur_rec[source]
            if old is not None and new is not None:
                change = (new - old) / old if old else (math.inf if new else 0.0)
                if abs(change) > band:
                    shown = f"{change:+.1%}" if math.isfinite(change) else "从 0 起"
                    cur.jumps.append(f"{source} 行数 rows {shown} ({old:,} → {new:,})")
                    cur.jumped_sources.setdefault(source, set()).add("records")
            old_rate, new_rate = prev_share.get(source), cur_share.get(source)
            if old_rate is not None and new_rate is not None and abs(new_rate - old_rate) > band:
                cur.jumps.append(
                    f"{source} 共享率 share rate {100 * (new_rate - old_rate):+.1f} 个百分点 "
                    f"({_fmt_pct(old_rate)} → {_fmt_pct(new_rate)})"
                )
                cur.jumped_sources.setdefault(source, set()).add("share_rate")
        for source in prev_rec:
            if source not in cur_rec:
                cur.jumps.append(f"{source}: 来源缺失 source missing")


@dataclass
class History:
    """What `runs/` holds: one entry per night, oldest first; runs whose metrics.json does not
    parse; and runs that failed validation and did not publish (`runs/<run_id>-failed/`)."""

    nights: list[HistoryNight]
    unreadable: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (folder, href)


def load_history(out_dir: Path, jump_band: float = 0.10) -> History:
    """Every readable `out_dir/runs/*/metrics.json`, one entry per night (the night's last run),
    with jumps marked."""
    if not jump_band > 0:
        raise ValueError(f"jump_band must be a positive fraction such as 0.10, not {jump_band!r}")
    runs_dir = Path(out_dir) / "runs"
    runs: list[tuple[datetime, str, dict[str, Any], str]] = []
    history = History(nights=[])
    folders = sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
    for run_dir in folders:
        if run_dir.name.startswith("."):
            # runs/.<run_id>.partial/ is a run still publishing, or one that died half-way.
            continue
        if run_dir.name.endswith("-failed"):
            docs = run_dir / "validation" / "index.html"
            target = f"runs/{quote(run_dir.name)}/" + ("validation/index.html" if docs.is_file() else "")
            history.failed.append((run_dir.name, target))
            continue
        path = run_dir / "metrics.json"
        if not path.is_file():
            continue
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            history.unreadable.append(run_dir.name)
            continue
        page = "index.html" if (run_dir / "index.html").is_file() else "metrics.json"
        href = f"runs/{quote(run_dir.name)}/{page}"
        runs.append((_started_at(metrics, run_dir), run_dir.name, metrics, href))
    runs.sort(key=lambda r: (r[0], r[1]))
    by_night: dict[date, HistoryNight] = {}
    for started, name, metrics, href in runs:
        night = night_of(started)
        run_id = str(metrics.get("run_id") or name)
        earlier = by_night.get(night)
        entry = HistoryNight(night=night, run_id=run_id, started_at=started, metrics=metrics, href=href)
        if earlier is not None:
            entry.superseded = [*earlier.superseded, (earlier.run_id, earlier.href)]
        by_night[night] = entry
    history.nights = [by_night[k] for k in sorted(by_night)]
    _mark_jumps(history.nights, jump_band)
    return history


def _rate_value(metrics: dict[str, Any], key: str) -> float | None:
    return (metrics.get(key) or {}).get("value")


def _time_axis(fig: go.Figure, nights: list[HistoryNight]) -> None:
    fig.update_xaxes(type="date", title="夜 night")
    if len(nights) <= MAX_LINKED_TICKS:
        # One tick per night that ran. Not links: plotly drops relative links in an svg
        # opened from file://; a click on a point opens the run instead (see base.html.j2).
        fig.update_xaxes(
            tickmode="array",
            tickvals=[n.night.isoformat() for n in nights],
            ticktext=[n.night.strftime("%m-%d") for n in nights],
        )
    if len(nights) == 1:
        day = nights[0].night
        fig.update_xaxes(range=[(day - timedelta(days=1)).isoformat(), (day + timedelta(days=1)).isoformat()])
    for n in nights:
        if n.jumps:
            midnight = datetime.combine(n.night, datetime.min.time())
            fig.add_vrect(
                x0=(midnight - timedelta(hours=6)).isoformat(), x1=(midnight + timedelta(hours=6)).isoformat(),
                fillcolor="#e53935", opacity=0.15, line_width=0, layer="below",
            )


def _per_source_lines(
    nights: list[HistoryNight], value_of: Any, jump_key: str, *, percent: bool, overall: Any = None
) -> go.Figure:
    sources: list[str] = []
    for n in nights:
        for s in n.metrics.get("sources") or {}:
            if s not in sources:
                sources.append(s)
    fig = go.Figure()
    jump_x: list[str] = []
    jump_y: list[float] = []
    jump_text: list[str] = []
    jump_href: list[str] = []
    value_format = ":.1%" if percent else ":,"
    for source in sources:
        xs, ys, hrefs, run_ids = [], [], [], []
        for n in nights:
            value = value_of(n.metrics, source)
            xs.append(n.night.isoformat())
            ys.append(value)
            hrefs.append(n.href)
            run_ids.append(n.run_id)
            if value is not None and jump_key in n.jumped_sources.get(source, set()):
                jump_x.append(n.night.isoformat())
                jump_y.append(value)
                jump_text.append(source)
                jump_href.append(n.href)
        fig.add_scatter(
            x=xs, y=ys, name=source, mode="lines+markers", customdata=hrefs, text=run_ids,
            hovertemplate=f"{escape(source)}<br>%{{x}}: %{{y{value_format}}}<br>%{{text}}<extra></extra>",
        )
    if overall is not None:
        fig.add_scatter(
            x=[n.night.isoformat() for n in nights], y=[overall(n.metrics) for n in nights],
            name="总体 overall", mode="lines+markers", line={"dash": "dash", "color": "#263238", "width": 3},
            customdata=[n.href for n in nights], text=[n.run_id for n in nights],
            hovertemplate=f"总体<br>%{{x}}: %{{y{value_format}}}<br>%{{text}}<extra></extra>",
        )
    if jump_x:
        fig.add_scatter(
            x=jump_x, y=jump_y, name="跳变 jump", mode="markers", text=jump_text,
            customdata=jump_href,
            marker={"symbol": "circle-open", "size": 18, "color": "#e53935", "line": {"width": 3}},
            hovertemplate="跳变 jump: %{text}<br>%{x}<extra></extra>",
        )
    _layout(fig, height=460, legend=_LEGEND_BELOW)
    if percent:
        fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    else:
        fig.update_yaxes(tickformat=",", rangemode="tozero")
    _time_axis(fig, nights)
    return fig


def _single_line(nights: list[HistoryNight], key: str, name: str, color: str) -> go.Figure:
    fig = go.Figure(go.Scatter(
        x=[n.night.isoformat() for n in nights], y=[_rate_value(n.metrics, key) for n in nights],
        name=name, mode="lines+markers", line={"color": color, "width": 3},
        customdata=[n.href for n in nights], text=[n.run_id for n in nights],
        hovertemplate=f"{escape(name)}<br>%{{x}}: %{{y:.2%}}<br>%{{text}}<extra></extra>",
    ))
    _layout(fig, height=320, showlegend=False)
    fig.update_yaxes(tickformat=".1%")
    values = [v for v in fig.data[0].y if v is not None]
    if values:
        # plotly pads a flat line to an absurd range (0-150%); keep a rate inside 0-100%.
        low, high = min(values), max(values)
        pad = max(0.02, (high - low) * 0.15)
        fig.update_yaxes(range=[max(0.0, low - pad), min(1.0, high + pad)])
    _time_axis(fig, nights)
    return fig


def write_history(out_dir: Path, jump_band: float = 0.10) -> Path:
    """Write `out_dir/index.html`: the trend of every night under `out_dir/runs/`; return its path.

    A night is marked when a source's row count moves by more than `jump_band` (relative)
    or its share rate by more than `jump_band` (absolute) against the previous night.
    """
    out_dir = Path(out_dir)
    history = load_history(out_dir, jump_band)
    nights = history.nights
    charts: dict[str, Markup] = {}
    if nights:
        charts["share"] = _figure_html(
            _per_source_lines(
                nights, lambda m, s: ((m.get("sources") or {}).get(s) or {}).get("share_rate"), "share_rate",
                percent=True, overall=lambda m: _rate_value(m, "share_rate"),
            ),
            "chart-share-history",
        )
        charts["records"] = _figure_html(
            _per_source_lines(
                nights, lambda m, s: ((m.get("sources") or {}).get(s) or {}).get("records_in"), "records",
                percent=False,
            ),
            "chart-records-history",
        )
        charts["consistency"] = _figure_html(
            _single_line(nights, "household_consistency_rate", "人户一致率", "#2e7d32"), "chart-consistency-history"
        )
        charts["duplicate"] = _figure_html(
            _single_line(nights, "duplicate_rate", "重复记录率", "#6a1b9a"), "chart-duplicate-history"
        )
    table = []
    for n in reversed(nights):
        m = n.metrics
        verdict, verdict_style = validation_verdict(m.get("validation") or {})
        table.append({
            "night": n.night.isoformat(), "run_id": n.run_id, "href": n.href,
            "started_at": n.started_at.astimezone(NIGHT_TZ).strftime("%Y-%m-%d %H:%M"),
            "records_in": _fmt_int(m.get("records_in")), "quarantined": _fmt_int(m.get("quarantined")),
            "persons": _fmt_int(m.get("persons")),
            "share_rate": _fmt_pct(_rate_value(m, "share_rate")),
            "consistency": _fmt_pct(_rate_value(m, "household_consistency_rate")),
            "duplicate": _fmt_pct(_rate_value(m, "duplicate_rate")),
            "validation": verdict,
            "validation_style": verdict_style,
            "jumps": n.jumps, "superseded": n.superseded,
        })
    html = _environment().get_template("history.html.j2").render(
        nights=table, charts=charts, unreadable=history.unreadable, failed=history.failed, jump_band=jump_band,
        jump_points=f"{100 * jump_band:g}", jumped_nights=sum(1 for n in nights if n.jumps),
        plotly_js=_plotly_js() if charts else None,
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    out = out_dir / "index.html"
    out.write_text(html, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """Rebuild the pages of an existing output folder: `python -m flows.dashboard OUT`."""
    parser = argparse.ArgumentParser(prog="python -m flows.dashboard", description=main.__doc__)
    parser.add_argument("out", type=Path, help="the run output folder (holds runs/)")
    parser.add_argument("--jump-band", type=float, default=0.10, help="band that marks a night as a jump")
    args = parser.parse_args(argv)
    for metrics in sorted((args.out / "runs").glob("*/metrics.json")):
        name = metrics.parent.name
        if not name.startswith(".") and not name.endswith("-failed"):
            write_run_dashboard(metrics.parent)
    print(write_history(args.out, args.jump_band))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
