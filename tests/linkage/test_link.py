"""link_records end to end on a small synthetic town with the hard cases planted in it.

The model learns m and u from the data without labels, so the hard cases sit in a
background of 400 ordinary people (two or three records each, with the usual slips):
a handful of records alone would teach EM nothing.
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest

from linkage.link import LinkageResult, link_records
from linkage.standardize import standardize_records

_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾")
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰文")


def resident_id(region: str, birth: str, seq: int) -> str:
    """A valid 18-digit resident id (ISO 7064 MOD 11-2 check character)."""
    s = f"{region}{birth}{seq:03d}"
    return s + "10X98765432"[sum(int(c) * w for c, w in zip(s, _W, strict=True)) % 11]


def raw_frame(rows: list[dict]) -> pl.DataFrame:
    cols = ["source", "record_id", "name", "id_number", "sex", "birth_date", "phone", "hukou_address", "residence_address"]
    data = {c: [r.get(c) for r in rows] for c in cols}
    n = len(rows)
    return pl.DataFrame(
        {
            "record_key": list(range(n)),
            **{c: data[c] for c in ("source", "record_id")},
            "department": ["d"] * n,
            "source_kind": ["generic"] * n,
            "file": ["f.csv"] * n,
            "row_number": list(range(1, n + 1)),
            **{c: data[c] for c in cols[2:]},
        },
        schema_overrides={c: pl.String for c in cols},
    )


def background(n_persons: int, seed: int = 7) -> list[dict]:
    """Ordinary people: a household-register record and one or two others, some slips."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for p in range(n_persons):
        sur = SURNAMES[rng.integers(len(SURNAMES))]
        name = sur + "".join(GIVEN[i] for i in rng.integers(len(GIVEN), size=rng.integers(1, 3)))
        birth = f"{rng.integers(1940, 2015)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
        male = bool(rng.integers(2))
        seq = int(rng.integers(0, 500)) * 2 + (1 if male else 0)
        rid = resident_id("330602", birth, seq)
        phone = f"13{rng.integers(100000000, 999999999)}"
        addr = f"越城区{['府山', '塔山', '北海', '城南'][rng.integers(4)]}街道{rng.integers(1, 300)}号"
        sex = "男" if male else "女"
        base = {"name": name, "id_number": rid, "sex": sex, "birth_date": birth, "phone": phone, "hukou_address": addr}
        rows.append({"source": "hukou", "record_id": f"h{p}", **base})
        other = dict(base, hukou_address=None, residence_address=addr)
        roll = rng.random()
        if roll < 0.15:
            other["id_number"] = None  # a roster without ids
        elif roll < 0.25:
            other["birth_date"] = None
            other["phone"] = None
        rows.append({"source": "health", "record_id": f"m{p}", **other})
        if rng.random() < 0.3:
            rows.append({"source": "social", "record_id": f"s{p}", **dict(base, phone=None)})
    return rows


