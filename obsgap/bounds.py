"""Bucket bounds (`le`) and quantiles as numbers, whatever their spelling.

Prometheus 2 stores `le` and `quantile` as the exposition wrote them (Envoy: `500`, `1800000`); Prometheus 3
normalises them on ingestion to Go's shortest float form with `.0` added to integers (`500.0`, `1.8e+06`;
prometheus/prometheus model/labels/float.go FormatOpenMetricsFloat, docs/migration.md). Compared as numbers they are
the same bound; as label values they are not, so a selector written for one matches nothing on the other.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal


def bound(text: object) -> float | None:
    """A label value as a number (`+Inf`, `1.8e+06`, `500.0`); None when it is none."""
    try:
        return float(str(text))
    except ValueError:
        return None


def go_shortest(x: float) -> str:
    """Go's strconv.FormatFloat(x, 'g', -1, 64): the shortest digits, in exponent form when the decimal exponent
    is below -4 or at least 6 (its rule for shortest precision)."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if math.isnan(x):
        return "NaN"
    if x == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp = len(digits) + int(exponent) - 1  # the decimal exponent of the first digit
    out = "-" if sign else ""
    if exp < -4 or exp >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{out}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{out}0.{'0' * (-exp - 1)}{text}"
    if len(text) <= exp + 1:
        return out + text + "0" * (exp + 1 - len(text))
    return f"{out}{text[:exp + 1]}.{text[exp + 1:]}"


def prometheus3(x: float) -> str:
    """How Prometheus 3 stores a bound or quantile (FormatOpenMetricsFloat): Go's shortest form, `.0` added to a
    number without a point or exponent."""
    text = go_shortest(x)
    if text in ("+Inf", "-Inf", "NaN") or any(c in text for c in ".e"):
        return text
    return text + ".0"


def exposition(x: float) -> str:
    """How Envoy and most client libraries write it in the text format (and Prometheus 2 keeps it): `500`,
    `1800000`, `0.5`."""
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return str(int(x)) if x == int(x) and abs(x) < 1e21 else go_shortest(x)


def spellings(x: float) -> tuple[str, ...]:
    """Every spelling a bound has on Prometheus 2 or 3, the exposition's first."""
    return tuple(dict.fromkeys((exposition(x), prometheus3(x))))


def upgrade_safe(x: float) -> str:
    """A regex that selects the bound on Prometheus 2 and 3 alike: `500(\\.0)?`, or the spellings as alternatives
    (`1800000|1\\.8e\\+06`). In a PromQL double-quoted string its backslashes are doubled (promql_matcher)."""
    first, *rest = spellings(x)
    if rest == [first + ".0"]:
        return re.escape(first) + r"(\.0)?"
    return "|".join(re.escape(s) for s in (first, *rest))


def promql_matcher(label: str, x: float) -> str:
    """`le=~"500(\\\\.0)?"`: the upgrade-safe matcher as PromQL text (its string escapes are Go's, so a regex
    backslash is written twice)."""
    return f'{label}=~"' + upgrade_safe(x).replace("\\", "\\\\") + '"'
