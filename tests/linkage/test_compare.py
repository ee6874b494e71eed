"""Comparison levels on hand-made pairs (each row of a pair frame is one pair)."""

from __future__ import annotations

from datetime import date

import polars as pl

from linkage.compare import DEFAULT_COMPARISONS, NULL_LEVEL, compare_pairs

COMP = {c.name: c for c in DEFAULT_COMPARISONS}


def pf(**cols: tuple[list, list]) -> pl.DataFrame:
    data = {}
    for name, (left, right) in cols.items():
        data[f"{name}_l"] = left
        data[f"{name}_r"] = right
    frame = pl.DataFrame(data)
    # An all-empty column comes out untyped; in a run every column is typed by prepare_link_records.
    return frame.with_columns(pl.col(pl.Null).cast(pl.String))


def test_id_number_levels():
    a = "33060219900102123X"
    frame = pf(id_number=(
        [a, a, a, a, "330602900102123", a],
        [a, a[:10] + "5" + a[11:], a[:12] + a[13] + a[12] + a[14:], "110101198001011234", a, None],
    ))
    g = COMP["id_number"].gamma(frame).tolist()
    # same; one substitution; adjacent swap; different; 15 vs 18 forms; one side empty
    assert g == [2, 1, 1, 0, 2, NULL_LEVEL]


def test_name_levels():
    frame = pf(
        name=(["张伟", "张伟", "张伟", "张伟", "张伟", "张伟", None],
              ["张伟", "张玮", "WEI ZHANG", "张卫国", "李娜", None, "张伟"]),
        name_pinyin=(["zhang wei"] * 6 + [None], ["zhang wei", "zhang wei", "wei zhang", "zhang wei guo", "li na", None, "zhang wei"]),
        name_pinyin_sorted=(["wei zhang"] * 6 + [None], ["wei zhang", "wei zhang", "wei zhang", "guo wei zhang", "li na", None, "wei zhang"]),
    )
    g = COMP["name"].gamma(frame).tolist()
    labels = COMP["name"].levels
    assert labels[g[0]] == "same name"
    assert labels[g[1]] == "same pinyin (homophone, other script)"
    assert labels[g[2]] == "same syllables, other order"
    assert labels[g[3]].startswith("pinyin Jaro-Winkler")  # zhang wei / zhang wei guo: close, not the same
    assert g[4] == 0
    assert g[5] == NULL_LEVEL and g[6] == NULL_LEVEL


def test_birth_date_levels():
    d = date(1990, 3, 7)
    frame = pf(birth=(
        [d, d, d, d, d, None],
        [d, date(1990, 7, 3), date(1990, 3, 8), date(1990, 11, 20), date(1985, 3, 7 + 10), d],
    ))
    g = COMP["birth_date"].gamma(frame).tolist()
    labels = COMP["birth_date"].levels
    assert [labels[x] for x in g[:4]] == ["same date", "day and month swapped", "two of year/month/day equal", "same year"]
    assert g[4] == 0 and g[5] == NULL_LEVEL


def test_region_address_phone_sex():
    frame = pf(
        hukou_region=(["330602001", "330602001", "330602", None], ["330602001", "330602002", "330603", None]),
        residence_region=([None, None, None, None], [None, None, None, None]),
        hukou_address=(["府山街道8号", "府山街道8号", "塔山街道1号", None], ["府山街道8号", "府山街道8号301室", "城南街道99号", None]),
        residence_address=([None, None, None, None], [None, None, None, None]),
        phone=(["13900000001", "13900000001", None, None], ["13900000001", "13900000002", None, None]),
        sex=(["M", "M", "F", None], ["M", "F", "F", None]),
    )
    assert COMP["region"].gamma(frame).tolist() == [2, 1, 0, NULL_LEVEL]
    addr = COMP["address"].gamma(frame).tolist()
    assert addr[0] == 3 and addr[1] in (1, 2) and addr[2] == 0 and addr[3] == NULL_LEVEL
    assert COMP["phone"].gamma(frame).tolist() == [1, 0, NULL_LEVEL, NULL_LEVEL]
    assert COMP["sex"].gamma(frame).tolist() == [1, 0, 1, NULL_LEVEL]


