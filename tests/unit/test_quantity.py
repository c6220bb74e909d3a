"""resource.Quantity parsing and canonical form (cases from apimachinery's quantity_test.go)."""

from decimal import Decimal

import pytest

from kubelite.api.quantity import (
    BINARY_SI,
    DECIMAL_EXPONENT,
    DECIMAL_SI,
    ERR_FORMAT_WRONG,
    ERR_NUMERIC,
    ERR_SUFFIX,
    Quantity,
    canonicalize,
    format_quantity,
    milli_value,
    parse,
    parse_quantity,
    value,
)

D = Decimal
MAX_ALLOWED = D(2**63 - 1)


def dq(n: int | float, e: int) -> Decimal:
    return D(str(n)).scaleb(e)


PARSE_TABLE = [
    ("0", dq(0, 0), DECIMAL_SI),
    ("0n", dq(0, 0), DECIMAL_SI),
    ("0u", dq(0, 0), DECIMAL_SI),
    ("0m", dq(0, 0), DECIMAL_SI),
    ("0Ki", dq(0, 0), BINARY_SI),
    ("0k", dq(0, 0), DECIMAL_SI),
    ("0Mi", dq(0, 0), BINARY_SI),
    ("0M", dq(0, 0), DECIMAL_SI),
    ("0Gi", dq(0, 0), BINARY_SI),
    ("0G", dq(0, 0), DECIMAL_SI),
    ("0Ti", dq(0, 0), BINARY_SI),
    ("0T", dq(0, 0), DECIMAL_SI),
    ("1", dq(1, 0), DECIMAL_SI),
    ("1Ki", dq(1024, 0), BINARY_SI),
    ("8Ki", dq(8 * 1024, 0), BINARY_SI),
    ("7Mi", dq(7 * 1024**2, 0), BINARY_SI),
    ("6Gi", dq(6 * 1024**3, 0), BINARY_SI),
    ("5Ti", dq(5 * 1024**4, 0), BINARY_SI),
    ("4Pi", dq(4 * 1024**5, 0), BINARY_SI),
    ("3Ei", dq(3 * 1024**6, 0), BINARY_SI),
    ("10Ti", dq(10 * 1024**4, 0), BINARY_SI),
    ("100Ti", dq(100 * 1024**4, 0), BINARY_SI),
    ("5n", dq(5, -9), DECIMAL_SI),
    ("4u", dq(4, -6), DECIMAL_SI),
    ("3m", dq(3, -3), DECIMAL_SI),
    ("9", dq(9, 0), DECIMAL_SI),
    ("8k", dq(8, 3), DECIMAL_SI),
    ("50k", dq(5, 4), DECIMAL_SI),
    ("7M", dq(7, 6), DECIMAL_SI),
    ("6G", dq(6, 9), DECIMAL_SI),
    ("5T", dq(5, 12), DECIMAL_SI),
    ("40T", dq(4, 13), DECIMAL_SI),
    ("300T", dq(3, 14), DECIMAL_SI),
    ("2P", dq(2, 15), DECIMAL_SI),
    ("1E", dq(1, 18), DECIMAL_SI),
    ("1E-3", dq(1, -3), DECIMAL_EXPONENT),
    ("1e3", dq(1, 3), DECIMAL_EXPONENT),
    ("1E6", dq(1, 6), DECIMAL_EXPONENT),
    ("1e9", dq(1, 9), DECIMAL_EXPONENT),
    ("1E12", dq(1, 12), DECIMAL_EXPONENT),
    ("1e15", dq(1, 15), DECIMAL_EXPONENT),
    ("1E18", dq(1, 18), DECIMAL_EXPONENT),
    ("1e14", dq(1, 14), DECIMAL_EXPONENT),
    ("1e13", dq(1, 13), DECIMAL_EXPONENT),
    ("100.035k", dq(100035, 0), DECIMAL_SI),
    ("0.001", dq(1, -3), DECIMAL_SI),
    ("0.0005k", dq(5, -1), DECIMAL_SI),
    ("0.005", dq(5, -3), DECIMAL_SI),
    ("0.05", dq(5, -2), DECIMAL_SI),
    ("0.5", dq(5, -1), DECIMAL_SI),
    ("0.00050k", dq(5, -1), DECIMAL_SI),
    ("0.00500", dq(5, -3), DECIMAL_SI),
    ("0.05000", dq(5, -2), DECIMAL_SI),
    ("0.50000", dq(5, -1), DECIMAL_SI),
    ("0.5e0", dq(5, -1), DECIMAL_EXPONENT),
    ("0.5e-1", dq(5, -2), DECIMAL_EXPONENT),
    ("0.5e-2", dq(5, -3), DECIMAL_EXPONENT),
    ("10.035M", dq(10035, 3), DECIMAL_SI),
    ("1.2e3", dq(12, 2), DECIMAL_EXPONENT),
    ("1.3E+6", dq(13, 5), DECIMAL_EXPONENT),
    ("1.40e9", dq(14, 8), DECIMAL_EXPONENT),
    ("1.53E12", dq(153, 10), DECIMAL_EXPONENT),
    ("1.6e15", dq(16, 14), DECIMAL_EXPONENT),
    ("1.7E18", dq(17, 17), DECIMAL_EXPONENT),
    ("9.01", dq(901, -2), DECIMAL_SI),
    ("8.1k", dq(81, 2), DECIMAL_SI),
    ("7.123456M", dq(7123456, 0), DECIMAL_SI),
    ("6.987654321G", dq(6987654321, 0), DECIMAL_SI),
    ("5.444T", dq(5444, 9), DECIMAL_SI),
    ("40.1T", dq(401, 11), DECIMAL_SI),
    ("300.2T", dq(3002, 11), DECIMAL_SI),
    ("2.5P", dq(25, 14), DECIMAL_SI),
    ("1.01E", dq(101, 16), DECIMAL_SI),
    # saturate / round up to nano
    ("3.001n", dq(4, -9), DECIMAL_SI),
    ("1.1E-9", dq(2, -9), DECIMAL_EXPONENT),
    ("0.0000000001", dq(1, -9), DECIMAL_SI),
    ("0.0000000005", dq(1, -9), DECIMAL_SI),
    ("0.00000000050", dq(1, -9), DECIMAL_SI),
    ("0.5e-9", dq(1, -9), DECIMAL_EXPONENT),
    ("0.9n", dq(1, -9), DECIMAL_SI),
    ("0.00000012345", dq(124, -9), DECIMAL_SI),
    ("0.00000012354", dq(124, -9), DECIMAL_SI),
    ("9Ei", MAX_ALLOWED, BINARY_SI),
    ("9223372036854775807Ki", MAX_ALLOWED, BINARY_SI),
    ("12E", dq(12, 18), DECIMAL_SI),
    ("100.035Ki", dq(10243584, -2), BINARY_SI),
    ("0.5Mi", dq(512 * 1024, 0), BINARY_SI),
    ("0.05Gi", dq(536870912, -1), BINARY_SI),
    ("0.025Ti", dq(274877906944, -1), BINARY_SI),
    ("0.000000000001Ki", dq(2, -9), DECIMAL_SI),
    (".001", dq(1, -3), DECIMAL_SI),
    (".0001k", dq(100, -3), DECIMAL_SI),
    ("1.", dq(1, 0), DECIMAL_SI),
    ("1.G", dq(1, 9), DECIMAL_SI),
]