HARD_CASES: list[dict] = [
    # Twins: same surname, birth date, address, phone; their own ids (consecutive sequence numbers).
    {"source": "hukou", "record_id": "twin_a", "name": "欧阳明轩", "id_number": resident_id("330602", "20120305", 111),
     "sex": "男", "birth_date": "20120305", "phone": "13900000001", "hukou_address": "越城区府山街道8号"},
    {"source": "hukou", "record_id": "twin_b", "name": "欧阳明宇", "id_number": resident_id("330602", "20120305", 113),
     "sex": "男", "birth_date": "20120305", "phone": "13900000001", "hukou_address": "越城区府山街道8号"},
    {"source": "school", "record_id": "twin_a_school", "name": "欧阳明轩", "sex": "男", "birth_date": "2012-03-05",
     "phone": "13900000001", "residence_address": "越城区府山街道8号"},
    {"source": "school", "record_id": "twin_b_school", "name": "欧阳明宇", "sex": "男", "birth_date": "2012-03-05",
     "phone": "13900000001", "residence_address": "越城区府山街道8号"},
    # Twin sisters whose names share only the surname, each with a school record without id.
    {"source": "hukou", "record_id": "hu_a", "name": "胡玉芬", "id_number": resident_id("330602", "20161028", 862),
     "sex": "女", "birth_date": "20161028", "phone": "13700000002", "hukou_address": "越城区城南街道66号"},
    {"source": "hukou", "record_id": "hu_b", "name": "胡婧昕", "id_number": resident_id("330602", "20161028", 864),
     "sex": "女", "birth_date": "20161028", "phone": "13700000002", "hukou_address": "越城区城南街道66号"},
    {"source": "school", "record_id": "hu_a_school", "name": "胡玉芬", "sex": "女", "birth_date": "2016-10-28",
     "phone": "13700000002", "residence_address": "越城区城南街道66号"},
    {"source": "school", "record_id": "hu_b_school", "name": "胡婧昕", "sex": "女", "birth_date": "2016-10-28",
     "phone": "13700000002", "residence_address": "越城区城南街道66号"},
    # A child registered with the parent's id in the school roster; the child's own record elsewhere.
    {"source": "hukou", "record_id": "parent", "name": "司马建国", "id_number": resident_id("330602", "19700612", 215),
     "sex": "男", "birth_date": "19700612", "hukou_address": "越城区塔山街道20号"},
    {"source": "school", "record_id": "child", "name": "司马小红", "id_number": resident_id("330602", "19700612", 215),
     "sex": "女", "birth_date": "20110901", "residence_address": "越城区塔山街道20号"},
    {"source": "health", "record_id": "child_own", "name": "司马小红", "id_number": resident_id("330602", "20110901", 226),
     "sex": "女", "birth_date": "20110901", "residence_address": "越城区塔山街道20号"},
    # Traditional characters, romanized name, 15-digit id: one person.
    {"source": "hukou", "record_id": "zw_h", "name": "诸葛伟", "id_number": resident_id("330602", "19850417", 331),
     "sex": "男", "birth_date": "19850417", "hukou_address": "越城区北海街道3号"},
    {"source": "health", "record_id": "zw_trad", "name": "諸葛偉", "sex": "男", "birth_date": "1985-04-17",
     "residence_address": "越城区北海街道3号"},
    {"source": "social", "record_id": "zw_latin", "name": "ZHUGE WEI", "sex": "M", "birth_date": "1985-04-17"},
    {"source": "rental", "record_id": "zw_15", "name": "诸葛伟",
     "id_number": resident_id("330602", "19850417", 331)[:6] + resident_id("330602", "19850417", 331)[8:17]},
    # One digit off in the id (check character fails): a typo, not a different person.
    {"source": "hukou", "record_id": "typo_h", "name": "上官婉儿", "id_number": resident_id("330602", "19920808", 402),
     "sex": "女", "birth_date": "19920808"},
    {"source": "health", "record_id": "typo_m", "name": "上官婉儿",
     "id_number": resident_id("330602", "19920808", 402)[:15] + "9" + resident_id("330602", "19920808", 402)[16:],
     "sex": "女", "birth_date": "19920808"},
    # Two strangers called 张伟: different birth dates, different ids.
    {"source": "hukou", "record_id": "zw1", "name": "张伟", "id_number": resident_id("330602", "19800101", 17),
     "sex": "男", "birth_date": "19800101", "hukou_address": "越城区城南街道1号"},
    {"source": "health", "record_id": "zw2", "name": "张伟", "id_number": resident_id("330602", "19930303", 19),
     "sex": "男", "birth_date": "19930303", "residence_address": "越城区城南街道1号"},
]


@pytest.fixture(scope="module")
def linked() -> tuple[pl.DataFrame, LinkageResult]:
    rows = background(400) + HARD_CASES
    std = standardize_records(raw_frame(rows))
    result = link_records(duckdb.connect(), std, None)
    return std, result


def person_of(result: LinkageResult, record_id: str) -> str:
    em = result.entity_map
    return em.filter(pl.col("record_id") == record_id)["person_id"].item()


def test_entity_map_has_one_row_per_record_in_order(linked):
    std, result = linked
    assert result.entity_map["record_key"].to_list() == std["record_key"].to_list()
    assert result.entity_map["person_id"].null_count() == 0
    assert result.entity_map["person_id"].str.contains(r"^P[0-9a-f]{12}$").all()


def test_background_people_found(linked):
    std, result = linked
    # h<p>, m<p>, s<p> are one person each: compare to the truth by record_id suffix.
    em = result.entity_map.with_columns(pl.col("record_id").str.slice(1).alias("p")).filter(
        pl.col("record_id").str.contains(r"^[hms]\d+$")
    )
    per_truth = em.group_by("p").agg(pl.col("person_id").n_unique().alias("ids"))
    per_person = em.group_by("person_id").agg(pl.col("p").n_unique().alias("truths"))
    assert (per_truth["ids"] == 1).mean() >= 0.99
    assert (per_person["truths"] == 1).all()


def test_twins_not_merged(linked):
    _, result = linked
    assert person_of(result, "twin_a") != person_of(result, "twin_b")
    assert person_of(result, "twin_a_school") == person_of(result, "twin_a")
    assert person_of(result, "twin_b_school") == person_of(result, "twin_b")
    # Without ids the twins agree on surname, birth date, address, phone: only the name differs.
    assert person_of(result, "twin_a_school") != person_of(result, "twin_b_school")
    # Names with nothing in common but the surname: the different_names rule holds them apart.
    assert person_of(result, "hu_a") != person_of(result, "hu_b")
    assert person_of(result, "hu_a_school") == person_of(result, "hu_a")
    assert person_of(result, "hu_b_school") == person_of(result, "hu_b")
    assert person_of(result, "hu_a_school") != person_of(result, "hu_b_school")


