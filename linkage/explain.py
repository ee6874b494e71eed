"""Why two records are (or are not) one person, and why a record joined its person.

Recomputes a pair's comparison vector from ``int_persons_standardized`` with the model a
run stored (``linkage_model.json``): each comparison's level and weight, the term-frequency
adjustment, the prior, the total, the rule that overrode the model if any, and the
decision. Identity numbers, names and birth dates are masked (330602********123X, 张*,
1990-**-**): a steward reads this, and it may be pasted into a ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from linkage.block import prepare_link_records
from linkage.classify import (
    FellegiSunterModel,
    apply_rules,
    decide,
    probability,
    score,
    term_frequency_adjustment,
)
from linkage.compare import DEFAULT_COMPARISONS, NULL_LEVEL, Comparison, compare_pairs, pair_frame
from linkage.sql import relation_exists

STD_TABLE = "int_persons_standardized"


def mask_id(id_number: str | None) -> str:
    """First 6 + 8 stars + last 4 (330602********123X); short numbers keep only their last 2."""
    if not id_number:
        return "-"
    if len(id_number) >= 15:
        return id_number[:6] + "*" * 8 + id_number[-4:]
    return "*" * max(len(id_number) - 2, 1) + id_number[-2:]


def mask_name(name: str | None) -> str:
    """First character + a star per remaining character (张*, 欧***)."""
    if not name:
        return "-"
    return name[0] + "*" * max(len(name) - 1, 1)


def mask_birth_date(birth: object) -> str:
    """The year only (1990-**-**): a masked resident id hides exactly its birth date, so a
    full date shown beside it would give the id back but for its sequence digits. Whether
    the two dates agree, and how they differ, is the comparison's level."""
    if not birth:
        return "-"
    text = str(birth)
    return text[:4] + "-**-**" if len(text) >= 4 and text[:4].isdigit() else "*" * len(text)


class RecordNotFound(LookupError):
    pass


@dataclass
class ComparisonLine:
    comparison: str
    level: int
    label: str
    weight: float
    value_l: str
    value_r: str


@dataclass
class PairExplanation:
    record_l: tuple[str, str]
    record_r: tuple[str, str]
    lines: list[ComparisonLine]
    prior_weight: float
    tf_adjustment: float
    total_weight: float
    probability: float
    threshold: float
    rule: str
    is_match: bool
    same_person_in_run: bool | None


def comparisons_for(model: dict) -> tuple[Comparison, ...]:
    """The comparisons a stored model was trained with (by name, in its order)."""
    known = {c.name: c for c in DEFAULT_COMPARISONS}
    names = [c["name"] for c in model["comparisons"]]
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"model uses comparisons this renhu does not know: {', '.join(missing)}")
    comps = tuple(known[n] for n in names)
    for c, spec in zip(comps, model["comparisons"], strict=True):
        if list(c.levels) != list(spec["levels"]):
            raise ValueError(f"comparison {c.name} has other levels than the stored model; rerun the linkage")
    return comps


def load_records(con: duckdb.DuckDBPyConnection, keys: list[tuple[str, str]]) -> pl.DataFrame:
    """The standardized rows of (source, record_id) keys, in the order asked."""
    frames = []
    for source, record_id in keys:
        df = con.execute(
            f"select * from {STD_TABLE} where source = $source and record_id = $record_id",
            {"source": source, "record_id": record_id},
        ).pl()
        if df.is_empty():
            raise RecordNotFound(f"no record {source}:{record_id} in {STD_TABLE}")
        frames.append(df.head(1))
    return pl.concat(frames, how="diagonal_relaxed")


def _value_text(comp: str, row: dict) -> str:
    if comp == "id_number":
        return mask_id(row.get("id_number"))
    if comp == "name":
        return mask_name(row.get("name"))
    if comp == "birth_date":
        return mask_birth_date(row.get("birth"))
    if comp in ("region",):
        return "/".join(x for x in (row.get("hukou_region"), row.get("residence_region")) if x) or "-"
    if comp == "address":
        # Addresses can name a household; show only whether one is present.
        return "given" if (row.get("hukou_address") or row.get("residence_address")) else "-"
    if comp == "phone":
        p = row.get("phone")
        return ("*" * (len(p) - 4) + p[-4:]) if p else "-"
    v = row.get(comp)
    return str(v) if v is not None else "-"


def _term_frequencies(con: duckdb.DuckDBPyConnection, column: str, values: list[str | None]) -> pl.DataFrame:
    """tf of each value in the run's standardized table (share of filled rows)."""
    rows = []
    for v in {v for v in values if v is not None}:
        n, total = con.execute(
            f"select count(*) filter (where {column} = $v), count({column}) from {STD_TABLE}", {"v": v}
        ).fetchone()
        rows.append({"value": v, "tf": (n / total) if total else 0.0})
    return pl.DataFrame(rows, schema={"value": pl.String, "tf": pl.Float64})