@pytest.mark.parametrize("text,expect,fmt", PARSE_TABLE)
def test_parse_table(text, expect, fmt):
    for prefix, sign in (("", 1), ("+", 1), ("-", -1)):
        q = parse(prefix + text)
        assert q.decimal() == expect * sign, prefix + text
        assert q.format == fmt
        assert parse_quantity(prefix + text) == expect * sign


@pytest.mark.parametrize("text", ["1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i",
                                  "-3.01e-", "", "1e", "1Kii", "ki"])
def test_parse_invalid(text):
    with pytest.raises(ValueError):
        Quantity.parse(text)


def test_parse_whitespace_rejected_by_parse_quantity_but_trimmed_for_json():
    with pytest.raises(ValueError):
        Quantity.parse(" 1")
    with pytest.raises(ValueError):
        Quantity.parse("1 ")
    assert canonicalize(" 1 ") == "1"  # UnmarshalJSON trims


def test_error_messages():
    assert ERR_FORMAT_WRONG == ("quantities must match the regular expression "
                                "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    for text, msg in [("", ERR_FORMAT_WRONG), ("abc", ERR_FORMAT_WRONG), ("1.2.3", ERR_FORMAT_WRONG),
                      ("1m5x", ERR_FORMAT_WRONG), ("1e", ERR_SUFFIX), ("1Kii", ERR_SUFFIX),
                      ("--1", ERR_SUFFIX), (".e-10", ERR_NUMERIC)]:
        with pytest.raises(ValueError) as ei:
            parse_quantity(text)
        assert str(ei.value) == msg, text
    assert ERR_SUFFIX == "unable to parse quantity's suffix"
    assert ERR_NUMERIC == "unable to parse numeric part of quantity"


