"""Names as lowercase wire bytes: text round trips, limits, ancestry (RFC 1035 §2.3.4, §5.1)."""

from __future__ import annotations

import dns.name
import pytest
from hypothesis import given, strategies as st

from authdns.base import names

label = st.binary(min_size=1, max_size=63)
name_labels = st.lists(label, min_size=0, max_size=6).filter(lambda ls: sum(len(x) + 1 for x in ls) + 1 <= 255)


@given(name_labels)
def test_text_round_trip_and_agreement_with_dnspython(parts: list[bytes]) -> None:
    wire = names.from_labels(parts)
    text = names.to_text(wire)
    assert names.from_text(text) == wire
    assert dns.name.from_text(text).to_wire().lower() == wire


@given(name_labels, name_labels)
def test_is_subdomain_matches_dnspython(a: list[bytes], b: list[bytes]) -> None:
    if sum(len(x) + 1 for x in a + b) + 1 > 255:
        return
    child, parent = names.from_labels(a + b), names.from_labels(b)
    assert names.is_subdomain(child, parent)
    other = names.from_labels(a)
    expected = dns.name.from_wire(other, 0)[0].is_subdomain(dns.name.from_wire(parent, 0)[0])
    assert names.is_subdomain(other, parent) == expected


def test_relative_names_and_origin() -> None:
    origin = names.from_text("example.test.")
    assert names.from_text("@", origin) == origin
    assert names.from_text("Mail", origin) == names.from_text("mail.example.test.")
    assert names.relative_text(names.from_text("a.b.example.test."), origin) == "a.b"
    assert names.relative_text(origin, origin) == "@"
    assert names.relative_text(names.from_text("x.example.net."), origin) == "x.example.net."


@pytest.mark.parametrize("text,reason", [
    ("a" * 64 + ".test.", "label longer than 63"),
    (".".join(["abcdefghi"] * 26) + ".", "name longer than 255"),
    ("a..b.", "empty label"),
    ("caf\u00e9.test.", "write IDNs as xn-- labels"),
    ("bad\\999.test.", "not an octet"),
])
def test_bad_names_say_why(text: str, reason: str) -> None:
    with pytest.raises(names.BadName, match=reason):
        names.from_text(text, names.ROOT)


def test_escapes() -> None:
    assert names.labels(names.from_text("a\\.b.test.")) == [b"a.b", b"test"]
    assert names.labels(names.from_text("\\065.test.")) == [b"a", b"test"]
    assert names.to_text(names.from_labels([b"a.b", b"x y"])) == "a\\.b.x\\032y."


def test_ancestors_and_wildcards() -> None:
    top = names.from_text("example.test.")
    chain = names.ancestors_below(names.from_text("a.b.example.test."), top)
    assert chain == [names.from_text("b.example.test."), names.from_text("a.b.example.test.")]
    assert names.wildcard_of(top) == names.from_text("*.example.test.")
    assert names.is_wildcard(names.from_text("*.example.test."))
