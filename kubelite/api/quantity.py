"""resource.Quantity, as apimachinery/pkg/api/resource.

A quantity is an exact decimal number plus the *format* (suffix family) it was
written in: ``DecimalSI`` (``m``, ``k``, ``M`` ...), ``BinarySI`` (``Ki``,
``Mi`` ...) or ``DecimalExponent`` (``e3``).  Kubernetes re-renders it in a
canonical form of the same family (``1000m`` -> ``1``, ``1.5Gi`` -> ``1536Mi``,
``1.5k`` -> ``1500``) but keeps the caller's string when it is already
canonical enough (``100Mi``, ``500m``, ``1e3``).  All arithmetic here is done
on integers (``n * 10**e``), so nothing is lost to a Decimal context.
"""

from __future__ import annotations

import math
from decimal import Decimal

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

SPLIT_RE = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ERR_FORMAT_WRONG = "quantities must match the regular expression '" + SPLIT_RE + "'"
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

NANO = -9
MICRO = -6
MILLI = -3

_DIGITS = frozenset("0123456789")
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DEC_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DEC_BY_EXP = {v: k for k, v in _DEC_SUFFIXES.items()}
_BIN_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BIN_BY_EXP = {v: k for k, v in _BIN_SUFFIXES.items()}
_INT64_MAX = (1 << 63) - 1
_INT64_MIN = -(1 << 63)
_MAX_ALLOWED = _INT64_MAX  # BinarySI values are capped here (maxAllowed)


def _int32(x: int) -> int:
    return ((x + (1 << 31)) % (1 << 32)) - (1 << 31)


def _go_int_div(a: int, b: int) -> int:
    """Go's truncating integer division."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _parse_int64(s: str) -> int | None:
    """strconv.ParseInt(s, 10, 64)."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or any(c not in _DIGITS for c in body):
        return None
    v = int(s)
    if v < _INT64_MIN or v > _INT64_MAX:
        return None
    return v


def _round_away(n: int, e: int, scale: int) -> tuple[int, int, bool]:
    """Round ``n * 10**e`` away from zero to a multiple of ``10**scale``.

    Returns the new (n, e, exact).  When e >= scale nothing changes.
    """
    if e >= scale:
        return n, e, True
    d = 10 ** (scale - e)
    q, r = divmod(abs(n), d)
    if r:
        q += 1
    return (q if n >= 0 else -q), scale, r == 0


def _remove_factors(n: int, base: int) -> tuple[int, int]:
    times = 0
    if n == 0:
        return 0, 0
    while n % base == 0:
        n //= base
        times += 1
    return n, times