STRING_TABLE = [
    # (value, format, canonical, alternate input that canonicalizes to it)
    (dq(1024**3, 0), BINARY_SI, "1Gi", "1024Mi"),
    (dq(300 * 1024**2, 0), BINARY_SI, "300Mi", "307200Ki"),
    (dq(6 * 1024, 0), BINARY_SI, "6Ki", ""),
    (dq(1001 * 1024**3, 0), BINARY_SI, "1001Gi", "1025024Mi"),
    (dq(1024**4, 0), BINARY_SI, "1Ti", "1024Gi"),
    (dq(5, 0), BINARY_SI, "5", "5000m"),
    (dq(500, -3), BINARY_SI, "500m", "0.5"),
    (dq(1, 9), DECIMAL_SI, "1G", "1000M"),
    (dq(1000, 6), DECIMAL_SI, "1G", "0.001T"),
    (dq(1000000, 3), DECIMAL_SI, "1G", ""),
    (dq(1000000000, 0), DECIMAL_SI, "1G", ""),
    (dq(1, -3), DECIMAL_SI, "1m", "1000u"),
    (dq(80, -3), DECIMAL_SI, "80m", ""),
    (dq(1080, -3), DECIMAL_SI, "1080m", "1.08"),
    (dq(108, -2), DECIMAL_SI, "1080m", "1080000000n"),
    (dq(10800, -4), DECIMAL_SI, "1080m", ""),
    (dq(300, 6), DECIMAL_SI, "300M", ""),
    (dq(1, 12), DECIMAL_SI, "1T", ""),
    (dq(1234567, 6), DECIMAL_SI, "1234567M", ""),
    (dq(1234567, -3), BINARY_SI, "1234567m", ""),
    (dq(3, 3), DECIMAL_SI, "3k", ""),
    (dq(1025, 0), BINARY_SI, "1025", ""),
    (dq(0, 0), DECIMAL_SI, "0", ""),
    (dq(0, 0), BINARY_SI, "0", ""),
    (dq(1, 9), DECIMAL_EXPONENT, "1e9", ".001e12"),
    (dq(1, -3), DECIMAL_EXPONENT, "1e-3", "0.001e0"),
    (dq(1, -9), DECIMAL_EXPONENT, "1e-9", "1000e-12"),
    (dq(80, -3), DECIMAL_EXPONENT, "80e-3", ""),
    (dq(300, 6), DECIMAL_EXPONENT, "300e6", ""),
    (dq(1, 12), DECIMAL_EXPONENT, "1e12", ""),
    (dq(1, 3), DECIMAL_EXPONENT, "1e3", ""),
    (dq(3, 3), DECIMAL_EXPONENT, "3e3", ""),
    (dq(0, 0), DECIMAL_EXPONENT, "0", "00"),
    (dq(1, -9), DECIMAL_SI, "1n", ""),
    (dq(80, -9), DECIMAL_SI, "80n", ""),
    (dq(1080, -9), DECIMAL_SI, "1080n", ""),
    (dq(108, -8), DECIMAL_SI, "1080n", ""),
    (dq(10800, -10), DECIMAL_SI, "1080n", ""),
    (dq(1, -6), DECIMAL_SI, "1u", ""),
    (dq(80, -6), DECIMAL_SI, "80u", ""),
    (dq(1080, -6), DECIMAL_SI, "1080u", ""),
]