def test_compare_pairs_shape_and_specs_are_data():
    frame = pf(
        id_number=(["1"], ["1"]), id_valid=([False], [False]), name=(["A"], ["A"]), name_pinyin=(["a"], ["a"]),
        name_pinyin_sorted=(["a"], ["a"]), birth=([None], [None]), sex=([None], [None]),
        hukou_region=([None], [None]), residence_region=([None], [None]), hukou_address=([None], [None]),
        residence_address=([None], [None]), phone=([None], [None]),
    ).with_columns(pl.col("birth_l").cast(pl.Date), pl.col("birth_r").cast(pl.Date))
    g = compare_pairs(frame)
    assert g.shape == (1, len(DEFAULT_COMPARISONS))
    for c in DEFAULT_COMPARISONS:
        spec = c.spec()
        assert spec["name"] == c.name and spec["levels"][0] == "different"


def test_recordlinkage_compare_gives_the_same_levels():
    import pandas as pd

    from linkage.block import prepare_link_records
    from linkage.compare import PAIR_COLUMNS, pair_frame, recordlinkage_compare

    std = pl.DataFrame({
        "record_key": [0, 1, 2, 3],
        "name": ["张伟", "張偉", "WEI ZHANG", "李娜"],
        "name_script": ["han", "han", "latin", "han"],
        "surname": ["张", "张", None, "李"],
        "name_pinyin": ["zhang wei", "zhang wei", "wei zhang", "li na"],
        "name_pinyin_sorted": ["wei zhang", "wei zhang", "wei zhang", "li na"],
        "id_number": ["33060219900102123X", None, "33060219900102123X", "110101198001011234"],
        "birth_date": [date(1990, 1, 2), date(1990, 1, 2), date(1990, 2, 1), None],
        "phone": ["13900000001", None, "13900000001", None],
    })
    records = prepare_link_records(std)
    pairs = pl.DataFrame({"record_key_l": [0, 0, 1, 0], "record_key_r": [1, 2, 2, 3]})
    direct = compare_pairs(pair_frame(pairs, records))
    index = pd.MultiIndex.from_arrays([pairs["record_key_l"].to_numpy(), pairs["record_key_r"].to_numpy()])
    frame = records.select(list(PAIR_COLUMNS)).to_pandas().set_index(records["record_key"].to_numpy())
    features = recordlinkage_compare().compute(index, frame)
    assert (features.to_numpy() == direct).all()
    assert list(features.columns) == [c.name for c in DEFAULT_COMPARISONS]



def test_same_surname_names_are_judged_by_the_given_name():
    # "zhang jing yao" / "zhang hong" share "zhang ": Jaro-Winkler on the whole string is
    # above 0.88; twins' names are exactly this, so the given names alone decide.
    frame = pf(
        name=(["张静瑶", "张晓明"], ["张红", "张晓鸣"]),
        name_pinyin=(["zhang jing yao", "zhang xiao ming"], ["zhang hong", "zhang xiao ming"]),
        name_pinyin_sorted=(["jing yao zhang", "ming xiao zhang"], ["hong zhang", "ming xiao zhang"]),
        surname_pinyin=(["zhang", "zhang"], ["zhang", "zhang"]),
        given_pinyin=(["jingyao", "xiaoming"], ["hong", "xiaoming"]),
    )
    g = COMP["name"].gamma(frame).tolist()
    labels = COMP["name"].levels
    assert labels[g[0]] == "different"
    assert labels[g[1]] == "same pinyin (homophone, other script)"


def test_a_differing_year_is_a_slip_only_one_digit_or_swap_away():
    d = date(1983, 5, 27)
    frame = pf(birth=([d, d, d, d], [date(1988, 5, 27), date(1938, 5, 27), date(2011, 5, 27), date(1983, 6, 27)]))
    g = COMP["birth_date"].gamma(frame).tolist()
    labels = COMP["birth_date"].levels
    two = "two of year/month/day equal"
    # One digit off, two neighbouring digits swapped, another month: typos. 28 years apart: not one date.
    assert [labels[x] for x in g] == [two, two, "different", two]
