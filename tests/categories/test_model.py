"""Categories and rule sets: validation that names the path and the field,
version hashes, team overrides."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from pydantic import ValidationError

from worklens.categories import (
    Category,
    Classifier,
    GroupRule,
    RegexRule,
    RuleError,
    RuleSet,
    TeamOverrides,
    format_path,
    merge,
    parse_path,
)


def cat(path: str, regex: str | None = None, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"path": parse_path(path), **kw}
    if regex is not None:
        out["rule"] = {"type": "regex", "regex": regex, **out.pop("rule_extra", {})}
    return out


def ruleset(*categories: dict[str, Any]) -> RuleSet:
    return RuleSet.parse({"categories": list(categories)})


# --- categories -------------------------------------------------------------------


def test_category_defaults_and_normalisation() -> None:
    c = Category.parse(
        {
            "path": [" Work ", "Chat"],
            "rule": {"regex": "slack", "keys": ["title", "app", "title"]},
            "color": "#AABBCC",
        }
    )
    assert c.path == ("Work", "Chat")
    assert isinstance(c.rule, RegexRule)
    assert c.rule.type == "regex"  # a rule with a regex and no type is a regex rule
    assert c.rule.keys == ("app", "title")  # canonical order, no repeats
    assert c.rule.ignore_case is False
    assert c.color == "#aabbcc"
    assert c.productivity is None
    assert str(c) == "Work > Chat" and c.name == "Chat" and c.depth == 2
    group = Category.parse({"path": "Work > Programming"})
    assert group.path == ("Work", "Programming")
    assert isinstance(group.rule, GroupRule)
    assert RegexRule(regex="x").keys == ("app", "title")


def test_paths_format_and_parse() -> None:
    assert format_path(("Work", "Programming", "Python")) == "Work > Programming > Python"
    assert parse_path("Work > Programming>Python") == ("Work", "Programming", "Python")


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        (cat("Work > X", color="red"), "color", "must be #rrggbb, got 'red'"),
        (cat("Work > X", color="#12345"), "color", "#rrggbb"),
        (cat("Work > X", productivity="busy"), "productivity", "'productive', 'neutral'"),
        (cat("Work > X", rule={"type": "glob", "regex": "x"}), "rule", '"regex" or "none"'),
        (cat("Work > X", rule={"type": "regex"}), "rule.regex", "is required"),
        (cat("Work > X", rule={"regex": "x", "keys": []}), "rule.keys", "at least one"),
        (cat("Work > X", rule={"regex": "x", "keys": ["window"]}), "rule.keys.0", "'app'"),
        (cat("Work > X", rule={"regex": "x", "flags": 2}), "rule.flags", "Extra inputs"),
        (cat("Work > X", owner="me"), "owner", "Extra inputs"),
        ({"path": ["Work", " "]}, "path", "empty name"),
        ({"path": ["Work", "a\x00b"]}, "path", "control character"),
        ({"path": ["x"] * 9}, "path", "at most 8"),
        ({"path": ["Work", "y" * 65]}, "path", "over 64 characters"),
    ],
)
def test_invalid_category_names_path_and_field(
    data: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(RuleError) as info:
        RuleSet.parse({"categories": [cat("Fine", "ok"), data]})
    err = info.value
    assert err.field == field
    assert fragment in str(err)
    assert f"{field}:" in str(err) or field == "rule.regex"
    if data["path"][0] == "Work":
        assert "Work > " in str(err)


def test_several_problems_in_one_category_are_all_named() -> None:
    with pytest.raises(RuleError) as info:
        Category.parse(cat("Work > X", color="red", productivity="busy"))
    text = str(info.value)
    assert text.startswith("category Work > X: ")
    assert "color: must be #rrggbb" in text and "productivity: " in text
    assert info.value.path == ("Work", "X")


def test_missing_path_is_named() -> None:
    with pytest.raises(RuleError, match=r"path: is required"):
        RuleSet.parse({"categories": [{"rule": {"regex": "x"}}]})


def test_duplicate_paths_refused() -> None:
    with pytest.raises(RuleError, match="category Work > X is defined twice") as info:
        ruleset(cat("Work > X", "a"), cat("Work>X", "b"))
    assert info.value.path == ("Work", "X") and info.value.field == "path"


def test_unknown_top_level_field_refused() -> None:
    with pytest.raises(RuleError, match="categorie: Extra inputs"):
        RuleSet.parse({"categorie": []})


def test_model_validate_carries_the_same_message() -> None:
    with pytest.raises(ValidationError) as info:
        RuleSet.model_validate({"categories": [cat("Work > X", "(")]})
    error = info.value.errors()[0]
    assert "regex for Work > X does not compile" in error["msg"]
    inner = error["ctx"]["error"]
    assert isinstance(inner, RuleError) and inner.path == ("Work", "X")


def test_rule_error_pickles() -> None:
    err = RuleError("category A: color: bad", path=("A",), field="color")
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.path, back.field) == (str(err), err.path, err.field)


def test_round_trip_and_equality() -> None:
    rules = ruleset(
        cat("Work", productivity="productive", color="#00ff00"),
        cat("Work > Chat", "slack", rule_extra={"keys": ["app"], "ignore_case": True}),
    )
    again = RuleSet.parse(rules.to_data())
    assert again == rules
    assert again.version == rules.version
    assert rules.get(["Work", "Chat"]) is rules.categories[1]
    assert ("Work", "Chat") in rules and ("Nope",) not in rules
    assert len(rules) == 2


def test_paths_include_implied_ancestors() -> None:
    rules = ruleset(cat("Work > Programming > Python", "py"), cat("Media", "yt"))
    assert rules.paths() == [
        ("Media",),
        ("Work",),
        ("Work", "Programming"),
        ("Work", "Programming", "Python"),
    ]


# --- versions ---------------------------------------------------------------------


BASE = [
    cat("Work", productivity="productive", color="#00ff00"),
    cat("Work > Chat", "slack"),
    cat("Media > Video", "youtube", rule_extra={"keys": ["title", "domain"]}),
]


def variant(index: int, **changes: Any) -> RuleSet:
    data = [dict(c) for c in BASE]
    data[index] = {**data[index], **changes}
    return ruleset(*data)


def test_version_is_stable_for_equivalent_input() -> None:
    a = ruleset(*BASE)
    b = ruleset(
        {
            "path": ["Work"],
            "productivity": "productive",
            "color": "#00FF00",
            "rule": {"type": "none"},
        },
        {
            "path": "Work > Chat",
            "rule": {
                "type": "regex",
                "regex": "slack",
                "keys": ["title", "app"],
                "ignore_case": False,
            },
        },
        {"path": ["Media", "Video"], "rule": {"regex": "youtube", "keys": ["domain", "title"]}},
    )
    assert a.version == b.version
    assert a.rules_version == b.rules_version
    assert len(a.version) == 16
    assert Classifier(a).version == a.rules_version


@pytest.mark.parametrize(
    "changed",
    [
        lambda: variant(1, rule={"regex": "slack|discord"}),
        lambda: variant(1, rule={"regex": "slack", "ignore_case": True}),
        lambda: variant(1, rule={"regex": "slack", "keys": ["app"]}),
        lambda: variant(1, rule={"type": "none"}),
        lambda: variant(1, path=["Work", "Chats"]),
        lambda: ruleset(BASE[0], BASE[2], BASE[1]),  # order decides ties
        lambda: ruleset(*BASE, cat("Games", "steam")),
        lambda: ruleset(*BASE[:2]),
    ],
)
def test_rule_changes_change_both_versions(changed: Any) -> None:
    base = ruleset(*BASE)
    other = changed()
    assert other.version != base.version
    assert other.rules_version != base.rules_version


@pytest.mark.parametrize(
    "changes",
    [{"color": "#ff0000"}, {"productivity": "neutral"}],
)
def test_productivity_or_colour_change_only_the_full_version(changes: dict[str, Any]) -> None:
    base = ruleset(*BASE)
    other = variant(0, **changes)
    assert other.version != base.version
    assert other.rules_version == base.rules_version


# --- team overrides ---------------------------------------------------------------


ORG = [
    cat("Work", productivity="productive", color="#00aa00"),
    cat("Work > Chat", "slack", color="#0000aa"),
    cat("Media", productivity="unproductive"),
    cat("Media > Video", "youtube"),
    cat("Media > Video > Shorts", "shorts"),
    cat("Media > Social", "reddit"),
]


def org() -> RuleSet:
    return ruleset(*ORG)


def paths(rules: RuleSet) -> list[str]:
    return [str(c) for c in rules.categories]


def test_merge_without_overrides_is_the_org_rules() -> None:
    rules = org()
    assert merge(rules, None) is rules
    assert merge(rules, TeamOverrides()) is rules


def test_merge_add_appends_after_org_categories() -> None:
    team = TeamOverrides.parse(
        {"add": [cat("Work > Design", "figma"), cat("Media > Memes", "youtube")]}
    )
    merged = merge(org(), team, strict=True)
    assert paths(merged)[-2:] == ["Work > Design", "Media > Memes"]
    c = Classifier(merged)
    assert c.classify({"app": "Figma"}) == ("Uncategorized",)  # case-sensitive
    assert c.classify({"app": "figma"}) == ("Work", "Design")
    # Same depth as the org's Media > Video, listed later: the team's category wins.
    assert c.classify({"title": "cats - youtube"}) == ("Media", "Memes")
    assert c.productivity(("Work", "Design")) == "productive"


def test_merge_replace_keeps_place_and_unset_fields() -> None:
    team = TeamOverrides.parse(
        {"replace": [cat("Work > Chat", "slack|teams", rule_extra={"ignore_case": True})]}
    )
    merged = merge(org(), team, strict=True)
    assert paths(merged) == paths(org())
    chat = merged.get(("Work", "Chat"))
    assert chat is not None and isinstance(chat.rule, RegexRule)
    assert chat.rule.regex == "slack|teams" and chat.rule.ignore_case
    assert chat.color == "#0000aa"  # not given by the team: the org's is kept
    assert Classifier(merged).classify({"app": "Teams"}) == ("Work", "Chat")
    recolored = merge(
        org(), TeamOverrides.parse({"replace": [cat("Work > Chat", "x", color="#123456")]})
    )
    assert recolored.get(("Work", "Chat")) == Category.parse(
        cat("Work > Chat", "x", color="#123456")
    )


def test_merge_disable_removes_the_subtree() -> None:
    merged = merge(org(), TeamOverrides.parse({"disable": ["Media > Video"]}), strict=True)
    assert paths(merged) == ["Work", "Work > Chat", "Media", "Media > Social"]
    c = Classifier(merged)
    assert c.classify({"title": "youtube shorts"}) == ("Uncategorized",)
    assert c.classify({"title": "reddit"}) == ("Media", "Social")


def test_merge_disable_then_add_under_the_same_root() -> None:
    team = TeamOverrides.parse(
        {"disable": [["Media"]], "add": [cat("Media > Tutorials", "youtube")]}
    )
    merged = merge(org(), team, strict=True)
    assert paths(merged) == ["Work", "Work > Chat", "Media > Tutorials"]
    c = Classifier(merged)
    assert c.classify({"title": "youtube"}) == ("Media", "Tutorials")
    # The org's "Media" (unproductive) is gone: nothing to inherit from.
    assert c.productivity(("Media", "Tutorials")) == "neutral"


def test_merge_strict_refuses_stale_or_wrong_overrides() -> None:
    with pytest.raises(RuleError, match="Media > Nope: disable: no such category") as info:
        merge(org(), TeamOverrides.parse({"disable": ["Media > Nope"]}), strict=True)
    assert info.value.path == ("Media", "Nope") and info.value.field == "disable"
    with pytest.raises(RuleError, match="Work > Mail: replace: no such category"):
        merge(org(), TeamOverrides.parse({"replace": [cat("Work > Mail", "x")]}), strict=True)
    with pytest.raises(RuleError, match="Media > Video: replace: it is disabled"):
        merge(
            org(),
            TeamOverrides.parse({"disable": ["Media"], "replace": [cat("Media > Video", "x")]}),
            strict=True,
        )
    with pytest.raises(RuleError, match=r"Work > Chat: add: already exists .*use replace"):
        merge(org(), TeamOverrides.parse({"add": [cat("Work > Chat", "x")]}), strict=True)


def test_merge_lenient_applies_stale_overrides_sensibly() -> None:
    team = TeamOverrides.parse(
        {
            "disable": ["Media > Nope"],
            "replace": [cat("Work > Mail", "thunderbird")],
            "add": [cat("Work > Chat", "discord")],
        }
    )
    merged = merge(org(), team)
    assert paths(merged) == [*paths(org()), "Work > Mail"]
    chat = merged.get(("Work", "Chat"))
    assert chat is not None and isinstance(chat.rule, RegexRule) and chat.rule.regex == "discord"


def test_overrides_list_each_path_once() -> None:
    with pytest.raises(RuleError, match="Work > Chat: disable: already listed in replace"):
        TeamOverrides.parse({"replace": [cat("Work > Chat", "x")], "disable": ["Work > Chat"]})
    with pytest.raises(RuleError, match="Work > A: add: already listed in add"):
        TeamOverrides.parse({"add": [cat("Work > A", "x"), cat("Work > A", "y")]})


def test_overrides_validate_their_categories() -> None:
    with pytest.raises(RuleError, match=r"regex for Work > Bad is too slow \(catastrophic"):
        TeamOverrides.parse({"add": [cat("Work > Bad", "(a+)+$")]})
    with pytest.raises(RuleError, match="disable"):
        TeamOverrides.parse({"disable": [["Work", ""]]})


def test_validated_categories_are_not_checked_again() -> None:
    # Loaded trusted (saved before the timing checks existed): building a rule set
    # from them, or merging them, must not re-probe and refuse them.
    old = Category.parse({"path": ["Old"], "rule": {"regex": "(a+)+$"}}, trusted=True)
    assert RuleSet(categories=(old,)).get(["Old"]) is old
    team = TeamOverrides.parse(
        {"add": [{"path": ["Old"], "rule": {"regex": "(a+)+$"}}]}, trusted=True
    )
    assert merge(org(), team, strict=True).categories[-1] is team.add[0]
    again = RuleSet.model_validate_json(
        RuleSet(categories=(old,)).model_dump_json(), context={"trusted": True}
    )
    assert again.get(["Old"]) == old
