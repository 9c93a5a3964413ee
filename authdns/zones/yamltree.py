"""A YAML document as a tree of values that remember where they were written.

PyYAML's safe loader gives plain dicts and lists and forgets line numbers, silently
keeps the last of two equal keys, and turns ``no`` into False and ``1:30`` into 90.
A zone file needs every error reported as ``file:line:column`` and each value as the
operator typed it, so this module composes the node graph with the *safe* loader (no
Python object construction, RFC-free but YAML 1.1 compliant) and converts it into
``Scalar``/``Sequence``/``Mapping`` values carrying their position.

Aliases are resolved by reference in the node graph; the walk counts every node it
visits, so a file built to expand without bound ("billion laughs") is rejected once the
count passes ``max_nodes`` instead of exhausting memory.

This module knows nothing about DNS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

import yaml


@dataclass(frozen=True, slots=True)
class Where:
    """A position in a zone file, printed as ``path:line:column`` (1-based)."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Scalar:
    """A scalar as written (``text``), with the YAML type the resolver gave it."""

    text: str
    tag: str
    where: Where
    quoted: bool

    @property
    def is_null(self) -> bool:
        return self.tag == "tag:yaml.org,2002:null" and not self.quoted

    @property
    def is_int(self) -> bool:
        return self.tag == "tag:yaml.org,2002:int"


@dataclass(frozen=True, slots=True)
class Sequence:
    items: tuple["Value", ...]
    where: Where


@dataclass(frozen=True, slots=True)
class Mapping:
    """Keys in file order, each once (a repeated key is reported by ``parse_tree``)."""

    items: tuple[tuple[Scalar, "Value"], ...]
    where: Where

    def get(self, key: str) -> "Value | None":
        for name, value in self.items:
            if name.text == key:
                return value
        return None

    def keys(self) -> list[str]:
        return [name.text for name, _ in self.items]


Value = Union[Scalar, Sequence, Mapping]


# Values a document may expand to: twice its size in characters (written out, every
# value takes at least one), and at least this many, for files that share a few
# anchors. A small file built to expand (billion laughs) stops after this many visits,
# in well under a second; 2,000,000 took several seconds of a reload thread.
MIN_NODE_BUDGET = 100_000

# libyaml's composer when PyYAML was built with it: the same safe loading (no Python
# objects are constructed), about twice as fast on large zones.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class TreeError(Exception):
    """The document cannot be read as a tree; ``where`` says where it stopped."""

    def __init__(self, where: Where, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def _where(path: str, node: yaml.Node) -> Where:
    mark = node.start_mark
    return Where(path, mark.line + 1, mark.column + 1)


class _Walker:
    def __init__(self, path: str, max_nodes: int) -> None:
        self.path = path
        self.budget = max_nodes
        self.max_nodes = max_nodes
        self.problems: list[TreeError] = []

    def convert(self, node: yaml.Node, depth: int = 0) -> Value:
        self.budget -= 1
        if self.budget < 0:
            raise TreeError(
                _where(self.path, node),
                f"document expands to more than {self.max_nodes} values (aliases nested too deep?)",
            )
        if depth > 64:
            raise TreeError(_where(self.path, node), "nesting deeper than 64 levels")
        where = _where(self.path, node)
        if isinstance(node, yaml.ScalarNode):
            return Scalar(str(node.value), node.tag, where, node.style in ("'", '"'))
        if isinstance(node, yaml.SequenceNode):
            return Sequence(tuple(self.convert(item, depth + 1) for item in node.value), where)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, where, depth)
        raise TreeError(where, f"unsupported YAML node {type(node).__name__}")

    def _mapping(self, node: yaml.MappingNode, where: Where, depth: int) -> Mapping:
        items: list[tuple[Scalar, Value]] = []
        seen: dict[str, Where] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise TreeError(_where(self.path, key_node), "YAML merge keys (<<) are not supported")
            key = self.convert(key_node, depth + 1)
            if not isinstance(key, Scalar):
                raise TreeError(key.where, "a key must be a plain value, not a list or mapping")
            if key.text in seen:
                # Reported, and the second value ignored, so the rest of the file is still checked.
                self.problems.append(
                    TreeError(key.where, f"key {key.text!r} appears twice (first at line {seen[key.text].line})")
                )
                continue
            seen[key.text] = key.where
            items.append((key, self.convert(value_node, depth + 1)))
        return Mapping(tuple(items), where)


def parse_tree(
    text: str, path: str, max_nodes: int | None = None
) -> tuple[Value | None, list[TreeError]]:
    """Compose ``text`` with the safe loader and convert it; the value is None when empty.

    Raises ``TreeError`` for syntax errors (with PyYAML's position), merge keys and
    documents that expand beyond ``max_nodes``. Keys written twice in one mapping are
    returned as problems beside the tree, which keeps the first of them.
    """
    try:
        node = yaml.compose(text, Loader=SAFE_LOADER)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Where(path, mark.line + 1, mark.column + 1) if mark else Where(path, 1, 1)
        problem = error.problem or error.context or "YAML syntax error"
        raise TreeError(where, f"YAML syntax: {problem}") from None
    except yaml.reader.ReaderError as error:
        # Raised before parsing, with an offset instead of a mark (a NUL byte, a control character).
        line, column = _line_column(text, error.position)
        what = f"#x{error.character:04x}" if isinstance(error.character, int) else repr(error.character)
        raise TreeError(Where(path, line, column), f"YAML: {error.reason}: character {what}") from None
    except yaml.YAMLError as error:
        raise TreeError(Where(path, 1, 1), f"YAML: {error}") from None
    if node is None:
        return None, []
    if max_nodes is None:
        # Written out, every value takes at least one character of the file; only aliases
        # expand beyond that. So a large zone (a million records) is fine, a small file
        # built to expand (billion laughs) is not.
        max_nodes = max(MIN_NODE_BUDGET, 2 * len(text))
    walker = _Walker(path, max_nodes)
    return walker.convert(node), walker.problems


LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # what PyYAML counts as a line break (YAML 1.1 §4.1.4)


def _line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of the character at ``position``, counted as PyYAML
    counts them in its marks."""
    line, start = 1, 0
    for match in LINE_BREAK.finditer(text, 0, position):
        line, start = line + 1, match.end()
    return line, position - start + 1
