"""The answer key of the demo city: what ingest must accept or reject, who each row is,
and which household findings the extracts, as written, must produce."""

from __future__ import annotations

import numpy as np
import polars as pl

from linkage.demo_city import noise
from linkage.demo_city.people import TOWNSHIPS, age_on
from linkage.demo_city.sources import R_CHILD, R_HEAD, R_PARENT, R_SPOUSE, Extract

RESIDENCE_EVIDENCE = ("residence", "generic", "rental")


def _pid_to_tid(pid: pl.Expr) -> pl.Expr:
    return pl.when(pid >= 0).then(pl.lit("T") + (pid + 1).cast(pl.String).str.zfill(8))


def records(ex: Extract) -> pl.DataFrame:
    """One row per data row of the extract's file, in file order."""
    r = ex.rows
    parts = ex.parts or [(ex.file, r.height)]
    return pl.DataFrame({
        "source": pl.Series([ex.name] * r.height, dtype=pl.String),
        "file": pl.Series(np.repeat([f for f, _ in parts], [n for _, n in parts]), dtype=pl.String),
        "row_number": pl.Series(np.concatenate([np.arange(1, n + 1, dtype=np.int32) for _, n in parts])),
        "record_id": r["record_id"],
        "true_person_id": r.select(_pid_to_tid(pl.col("pid"))).to_series(),
        "expected_outcome": r.select(
            pl.when(pl.col("reason").is_null()).then(pl.lit("accepted")).otherwise(pl.lit("quarantined"))
        ).to_series(),
        "expected_reason_code": r["reason"],
        "hard_cases": noise.tag_lists(r["tags"]),
    })


def persons(people: pl.DataFrame) -> pl.DataFrame:
    return people.select(
        "true_person_id", "name", "id_number", "sex", "birth_date", "ethnicity", "hukou_household",
        "relation_to_head", "hukou_region", "residence_region", "is_floating", "twin_of",
        "hukou_address", "residence_address", "phone",
    )


def _twp_name(code_col: str) -> pl.Expr:
    names = {t.index: f"{t.county.name}{t.name}({t.code})" for t in TOWNSHIPS}
    return pl.col(code_col).replace_strict(names, default="?", return_dtype=pl.String)


