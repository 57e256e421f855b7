r"""Label regexes as Prometheus reads them (Go's RE2 syntax), matched in linear time.

Prometheus anchors a matcher's regex at both ends (`^(?:re)$`) and runs Go's `regexp`, whose
syntax is RE2's and whose time is linear in the text. Python's `re` reads some of the same
text differently (`\d` and `\w` are Unicode there, ASCII in RE2; `\12` is a backreference
there, an octal escape in Go; `*+` is possessive there, an error in RE2; `{,3}` a repetition
there, literal text in Go) and backtracks, so one label value of 200 characters can take it
hours (`(a|a)*b`). This module therefore parses the RE2 syntax itself and matches with a
lazily built DFA (as RE2 does): the time per label value is linear in its length, whatever
the pattern, and the pattern is compiled once (`compile_regex` caches it).

Supported, with RE2's meaning: literals, `.`, `[...]` classes (ranges, negation, `\d\s\w` and
their negations, POSIX `[:alpha:]`), `\d \D \s \S \w \W` (ASCII), escaped punctuation,
`\t \n \r \f \v \a`, `\xFF`, `\x{10FFFF}`, `\Q...\E`, groups `(...)`, `(?:...)`,
`(?P<name>...)`, `(?<name>...)`, alternation, `* + ? {n} {n,} {n,m}` (n, m <= 1000) and their
lazy forms, `^ $ \A \z` (text boundaries: no multi-line mode), and the flag `(?i)` (to the
end of the group, as in Go) or `(?i:...)`.

Refused, with `RegexError` naming the construct and its position, because RE2 refuses it or
Python would read it differently: backreferences and octal escapes (`\1`), lookarounds
(`(?=`, `(?!`, `(?<=`, `(?<!`), atomic groups `(?>`, possessive quantifiers (`*+`), nested
repetitions (`a**`), other flags (`(?s)`, `(?m)`, `(?U)`, `(?-i)`), comments `(?#`,
conditionals, `\b \B` (word boundaries), `\Z`, `\p{...}` Unicode classes, `\C`, `\u`, `\N`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from aggregator._errors import RegexError

__all__ = ["MAX_PROGRAM", "MAX_REPEAT", "Regex", "RegexError", "compile_regex"]

MAX_REPEAT = 1000
"""The largest count of a `{n,m}` repetition (RE2's limit)."""
MAX_PROGRAM = 20_000
"""The most instructions a compiled pattern may have (repetitions are expanded)."""
MAX_DFA_STATES = 2_000
"""DFA states kept per pattern; past this the cache starts again (memory stays bounded)."""

_DIGIT = ((48, 57),)
_SPACE = ((9, 10), (12, 13), (32, 32))  # \t \n \f \r and space: RE2's \s (no \v)
_WORD = ((48, 57), (65, 90), (95, 95), (97, 122))
_POSIX: dict[str, tuple[tuple[int, int], ...]] = {
    "alnum": ((48, 57), (65, 90), (97, 122)),
    "alpha": ((65, 90), (97, 122)),
    "ascii": ((0, 127),),
    "blank": ((9, 9), (32, 32)),
    "cntrl": ((0, 31), (127, 127)),
    "digit": _DIGIT,
    "graph": ((33, 126),),
    "lower": ((97, 122),),
    "print": ((32, 126),),
    "punct": ((33, 47), (58, 64), (91, 96), (123, 126)),
    "space": ((9, 13), (32, 32)),
    "upper": ((65, 90),),
    "word": _WORD,
    "xdigit": ((48, 57), (65, 70), (97, 102)),
}
_SHORTHANDS = {"d": _DIGIT, "s": _SPACE, "w": _WORD}
_CONTROLS = {"a": 7, "f": 12, "t": 9, "n": 10, "r": 13, "v": 11}
_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_REFUSED_ESCAPES = {
    "b": "word boundaries (\\b) are not supported",
    "B": "word boundaries (\\B) are not supported",
    "Z": "\\Z is not RE2 syntax (use $ or \\z)",
    "p": "Unicode classes (\\p) are not supported",
    "P": "Unicode classes (\\P) are not supported",
    "C": "\\C (any byte) is not supported",
    "u": "\\u is not RE2 syntax (use \\x{...})",
    "U": "\\U is not RE2 syntax (use \\x{...})",
    "N": "\\N is not RE2 syntax",
}


@dataclass(frozen=True, slots=True)
class CharSet:
    """Characters one step may consume: code point ranges, negated shorthands, case folding."""

    ranges: tuple[tuple[int, int], ...]
    excluded: tuple[tuple[tuple[int, int], ...], ...] = ()
    """Sets of ranges whose complement belongs to the set (`\\D`, `[:^alpha:]` in a class)."""
    negated: bool = False
    fold: bool = False

    def _raw(self, point: int) -> bool:
        if any(low <= point <= high for low, high in self.ranges):
            return True
        return any(not any(lo <= point <= hi for lo, hi in ex) for ex in self.excluded)

    def __contains__(self, char: str) -> bool:
        """True when `char` (one character) is in the set."""
        found = self._raw(ord(char))
        if not found and self.fold:
            for other in (char.lower(), char.upper()):
                if len(other) == 1 and other != char and self._raw(ord(other)):
                    found = True
                    break
        return found != self.negated


@dataclass(frozen=True, slots=True)
class Char:
    """One character of `chars`."""

    chars: CharSet


@dataclass(frozen=True, slots=True)
class Assert:
    """An empty-width test: "begin" or "end" of the text."""

    kind: str


@dataclass(frozen=True, slots=True)
class Cat:
    """The items one after the other."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Alt:
    """Any one of the branches."""

    branches: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Rep:
    """`inner` repeated `low` to `high` times (None: no upper bound)."""

    inner: Node
    low: int
    high: int | None


Node = Char | Assert | Cat | Alt | Rep
"""A parsed pattern."""
_ANY = CharSet(((0, 9), (11, 0x10FFFF)))  # `.`: anything but a newline


class _Parser:
    """Recursive descent over RE2's grammar; every refusal names its position."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def fail(self, reason: str, position: int | None = None) -> RegexError:
        return RegexError(reason, self.at if position is None else position)

    def parse(self) -> Node:
        node = self.alternation(fold=False)
        if self.at < len(self.text):  # only an unmatched ) stops the top level early
            raise self.fail("unmatched )")
        return node

    def alternation(self, fold: bool) -> Node:
        branches = []
        state = [fold]  # (?i) inside a branch holds to the end of the group, across |
        while True:
            branches.append(self.concatenation(state))
            if self.at < len(self.text) and self.text[self.at] == "|":
                self.at += 1
                continue
            break
        return branches[0] if len(branches) == 1 else Alt(tuple(branches))

    def concatenation(self, state: list[bool]) -> Node:
        items: list[Node] = []
        text = self.text
        while self.at < len(text) and text[self.at] not in "|)":
            start = self.at
            if text.startswith("(?i)", start):
                state[0] = True
                self.at += 4
                continue
            atom = self.atom(state[0])
            items.append(self.repetitions(atom, start))
        return items[0] if len(items) == 1 else Cat(tuple(items))

    def repetitions(self, atom: Node, start: int) -> Node:
        text = self.text
        quantified = False
        while self.at < len(text):
            here = self.at
            bounds = self.quantifier()
            if bounds is None:
                break
            if quantified:
                symbol = text[here]
                if symbol == "+":
                    raise self.fail("possessive quantifiers (like *+) are not supported", here)
                raise self.fail(
                    f"nested repetition {text[start : self.at]!r} is not supported", here
                )
            quantified = True
            if self.at < len(text) and text[self.at] == "?":
                self.at += 1  # lazy: the same set of matches
            atom = Rep(atom, bounds[0], bounds[1])
        return atom

    def quantifier(self) -> tuple[int, int | None] | None:
        symbol = self.text[self.at]
        if symbol in "*+?":
            self.at += 1
            return {"*": (0, None), "+": (1, None), "?": (0, 1)}[symbol]
        if symbol == "{":
            return self.counted()
        return None

    def counted(self) -> tuple[int, int | None] | None:
        """`{n}`, `{n,}` or `{n,m}`; anything else leaves `{` as a literal (Go's rule)."""
        text, start = self.text, self.at
        close = text.find("}", start)
        if close < 0:
            return None
        inner = text[start + 1 : close]
        low_text, comma, high_text = inner.partition(",")
        if not low_text.isdecimal() or not low_text.isascii():
            return None
        if high_text and (not high_text.isdecimal() or not high_text.isascii()):
            return None
        low = int(low_text)
        high = None if comma and not high_text else int(high_text or low_text)
        if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
            raise self.fail(f"repetition count above {MAX_REPEAT} (RE2's limit)", start)
        if high is not None and high < low:
            raise self.fail(f"invalid repetition {{{inner}}}: max below min", start)
        self.at = close + 1
        return low, high

    def atom(self, fold: bool) -> Node:
        text = self.text
        char = text[self.at]
        start = self.at
        if char in "*+?":
            raise self.fail(f"missing argument to repetition operator {char!r}")
        if char == "{" and self.counted() is not None:
            raise self.fail("missing argument to repetition operator '{'", start)
        self.at += 1
        if char == "(":
            return self.group(fold, start)
        if char == "[":
            return Char(self.char_class(fold))
        if char == ".":
            return Char(_ANY)
        if char == "^":
            return Assert("begin")
        if char == "$":
            return Assert("end")
        if char == "\\":
            return self.escape(fold)
        return _literal(char, fold)

    def group(self, fold: bool, start: int) -> Node:
        text = self.text
        if text.startswith("?", self.at):
            fold = self.group_kind(fold, start)
        node = self.alternation(fold)
        if self.at >= len(text) or text[self.at] != ")":
            raise self.fail("missing ) for the group opened here", start)
        self.at += 1
        return node

    def group_kind(self, fold: bool, start: int) -> bool:
        """Read what follows `(?`; returns the fold flag inside the group."""
        text, at = self.text, self.at
        refusals = (
            ("?=", "lookaheads (?=...) are not supported"),
            ("?!", "lookaheads (?!...) are not supported"),
            ("?<=", "lookbehinds (?<=...) are not supported"),
            ("?<!", "lookbehinds (?<!...) are not supported"),
            ("?>", "atomic groups (?>...) are not supported"),
            ("?#", "comments (?#...) are not supported"),
            ("?(", "conditionals (?(...)...) are not supported"),
            ("?P=", "backreferences (?P=name) are not supported"),
            ("?P>", "recursion (?P>name) is not supported"),
        )
        for prefix, reason in refusals:
            if text.startswith(prefix, at):
                raise self.fail(reason, start)
        if text.startswith("?:", at):
            self.at += 2
            return fold
        if text.startswith("?i:", at):
            self.at += 3
            return True
        for prefix in ("?P<", "?<"):
            if text.startswith(prefix, at):
                close = text.find(">", at)
                name = text[at + len(prefix) : close] if close >= 0 else ""
                if close < 0 or not name or not all(c.isascii() and (c.isalnum() or c == "_")
                                                    for c in name):  # fmt: skip
                    raise self.fail("invalid group name", start)
                self.at = close + 1
                return fold
        end = text.find(")", at)
        flags = text[at + 1 : end] if end >= 0 else text[at + 1 : at + 4]
        raise self.fail(f"the flags (?{flags}) are not supported (only (?i))", start)

    def escape(self, fold: bool) -> Node:
        text = self.text
        start = self.at - 1
        if self.at >= len(text):
            raise self.fail("trailing backslash", start)
        char = text[self.at]
        self.at += 1
        if char == "Q":
            end = text.find("\\E", self.at)
            literal = text[self.at :] if end < 0 else text[self.at : end]
            self.at = len(text) if end < 0 else end + 2
            return Cat(tuple(_literal(c, fold) for c in literal))
        if char == "A":
            return Assert("begin")
        if char == "z":
            return Assert("end")
        ranges = self.class_escape(char, start)
        if isinstance(ranges, str):
            return _literal(ranges, fold)
        included, excluded = ranges
        return Char(CharSet(included, excluded, fold=fold))

    def class_escape(
        self, char: str, start: int
    ) -> str | tuple[tuple[tuple[int, int], ...], tuple[tuple[tuple[int, int], ...], ...]]:
        r"""What `\char` stands for: one character, or (ranges, excluded range sets)."""
        if char in _SHORTHANDS:
            return _SHORTHANDS[char], ()
        if char.lower() in _SHORTHANDS:
            return (), (_SHORTHANDS[char.lower()],)
        if char in _CONTROLS:
            return chr(_CONTROLS[char])
        if char == "x":
            return self.hex_escape(start)
        if char.isdigit():
            raise self.fail(
                "backreferences and octal escapes (\\1, \\012) are not supported; use \\x..", start
            )
        if char in _REFUSED_ESCAPES:
            raise self.fail(_REFUSED_ESCAPES[char], start)
        if char in _PUNCTUATION:
            return char
        raise self.fail(f"invalid escape \\{char}", start)

    def hex_escape(self, start: int) -> str:
        r"""`\xFF` (two digits) or `\x{10FFFF}` (one to eight, at most U+10FFFF)."""
        text = self.text
        braced = text.startswith("{", self.at)
        if braced:
            close = text.find("}", self.at)
            digits = text[self.at + 1 : close] if close >= 0 else ""
            self.at = close + 1 if close >= 0 else self.at
        else:
            digits = text[self.at : self.at + 2]
            self.at += 2
        wanted = 1 <= len(digits) <= 8 if braced else len(digits) == 2
        if not wanted or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise self.fail("invalid hexadecimal escape", start)
        point = int(digits, 16)
        if point > 0x10FFFF:
            raise self.fail("invalid hexadecimal escape", start)
        return chr(point)

    def char_class(self, fold: bool) -> CharSet:
        text, start = self.text, self.at - 1
        negated = text.startswith("^", self.at)
        self.at += negated
        ranges: list[tuple[int, int]] = []
        excluded: list[tuple[tuple[int, int], ...]] = []
        first = True
        while True:
            if self.at >= len(text):
                raise self.fail("missing ] for the class opened here", start)
            char = text[self.at]
            if char == "]" and not first:
                self.at += 1
                break
            first = False
            if text.startswith("[:", self.at):
                self.posix_class(ranges, excluded)
                continue
            low = self.class_char(ranges, excluded)
            if low is None:
                continue
            if text.startswith("-", self.at) and not text.startswith("-]", self.at):
                self.at += 1
                here = self.at
                high = self.class_char(ranges, excluded)
                if high is None or high < low:
                    raise self.fail("invalid character class range", here)
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        return CharSet(tuple(ranges), tuple(excluded), negated, fold)

    def class_char(
        self, ranges: list[tuple[int, int]], excluded: list[tuple[tuple[int, int], ...]]
    ) -> int | None:
        r"""One character of a class (its code point), or None after a shorthand (`\d`)."""
        text = self.text
        char = text[self.at]
        self.at += 1
        if char != "\\":
            return ord(char)
        start = self.at - 1
        if self.at >= len(text):
            raise self.fail("trailing backslash", start)
        escaped = text[self.at]
        self.at += 1
        meaning = self.class_escape(escaped, start)
        if isinstance(meaning, str):
            return ord(meaning)
        ranges.extend(meaning[0])
        excluded.extend(meaning[1])
        return None

    def posix_class(
        self, ranges: list[tuple[int, int]], excluded: list[tuple[tuple[int, int], ...]]
    ) -> None:
        text, start = self.text, self.at
        close = text.find(":]", start + 2)
        name = text[start + 2 : close] if close >= 0 else ""
        negated = name.startswith("^")
        known = _POSIX.get(name.removeprefix("^"))
        if known is None:
            raise self.fail(f"unknown POSIX class [:{name}:]", start)
        self.at = close + 2
        if negated:
            excluded.append(known)
        else:
            ranges.extend(known)


def _literal(char: str, fold: bool) -> Node:
    point = ord(char)
    return Char(CharSet(((point, point),), fold=fold))


# --- the program: a Thompson NFA --------------------------------------------------------------

Instruction = tuple[str, Any, Any]
"""("char", CharSet, next), ("split", a, b), ("assert", kind, next) or ("match", None, None)."""


@dataclass(slots=True)
class _Program:
    code: list[Instruction] = field(default_factory=list)

    def emit(self, instruction: Instruction) -> int:
        if len(self.code) >= MAX_PROGRAM:
            raise RegexError(f"the pattern is too large (more than {MAX_PROGRAM} steps)", 0)
        self.code.append(instruction)
        return len(self.code) - 1


def _compile(node: Node, program: _Program, follow: int) -> int:
    """Emit `node` so that it continues at `follow`; returns its entry instruction."""
    if isinstance(node, Char):
        return program.emit(("char", node.chars, follow))
    if isinstance(node, Assert):
        return program.emit(("assert", node.kind, follow))
    if isinstance(node, Cat):
        entry = follow
        for item in reversed(node.items):
            entry = _compile(item, program, entry)
        return entry
    if isinstance(node, Alt):
        branches = [_compile(branch, program, follow) for branch in node.branches]
        entry = branches[-1]
        for branch in reversed(branches[:-1]):
            entry = program.emit(("split", branch, entry))
        return entry
    entry = follow
    if node.high is None:
        loop = program.emit(("split", -1, follow))
        program.code[loop] = ("split", _compile(node.inner, program, loop), follow)
        entry = loop
    else:
        for _ in range(node.high - node.low):
            entry = program.emit(("split", _compile(node.inner, program, entry), follow))
    for _ in range(node.low):
        entry = _compile(node.inner, program, entry)
    return entry


# --- matching: a DFA built as texts need it ----------------------------------------------------


class _State:
    __slots__ = ("accepts", "next", "threads")

    def __init__(self, threads: frozenset[int], accepts: bool) -> None:
        self.threads = threads
        self.accepts = accepts
        self.next: dict[str, _State] = {}


class Regex:
    """A compiled, fully anchored pattern: `fullmatch(text)` in time linear in `len(text)`."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        tree = _Parser(pattern).parse()
        program = _Program()
        match = program.emit(("match", None, None))
        self._entry = _compile(tree, program, match)
        self._code = program.code
        self._states: dict[frozenset[int], _State] = {}
        self._start = self._state(self._closure([self._entry], at_begin=True))

    def _closure(self, pcs: list[int], *, at_begin: bool) -> frozenset[int]:
        """The char, match and end-assert instructions reachable without consuming a character."""
        code = self._code
        seen: set[int] = set()
        kept: set[int] = set()
        stack = list(pcs)
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            instruction = code[pc]
            tag = instruction[0]
            if tag == "split":
                stack += (instruction[1], instruction[2])
            elif tag == "assert" and instruction[1] == "begin":
                if at_begin:
                    stack.append(instruction[2])
            else:
                kept.add(pc)
        return frozenset(kept)

    def _accepts(self, threads: frozenset[int]) -> bool:
        """True when, at the end of the text, `threads` reach the match instruction."""
        code = self._code
        stack = [pc for pc in threads if code[pc][0] != "char"]
        seen: set[int] = set()
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            instruction = code[pc]
            if instruction[0] == "match":
                return True
            if instruction[0] == "split":
                stack += (instruction[1], instruction[2])
            elif instruction[0] == "assert" and instruction[1] == "end":
                stack.append(instruction[2])
        return False

    def _state(self, threads: frozenset[int]) -> _State:
        state = self._states.get(threads)
        if state is None:
            if len(self._states) >= MAX_DFA_STATES:  # start again: old states become garbage
                self._states.clear()
                for kept in (self._start,) if hasattr(self, "_start") else ():
                    kept.next.clear()
                    self._states[kept.threads] = kept
            state = self._states[threads] = _State(threads, self._accepts(threads))
        return state

    def _step(self, state: _State, char: str) -> _State:
        code = self._code
        moved = [
            code[pc][2] for pc in state.threads if code[pc][0] == "char" and char in code[pc][1]
        ]
        following = self._state(self._closure(moved, at_begin=False))
        state.next[char] = following
        return following

    def fullmatch(self, text: str) -> bool:
        """True when the whole of `text` matches the pattern."""
        state = self._start
        for char in text:
            following = state.next.get(char)
            state = self._step(state, char) if following is None else following
            if not state.threads:
                return False
        return state.accepts


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> Regex:
    """The compiled `pattern` (cached: each pattern is parsed once); RegexError if refused."""
    return Regex(pattern)