def explain_pair(
    con: duckdb.DuckDBPyConnection, model: dict, record_l: tuple[str, str], record_r: tuple[str, str]
) -> PairExplanation:
    """Recompute the comparison vector of two records with a stored model."""
    comps = comparisons_for(model)
    fs = FellegiSunterModel.from_dict(model)
    std = load_records(con, [record_l, record_r])
    records = prepare_link_records(std)
    keys = records["record_key"].to_list()
    pairs = pl.DataFrame({"record_key_l": [keys[0]], "record_key_r": [keys[1]]})
    pf = pair_frame(pairs, records)
    gammas = compare_pairs(pf, comps)
    _, per = score(fs, gammas)
    tf_tables, expected = {}, {}
    for c in comps:
        if c.tf_column and c.tf_column in model.get("term_frequency", {}):
            tf_tables[c.tf_column] = _term_frequencies(con, c.tf_column, records[c.tf_column].to_list())
            expected[c.tf_column] = model["term_frequency"][c.tf_column]["expected_tf"]
    tf_adj = float(term_frequency_adjustment(pf, gammas, list(comps), tf_tables, expected)[0])
    prior = fs.prior_bits()
    total = prior + float(per.sum()) + tf_adj
    prob = float(probability(total))
    rule = str(apply_rules(pf, gammas, list(comps))[0])
    threshold = float(model.get("match_probability_threshold", 0.5))
    rows = records.to_dicts()
    lines = []
    for k, c in enumerate(comps):
        g = int(gammas[0, k])
        label = "one side empty" if g == NULL_LEVEL else c.levels[g]
        lines.append(ComparisonLine(c.name, g, label, float(per[0, k]), _value_text(c.name, rows[0]), _value_text(c.name, rows[1])))
    same = None
    if relation_exists(con, "entity_map"):
        ids = con.execute(
            "select count(distinct person_id), count(*) from entity_map where (source = $s1 and record_id = $r1) "
            "or (source = $s2 and record_id = $r2)",
            {"s1": record_l[0], "r1": record_l[1], "s2": record_r[0], "r2": record_r[1]},
        ).fetchone()
        if ids[1] == 2:
            same = ids[0] == 1
    return PairExplanation(
        record_l, record_r, lines, prior, tf_adj, total, prob, threshold, rule,
        bool(decide(np.array([prob]), np.array([rule], dtype=object), threshold)[0]), same
    )


def format_pair(e: PairExplanation) -> str:
    a, b = f"{e.record_l[0]}:{e.record_l[1]}", f"{e.record_r[0]}:{e.record_r[1]}"
    out = [f"{a}  vs  {b}", ""]
    width = max(len(line.comparison) for line in e.lines)
    for line in e.lines:
        out.append(
            f"  {line.comparison:<{width}}  {line.value_l} | {line.value_r}  →  {line.label}  ({line.weight:+.2f})"
        )
    out.append(f"  {'term frequency adjustment':<{width}}  {e.tf_adjustment:+.2f}")
    out.append(f"  {'prior (random pair)':<{width}}  {e.prior_weight:+.2f}")
    out.append(f"  total match weight {e.total_weight:+.2f} bits, probability {e.probability:.4f} (threshold {e.threshold})")
    if e.rule:
        verb = "decides: same person" if e.rule == "same_valid_id" else "overrides the score"
        out.append(f"  rule: {e.rule} {verb}")
    out.append(f"  decision: {'MATCH' if e.is_match else 'NOT A MATCH'}")
    if e.same_person_in_run is not None:
        out.append(f"  in the run: {'same person' if e.same_person_in_run else 'different persons'}")
    return "\n".join(out)


@dataclass
class RecordExplanation:
    record: tuple[str, str]
    person_id: str
    cluster_size: int
    links: list[PairExplanation]  # matched pairs of this record inside its cluster


def explain_record(con: duckdb.DuckDBPyConnection, model: dict, record: tuple[str, str]) -> RecordExplanation:
    """Why a record joined its person: every matched pair linking it to the other records of its cluster."""
    if not relation_exists(con, "entity_map"):
        raise RecordNotFound("no entity_map table: run the linkage first")
    row = con.execute(
        "select person_id from entity_map where source = $s and record_id = $r", {"s": record[0], "r": record[1]}
    ).fetchone()
    if row is None:
        raise RecordNotFound(f"no record {record[0]}:{record[1]} in entity_map")
    person_id = row[0]
    others = con.execute(
        "select source, record_id from entity_map where person_id = $p and not (source = $s and record_id = $r) "
        "order by source, record_id",
        {"p": person_id, "s": record[0], "r": record[1]},
    ).fetchall()
    links = [explain_pair(con, model, record, (s, r)) for s, r in others]
    return RecordExplanation(record, person_id, len(others) + 1, links)


def format_record(e: RecordExplanation) -> str:
    head = f"{e.record[0]}:{e.record[1]} is person {e.person_id} ({e.cluster_size} records)"
    if not e.links:
        return head + "\n  no other record matched it: a person of its own"
    direct = [x for x in e.links if x.is_match]
    out = [head, f"  matched directly to {len(direct)} of the {len(e.links)} other records:"]
    for x in sorted(e.links, key=lambda x: -x.total_weight):
        tag = "match" if x.is_match else ("rule " + x.rule if x.rule else "no direct match (joined through others)")
        out.append(f"    {x.record_r[0]}:{x.record_r[1]}  weight {x.total_weight:+.2f}  p={x.probability:.4f}  {tag}")
    for x in direct:
        out.append("")
        out.append(format_pair(x))
    return "\n".join(out)


__all__ = [
    "PairExplanation",
    "RecordExplanation",
    "RecordNotFound",
    "explain_pair",
    "explain_record",
    "format_pair",
    "format_record",
    "mask_birth_date",
    "mask_id",
    "mask_name",
]