def findings(extracts: list[Extract], people: pl.DataFrame) -> pl.DataFrame:
    """Expected household findings, one row per (kind, person); see the package docstring."""
    acc = {ex.name: ex.rows.filter(pl.col("reason").is_null()) for ex in extracts}
    kinds = {ex.name: ex.kind for ex in extracts}
    police = pl.concat([acc[s] for s, k in kinds.items() if k == "hukou"])
    birth = people.select("pid", "birth_date", "male")
    out: list[pl.DataFrame] = []

    # multi_household: one person in two or more households of the register
    multi = (police.group_by("pid").agg(pl.col("household_id").unique().sort())
             .filter(pl.col("household_id").list.len() >= 2))
    out.append(multi.select(kind=pl.lit("multi_household"), pid="pid",
                            detail=pl.lit("户籍登记中同时属于") + pl.col("household_id").list.len().cast(pl.String)
                            + pl.lit("个户：户号 ") + pl.col("household_id").list.join("、")))

    # register sanity checks, per household (户号)
    heads = police.filter(pl.col("rel_code") == R_HEAD)
    # distinct people: a head registered twice (重复登记) is one head
    n_heads = police.group_by("household_id").agg(n=pl.col("pid").filter(pl.col("rel_code") == R_HEAD).n_unique())
    heads = heads.unique(["household_id", "pid"])
    two = heads.join(n_heads.filter(pl.col("n") >= 2), on="household_id")
    out.append(two.select(kind=pl.lit("two_heads"), pid="pid",
                          detail=pl.lit("户号 ") + pl.col("household_id") + pl.lit(" 有") + pl.col("n").cast(pl.String)
                          + pl.lit("名户主")))
    none = police.join(n_heads.filter(pl.col("n") == 0), on="household_id")
    out.append(none.select(kind=pl.lit("no_head"), pid="pid",
                           detail=pl.lit("户号 ") + pl.col("household_id") + pl.lit(" 无户主")))
    hb = heads.join(birth, on="pid").select("household_id", head_birth="birth_date")
    members = police.join(birth, on="pid").join(hb, on="household_id")
    bad_child = members.filter(
        ((pl.col("rel_code") == R_CHILD) & (pl.col("birth_date") <= pl.col("head_birth")))
        | ((pl.col("rel_code") == R_PARENT) & (pl.col("birth_date") >= pl.col("head_birth")))
    )
    out.append(bad_child.select(kind=pl.lit("child_older_than_parent"), pid="pid",
                                detail=pl.lit("户号 ") + pl.col("household_id")
                                + pl.when(pl.col("rel_code") == R_CHILD).then(pl.lit(" 子女出生于 "))
                                .otherwise(pl.lit(" 父母出生于 "))
                                + pl.col("birth_date").dt.strftime("%Y-%m-%d") + pl.lit("，户主出生于 ")
                                + pl.col("head_birth").dt.strftime("%Y-%m-%d")))
    sp = police.filter(pl.col("rel_code") == R_SPOUSE).join(birth, on="pid")
    sp = sp.with_columns(age=pl.Series(age_on(sp["birth_date"].to_numpy().astype("datetime64[D]"))))
    sp = sp.filter(pl.col("age") < pl.when(pl.col("male")).then(22).otherwise(20))
    out.append(sp.select(kind=pl.lit("spouse_under_legal_age"), pid="pid",
                         detail=pl.lit("户号 ") + pl.col("household_id") + pl.lit(" 配偶 ")
                         + pl.col("age").cast(pl.String) + pl.lit(" 岁，未达法定婚龄")))

    # roster_conflict: a roster household against the register household most of its members are in
    rosters = [acc[s] for s, k in kinds.items() if k == "roster"]
    if rosters:
        roster = pl.concat(rosters).select("pid", family="household_id", rel_code="rel_code")
        pol = police.select("pid", hid="household_id", prel="rel_code")
        votes = (roster.join(pol, on="pid").group_by("family", "hid").agg(n=pl.col("pid").n_unique())
                 .sort(["family", "n", "hid"], descending=[False, True, False])
                 .group_by("family", maintain_order=True).first().select("family", "hid"))
        r_mem = roster.join(votes, on="family")
        p_mem = pol.join(votes, on="hid")
        extra = r_mem.join(p_mem.select("hid", "pid"), on=["hid", "pid"], how="anti")
        missing = p_mem.join(r_mem.select("family", "pid"), on=["family", "pid"], how="anti")
        p_heads = p_mem.filter(pl.col("prel") == R_HEAD).select("family", "pid")
        r_heads = r_mem.filter(pl.col("rel_code") == R_HEAD)
        head_diff = r_heads.join(p_heads, on=["family", "pid"], how="anti")
        out.append(pl.concat([
            extra.select(kind=pl.lit("roster_conflict"), pid="pid",
                         detail=pl.lit("民政名册 ") + pl.col("family") + pl.lit(" 列有此人，户籍登记户号 ")
                         + pl.col("hid") + pl.lit(" 无此人")),
            missing.select(kind=pl.lit("roster_conflict"), pid="pid",
                           detail=pl.lit("户籍登记户号 ") + pl.col("hid") + pl.lit(" 有此人，民政名册 ")
                           + pl.col("family") + pl.lit(" 未列")),
            head_diff.select(kind=pl.lit("roster_conflict"), pid="pid",
                             detail=pl.lit("民政名册 ") + pl.col("family") + pl.lit(" 以此人为户主，户籍登记户号 ")
                             + pl.col("hid") + pl.lit(" 户主另有其人")),
        ]))

    # residence evidence: a row placing the person at an address in the city
    ev = pl.concat([
        acc[s].filter(pl.col("addr_twp") >= 0).select("pid", "addr_twp", "registered_at", src=pl.lit(s))
        for s, k in kinds.items() if k in RESIDENCE_EVIDENCE
    ])
    hukou_twps = police.select("pid", hukou_twp="addr_twp").unique()
    # hukou_residence_split: lives (evidenced) in a township other than any township the
    # register places the person in
    split = (ev.join(hukou_twps, on="pid")
             .group_by("pid", "addr_twp").agg(
                 hukou_twp=pl.col("hukou_twp").unique().sort(), since=pl.col("registered_at").min())
             .filter(~pl.col("hukou_twp").list.contains(pl.col("addr_twp")))
             .with_columns(hukou_first=pl.col("hukou_twp").list.first()))
    out.append(split.select(kind=pl.lit("hukou_residence_split"), pid="pid",
                            detail=pl.lit("户籍地 ") + _twp_name("hukou_first") + pl.lit("，居住地 ")
                            + _twp_name("addr_twp")
                            + pl.when(pl.col("since").is_not_null())
                            .then(pl.lit("，自 ") + pl.col("since").dt.strftime("%Y-%m-%d") + pl.lit(" 起"))
                            .otherwise(pl.lit(""))))
    # unregistered_resident: rents or goes to school at a place that is neither the registered
    # household's township nor covered by a residence registration there
    reg = pl.concat([acc[s] for s, k in kinds.items() if k == "residence"]).filter(pl.col("addr_twp") >= 0)
    placed = pl.concat([reg.select("pid", "addr_twp"), hukou_twps.rename({"hukou_twp": "addr_twp"})]).unique()
    # a residence registration anywhere counts as registered (the registration follows the move)
    registered_any = reg.select("pid").unique()
    live = pl.concat([
        acc[s].filter(pl.col("addr_twp") >= 0).select("pid", "addr_twp", src=pl.lit(s))
        for s in ("rental_housing", "schools") if s in acc
    ])
    unreg = (live.join(placed, on=["pid", "addr_twp"], how="anti").join(registered_any, on="pid", how="anti")
             .group_by("pid", "addr_twp").agg(src=pl.col("src").unique().sort()))
    out.append(unreg.select(kind=pl.lit("unregistered_resident"), pid="pid",
                            detail=pl.lit("据") + pl.col("src").list.join("、") + pl.lit("居住于 ")
                            + _twp_name("addr_twp") + pl.lit("，非户籍地，且无居住登记")))

    allf = pl.concat([f.select("kind", pl.col("pid").cast(pl.Int64), "detail") for f in out])
    allf = (allf.group_by("kind", "pid", maintain_order=True).agg(pl.col("detail").unique().sort().str.join("；"))
            .sort("kind", "pid"))
    return allf.select("kind", true_person_id=_pid_to_tid(pl.col("pid")), detail="detail")

