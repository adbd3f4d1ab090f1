"""Regexes that do not compile, are too long or pathologically slow are refused
when saved, with a message naming the category."""

from __future__ import annotations

import time

import pytest

from worklens.categories import Category, RuleError, RuleSet, safety


def save(path: list[str], regex: str, ignore_case: bool = False) -> Category:
    return Category.parse({"path": path, "rule": {"regex": regex, "ignore_case": ignore_case}})


@pytest.mark.parametrize("pattern", ["(", "[a-", "a)", "*x", r"\p{Nope}", "(?P<1n>a)"])
def test_invalid_regex_refused_with_the_path(pattern: str) -> None:
    with pytest.raises(RuleError, match=r"^regex for Work > X does not compile: ") as info:
        save(["Work", "X"], pattern)
    assert info.value.path == ("Work", "X")
    assert info.value.field == "rule.regex"


@pytest.mark.parametrize(
    "pattern",
    [
        "(a+)+$",
        "(a|aa)+$",
        "(a|a)*$",
        "(x+x+)+y",
        r"(\d+)+$",
        r"(\w+\s?)*$",
        r"^(([a-z])+.)+[A-Z]([a-z])+$",
        r"([a-z]+\.)+com$",
    ],
)
def test_catastrophic_regex_refused(pattern: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RuleError) as info:
        save(["Work", "X"], pattern)
    assert str(info.value) == "regex for Work > X is too slow (catastrophic backtracking?)"
    assert info.value.path == ("Work", "X") and info.value.field == "rule.regex"
    # Refusing costs at most the probe budget, not the seconds-to-hours of the match.
    assert time.perf_counter() - started < safety.PROBE_BUDGET + 1.0


def test_catastrophic_regex_refused_with_ignore_case() -> None:
    with pytest.raises(RuleError, match="too slow"):
        save(["Work", "X"], "(A+)+$", ignore_case=True)


def test_refused_inside_a_rule_set_too() -> None:
    with pytest.raises(RuleError, match=r"regex for Media > Bad is too slow"):
        RuleSet.parse(
            {
                "categories": [
                    {"path": ["Media", "Ok"], "rule": {"regex": "youtube"}},
                    {"path": ["Media", "Bad"], "rule": {"regex": "(a+)+$"}},
                ]
            }
        )


@pytest.mark.parametrize(
    "pattern",
    [
        r"^(code|Code|code-oss|jetbrains-.*|vim|emacs)(\.exe)?$",
        r"\b(youtube|netflix|twitch)\b",
        r"(^|\.)youtube\.com$",
        r"^(a+)+$",  # quadratic at worst in the regex module, not catastrophic
        r".*Visual Studio Code.*",
        r"[a-z]{2,3}-\d{1,4}",
        r"(?:a{100}){100}",
        r"(?i)meeting|call",
    ],
)
def test_ordinary_regexes_accepted(pattern: str) -> None:
    assert save(["Work", "X"], pattern).path == ("Work", "X")


def test_too_long_regex_refused() -> None:
    pattern = "a|" * (safety.MAX_PATTERN_LENGTH // 2) + "b"
    with pytest.raises(RuleError, match=r"regex for Work > X is too long \(2001 characters"):
        save(["Work", "X"], pattern)
    apps = "|".join(f"app{i}" for i in range(400))
    longest = ("^(" + apps)[: safety.MAX_PATTERN_LENGTH - 2]
    longest = longest[: longest.rindex("|")] + ")$"
    assert save(["Work", "X"], longest, ignore_case=True)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a{5000}", "repetition count too large (5000, at most 1000)"),
        ("a{1,2000}", "repetition count too large (2000"),
        ("(?:a{1000}){1000}", "nested repetition counts too large (their product is 1000000"),
        ("((a{100}){10}b){20}", "product is 20000"),
    ],
)
def test_huge_repetition_counts_refused_before_compiling(pattern: str, message: str) -> None:
    # (?:(?:a{1000}){1000}){1000} would hold the regex compiler for minutes.
    with pytest.raises(RuleError, match="regex for Work > X has ") as info:
        save(["Work", "X"], pattern)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "largest", "product"),
    [
        ("abc", 0, 1),
        ("a{3}", 3, 3),
        ("(a{3}){4}", 4, 12),
        ("(a{3})(b{5})", 5, 5),
        (r"\{1000\}", 0, 1),  # escaped braces are literal
        ("[{1000}]", 0, 1),  # inside a class too
        ("[]{5}]x", 0, 1),  # a leading ] is literal inside a class
        ("a{b}", 0, 1),  # not a counted repetition
        ("(?:x{2,7}){,3}", 7, 21),
    ],
)
def test_repeat_count_scanner(pattern: str, largest: int, product: int) -> None:
    assert safety._repeat_counts(pattern) == (largest, product)


def test_trusted_load_compiles_but_does_not_probe() -> None:
    data = {"categories": [{"path": ["Old"], "rule": {"regex": "(a+)+$"}}]}
    assert RuleSet.parse(data, trusted=True).get(["Old"]) is not None
    with pytest.raises(RuleError, match="does not compile"):
        RuleSet.parse({"categories": [{"path": ["Old"], "rule": {"regex": "("}}]}, trusted=True)
    with pytest.raises(RuleError, match="too slow"):
        RuleSet.parse(data)


def test_adversarial_inputs_cover_the_pattern_characters() -> None:
    inputs = safety.adversarial_inputs("(q+)+Z", length=10)
    assert "q" * 10 + "!" in inputs
    assert "Q" * 10 in inputs
    assert "z" * 10 + "\x00" in inputs
    assert all(len(s) <= 11 for s in inputs)


def test_verdicts_are_cached() -> None:
    safety.clear_caches()
    started = time.perf_counter()
    for _ in range(20):
        with pytest.raises(RuleError):
            save(["Work", "X"], "(a+)+$")
    assert time.perf_counter() - started < safety.PROBE_BUDGET + 1.0
