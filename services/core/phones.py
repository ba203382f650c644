"""Vietnamese mobile numbers, the one definition every service shares (pure).

Prefixes in use since the 2018 renumbering (11 → 10 digits), by network: Viettel
032–039, 086, 096–098; Vinaphone 081–085, 088, 091, 094; MobiFone 070, 076–079, 089,
090, 093; Vietnamobile 052, 056, 058, 092; Gmobile 059, 099; Reddi 055; Itel 087.
Kept as data: a new range is one line here.
"""

from __future__ import annotations

import re

MOBILE_PREFIXES: frozenset[str] = frozenset(
    [f"03{d}" for d in "23456789"]
    + ["052", "055", "056", "058", "059"]
    + ["070", "076", "077", "078", "079"]
    + [f"08{d}" for d in "123456789"]
    + [f"09{d}" for d in "0123456789"]
)

_SEPARATORS = re.compile(r"[\s.\-()]")


class NotAMobileNumber(ValueError):
    """`prefix` is set when the number has the right shape but no mobile prefix."""

    def __init__(self, prefix: str | None = None) -> None:
        super().__init__(prefix or "not a Vietnamese mobile number")
        self.prefix = prefix


def national_mobile(raw: str) -> str:
    """'+84 912 345 678', '84912345678', '0912.345.678' → '0912345678'."""
    digits = _SEPARATORS.sub("", raw)
    if digits.startswith("+84"):
        subscriber = digits[3:]
    elif digits.startswith("84") and len(digits) in (11, 12):
        subscriber = digits[2:]
    elif digits.startswith("0"):
        subscriber = digits[1:]
    else:
        raise NotAMobileNumber()
    # '+84 (0)912…' is common: the trunk 0 written after the country code is dropped.
    if len(subscriber) == 10 and subscriber.startswith("0") and not digits.startswith("0"):
        subscriber = subscriber[1:]
    if len(subscriber) != 9 or not subscriber.isascii() or not subscriber.isdigit():
        raise NotAMobileNumber()
    phone = "0" + subscriber
    if phone[:3] not in MOBILE_PREFIXES:
        raise NotAMobileNumber(prefix=phone[:3])
    return phone
