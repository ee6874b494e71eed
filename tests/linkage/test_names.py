"""Names: one rule per row, raw value → expected standard values."""

import polars as pl
import pytest

from linkage.names import NAME_COLUMNS, split_pinyin, standardize_name, standardize_names


@pytest.mark.parametrize(
    ("raw", "name", "script"),
    [
        ("张伟", "张伟", "han"),
        ("張偉", "张伟", "han"),  # traditional → simplified (OpenCC t2s)
        ("鄭淑貞", "郑淑贞", "han"),
        (" 张 伟 ", "张伟", "han"),  # spaces inside a Han name
        ("张\u3000伟", "张伟", "han"),  # ideographic space
        ("张\u200b伟", "张伟", "han"),  # zero-width space from a web form
        ("ＺＨＡＮＧ　ＷＥＩ", "ZHANG WEI", "latin"),  # full-width → half-width
        ("买买提•艾力", "买买提·艾力", "han"),  # bullet → middle dot
        ("买买提.艾力", "买买提·艾力", "han"),
        ("买买提・艾力", "买买提·艾力", "han"),  # katakana middle dot
        ("买买提 · 艾力", "买买提·艾力", "han"),
        ("ZHANG WEI", "ZHANG WEI", "latin"),
        ("Zhang Wei", "ZHANG WEI", "latin"),
        ("zhang-wei", "ZHANG WEI", "latin"),
        ("ZHANGWEI", "ZHANG WEI", "latin"),  # run-together romanization split on pinyin syllables
        ("LYU Bu", "LYU BU", "latin"),
    ],
)
def test_name_written_form(raw, name, script):
    parts = standardize_name(raw)
    assert parts.name == name
    assert parts.name_script == script


@pytest.mark.parametrize("raw", ["无", "不详", "未知", "测试", "测试001", "某某", "张某某", "N/A", "n/a", "-", "？", "?", "...", "NULL", "123", ""])
def test_placeholder_names_are_missing(raw):
    parts = standardize_name(raw)
    assert parts.name is None and parts.name_pinyin is None and parts.name_script is None


@pytest.mark.parametrize(
    ("raw", "surname", "given", "pinyin", "surname_pinyin"),
    [
        ("张伟", "张", "伟", "zhang wei", "zhang"),
        ("单雄信", "单", "雄信", "shan xiong xin", "shan"),  # 单 as a surname is shan, not dan
        ("解缙", "解", "缙", "xie jin", "xie"),
        ("曾国藩", "曾", "国藩", "zeng guo fan", "zeng"),
        ("仇英", "仇", "英", "qiu ying", "qiu"),
        ("区志明", "区", "志明", "ou zhi ming", "ou"),
        ("查良镛", "查", "良镛", "zha liang yong", "zha"),
        ("盖聂", "盖", "聂", "ge nie", "ge"),
        ("朴树", "朴", "树", "piao shu", "piao"),
        ("乐嘉", "乐", "嘉", "yue jia", "yue"),
        ("欧阳娜娜", "欧阳", "娜娜", "ou yang na na", "ouyang"),
        ("尉迟恭", "尉迟", "恭", "yu chi gong", "yuchi"),
        ("万俟卨", "万俟", "卨", "mo qi xie", "moqi"),
        ("诸葛亮", "诸葛", "亮", "zhu ge liang", "zhuge"),
        ("长孙无忌", "长孙", "无忌", "zhang sun wu ji", "zhangsun"),
        ("司马", "司", "马", "si ma", "si"),  # two characters: a compound surname needs a given name after it
        ("買買提·艾力", None, None, "mai mai ti ai li", None),  # transliterated name: no Han surname
    ],
)
def test_surname_split_and_reading(raw, surname, given, pinyin, surname_pinyin):
    parts = standardize_name(raw)
    assert (parts.surname, parts.given_name, parts.name_pinyin, parts.surname_pinyin) == (
        surname,
        given,
        pinyin,
        surname_pinyin,
    )


