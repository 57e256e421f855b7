"""Series selectors as Prometheus reads them; anything else refused, naming the part and where.

Regexes are read with RE2's syntax by `aggregator._history.regex`: the differential test runs
Python's `re` beside it on the patterns both read alike, the refusals cover what Python would
read differently, and hostile patterns and texts stay linear. Generated inputs (hypothesis)
raise nothing but SelectorError, and 100,000-character selectors are refused at once.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator._errors import HistoryQueryError, SelectorError
from aggregator._history.regex import RegexError, compile_regex
from aggregator._history.selector import (
    MAX_QUERY_LENGTH,
    MAX_REGEX_LENGTH,
    Selector,
    parse_selector,
)


def labels(figure: str, **more: str) -> dict[str, str]:
    return {"__name__": figure, **more}


def test_a_figure_with_each_kind_of_matcher_selects_as_prometheus_does() -> None:
    selector = parse_selector(
        'latency_p99_ms{service=~\'weather.*\', kind!="", type!~"ai|core", service!=`weather-x`,}'
    )
    assert selector.figures() == ["latency_p99_ms"]
    assert selector.matches(labels("latency_p99_ms", service="weather-api", kind="api_call"))
    assert not selector.matches(labels("latency_p99_ms", service="weather-api"))  # no kind
    assert not selector.matches(labels("latency_p99_ms", service="weather-x", kind="a"))
    assert not selector.matches(
        labels("latency_p99_ms", service="weather-api", kind="a", type="ai")
    )
    assert not selector.matches(
        labels("latency_p99_ms", service="my-weather", kind="a")
    )  # anchored
    assert not selector.matches(labels("error_rate", service="weather-api", kind="a"))


def test_an_absent_label_reads_as_empty_so_service_empty_selects_the_fleet() -> None:
    fleet = parse_selector('events_per_second{service=""}')
    assert fleet.matches(labels("events_per_second"))
    assert not fleet.matches(labels("events_per_second", service="weather-api", type="data"))


def test_the_name_may_be_a_matcher_and_a_name_regex_selects_several_figures() -> None:
    assert parse_selector('{__name__="events", service="a"}').figures() == ["events"]
    several = parse_selector('{__name__=~"latency_p(50|99)_ms", service="a"}')
    assert several.figures() == ["latency_p50_ms", "latency_p99_ms"]


def test_strings_take_go_escapes_and_backquotes_none() -> None:
    selector = parse_selector(r'events{service="w\x65ather\u002dapi", kind=`a\d`}')
    assert selector.matches(labels("events", service="weather-api", kind="a\\d"))


@pytest.mark.parametrize(
    ("query", "named", "position"),
    [
        ("rate(events[5m])", "functions like rate(...)", 0),
        ("sum by (service) (events)", "aggregations like sum(...)", 0),
        ("avg(latency_p99_ms)", "aggregations like avg(...)", 0),
        ("events[5m]", "range selectors like '[5m]'", 6),
        ("events offset 5m", "offset modifiers", 7),
        ("events @ 1700000000", "@ modifiers", 7),
        ("events / errors", "binary operators like '/'", 7),
        ("events > 10", "binary operators like '>'", 7),
        ("events and errors", "binary operators like 'and'", 7),
        ('events{service="a"} by (kind)', "'by' clauses", 20),
        ("events_per_minute", "unknown figure 'events_per_minute'", 0),
        ('{__name__="cpu_usage"}', "unknown figure 'cpu_usage'", 1),
        ('events{host="a"}', "unknown label 'host'", 7),
        ('events{service="a"} junk', "unexpected 'junk'", 20),
        ('events{service="a" kind="b"}', "expected , or }", 19),
        ("events{service}", "expected one of =~, !~, !=, =", 14),
        ('events{service=="a"}', "expected a quoted string", 15),
        ("events{service=a}", "expected a quoted string", 15),
        ('events{service="a}', "unterminated string", 15),
        ('events{service="a"', "missing }", 18),
        ('events{service="\\q"}', "invalid escape", 16),
        ("", "empty selector", 0),
        ("{}", "at least one matcher that does not match the empty text", 0),
        ('{service=~".*"}', "at least one matcher that does not match the empty text", 0),
        ('events{__name__="errors"}', "the figure is named twice", 0),
        ("42", "number literals", 0),
        ('"events"', "string literals", 0),
        ("(events)", "parentheses", 0),
        ('events{service=~"(a"}', "missing ) for the group", 16),
        ('events{service=~"a(?=b)"}', "lookaheads", 16),
        ('events{service=~"(a)\\\\1"}', "backreferences", 16),
    ],
)
def test_what_a_selector_cannot_say_is_refused_naming_the_part_and_its_position(
    query: str, named: str, position: int
) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(query)
    assert named in str(caught.value)
    assert caught.value.position == position
    assert f"at position {position}" in str(caught.value)
    assert caught.value.field == "query"
    assert isinstance(caught.value, HistoryQueryError)


def test_the_field_of_a_refusal_is_the_callers() -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector("rate(x)", field="matchers")
    assert caught.value.field == "matchers"


def test_a_100k_character_selector_is_refused_at_once_naming_the_limit() -> None:
    for text in ("events" * 20_000, '{service=~"' + "a" * 100_000 + '"}', "(" * 100_000):
        started = time.perf_counter()
        with pytest.raises(SelectorError) as caught:
            parse_selector(text)
        assert time.perf_counter() - started < 0.01
        assert f"the limit is {MAX_QUERY_LENGTH}" in str(caught.value)


def test_a_long_regex_is_refused_naming_its_limit() -> None:
    with pytest.raises(SelectorError, match=f"the limit is {MAX_REGEX_LENGTH}"):
        parse_selector('events{service=~"' + "a" * (MAX_REGEX_LENGTH + 1) + '"}')


# --- the regexes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"\d+", "١٢٣", False),  # RE2's \d is ASCII; Python's would match Arabic-Indic digits
        (r"\w+", "é", False),
        (r"a{,3}", "a{,3}", True),  # Go reads {,3} as text; Python as a repetition
        (r"a{,3}", "aa", False),
        (r"x$", "x\n", False),  # $ is the end of the text (Python's $ also before a last \n)
        (r"(?i)WEATHER-.*", "weather-api", True),
        (r"a(?i)b|c", "C", True),  # (?i) holds to the end of the group, across |
        (r"(?i:a)b", "AB", False),
        (r"x\Q.*\E", "x.*", True),
        (r"[[:alpha:]_]+", "ab_C", True),
        (r"\x{41}\x42", "AB", True),
        (r"[^\d]", "7", False),
        (r"", "", True),
    ],
)
def test_regexes_mean_what_re2_says(pattern: str, text: str, matches: bool) -> None:
    assert compile_regex(pattern).fullmatch(text) is matches


@pytest.mark.parametrize(
    ("pattern", "named"),
    [
        (r"(a)\1", "backreferences"),
        (r"\012", "octal"),
        (r"a(?=b)", "lookaheads"),
        (r"(?<!a)b", "lookbehinds"),
        (r"(?>a+)", "atomic groups"),
        (r"a*+", "possessive"),
        (r"a++", "possessive"),
        (r"a**", "nested repetition"),
        (r"(?s).", "flags (?s)"),
        (r"(?m)^a", "flags (?m)"),
        (r"(?-i)a", "flags (?-i)"),
        (r"(?#note)a", "comments"),
        (r"\bword", "word boundaries"),
        (r"a\Z", r"\Z"),
        (r"\p{Greek}", "Unicode classes"),
        (r"\u0041", r"\u"),
        (r"a{1001}", "1000"),
        (r"*a", "missing argument"),
        (r"[b-a]", "range"),
        (r"[[:nope:]]", "POSIX"),
        ("a\\", "trailing backslash"),
    ],
)
def test_constructs_re2_refuses_or_python_reads_differently_are_refused(
    pattern: str, named: str
) -> None:
    with pytest.raises(RegexError, match=re.escape(named)):
        compile_regex(pattern)


def test_a_pattern_that_makes_backtracking_exponential_stays_linear() -> None:
    hostile = compile_regex("(a|a)*(a|aa)*b")
    started = time.perf_counter()
    assert not hostile.fullmatch("a" * 100_000)
    assert time.perf_counter() - started < 1.0


def test_a_pattern_that_expands_too_far_is_refused() -> None:
    with pytest.raises(RegexError, match="too large"):
        compile_regex("((a{1000}){1000}){1000}")


SAFE_ATOMS = st.sampled_from(["a", "b", "-", ".", "[ab]", "[^a]", "[a-c]", r"\.", "(a|b)", "(x?)"])
SAFE_PATTERNS = st.lists(
    st.tuples(SAFE_ATOMS, st.sampled_from(["", "*", "+", "?", "{1,2}", "*?", "{2}"])),
    max_size=6,
).map(lambda parts: "".join(atom + quantifier for atom, quantifier in parts))


@settings(max_examples=400, deadline=None, database=None)
@given(
    pattern=st.lists(SAFE_PATTERNS, min_size=1, max_size=3).map("|".join),
    text=st.text(alphabet="abcx.-", max_size=8),
)
def test_on_the_syntax_both_read_alike_the_matches_are_pythons(pattern: str, text: str) -> None:
    assert compile_regex(pattern).fullmatch(text) is (re.fullmatch(pattern, text) is not None)


SELECTOR_PIECES = st.sampled_from(
    [
        "events", "latency_p99_ms", "{", "}", ",", "service", "kind", "type", "__name__", "=",
        "!=", "=~", "!~", '"', "'", "`", "(", ")", "[5m]", "offset", "@", "+", "\\", "a.*",
        "(?i)", "\\d", " ", "\n", "rate", "sum by", "[", "]", "{1000}", "*", "x",
    ]
)  # fmt: skip


@settings(max_examples=1500, deadline=None, database=None)
@given(st.one_of(st.text(max_size=60), st.lists(SELECTOR_PIECES, max_size=14).map("".join)))
def test_no_input_raises_anything_but_a_selector_error(text: str) -> None:
    try:
        selector = parse_selector(text)
    except SelectorError as error:
        assert 0 <= error.position <= max(len(text), MAX_QUERY_LENGTH)
        return
    assert isinstance(selector, Selector)
    selector.matches({"__name__": "events", "service": text, "kind": text})


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.text(min_size=1, max_size=40),
    st.sampled_from(["", '{service=~"', "events{", 'events{kind="', "events{service=~`"]),
)
def test_100k_character_inputs_are_refused_fast(piece: str, prefix: str) -> None:
    text = prefix + piece * (100_000 // len(piece) + 1)
    started = time.perf_counter()
    with pytest.raises(SelectorError):
        parse_selector(text)
    assert time.perf_counter() - started < 0.05


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=MAX_REGEX_LENGTH // 8).map(lambda text: text * 8))
def test_any_regex_up_to_the_limit_compiles_or_is_refused_fast(pattern: str) -> None:
    started = time.perf_counter()
    try:
        regex = compile_regex(pattern)
    except RegexError:
        pass
    else:
        regex.fullmatch(pattern[:200])
    assert time.perf_counter() - started < 1.0
