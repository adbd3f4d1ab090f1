"""Category rules: which category (and productivity class, and colour) an event is in.

Pure: no database, no HTTP. Classification is a function of the event payload
(app, title, url, domain) and the rule set alone, so reports can reclassify
history whenever rules change; cache results by ``RuleSet.rules_version``.

* :mod:`.model` -- :class:`Category`, :class:`RuleSet`, :class:`TeamOverrides`,
  :func:`merge`, :class:`RuleError` (validation that names the category path
  and the field);
* :mod:`.safety` -- refusing regexes that do not compile or are pathologically
  slow, and time-limited matching;
* :mod:`.classify` -- :class:`Classifier` (deepest match wins, ties: the rule
  listed later wins; no match: ``("Uncategorized",)``);
* ``defaults.toml`` -- the rule set a new organization starts with
  (:func:`load_default_ruleset`).

Typical use::

    rules = merge(org_rules, team_overrides)  # or load_default_ruleset()
    classifier = Classifier(rules)
    path = classifier.classify({"app": "firefox", "title": "Inbox - Gmail"})
    classifier.productivity(path), classifier.color(path)
"""

from __future__ import annotations

import functools
import tomllib
from importlib import resources

from .classify import Classifier, domain_of
from .model import (
    DEFAULT_COLOR,
    DEFAULT_PRODUCTIVITY,
    UNCATEGORIZED,
    Category,
    CategoryPath,
    GroupRule,
    Productivity,
    RegexRule,
    RuleError,
    RuleSet,
    TeamOverrides,
    format_path,
    merge,
    parse_path,
)

__all__ = [
    "DEFAULT_COLOR",
    "DEFAULT_PRODUCTIVITY",
    "UNCATEGORIZED",
    "Category",
    "CategoryPath",
    "Classifier",
    "GroupRule",
    "Productivity",
    "RegexRule",
    "RuleError",
    "RuleSet",
    "TeamOverrides",
    "default_ruleset_text",
    "domain_of",
    "format_path",
    "load_default_ruleset",
    "merge",
    "parse_path",
]

DEFAULTS_FILE = "defaults.toml"


def default_ruleset_text() -> str:
    """The shipped ``defaults.toml``, as text (for export or a "reset to defaults")."""
    return resources.files(__package__).joinpath(DEFAULTS_FILE).read_text(encoding="utf-8")


@functools.cache
def load_default_ruleset() -> RuleSet:
    """The default rule set shipped with WorkLens (parsed once; rule sets are immutable).

    Its regexes are compiled but not timed here; the test suite proves each one
    passes the save-time checks.
    """
    return RuleSet.parse(tomllib.loads(default_ruleset_text()), trusted=True)