def test_child_with_parent_id_flagged_not_merged(linked):
    std, result = linked
    assert person_of(result, "parent") != person_of(result, "child")
    keys = std.filter(pl.col("record_id").is_in(["parent", "child"]))["record_key"].to_list()
    flagged = result.conflicts.filter(pl.col("kind") == "id_conflict")["record_key"].to_list()
    assert set(keys) <= set(flagged)
    # The parent's number does not keep the child from her own record (her own valid id).
    assert person_of(result, "child") == person_of(result, "child_own")


def test_traditional_romanized_and_15_digit_forms_are_one_person(linked):
    _, result = linked
    pid = person_of(result, "zw_h")
    assert {person_of(result, r) for r in ("zw_trad", "zw_latin", "zw_15")} == {pid}


def test_one_digit_off_invalid_id_is_a_typo(linked):
    _, result = linked
    assert person_of(result, "typo_h") == person_of(result, "typo_m")


def test_popular_name_strangers_not_merged(linked):
    _, result = linked
    assert person_of(result, "zw1") != person_of(result, "zw2")


def test_pairs_and_model_are_reported(linked):
    _, result = linked
    p = result.pairs
    assert (p["record_key_l"] < p["record_key_r"]).all()
    assert p.select(pl.struct("record_key_l", "record_key_r").is_unique().all()).item()
    assert result.metrics["pairs_matched"] == int(p["is_match"].sum())
    names = [b["pass"] for b in result.metrics["blocking"]]
    assert "id_number" in names and "id_near" in names
    # The model is JSON and carries no personal data.
    import json

    text = json.dumps(result.model, ensure_ascii=False)
    assert "诸葛" not in text and "330602" not in text
    assert set(result.model["weights"]) == {c["name"] for c in result.model["comparisons"]}


def test_person_ids_stable_across_nights(linked):
    std, result = linked
    previous = result.entity_map.select("source", "record_id", "person_id")
    # Night 2: one record gone, one new record of a known person, one new person.
    rows = background(400) + HARD_CASES
    rows = [r for r in rows if r["record_id"] != "m0"]
    rows.append({**next(r for r in rows if r["record_id"] == "h1"), "source": "school", "record_id": "new_of_h1"})
    rows.append({"source": "school", "record_id": "newcomer", "name": "东方不败", "sex": "男", "birth_date": "20000101",
                 "id_number": resident_id("330602", "20000101", 555)})
    std2 = standardize_records(raw_frame(rows))
    r2 = link_records(duckdb.connect(), std2, previous)
    joined = r2.entity_map.join(previous, on=["source", "record_id"], suffix="_old")
    assert (joined["person_id"] == joined["person_id_old"]).all()
    assert person_of(r2, "new_of_h1") == person_of(result, "h1")
    assert person_of(r2, "newcomer") not in set(previous["person_id"])
    assert r2.id_changes.is_empty()
    # Same input, same ids: new ids are derived from the records, not random.
    r3 = link_records(duckdb.connect(), std2, previous)
    assert r3.entity_map.equals(r2.entity_map)


def test_labelled_pairs_train_a_supervised_model(linked):
    std, result = linked
    # Label the scored pairs by the synthetic truth: h<p>/m<p>/s<p> share p.
    truth = std.select("record_key", pl.col("record_id").str.replace(r"^[hms](\d+)$", "p$1").alias("t"))
    labels = (
        result.pairs.select("record_key_l", "record_key_r")
        .join(truth.rename({"record_key": "record_key_l", "t": "t_l"}), on="record_key_l")
        .join(truth.rename({"record_key": "record_key_r", "t": "t_r"}), on="record_key_r")
        .select("record_key_l", "record_key_r", (pl.col("t_l") == pl.col("t_r")).alias("is_match"))
    )
    r = link_records(duckdb.connect(), std, None, labels=labels)
    assert r.model["kind"] == "logistic_regression"
    assert person_of(r, "twin_a") != person_of(r, "twin_b")
    em = r.entity_map.filter(pl.col("record_id").str.contains(r"^[hms]\d+$"))
    per_truth = em.with_columns(pl.col("record_id").str.slice(1).alias("p")).group_by("p").agg(
        pl.col("person_id").n_unique().alias("ids")
    )
    assert (per_truth["ids"] == 1).mean() >= 0.98


