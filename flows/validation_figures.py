"""What the Data Docs say about a check's counts: every figure with what it is a share of.

Great Expectations judges a column check on the values that are there: a row whose value
is empty is not checked, and ``mostly`` and ``unexpected_percent`` are shares of the
non-empty values (of the compared rows, for a check on two columns). GX 1.24's Data Docs
state that share "of N total rows", N counting the empty rows too ("2 unexpected values
found. ≈4.878% of 42 total rows.", where 4.878 % is 2 of 41), show the percentage alone
as the observed value ("≈4.878% unexpected", of what is not said), and state nothing for a
check that passes or that had no value to check ("--"). An auditor recomputing 2 / 42
finds the page does not add up.

GX draws those parts of a validation page with renderers it looks up per expectation type
(``LegacyDiagnosticRendererType.UNEXPECTED_STATEMENT`` and ``OBSERVED_VALUE``, in
``great_expectations.expectations.registry``). ``register_count_renderers`` registers
renhu's own for the map expectations the suites use, drawn from the same result GX
judged and stored: the unexpected count of the checked values and its percentage, the
rows not checked and why, and the ``mostly`` threshold as GX applied it, with the passing
share it was compared with. The HTML is not edited afterwards. The statements hold
counts, percentages, column names and thresholds only, never a value, so they cannot show
an identity number or a name (the examples GX lists come from the masked frames, as before).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

# What GX does with a row of a two-column check that misses a value (ignore_row_if).
_PAIR_SKIPS = {
    "both_values_are_missing": "both values are empty",
    "either_value_is_missing": "a value is empty",
}
NOT_NULL = "expect_column_values_to_not_be_null"


@dataclass(frozen=True)
class MapFigures:
    """The counts behind one map expectation's verdict on one batch, and their words."""

    rows: int  # rows of the batch (GX's element_count)
    not_checked: int  # rows GX left out (GX's missing_count)
    unexpected: int
    mostly: float  # the threshold GX applied, a share of the checked values
    checked_what: str = "non-empty values"  # what GX checked
    checked_how: str = "checked"
    skipped_because: str = "the value is empty"  # why a row is not checked
    unexpected_word: str = "unexpected"
    must: str = "must be as expected"

    @property
    def checked(self) -> int:
        return self.rows - self.not_checked

    @property
    def expected(self) -> int:
        return self.checked - self.unexpected


def map_figures(
    expectation_type: str, kwargs: Mapping[str, Any], result: Mapping[str, Any] | None
) -> MapFigures | None:
    """The figures of a map expectation's result (SUMMARY or BASIC format); None when the
    result is not one (a table-level expectation, an exception, BOOLEAN_ONLY)."""
    if not result or result.get("unexpected_count") is None or result.get("element_count") is None:
        return None
    mostly = kwargs.get("mostly")
    figures = MapFigures(
        rows=int(result["element_count"]),
        # GX gives no missing_count where it checks every row (not_be_null counts the empty ones).
        not_checked=int(result.get("missing_count") or 0),
        unexpected=int(result["unexpected_count"]),
        mostly=1.0 if mostly is None else float(mostly),
    )
    if "column_A" in kwargs:
        skip = kwargs.get("ignore_row_if") or "both_values_are_missing"
        return replace(
            figures,
            checked_what="compared rows",
            checked_how="compared",
            skipped_because=_PAIR_SKIPS.get(skip, "a value is empty"),
        )
    if expectation_type == NOT_NULL:
        return replace(
            figures,
            checked_what="rows",
            skipped_because="",
            unexpected_word="empty",
            must="must hold a value",
        )
    return figures


def percent(numerator: int, denominator: int) -> str:
    """numerator / denominator as a percentage to 3 decimals, marked ≈ when rounded."""
    exact = Fraction(100 * numerator, denominator)
    shown = f"{float(exact):.3f}".rstrip("0").rstrip(".")
    return f"{'' if Fraction(shown) == exact else '≈'}{shown}%"


def threshold_percent(mostly: float) -> str:
    """``mostly`` as a percentage, as GX's own text shows it (0.95 -> 95%, 0.9995 -> 99.95%)."""
    return f"{mostly * 100:.10g}%"


def _count(n: int) -> str:
    return f"{n:,}"


def observed_text(figures: MapFigures) -> str:
    """The Observed Value cell: the share and the counts it is made of."""
    if figures.checked == 0:
        return f"nothing to check (0 of {_count(figures.rows)} rows {figures.checked_how})"
    return (
        f"{percent(figures.unexpected, figures.checked)} {figures.unexpected_word} "
        f"({_count(figures.unexpected)} of {_count(figures.checked)} {figures.checked_what})"
    )