class Quantity:
    """A parsed quantity: exact value ``n * 10**e`` plus its format.

    ``cached`` is the caller's string when apimachinery would reuse it
    (the fast int64 path in ParseQuantity); ``iscale`` is the int64Amount
    scale for values that took that path (None for the inf.Dec path).
    """

    __slots__ = ("n", "e", "format", "cached", "iscale")

    def __init__(self, n: int, e: int, fmt: str, cached: str | None = None,
                 iscale: int | None = None) -> None:
        self.n = n
        self.e = e
        self.format = fmt
        self.cached = cached
        self.iscale = iscale

    # -- construction -------------------------------------------------------------
    @classmethod
    def parse(cls, s: str) -> Quantity:
        """resource.ParseQuantity; raises ValueError with apimachinery's messages."""
        if not isinstance(s, str):
            raise TypeError(f"quantity must be a string, not {type(s).__name__}")
        if len(s) == 0:
            raise ValueError(ERR_FORMAT_WRONG)
        if s == "0":
            return cls(0, 0, DECIMAL_SI, "0", 0)
        positive, value, num, denom, suf = _parse_quantity_string(s)
        base, exponent, fmt = _interpret_suffix(suf)

        precision = 0
        scale = 0
        mantissa = 1
        if fmt in (DECIMAL_EXPONENT, DECIMAL_SI):
            scale = exponent
            precision = 18 - (len(num) + len(denom))
        else:
            scale = 0
            if exponent >= 0 and len(denom) == 0:
                mantissa = 1 << exponent
                precision = 15 - len(num) - int(exponent * 3 / 10) - 1
            else:
                precision = -1

        if precision >= 0:
            scale -= len(denom)
            if scale >= NANO:
                shifted = num + denom
                v = int(shifted)
                result = v * mantissa
                if result <= _INT64_MAX:
                    if not positive:
                        result = -result
                    cached = None
                    if fmt == BINARY_SI:
                        if exponent % 10 == 0 and (v & 0x07) != 0:
                            cached = s
                    elif scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0":
                        cached = s
                    return cls(result, scale, fmt, cached, scale)

        # inf.Dec path
        sign_less = value[1:] if value[:1] in ("+", "-") else value
        int_part, _, frac_part = sign_less.partition(".")
        if not (int_part + frac_part):
            raise ValueError(ERR_NUMERIC)
        n = int(int_part + frac_part) if (int_part + frac_part) else 0
        e = -len(frac_part)
        if base == 10:
            e += exponent
        else:
            if exponent >= 0:
                n <<= exponent
            else:  # cannot happen with the suffix tables
                n, e = n * 5 ** (-exponent), e + exponent
        if n != 0:
            n, e, _ = _round_away(n, e, NANO)
        if fmt == BINARY_SI and _cmp(n, e, _MAX_ALLOWED, 0) > 0:
            n, e = _MAX_ALLOWED, 0
        if fmt == BINARY_SI and n != 0 and _cmp(n, e, 1, 0) < 0:
            fmt = DECIMAL_SI
        if not positive:
            n = -n
        return cls(n, e, fmt, None, None)

    @classmethod
    def from_value(cls, value: Decimal | int, fmt: str = DECIMAL_SI) -> Quantity:
        if isinstance(value, int):
            return cls(value, 0, fmt, None, None)
        sign, digits, exp = value.as_tuple()
        if not isinstance(exp, int):
            raise ValueError(f"not a finite quantity: {value}")
        n = int("".join(map(str, digits))) if digits else 0
        return cls(-n if sign else n, exp, fmt, None, None)

    # -- values -------------------------------------------------------------------
    def decimal(self) -> Decimal:
        return _to_decimal(self.n, self.e)

    def is_zero(self) -> bool:
        return self.n == 0

    def round_up(self, scale: int) -> bool:
        """Quantity.RoundUp: round away from zero to 10**scale; returns exactness."""
        if self.iscale is None:
            self.cached = None
            self.n, self.e, exact = _round_away(self.n, self.e, scale)
            return exact
        if self.iscale >= scale:
            return True
        self.cached = None
        self.n, self.e, exact = _round_away(self.n, self.e, scale)
        self.iscale = scale
        return exact

    def scaled_value(self, scale: int) -> int:
        """ceil(q / 10**scale), rounding away from zero, saturating at int64."""
        n, e = self.n, self.e
        if n == 0:
            return 0
        if e - scale + len(str(abs(n))) > 20:
            return _INT64_MAX if n > 0 else _INT64_MIN
        n, e, _ = _round_away(n, e, scale)
        v = n * 10 ** (e - scale)
        return max(_INT64_MIN, min(_INT64_MAX, v))

    def value(self) -> int:
        return self.scaled_value(0)

    def milli_value(self) -> int:
        return self.scaled_value(MILLI)

    # -- rendering ----------------------------------------------------------------
    def canonical(self) -> str:
        return _canonicalize(self.n, self.e, self.format)

    def __str__(self) -> str:
        return self.cached if self.cached is not None else self.canonical()

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and _cmp(self.n, self.e, other.n, other.e) == 0

    def __hash__(self) -> int:
        return hash(self.decimal().normalize()) if self.n else 0

    def cmp(self, other: Quantity) -> int:
        return _cmp(self.n, self.e, other.n, other.e)


def _cmp(n1: int, e1: int, n2: int, e2: int) -> int:
    e = min(e1, e2)
    a = n1 * 10 ** (e1 - e)
    b = n2 * 10 ** (e2 - e)
    return (a > b) - (a < b)


def _to_decimal(n: int, e: int) -> Decimal:
    digits = tuple(int(c) for c in str(abs(n)))
    return Decimal((1 if n < 0 else 0, digits, e))


def _parse_quantity_string(s: str) -> tuple[bool, str, str, str, str]:
    """parseQuantityString: (positive, value, num, denom, suffix)."""
    positive = True
    pos = 0
    end = len(s)
    if pos < end:
        if s[0] == "-":
            positive = False
            pos += 1
        elif s[0] == "+":
            pos += 1

    # strip leading zeros
    i = pos
    while True:
        if i >= end:
            return positive, "0", "0", "", ""
        if s[i] == "0":
            pos += 1
            i += 1
        else:
            break

    # numerator
    i = pos
    while True:
        if i >= end:
            return positive, s, s[pos:end], "", ""
        if s[i] not in _DIGITS:
            num = s[pos:i]
            pos = i
            break
        i += 1
    if not num:
        num = "0"

    denom = ""
    if pos < end and s[pos] == ".":
        pos += 1
        i = pos
        while True:
            if i >= end:
                return positive, s, num, s[pos:end], ""
            if s[i] not in _DIGITS:
                denom = s[pos:i]
                pos = i
                break
            i += 1
    value = s[:pos]

    suffix_start = pos
    i = pos
    while True:
        if i >= end:
            return positive, value, num, denom, s[suffix_start:end]
        if s[i] not in _SUFFIX_CHARS:
            pos = i
            break
        i += 1
    if pos < end and s[pos] in "-+":
        pos += 1
    i = pos
    while True:
        if i >= end:
            return positive, value, num, denom, s[suffix_start:end]
        if s[i] not in _DIGITS:
            break
        i += 1
    raise ValueError(ERR_FORMAT_WRONG)