def test_merge_and_split_across_nights_are_recorded():
    # Night 1: the school record's name was keyed wrong, so it stands alone.
    rid = resident_id("330602", "19900101", 321)
    a = {"source": "hukou", "record_id": "wk", "name": "孙悟空", "id_number": rid, "sex": "男", "birth_date": "19900101",
         "hukou_address": "越城区府山街道99号"}
    b_wrong = {"source": "school", "record_id": "wk_s", "name": "陈平安", "sex": "男", "birth_date": "19900101"}
    b_right = {**b_wrong, "name": "孙悟空"}
    base = background(400)

    def night(rows, previous):
        std = standardize_records(raw_frame(base + rows))
        return link_records(duckdb.connect(), std, previous)

    n1 = night([a, b_wrong], None)
    assert person_of(n1, "wk") != person_of(n1, "wk_s")
    # Night 2: corrected, the two are one person; the smaller of the two old ids stays.
    n2 = night([a, b_right], n1.entity_map.select("source", "record_id", "person_id"))
    old = sorted([person_of(n1, "wk"), person_of(n1, "wk_s")])
    assert person_of(n2, "wk") == person_of(n2, "wk_s") == old[0]
    assert n2.id_changes.to_dicts() == [{"change": "merge", "old_person_id": old[1], "new_person_id": old[0]}]
    # Night 3: the wrong name is back: the person splits, one part keeps the id, the split is recorded.
    n3 = night([a, b_wrong], n2.entity_map.select("source", "record_id", "person_id"))
    ids3 = {person_of(n3, "wk"), person_of(n3, "wk_s")}
    assert len(ids3) == 2 and old[0] in ids3
    (change,) = n3.id_changes.to_dicts()
    assert change["change"] == "split" and change["old_person_id"] == old[0]
    assert change["new_person_id"] == (ids3 - {old[0]}).pop()


def test_namesakes_born_the_same_day_in_one_county_are_not_merged():
    # The town's records all lie in one county (330602): agreeing on it says nothing. Two
    # 王伟 born the same day, different addresses and phones, no ids, are two people; the
    # weight of their pair is that of its disagreements, not lifted 8 bits by the county.
    strangers = [
        {"source": "health", "record_id": "ww1", "name": "王伟", "sex": "男", "birth_date": "19900101",
         "residence_address": "越城区塔山街道5号", "phone": "13900001111"},
        {"source": "school", "record_id": "ww2", "name": "王伟", "sex": "男", "birth_date": "1990-01-01",
         "residence_address": "越城区北海街道77号", "phone": "13900002222"},
        {"source": "health", "record_id": "zw3", "name": "张伟", "sex": "男", "birth_date": "19851010",
         "residence_address": "越城区城南街道9号"},
        {"source": "social", "record_id": "zw4", "name": "张伟", "sex": "男", "birth_date": "1985-10-10",
         "residence_address": "越城区府山街道100号"},
    ]
    std = standardize_records(raw_frame(background(300) + strangers))
    result = link_records(duckdb.connect(), std, None)
    assert person_of(result, "ww1") != person_of(result, "ww2")
    keys = std.filter(pl.col("record_id").is_in(["ww1", "ww2"]))["record_key"].to_list()
    pair = result.pairs.filter((pl.col("record_key_l") == min(keys)) & (pl.col("record_key_r") == max(keys)))
    assert pair["match_weight"].item() < -4
    region = result.model["weights"]["region"]
    assert region[0] <= 0 and region[1] < 1.0  # same county, where every record is in it


@pytest.mark.parametrize("from_table", [False, True])
def test_parent_id_on_a_child_born_on_the_parents_birthday(from_table):
    # The school registered the daughter with her mother's number; the daughter was born on
    # the mother's day and month, 28 years later: not a slip of the mother's birth date, so the
    # number is not hers and her school record stays with her own household-register record.
    mother_id = resident_id("330602", "19830527", 122)
    rows = [
        {"source": "hukou", "record_id": "mum", "name": "冯秀英", "id_number": mother_id, "sex": "女",
         "birth_date": "19830527", "hukou_address": "越城区府山街道73号"},
        {"source": "school", "record_id": "kid_s", "name": "马雨涵", "id_number": mother_id, "sex": "女",
         "birth_date": "2011-05-27", "residence_address": "越城区府山街道73号"},
        {"source": "hukou", "record_id": "kid_h", "name": "马雨涵", "id_number": resident_id("330602", "20110527", 126),
         "sex": "女", "birth_date": "20110527", "hukou_address": "越城区府山街道73号"},
    ]
    std = standardize_records(raw_frame(background(300) + rows))
    con = duckdb.connect()
    if from_table:
        con.register("std_frame", std)
        con.execute("create table int_persons_standardized as select * from std_frame")
    result = link_records(con, "int_persons_standardized" if from_table else std, None)
    assert person_of(result, "kid_s") == person_of(result, "kid_h")
    assert person_of(result, "mum") != person_of(result, "kid_s")