def statement_text(figures: MapFigures, success: bool) -> str:
    """The statement under the expectation, one line each: unexpected of checked, the rows
    not checked and why, and the threshold as GX applied it with the verdict."""
    rows, checked = _count(figures.rows), _count(figures.checked)
    what = figures.checked_what
    verdict = "the check passes" if success else "the check fails"
    if figures.checked == 0:
        return (
            f"Not {figures.checked_how}: {rows} of {rows} rows ({figures.skipped_because}). "
            f"Nothing to check, so {verdict}."
        )
    lines = [
        f"{figures.unexpected_word.capitalize()}: {_count(figures.unexpected)} of {checked} {what} "
        f"({percent(figures.unexpected, figures.checked)})."
    ]
    if figures.not_checked:
        not_checked = _count(figures.not_checked)
        lines.append(
            f"Not {figures.checked_how}: {not_checked} of {rows} rows ({figures.skipped_because}); "
            f"{checked} + {not_checked} = {rows}."
        )
    elif what != "rows":
        lines.append(f"All {rows} rows {figures.checked_how}.")
    if figures.mostly < 1:
        lines.append(
            f"Threshold: at least {threshold_percent(figures.mostly)} of the {checked} {what} {figures.must} "
            f"(mostly = {figures.mostly!r}); {_count(figures.expected)} of {checked} do "
            f"({percent(figures.expected, figures.checked)}), so {verdict}."
        )
    else:
        lines.append(f"Every one of the {checked} {what} {figures.must}, so {verdict}.")
    return "\n".join(lines)


SEVERITY_TEXT = {
    "critical": "Severity: critical (a failure stops the night: nothing is published).",
    "warning": "Severity: warning (a failure is reported; the night still publishes).",
}


def severity_text(severity: str | None) -> str:
    """The line that says what a failure of the check does; GX's validation page shows a
    failed warning as "Failed" like a critical one."""
    return SEVERITY_TEXT.get(str(severity), "")


# ---------------------------------------------------------------------------------------
# GX renderers


def _figures_of(result: Any) -> MapFigures | None:
    if result is None or result.expectation_config is None or _raised(result.exception_info):
        return None
    config = result.expectation_config
    return map_figures(config.type, config.kwargs, result.result)


def _raised(info: Any) -> bool:
    if not isinstance(info, dict):
        return False
    if "raised_exception" in info:
        return bool(info.get("raised_exception"))
    return any(_raised(v) for v in info.values())


def _build_renderers() -> tuple[Any, Any]:
    from great_expectations.render import LegacyDiagnosticRendererType, RenderedStringTemplateContent
    from great_expectations.render.renderer.renderer import renderer

    @renderer(renderer_type=LegacyDiagnosticRendererType.UNEXPECTED_STATEMENT)
    def unexpected_statement(
        configuration: Any = None, result: Any = None, runtime_configuration: Any = None
    ) -> list:
        figures = _figures_of(result)
        if figures is None:
            # An exception, or a result without counts: GX's own statement says it.
            from great_expectations.expectations.expectation import Expectation

            return Expectation._diagnostic_unexpected_statement_renderer(result=result)
        text = statement_text(figures, bool(result.success))
        severity = severity_text((result.expectation_config.meta or {}).get("severity"))
        return [
            RenderedStringTemplateContent(
                content_block_type="string_template",
                string_template={
                    "template": "\n\n" + text + (f"\n{severity}" if severity else ""),
                    "params": {},
                    "tag": "strong" if not result.success else "span",
                    "styling": {"classes": ["text-danger"] if not result.success else ["text-muted"]},
                },
            )
        ]

    @renderer(renderer_type=LegacyDiagnosticRendererType.OBSERVED_VALUE)
    def observed_value(
        configuration: Any = None, result: Any = None, runtime_configuration: Any = None
    ) -> str:
        figures = _figures_of(result)
        if figures is None:
            from great_expectations.expectations.expectation import Expectation

            return Expectation._get_observed_value_from_evr(result=result)
        return observed_text(figures)

    return unexpected_statement, observed_value


_RENDERERS: tuple[Any, Any] | None = None


def register_count_renderers(expectation_types: Iterable[str]) -> None:
    """Have the Data Docs draw the unexpected statement and the observed value of every
    map expectation among ``expectation_types`` from its counts (see the module's doc).

    Idempotent: the same functions are registered each time. GX warns when a renderer
    replaces its own; that replacement is the point here, so the warning is held back.
    """
    global _RENDERERS
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )
    from great_expectations.expectations.registry import get_expectation_impl, register_renderer

    if _RENDERERS is None:
        _RENDERERS = _build_renderers()
    registry_log = logging.getLogger("great_expectations.expectations.registry")
    level = registry_log.level
    registry_log.setLevel(logging.ERROR)
    try:
        for expectation_type in sorted(set(expectation_types)):
            cls = get_expectation_impl(expectation_type)
            if not issubclass(
                cls, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation
            ):
                continue
            for fn in _RENDERERS:
                register_renderer(object_name=expectation_type, parent_class=cls, renderer_fn=fn)
    finally:
        registry_log.setLevel(level)