@pytest.mark.parametrize("val,fmt,canon,alt", STRING_TABLE)
def test_string_table(val, fmt, canon, alt):
    assert format_quantity(val, fmt) == canon
    if val != 0:
        assert format_quantity(-val, fmt) == "-" + canon
    q = Quantity.parse(canon)
    assert q.cached == canon  # canonical input is kept as written
    assert str(q) == canon
    if alt:
        q = Quantity.parse(alt)
        assert q.cached is None
        assert str(q) == canon


@pytest.mark.parametrize("text,expect", [
    ("1Ki", "1Ki"), ("1Mi", "1Mi"), ("1Gi", "1Gi"), ("1024Mi", "1Gi"), ("1000M", "1G"),
    (".001Ki", "1024m"), (".000001Ki", "1024u"), (".000000001Ki", "1024n"), (".000000000001Ki", "2n"),
])
def test_parse_emit(text, expect):
    assert canonicalize(text, round_milli=False) == expect
    assert canonicalize("-" + text, round_milli=False) == "-" + expect


@pytest.mark.parametrize("text,expect", [
    ("0.5", "500m"), ("1000m", "1"), ("128Mi", "128Mi"), ("1G", "1G"), ("1.5Gi", "1536Mi"),
    ("0.0001", "1m"), ("100u", "1m"), ("1500u", "2m"), ("1.5k", "1500"), ("1e3", "1e3"),
    ("500m", "500m"), ("100m", "100m"), ("2", "2"), ("1.5", "1500m"), ("64Mi", "64Mi"),
    ("1024Mi", "1Gi"), ("0.5Ki", "512"), ("1.0Ki", "1Ki"), ("5.5Mi", "5632Ki"), ("250M", "250M"),
    ("1e-10", "1e-3"), ("0.1n", "1m"), ("-0.5", "-500m"), ("0", "0"), ("0Mi", "0"), ("0.0", "0"),
    # apimachinery keeps these strings as written (fast path reuses the input)
    ("01", "01"), ("+1", "+1"), ("1.", "1."),
])
def test_canonicalize_resource(text, expect):
    assert canonicalize(text) == expect


def test_canonicalize_json_numbers():
    assert canonicalize(1) == "1"
    assert canonicalize(0.5) == "500m"
    assert canonicalize(2.0) == "2"
    assert canonicalize(1e-7) == "1e-3"  # Go writes 1e-07: DecimalExponent
    assert canonicalize(0.25) == "250m"
    with pytest.raises(ValueError):
        canonicalize(True)


def test_round_up():
    for text, scale, expect, ok in [
        ("9.01", -3, dq(901, -2), True), ("9.01", -2, dq(901, -2), True), ("9.01", -1, dq(91, -1), False),
        ("9.01", 0, dq(10, 0), False), ("9.01", 1, dq(10, 0), False), ("9.01", 2, dq(100, 0), False),
        ("-9.01", -3, dq(-901, -2), True), ("-9.01", -1, dq(-91, -1), False),
        ("-9.01", 2, dq(-100, 0), False),
    ]:
        q = Quantity.parse(text)
        assert q.round_up(scale) is ok
        assert q.decimal() == expect


def test_values():
    assert milli_value("0.1") == 100
    assert milli_value("1") == 1000
    assert milli_value("1n") == 1  # rounded up
    assert value("0.1") == 1
    assert value("1.5Gi") == 1610612736
    assert value("1k") == 1000
    assert milli_value("250m") == 250
    assert milli_value(Decimal("0.5")) == 500
    assert value("-1.5") == -2  # away from zero


def test_equality_and_compare():
    assert Quantity.parse("1Gi") == Quantity.parse("1024Mi")
    assert Quantity.parse("1000m") == Quantity.parse("1")
    assert Quantity.parse("1G").cmp(Quantity.parse("1Gi")) < 0
