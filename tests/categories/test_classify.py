"""Classification: deepest match wins, later rule wins ties, keys, domains,
inheritance, caching, and agreement with a brute-force reference."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from worklens.categories import (
    UNCATEGORIZED,
    Classifier,
    RegexRule,
    RuleSet,
    domain_of,
    parse_path,
)


def cat(
    path: str, regex_: str | None = None, keys: list[str] | None = None, **kw: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"path": parse_path(path), **kw}
    if regex_ is not None:
        out["rule"] = {"regex": regex_, "keys": keys or ["app", "title"]}
    return out


def classifier(*categories: dict[str, Any]) -> Classifier:
    return Classifier(RuleSet.parse({"categories": list(categories)}))


def test_deepest_match_wins_whatever_the_order() -> None:
    rules = [
        cat("Work > Programming > Python", r"\.py\b"),
        cat("Work > Programming", "Code"),
        cat("Work", "."),
    ]
    for ordered in (rules, rules[::-1]):
        c = classifier(*ordered)
        assert c.classify({"app": "Code", "title": "main.py - worklens"}) == (
            "Work",
            "Programming",
            "Python",
        )
        assert c.classify({"app": "Code", "title": "README.md"}) == ("Work", "Programming")
        assert c.classify({"app": "gimp"}) == ("Work",)


def test_later_rule_wins_ties_at_equal_depth() -> None:
    chat, meeting = cat("Comms > Chat", "Teams"), cat("Comms > Meetings", "Meeting")
    payload = {"app": "Teams", "title": "Meeting with Ana | Microsoft Teams"}
    assert classifier(chat, meeting).classify(payload) == ("Comms", "Meetings")
    assert classifier(meeting, chat).classify(payload) == ("Comms", "Chat")
    # Depth beats order: a deeper earlier rule still wins over a later shallow one.
    deep = cat("Comms > Chat > Teams", "Teams")
    assert classifier(deep, meeting).classify(payload) == ("Comms", "Chat", "Teams")


def test_no_match_is_uncategorized() -> None:
    c = classifier(cat("Work", "Code"))
    assert c.classify({"app": "gimp", "title": "x"}) == UNCATEGORIZED == ("Uncategorized",)
    assert c.classify({}) == UNCATEGORIZED
    assert classifier().classify({"app": "Code"}) == UNCATEGORIZED


def test_grouping_nodes_never_match() -> None:
    c = classifier(cat("Work"), cat("Work > Chat", "slack"))
    assert c.classify({"app": "Work"}) == UNCATEGORIZED
    assert c.classify({"app": "slack"}) == ("Work", "Chat")


def test_keys_select_what_a_rule_sees() -> None:
    c = classifier(
        cat("ByTitle", "firefox", keys=["title"]),
        cat("ByApp", "Mozilla", keys=["app"]),
        cat("ByUrl", "watch", keys=["url"]),
        cat("ByDomain", "^example\\.org$", keys=["domain"]),
    )
    assert c.classify({"app": "firefox"}) == UNCATEGORIZED  # title-only rule ignores app
    assert c.classify({"title": "about firefox"}) == ("ByTitle",)
    assert c.classify({"title": "Mozilla"}) == UNCATEGORIZED
    assert c.classify({"app": "Mozilla"}) == ("ByApp",)
    assert c.classify({"title": "watch later"}) == UNCATEGORIZED
    assert c.classify({"url": "https://v.example.com/watch?v=1"}) == ("ByUrl",)
    assert c.classify({"url": "https://www.example.org/"}) == ("ByDomain",)
    assert c.classify({"title": "example.org"}) == UNCATEGORIZED


def test_default_keys_are_app_and_title() -> None:
    c = classifier({"path": ["X"], "rule": {"regex": "hit"}})
    assert c.classify({"app": "hit"}) == ("X",)
    assert c.classify({"title": "a hit"}) == ("X",)
    assert c.classify({"url": "https://hit.com/hit", "domain": "hit.com"}) == UNCATEGORIZED


def test_empty_or_missing_values_never_match() -> None:
    c = classifier(cat("Anything", ".*", keys=["app", "title", "url", "domain"]))
    assert c.classify({}) == UNCATEGORIZED
    assert c.classify({"app": "", "title": "", "url": ""}) == UNCATEGORIZED
    assert c.classify({"title": "x"}) == ("Anything",)


def test_ignore_case() -> None:
    c = classifier(
        {"path": ["A"], "rule": {"regex": "^slack$", "ignore_case": True}},
        {"path": ["B"], "rule": {"regex": "^Discord$"}},
    )
    assert c.classify({"app": "SLACK"}) == ("A",)
    assert c.classify({"app": "discord"}) == UNCATEGORIZED
    assert c.classify({"app": "Discord"}) == ("B",)


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://www.YouTube.com:443/watch?v=x", "youtube.com"),
        ("http://user:pw@docs.python.org/3/", "docs.python.org"),
        ("https://mail.google.com/mail/u/0/#inbox", "mail.google.com"),
        ("github.com/worklens/main", "github.com"),
        ("localhost:8080/dashboard", "localhost"),
        ("https://example.com./x", "example.com"),
        ("http://[::1]:8000/", "::1"),
        ("http://[::1/", ""),
        ("about:blank", ""),
        ("file:///home/me/report.pdf", ""),
        ("mailto:a@b.example", ""),
        ("", ""),
        ("https://www./", "www"),
    ],
)
def test_domain_of(url: str, domain: str) -> None:
    assert domain_of(url) == domain


def test_domain_is_derived_from_url_only_when_missing() -> None:
    c = classifier(cat("Video", r"(^|\.)youtube\.com$", keys=["domain"]))
    assert c.classify({"url": "https://www.youtube.com/watch?v=1"}) == ("Video",)
    assert c.classify({"url": "https://m.youtube.com/"}) == ("Video",)
    assert c.classify({"url": "https://notyoutube.com/"}) == UNCATEGORIZED
    # An explicit domain is used as given, even when the url says otherwise.
    explicit = {"url": "https://www.youtube.com/", "domain": "vimeo.com"}
    assert c.classify(explicit) == UNCATEGORIZED
    assert c.classify({"domain": "youtube.com"}) == ("Video",)


def test_inheritance_of_productivity_and_colour() -> None:
    c = classifier(
        cat("Work", productivity="productive", color="#00aa00"),
        cat("Work > Programming", color="#0000ff"),
        cat("Work > Programming > Python", "py"),
        cat("Work > Meetings", "zoom", productivity="neutral"),
        cat("Media > Video", "youtube", productivity="unproductive"),
    )
    assert c.productivity(("Work", "Programming", "Python")) == "productive"
    assert c.color(("Work", "Programming", "Python")) == "#0000ff"
    assert c.productivity(("Work", "Meetings")) == "neutral"
    assert c.color(("Work", "Meetings")) == "#00aa00"
    # "Media" is implied, not declared: nothing to inherit from it, so defaults.
    assert c.productivity(("Media", "Video")) == "unproductive"
    assert c.color(("Media", "Video")) == "#9e9e9e"
    # Paths the rule set does not know (old history, Uncategorized) inherit too.
    assert c.productivity(("Work", "Programming", "Rust", "Async")) == "productive"
    assert c.color(["Work", "Old"]) == "#00aa00"
    assert c.productivity(UNCATEGORIZED) == "neutral"
    assert c.color(UNCATEGORIZED) == "#9e9e9e"


def test_uncategorized_can_be_styled_by_the_rule_set() -> None:
    c = classifier(cat("Uncategorized", productivity="unproductive", color="#111111"))
    assert c.productivity(UNCATEGORIZED) == "unproductive"
    assert c.color(UNCATEGORIZED) == "#111111"


def test_repeated_payloads_hit_the_cache() -> None:
    c = classifier(cat("A", "a"), cat("B", "b", keys=["title"]))
    for _ in range(1000):
        c.classify({"app": "xa", "title": "b"})
        c.classify({"app": "xa", "title": "zz"})
    info = c.cache_info()
    assert info["payload"] == (1998, 2, 2)
    assert info["app"][1] == 1  # one distinct app value searched once
    assert info["title"][1] == 2
    assert "url" not in info  # no rule looks at urls


def test_cache_is_bounded() -> None:
    c = Classifier(RuleSet.parse({"categories": [cat("A", "a")]}), cache_size=16)
    for i in range(100):
        c.classify({"app": f"a{i}"})
    assert c.cache_info()["payload"][2] == 16


def test_timed_out_match_counts_as_no_match_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Loaded as trusted (saved before the checks existed): compiled, not probed.
    rules = RuleSet.parse(
        {
            "categories": [
                cat("Slow", "(a+)+$", keys=["title"]),
                cat("Fast", "a", keys=["app"]),
            ]
        },
        trusted=True,
    )
    c = Classifier(rules, timeout=0.02)
    evil = "a" * 5000 + "!"
    with caplog.at_level(logging.WARNING, logger="worklens.categories"):
        assert c.classify({"title": evil}) == UNCATEGORIZED
        assert c.classify({"title": evil + "b"}) == UNCATEGORIZED
        assert c.classify({"app": "a", "title": evil + "c"}) == ("Fast",)
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1
    assert "regex for Slow timed out" in logged[0]


# --- agreement with a brute-force reference ----------------------------------------

NAMES = ["A", "B", "C"]
WORDS = ["ab", "cd", "ef", "Ab", "x.y"]
KEY_NAMES = ["app", "title", "url", "domain"]


def reference(rules: RuleSet, data: Mapping[str, str]) -> tuple[str, ...]:
    """Every rule, one by one; the best is the deepest, then the last listed."""
    values = dict(data)
    if values.get("url") and not values.get("domain"):
        values["domain"] = domain_of(values["url"])
    best: tuple[int, int] | None = None
    winner: tuple[str, ...] = UNCATEGORIZED
    for position, category in enumerate(rules.categories):
        rule = category.rule
        if not isinstance(rule, RegexRule):
            continue
        flags = regex.IGNORECASE if rule.ignore_case else 0
        if any(values.get(k) and regex.search(rule.regex, values[k], flags) for k in rule.keys):
            rank = (category.depth, position)
            if best is None or rank > best:
                best, winner = rank, category.path
    return winner


categories_st = st.lists(
    st.fixed_dictionaries(
        {
            "path": st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map(tuple),
            "rule": st.one_of(
                st.just({"type": "none"}),
                st.fixed_dictionaries(
                    {
                        "regex": st.sampled_from([*WORDS, "^ab", "d$", r"\.", "a|e"]),
                        "keys": st.lists(st.sampled_from(KEY_NAMES), min_size=1, unique=True),
                        "ignore_case": st.booleans(),
                    }
                ),
            ),
        }
    ),
    max_size=8,
    unique_by=lambda c: str(c["path"]),
)
value_st = st.lists(st.sampled_from([*WORDS, " ", "z"]), max_size=3).map("".join)
payload_st = st.dictionaries(
    st.sampled_from([*KEY_NAMES, "other"]),
    st.one_of(value_st, st.sampled_from(["https://ab.cd/ef", "http://www.x.y/", "ef.Ab"])),
)


@settings(max_examples=300, deadline=None)
@given(categories_st, st.lists(payload_st, min_size=1, max_size=5))
def test_classifier_agrees_with_reference(
    categories: list[dict[str, Any]], payloads: list[dict[str, str]]
) -> None:
    rules = RuleSet.parse({"categories": categories})
    c = Classifier(rules)
    for data in payloads + payloads:  # twice: cached answers equal fresh ones
        assert c.classify(data) == reference(rules, data)


@settings(max_examples=200, deadline=None)
@given(payload_st, st.randoms(use_true_random=False))
def test_classification_is_deterministic_and_ignores_payload_order(
    data: dict[str, str], random: Any
) -> None:
    from worklens.categories import load_default_ruleset

    items = list(data.items())
    random.shuffle(items)
    shuffled = dict(items)
    first = Classifier(load_default_ruleset()).classify(data)
    assert Classifier(load_default_ruleset()).classify(shuffled) == first
    shared = Classifier(load_default_ruleset())
    assert shared.classify(shuffled) == shared.classify(data) == first
