"""Series selectors: the part of PromQL a history query takes, read as Prometheus reads it.

    figure
    figure{label="v", label!="v", label=~"re", label!~"re"}
    {__name__="figure", label="v", ...}

`figure` is one of `query.FIGURES`; the labels are `service`, `type`, `kind` and `__name__`.
A selector may also name a metric pushed to the mesh (`cpu_usage_percent{host="server01"}`,
`{__name__="queue_depth", region=~"us-.*"}`): when its name matchers accept one of the pushed
metric names the caller passes (`pushed`), any label name is allowed, as in Prometheus
(`cpu_usage_percent` is both a mesh figure and, once pushed, a pushed metric: the selector
selects the series of both whose labels it matches).
Strings are PromQL's: double or single quotes with Go's escapes, or backquotes (raw). A label a
series does not have reads as "" (so `service=""` selects the fleet's series, as in PromQL),
and a regex is anchored at both ends and read with RE2's syntax (`regex.py`: linear time, what
Python's `re` would read differently is refused). As in Prometheus, a selector must have at
least one matcher that does not match the empty text, and names its figure once.

Anything else is a `SelectorError` naming the part and its position, never a wrong answer:
functions (`rate(...)`), aggregations (`sum by (service)`), ranges (`[5m]`), `offset`, `@`,
binary operators, numbers, unknown figures or labels, and trailing text. A selector longer than
`MAX_QUERY_LENGTH` is refused before it is read, so the cost of a refusal is bounded too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from aggregator._errors import SelectorError
from aggregator._history.query import FIGURES
from aggregator._history.regex import Regex, RegexError, compile_regex
from mesh_common.bounded import quote

__all__ = [
    "LABELS",
    "MAX_MATCHERS",
    "MAX_QUERY_LENGTH",
    "MAX_REGEX_LENGTH",
    "Matcher",
    "Selector",
    "parse_selector",
]

LABELS = ("__name__", "kind", "service", "type")
"""The labels a selector may name."""
MAX_QUERY_LENGTH = 4096
"""The longest selector read, in characters."""
MAX_REGEX_LENGTH = 1024
"""The longest regex of one matcher, in characters."""
MAX_MATCHERS = 64
"""The most matchers one selector may have."""

OPERATORS = ("=~", "!~", "!=", "=")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_SPACE = frozenset(" \t\n\r")
_AGGREGATIONS = frozenset(
    ("sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
     "quantile", "count_values", "limitk", "limit_ratio")
)  # fmt: skip
_BINARY_WORDS = frozenset(("and", "or", "unless"))
_CLAUSES = frozenset(("by", "without", "on", "ignoring", "group_left", "group_right", "bool"))
_BINARY_SYMBOLS = ("==", "!=", ">=", "<=", "+", "-", "*", "/", "%", "^", ">", "<")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPES.update({"\\": "\\", "'": "'", '"': '"'})
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One `label op "value"` of a selector."""

    label: str
    op: str
    """One of `=`, `!=`, `=~`, `!~`."""
    value: str
    regex: Regex | None = None
    """The compiled value of `=~` and `!~`."""

    def matches(self, value: str) -> bool:
        """True when a series whose label reads `value` ("" when absent) is selected."""
        if self.regex is not None:
            return self.regex.fullmatch(value) == (self.op == "=~")
        return (value == self.value) == (self.op == "=")

    def __str__(self) -> str:
        return f"{self.label}{self.op}{quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed selector: its text and its matchers (the figure's as `__name__` matchers)."""

    text: str
    matchers: tuple[Matcher, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when the series with `labels` (its figure as `__name__`) is selected."""
        return all(matcher.matches(labels.get(matcher.label, "")) for matcher in self.matchers)

    def figures(self) -> list[str]:
        """The figures whose name the `__name__` matchers accept (sorted)."""
        return self.names(FIGURES)

    def names(self, names: Collection[str]) -> list[str]:
        """Those of `names` the `__name__` matchers accept (sorted)."""
        matchers = [matcher for matcher in self.matchers if matcher.label == "__name__"]
        return [name for name in sorted(names) if all(m.matches(name) for m in matchers)]


def parse_selector(
    text: str, *, field: str = "query", pushed: Collection[str] = frozenset()
) -> Selector:
    """The selector `text`; SelectorError (its `field` as given) naming what is wrong.

    `pushed` are the names of metrics pushed to the mesh: a selector may name them, with any
    label (module doc).
    """
    if len(text) > MAX_QUERY_LENGTH:
        raise SelectorError(
            f"the selector is {len(text)} characters long; the limit is {MAX_QUERY_LENGTH}",
            MAX_QUERY_LENGTH,
            field=field,
        )
    return _Reader(text, field, pushed).selector()


class _Reader:
    """One pass over a selector's text, left to right."""

    def __init__(self, text: str, field: str, pushed: Collection[str]) -> None:
        self.text = text
        self.at = 0
        self.field = field
        self.pushed = pushed
        self.other_labels: list[tuple[str, int]] = []
        """Labels not of the mesh's series, with their position (allowed for pushed metrics)."""

    def fail(self, reason: str, position: int | None = None) -> SelectorError:
        return SelectorError(reason, self.at if position is None else position, field=self.field)

    def skip_space(self) -> None:
        text = self.text
        while self.at < len(text) and text[self.at] in _SPACE:
            self.at += 1

    def peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def selector(self) -> Selector:
        self.skip_space()
        if not self.peek():
            raise self.fail(
                'empty selector: give a figure, e.g. events_per_second{service="weather-api"}'
            )
        matchers: list[Matcher] = []
        name_at = self.at
        name = ""
        if self.peek() in _NAME_START:
            name = self.name(_NAME_CHARS)
            self.skip_space()
            self.refuse_call(name, name_at)
            matchers.append(Matcher("__name__", "=", name))
        elif self.peek() != "{":
            raise self.fail(self.unexpected("a selector starts with a figure or {"))
        if self.peek() == "{":
            self.at += 1
            matchers += self.matcher_list()
            self.skip_space()
        if self.peek():
            raise self.fail(self.unexpected("the selector ends here"))
        return self.checked(Selector(self.text, tuple(matchers)), name, name_at)

    def name(self, allowed: frozenset[str]) -> str:
        text, start = self.text, self.at
        while self.at < len(text) and text[self.at] in allowed:
            self.at += 1
        return text[start : self.at]

    def refuse_call(self, name: str, start: int) -> None:
        """A name followed by `(`, `by` or `without` is a function or an aggregation."""
        follows = self.peek()
        if name in _AGGREGATIONS and (follows == "(" or self.word() in ("by", "without")):
            raise self.fail(
                f"aggregations like {name}(...) are not supported: ask for the figure and "
                "its labels (a service's figure sums its kinds, the fleet's every service)",
                start,
            )
        if follows == "(":
            raise self.fail(
                f"functions like {name}(...) are not supported: the figures are rates, ratios "
                "and quantiles over each step already",
                start,
            )

    def word(self) -> str:
        """The identifier at the current position (without moving past it)."""
        end = self.at
        while end < len(self.text) and self.text[end] in _NAME_CHARS:
            end += 1
        return self.text[self.at : end]

    def unexpected(self, expectation: str) -> str:
        """Why the text at the current position cannot come here."""
        text, at = self.text, self.at
        char = text[at]
        word = self.word()
        if char == "[":
            end = text.find("]", at)
            shown = quote(text[at : end + 1] if 0 <= end < at + 40 else text[at : at + 10], 40)
            return f"range selectors like {shown} are not supported: the step is the range"
        if word == "offset":
            return "offset modifiers are not supported: move start and end instead"
        if char == "@":
            return "@ modifiers are not supported: give the time as the query's time instead"
        if word in _BINARY_WORDS:
            return f"binary operators like {word!r} are not supported"
        if word in _CLAUSES:
            return f"{word!r} clauses are not supported: aggregations are not part of a selector"
        for symbol in _BINARY_SYMBOLS:
            if text.startswith(symbol, at):
                return f"binary operators like {symbol!r} are not supported"
        if char.isdigit() or char == ".":
            return "number literals are not supported"
        if char in "\"'`":
            return "string literals are not supported outside {...}"
        if char == "(":
            return "parentheses are not supported"
        if char == "#":
            return "comments are not supported"
        return f"unexpected {quote(text[at : at + 20], 20)}: {expectation}"

    def matcher_list(self) -> list[Matcher]:
        matchers: list[Matcher] = []
        while True:
            self.skip_space()
            if self.peek() == "}":
                self.at += 1
                return matchers
            if len(matchers) >= MAX_MATCHERS:
                raise self.fail(f"more than {MAX_MATCHERS} matchers")
            matchers.append(self.matcher())
            self.skip_space()
            follows = self.peek()
            if follows == ",":
                self.at += 1
            elif follows != "}":
                if not follows:
                    raise self.fail("missing } at the end of the matchers")
                raise self.fail(self.unexpected("expected , or } after a matcher"))

    def matcher(self) -> Matcher:
        start = self.at
        if self.peek() not in _NAME_START or self.peek() == ":":
            if not self.peek():
                raise self.fail("missing } at the end of the matchers")
            raise self.fail(self.unexpected("expected a label name (service, type, kind)"))
        label = self.name(_NAME_CHARS - {":"})
        if label not in LABELS:
            self.other_labels.append((label, start))
        self.skip_space()
        op = next((op for op in OPERATORS if self.text.startswith(op, self.at)), None)
        if op is None:
            raise self.fail(f"expected one of {', '.join(OPERATORS)} after {label}")
        self.at += len(op)
        self.skip_space()
        value_at = self.at
        value = self.string()
        if op in ("=", "!="):
            return Matcher(label, op, value)
        return Matcher(label, op, value, self.regex(value, value_at))

    def regex(self, value: str, position: int) -> Regex:
        if len(value) > MAX_REGEX_LENGTH:
            raise self.fail(
                f"the regex is {len(value)} characters long; the limit is {MAX_REGEX_LENGTH}",
                position,
            )
        try:
            return compile_regex(value)
        except RegexError as error:
            raise self.fail(
                f"regex {quote(value, 60)}: {error.reason} at its character {error.position}",
                position,
            ) from None

    def string(self) -> str:
        """A quoted string (Go's escapes in "..." and '...', none in `...`)."""
        text, start = self.text, self.at
        quote_char = self.peek()
        if quote_char not in ("'", '"', "`"):
            if not quote_char:
                raise self.fail("missing the value: a quoted string")
            raise self.fail(self.unexpected("expected a quoted string"))
        self.at += 1
        if quote_char == "`":
            end = text.find("`", self.at)
            if end < 0:
                raise self.fail("unterminated string", start)
            self.at = end + 1
            return text[start + 1 : end]
        parts: list[str] = []
        while True:
            if self.at >= len(text) or text[self.at] == "\n":
                raise self.fail("unterminated string", start)
            char = text[self.at]
            self.at += 1
            if char == quote_char:
                return "".join(parts)
            parts.append(self.escape() if char == "\\" else char)

    def escape(self) -> str:
        text, start = self.text, self.at - 1
        char = self.peek()
        self.at += 1
        if char in _ESCAPES:
            return _ESCAPES[char]
        digits, base = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}.get(char, (0, 0))
        if char in "01234567" and char:
            self.at -= 1
            digits, base = 3, 8
        number = text[self.at : self.at + digits]
        allowed = _HEX if base == 16 else frozenset("01234567")
        if not digits or len(number) < digits or not set(number) <= allowed:
            raise self.fail("invalid escape in a string", start)
        self.at += digits
        point = int(number, base)
        if point > (0xFF if char in "x01234567" else 0x10FFFF) or 0xD800 <= point <= 0xDFFF:
            raise self.fail("invalid escape in a string", start)
        return chr(point)

    def checked(self, selector: Selector, name: str, name_at: int) -> Selector:
        """Check what needs the whole selector.

        One figure name, a known figure, a matcher that does not match the empty text.
        """
        names = [m for m in selector.matchers if m.label == "__name__" and m.op == "="]
        if name and len(names) > 1:
            raise self.fail(f"the figure is named twice: {name!r} and {names[1].value!r}", name_at)
        for matcher in names:
            if matcher.value not in FIGURES and matcher.value not in self.pushed:
                at = name_at if matcher.value == name else self.text.find("__name__")
                raise self.fail(
                    f"unknown figure {quote(matcher.value, 60)}; "
                    f"known: {', '.join(sorted(FIGURES))}"
                    + (", or a metric pushed to the mesh" if self.pushed else ""),
                    max(at, 0),
                )
        if self.other_labels and not selector.names(self.pushed):
            label, at = self.other_labels[0]
            raise self.fail(
                f"unknown label {quote(label, 40)}; the labels are {', '.join(LABELS)} "
                "(any label of a metric pushed to the mesh)",
                at,
            )
        if all(matcher.matches("") for matcher in selector.matchers):
            raise self.fail(
                "a selector needs at least one matcher that does not match the empty text "
                "(e.g. a figure)",
                0,
            )
        return selector
