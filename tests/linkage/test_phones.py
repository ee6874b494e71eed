"""Phones: mobiles to 11 digits, landlines kept with their area code."""

import polars as pl
import pytest

from linkage.phones import standardize_phones


@pytest.mark.parametrize(
    ("raw", "phone", "phone_type"),
    [
        ("13812345678", "13812345678", "mobile"),
        ("+86 138-1234-5678", "13812345678", "mobile"),
        ("+8613812345678", "13812345678", "mobile"),
        ("0086 13812345678", "13812345678", "mobile"),
        ("8613812345678", "13812345678", "mobile"),
        ("138 1234 5678", "13812345678", "mobile"),
        ("１３８１２３４５６７８", "13812345678", "mobile"),  # full-width
        ("13812345678/13900001111", "13812345678", "mobile"),  # two numbers: the first
        ("0575-88001234", "0575-88001234", "landline"),
        ("057588001234", "0575-88001234", "landline"),
        ("(0575)88001234", "0575-88001234", "landline"),
        ("0575-88001234转801", "0575-88001234", "landline"),  # extension dropped
        ("010-12345678", "010-12345678", "landline"),  # three-digit area code
        ("02112345678", "021-12345678", "landline"),
        ("+86 575 88001234", "0575-88001234", "landline"),
        ("88001234", None, None),  # no area code: the same digits exist in every city
        ("12345", None, None),
        ("23812345678", None, None),
        ("无", None, None),
        (None, None, None),
    ],
)
def test_phone(raw, phone, phone_type):
    out = standardize_phones(pl.DataFrame({"phone": [raw]}, schema={"phone": pl.String})).row(0)
    assert out == (phone, phone_type)