def _interpret_suffix(suf: str) -> tuple[int, int, str]:
    if suf in _DEC_SUFFIXES:
        return 10, _DEC_SUFFIXES[suf], DECIMAL_SI
    if suf in _BIN_SUFFIXES:
        return 2, _BIN_SUFFIXES[suf], BINARY_SI
    if len(suf) > 1 and suf[0] in "eE":
        parsed = _parse_int64(suf[1:])
        if parsed is None:
            raise ValueError(ERR_SUFFIX)
        return 10, _int32(parsed), DECIMAL_EXPONENT
    raise ValueError(ERR_SUFFIX)


def _canonicalize(n: int, e: int, fmt: str) -> str:
    """Quantity.CanonicalizeBytes (number + suffix)."""
    if n == 0:
        return "0"
    if fmt == BINARY_SI:
        if _cmp(n, e, -1024, 0) > 0 and _cmp(n, e, 1024, 0) < 0:
            fmt = DECIMAL_SI
        else:
            rn, re_, exact = _round_away(n, e, 0)
            if not exact:
                fmt = DECIMAL_SI
            else:
                whole = rn * 10 ** re_
                amount, k = _remove_factors(whole, 1024)
                return str(amount) + _BIN_BY_EXP.get(k * 10, "")
    elif fmt != DECIMAL_SI:
        fmt = DECIMAL_EXPONENT
    amount, times = _remove_factors(n, 10)
    exponent = e + times
    r = exponent % 3  # Python modulo: floor towards a multiple of 3
    if r:
        amount *= 10 ** r
        exponent -= r
    if fmt == DECIMAL_SI:
        return str(amount) + _DEC_BY_EXP.get(exponent, "")
    return str(amount) + ("" if exponent == 0 else f"e{exponent}")


def _go_float_text(f: float) -> str:
    """How Go's encoding/json writes a float64 (the text ParseQuantity would see)."""
    if not math.isfinite(f):
        raise ValueError(ERR_FORMAT_WRONG)
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        s = repr(f)
        if "e" not in s:
            s = f"{Decimal(s):e}"
        mant, _, exp = s.partition("e")
        if mant.endswith(".0"):
            mant = mant[:-2]
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        if len(digits) < 2:
            digits = "0" + digits
        s = f"{mant}e{sign}{digits}"
        # Go cleans e-09 -> e-9 (and e+09 -> e+9)
        if len(digits) == 2 and digits[0] == "0":
            s = f"{mant}e{sign}{digits[1]}"
        return s
    if f == int(f):
        return str(int(f))
    return format(Decimal(repr(f)), "f")


def to_quantity_string(s: str | int | float) -> str:
    """The text apimachinery would parse for a JSON value (string, integer or float)."""
    if isinstance(s, bool):
        raise ValueError(ERR_FORMAT_WRONG)
    if isinstance(s, int):
        return str(s)
    if isinstance(s, float):
        return _go_float_text(s)
    if isinstance(s, Decimal):
        return format(s, "f")
    if isinstance(s, str):
        return s.strip()  # UnmarshalJSON trims spaces
    raise ValueError(ERR_FORMAT_WRONG)


def parse(s: str | int | float) -> Quantity:
    """Parse a JSON-ish quantity value (as Quantity.UnmarshalJSON) into a :class:`Quantity`."""
    return Quantity.parse(to_quantity_string(s))


def parse_quantity(s: str | int | float) -> Decimal:
    """The exact value of a quantity (after apimachinery's nano rounding); ValueError on bad input."""
    return parse(s).decimal()


def format_quantity(value: Decimal | int, fmt: str) -> str:
    """Canonical string of ``value`` in format ``fmt`` (BinarySI, DecimalSI or DecimalExponent)."""
    return Quantity.from_value(value, fmt).canonical()


def canonicalize(s: str | int | float, round_milli: bool = True) -> str:
    """What the API server stores/returns for a resource quantity.

    With ``round_milli`` (the default, as core/v1 SetDefaults_ResourceList does),
    the value is first rounded up to milli precision.  Raises ValueError.
    """
    q = parse(s)
    if round_milli:
        q.round_up(MILLI)
    return str(q)


def _as_quantity(q: Quantity | str | int | float | Decimal) -> Quantity:
    if isinstance(q, Quantity):
        return q
    if isinstance(q, Decimal):
        return Quantity.from_value(q)
    return parse(q)


def milli_value(q: Quantity | str | int | float | Decimal) -> int:
    """ceil(q * 1000) (rounded away from zero)."""
    return _as_quantity(q).milli_value()


def value(q: Quantity | str | int | float | Decimal) -> int:
    """ceil(q) (rounded away from zero)."""
    return _as_quantity(q).value()


def is_valid(s: str | int | float) -> bool:
    try:
        parse(s)
    except ValueError:
        return False
    return True
