"""Reading single fields of a zone file's YAML tree, with the position of each error.

Shared by ``zones/zonefile.py`` (records) and ``zones/balancefile.py`` (balancing options) so that
both word their errors the same way. Knows nothing about DNS.
"""

from __future__ import annotations

from authdns.zones.yamltree import Scalar, Value, Where


class FieldError(Exception):
    """One bad value; printed by the caller as ``file:line:column: message``."""

    def __init__(self, where: Where, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def scalar(value: Value, what: str) -> Scalar:
    if not isinstance(value, Scalar) or value.is_null:
        raise FieldError(value.where, f"{what} must be a single value")
    return value


def integer(value: Value, what: str, low: int, high: int) -> int:
    text = scalar(value, what).text.strip()
    if not text.isdigit():
        raise FieldError(value.where, f"{what} must be a whole number, not {text!r}")
    number = int(text)
    if not low <= number <= high:
        raise FieldError(value.where, f"{what} {number} is out of range {low}..{high}")
    return number
