"""Amounts print with their currency's minor units, in the API, the email and the invoice alike."""

from __future__ import annotations

from decimal import Decimal

import pytest

from booking_core.model.currencies import currency_codes, format_amount, minor_unit


@pytest.mark.parametrize(("amount", "currency", "plain", "grouped"), [
    (Decimal("100.00"), "JPY", "100", "100"),            # numeric(12, 2) gives JPY 100 as 100.00
    (Decimal("1234567.00"), "KRW", "1234567", "1,234,567"),
    ("7", "EUR", "7.00", "7.00"),
    (Decimal("1234.5"), "USD", "1234.50", "1,234.50"),
    (Decimal("0.01"), "GBP", "0.01", "0.01"),
    (Decimal("9999999999.99"), "EUR", "9999999999.99", "9,999,999,999.99"),
    (Decimal("100.00"), "JPY ", "100", "100"),           # char(3) padding is ignored
])
def test_amount_has_exactly_the_currency_minor_units(amount, currency, plain, grouped):
    assert format_amount(amount, currency) == plain
    assert format_amount(amount, currency, grouping=True) == grouped


def test_an_unknown_code_prints_two_decimals():
    assert format_amount(Decimal("5"), "<b>") == "5.00"


def test_codes_are_the_table_and_minor_units_are_at_most_two():
    codes = currency_codes()
    assert codes == sorted(codes) and {"EUR", "JPY", "USD"} <= set(codes)
    assert {minor_unit(c) for c in codes} == {0, 2}
    assert minor_unit("eur") is None and minor_unit(978) is None
