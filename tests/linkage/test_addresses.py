"""Addresses and regions: one written form, prefix moved into a GB/T 2260 code, township codes learned."""

import polars as pl
import pytest

from linkage.addresses import han_number, normalize_address_text, standardize_address, standardize_addresses
from linkage.regions import (
    learn_township_codes,
    normalize_region_code,
    preferred_cities,
    region_index,
    township_name,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("外山村十二号", "外山村12号"),
        ("三单元", "3单元"),
        ("二十一号", "21号"),
        ("一百零五号", "105号"),
        ("五楼", "5楼"),
        ("第三组", "第3组"),
        ("外山村１２号", "外山村12号"),  # full-width digits
        ("外山村 12 号", "外山村12号"),  # spaces
        ("3幢2单元301室", "3栋2单元301"),  # 幢 = 栋, a room's 室 dropped
        ("5号楼", "5栋"),
        ("三号楼", "3栋"),
        ("12#楼", "12栋"),
        ("三里屯路", "三里屯路"),  # a numeral inside a place name stays
        ("五一路", "五一路"),
        ("长乐路123弄", "长乐路123弄"),  # 弄 is not 巷
        ("青石巷5号", "青石巷5号"),
    ],
)
def test_normalize_address_text(raw, expected):
    assert normalize_address_text(raw) == expected


@pytest.mark.parametrize(("text", "number"), [("十二", 12), ("十", 10), ("二十", 20), ("三〇一", 301), ("一百零五", 105), ("两千", 2000), ("路", None)])
def test_han_number(text, number):
    assert han_number(text) == number


@pytest.mark.parametrize(
    ("raw", "address", "region"),
    [
        ("浙江省绍兴市越城区城南街道外山村12号", "城南街道外山村12号", "330602"),
        ("越城区城南街道外山村十二号", "城南街道外山村12号", "330602"),  # same place without province and city
        ("绍兴市越城区城南街道外山村12号", "城南街道外山村12号", "330602"),
        ("浙江绍兴越城区城南街道外山村12号", "城南街道外山村12号", "330602"),  # short province and city names
        ("浙江省绍兴市城南街道外山村12号", "城南街道外山村12号", "330600"),  # names only the city
        ("浙江省杭州市", None, "330100"),
        ("北京市朝阳区建国路88号", "建国路88号", "110105"),  # municipality
        ("上海市黄浦区长乐路123弄5号", "长乐路123弄5号", "310101"),
        ("吉林市船营区北京路3号", "北京路3号", "220204"),  # 吉林市 is the city, not 吉林省
        ("新疆维吾尔自治区乌鲁木齐市天山区人民路1号", "人民路1号", "650102"),
        ("广东省东莞市南城街道1号", "南城街道1号", "441900"),  # city without counties
        ("湖北省仙桃市干河街道3号", "干河街道3号", "429004"),  # county-level city under the province
        ("城南街道外山村12号", "城南街道外山村12号", None),  # names no region
        ("鼓楼区华大街道1号", "鼓楼区华大街道1号", None),  # several 鼓楼区 and no city: not guessed
        ("城区某路1号", "城区某路1号", None),  # too generic without a city
        ("无", None, None),
    ],
)
def test_prefix_moves_into_region(raw, address, region):
    assert standardize_address(raw) == (address, region)


def test_ambiguous_county_resolved_by_the_batch_city():
    # Nanjing (3201) and Fuzhou (3501) both have a 鼓楼区; a batch whose codes are Fuzhou's reads it as Fuzhou's.
    assert standardize_address("鼓楼区华大街道1号", preferred_cities=["3501"]) == ("华大街道1号", "350102")
    assert standardize_address("鼓楼区华大街道1号", preferred_cities=["3201"]) == ("华大街道1号", "320106")


def test_region_table_is_dated_gbt2260():
    index = region_index()
    assert index.provinces["浙江省"] == "330000"
    assert index.cities["绍兴市"] == ["330600"]
    assert "330602" in index.counties["越城区"]


@pytest.mark.parametrize(
    ("text", "name"),
    [("城南街道外山村12号", "城南街道"), ("马山镇安城村", "马山镇"), ("富盛乡1号", "富盛乡"), ("人民路1号", None), (None, None)],
)
def test_township_name(text, name):
    assert township_name(text) == name


@pytest.mark.parametrize(
    ("raw", "code"),
    [("330602", "330602"), ("330602003", "330602003"), ("330602003000", "330602003"), ("330602000000", "330602"),
     ("330602000", "330602"), (" 330602 ", "330602"), ("越城区", None), ("3306", None), (None, None)],
)
def test_normalize_region_code(raw, code):
    out = pl.DataFrame({"r": [raw]}, schema={"r": pl.String}).select(normalize_region_code(pl.col("r")))
    assert out.item() == code


def test_learned_township_prefers_most_seen_code_then_smallest():
    pairs = pl.DataFrame(
        {
            "county_code": ["330602"] * 5 + ["330603"] * 2,
            "township_name": ["城南街道"] * 5 + ["柯桥街道"] * 2,
            # two vintages of one street's code: 003 seen three times, 010 twice
            "township_code": ["330602003", "330602010", "330602003", "330602010", "330602003", "330603001", "330603002"],
        }
    )
    learned = learn_township_codes(pairs).sort("county_code")
    assert learned.select("county_code", "township_name", "township_code", "seen", "codes_seen").rows() == [
        ("330602", "城南街道", "330602003", 3, 2),
        ("330603", "柯桥街道", "330603001", 1, 2),  # a tie: the smaller code, deterministically
    ]


def test_batch_over_distinct_addresses():
    out = standardize_addresses(pl.Series(["越城区城南街道外山村十二号", None, "越城区城南街道外山村十二号", "人民路1号"]))
    assert out.height == 2
    assert dict(zip(out["address_raw"], out["township_name"], strict=True)) == {
        "越城区城南街道外山村十二号": "城南街道",
        "人民路1号": None,
    }


def test_preferred_cities_ranked_by_how_often_the_batch_names_them():
    codes = pl.Series(["350102001", "350103", "320106", None, "330000", "350104"])
    # 3501 three times, 3201 once; a province code names no city
    assert preferred_cities(codes) == ["3501", "3201"]