# ---------------------------------------------------------------------------------------
# Reading the figures back (renhu verify)

_OBSERVED = re.compile(
    r"(≈?[0-9]+(?:\.[0-9]+)?)% (?:unexpected|empty) \(([0-9,]+) of ([0-9,]+) (?:non-empty values|compared rows|rows)\)"
    r"|nothing to check \(0 of ([0-9,]+) rows (?:checked|compared)\)"
)


def stated_figures(page: str) -> list[tuple[int, int, str]]:
    """(unexpected, checked, percentage shown) of every Observed Value that observed_text
    drew on a Data Docs validation page, in page order; (0, 0, "") for nothing to check."""
    stated = []
    for shown, unexpected, checked, nothing in _OBSERVED.findall(html.unescape(page)):
        if nothing:
            stated.append((0, 0, ""))
        else:
            stated.append((int(unexpected.replace(",", "")), int(checked.replace(",", "")), f"{shown}%"))
    return stated


_N = r"([0-9][0-9,]*)"
_STATEMENT = re.compile(
    rf"(?:Unexpected|Empty): {_N} of {_N} (?:non-empty values|compared rows|rows) \((≈?[0-9.]+%)\)\."
    rf"(?:\nNot (?:checked|compared): {_N} of {_N} rows \([^)]*\); {_N} \+ {_N} = {_N}\."
    rf"|\nAll {_N} rows (?:checked|compared)\.)?"
    rf"\n(?:Threshold: at least ([0-9.]+)% of the {_N} [a-z -]+? \(mostly = ([0-9.e-]+)\); "
    rf"{_N} of {_N} do \((≈?[0-9.]+%)\), so the check (passes|fails)\."
    rf"|Every one of the {_N} [a-z -]+?, so the check (passes|fails)\.)"
    rf"|Not (?:checked|compared): {_N} of {_N} rows \([^)]*\)\. Nothing to check, so the check (passes|fails)\."
)


@dataclass(frozen=True)
class StatedCheck:
    """What statement_text says of one check on a Data Docs page: its counts, the threshold
    and the verdict; ``problems`` lists the statement's own figures that do not add up."""

    unexpected: int
    checked: int
    rows: int | None  # None: the statement names no row count (every row checked, not_null)
    mostly: float  # 1.0 where the statement states no threshold
    success: bool
    problems: tuple[str, ...] = ()


def stated_checks(page: str) -> list[StatedCheck]:
    """Every statement statement_text drew on a Data Docs validation page, in page order."""
    text = re.sub(r"<br\s*/?>", "\n", html.unescape(page))
    text = re.sub(r"<[^>]+>", "", text)
    found = []
    for m in _STATEMENT.finditer(text):
        g = [None if v == "" else v for v in m.groups()]
        numbers = [int(v.replace(",", "")) if v is not None and v[:1].isdigit() and "%" not in v and "." not in v
                   else None for v in g]  # fmt: skip

        def num(i: int, numbers: list[int | None] = numbers) -> int | None:
            return numbers[i]

        if g[20] is not None:  # nothing to check
            rows = num(19)
            problems = () if num(18) == rows else (f"not checked {num(18)} of {rows} rows, yet nothing to check",)
            found.append(StatedCheck(0, 0, rows, 1.0, g[20] == "passes", problems))
            continue
        unexpected, checked = num(0), num(1)
        issues = []
        if g[2] != percent(unexpected, checked):
            issues.append(f"{g[2]} for {unexpected} of {checked}, which is {percent(unexpected, checked)}")
        rows = None
        if g[3] is not None:
            not_checked, rows = num(3), num(4)
            if (num(5), num(6), num(7)) != (checked, not_checked, rows) or checked + not_checked != rows:
                issues.append(f"{checked} checked + {not_checked} not checked stated as {g[5]} + {g[6]} = {g[7]}, of {rows} rows")
        elif g[8] is not None:
            rows = num(8)
            if rows != checked:
                issues.append(f"all {rows} rows checked, but {checked} values checked")
        if g[9] is not None:
            mostly, verdict = float(g[11]), g[15]
            if threshold_percent(mostly) != f"{g[9]}%":
                issues.append(f"at least {g[9]}% stated for mostly = {g[11]}")
            if num(10) != checked or num(13) != checked or num(12) != checked - unexpected:
                issues.append(f"{g[12]} of {g[13]} pass stated for {unexpected} unexpected of {checked}")
            elif g[14] != percent(checked - unexpected, checked):
                issues.append(f"{g[14]} for {g[12]} of {g[13]}, which is {percent(checked - unexpected, checked)}")
        else:
            mostly, verdict = 1.0, g[17]
            if num(16) != checked:
                issues.append(f"every one of {g[16]} stated for {checked} checked")
        found.append(StatedCheck(unexpected, checked, rows, mostly, verdict == "passes", tuple(issues)))
    return found