@pytest.mark.parametrize(("a", "b"), [("张伟", "张玮"), ("张伟", "张炜")])
def test_homophones_meet_on_pinyin_but_not_on_characters(a, b):
    pa, pb = standardize_name(a), standardize_name(b)
    assert pa.name_pinyin == pb.name_pinyin == "zhang wei"
    assert pa.name_initials == pb.name_initials == "zw"
    assert pa.name != pb.name


@pytest.mark.parametrize(
    ("romanized", "han"),
    [
        ("ZHANG WEI", "张伟"),
        ("Wei Zhang", "张伟"),  # given name first
        ("zhang-wei", "张伟"),
        ("ZHANGWEI", "张伟"),
        ("Ouyang Nana", "欧阳娜娜"),
        ("LYU BU", "吕布"),  # passport spelling of ü
    ],
)
def test_romanized_meets_han_on_sorted_pinyin(romanized, han):
    assert standardize_name(romanized).name_pinyin_sorted == standardize_name(han).name_pinyin_sorted


@pytest.mark.parametrize(
    ("raw", "pinyin", "surname_pinyin"),
    [
        ("Wei Zhang", "wei zhang", None),  # order unknown
        ("Wei ZHANG", "wei zhang", "zhang"),  # the word in capitals is the surname
        ("ZHANG, Wei", "zhang wei", "zhang"),  # surname before the comma
        ("John Smith", "john smith", None),  # not pinyin: kept as written
    ],
)
def test_latin_order(raw, pinyin, surname_pinyin):
    parts = standardize_name(raw)
    assert (parts.name_pinyin, parts.surname_pinyin, parts.surname) == (pinyin, surname_pinyin, None)


@pytest.mark.parametrize(
    ("token", "syllables"),
    [
        ("zhangwei", ["zhang", "wei"]),
        ("xian", ["xian"]),  # fewest syllables
        ("fangan", ["fan", "gan"]),  # no vowel-initial syllable inside a word (pinyin writes fang'an)
        ("ouyangnana", ["ou", "yang", "na", "na"]),
        ("smith", None),
    ],
)
def test_split_pinyin(token, syllables):
    assert split_pinyin(token) == syllables


def test_batch_runs_over_distinct_values_and_agrees_with_single():
    raw = pl.Series(["張偉", "张伟", "張偉", None, "无", "ZHANG WEI", "单雄信"])
    out = standardize_names(raw)
    assert out.columns == ["name_raw", *NAME_COLUMNS]
    assert out.height == 5  # distinct non-null values
    for row in out.iter_rows(named=True):
        single = standardize_name(row["name_raw"])
        assert [row[c] for c in NAME_COLUMNS] == [getattr(single, c) for c in NAME_COLUMNS]


def test_batch_agrees_with_single_on_every_rule():
    # The batch path (polars) and the one-name path (Python) are two implementations of one rule set.
    raw = [
        "張偉", "张 伟", "张\u200b伟", "单雄信", "欧阳娜娜", "尉迟恭", "司马", "长孙无忌", "買買提•艾力", "阿依古丽・吐尔逊",
        "张伟A", "无", "测试1", "某某", "N/A", "-", "？", "ZHANG WEI", "Wei ZHANG", "zhang-wei", "ZHANG, Wei",
        "ＺＨＡＮＧ　ＷＥＩ", "LYU Bu", "John Smith", "曾国藩", "区志明", "查良镛", "乐嘉", "·张伟·", "𠮷田",
    ]
    out = standardize_names(pl.Series(raw))
    assert sorted(out["name_raw"].to_list()) == sorted(raw)
    for row in out.iter_rows(named=True):
        single = standardize_name(row["name_raw"])
        assert [row[c] for c in NAME_COLUMNS] == [getattr(single, c) for c in NAME_COLUMNS], row["name_raw"]


@pytest.mark.parametrize("raw", [[], [None], ["John Smith"], ["无", "N/A"]])
def test_batch_without_any_han_name(raw):
    out = standardize_names(pl.Series(raw, dtype=pl.String))
    assert out.columns == ["name_raw", *NAME_COLUMNS]
    assert out.height == len({r for r in raw if r is not None})
