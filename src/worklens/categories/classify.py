"""Classifying event payloads into categories: a pure function of payload and rules.

``Classifier(ruleset).classify({"app": ..., "title": ..., "url": ...})`` returns
the path of the winning category:

* every regex rule is searched in the payload values its ``keys`` name; a
  value that is missing or empty never matches (so ``.*`` on ``url`` does not
  match an event without a URL);
* when the payload has a ``url`` but no ``domain``, the domain is derived from
  the URL (:func:`domain_of`: lower-cased host name, without port, user
  information, trailing dot or leading ``www.``);
* of all the matching categories, the **deepest** wins (``Work > Programming >
  Python`` over ``Work > Programming``); between equally deep matches the one
  **listed later** in the rule set wins -- so a more specific rule added after a
  broad one at the same level (a team's additions, appended by ``merge``, or
  "Meetings" after "Chat" for a Teams call) takes precedence;
* nothing matches: ``("Uncategorized",)`` (:data:`UNCATEGORIZED`).

A search that exceeds :data:`safety.MATCH_TIMEOUT` counts as no match; the
first time-out of each category is logged (warning) once per classifier.

Speed: classification is cached twice, both bounded LRUs: whole payloads
(app, title, url, domain) and, below that, the set of rules matching each
(key, value). Rules are numbered by priority (depth, then position), so the
matches of a payload are one integer bit mask and the winner is its highest
bit. Combining the patterns into one alternation would not do: an alternation
finds *a* match, not every match (nor the deepest one), and renumbers the
patterns' groups, breaking back-references.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from . import safety
from .model import (
    DEFAULT_COLOR,
    DEFAULT_PRODUCTIVITY,
    KEYS,
    UNCATEGORIZED,
    CategoryPath,
    Key,
    Productivity,
    RegexRule,
    RuleSet,
    format_path,
)

log = logging.getLogger("worklens.categories")

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def domain_of(url: str) -> str:
    """The domain of a URL: ``"https://www.YouTube.com:443/watch"`` -> ``"youtube.com"``.

    Lower-cased host name, without user information, port, trailing dot or a
    leading ``www.``. A URL without a scheme (``github.com/x``) is read as a
    host and path; one with a scheme but no host (``about:blank``,
    ``file:///tmp/x``, ``mailto:a@b``) has no domain: ``""``.
    """
    text = url.strip()
    if not text:
        return ""
    if not _SCHEME.match(text) or text.lower().startswith(("localhost:", "localhost/")):
        text = "//" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:  # e.g. an unbalanced "[" in an IPv6 literal
        return ""
    host = host.rstrip(".")
    return host[4:] if host.startswith("www.") and len(host) > 4 else host


class Classifier:
    """Classifies payloads with one rule set; cheap to call, cache warm after a while.

    ``cache_size`` bounds each LRU cache (whole payloads; matches per key and
    value), ``timeout`` is the time one regex search may take (seconds).
    Thread-safe.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        *,
        cache_size: int = 8192,
        timeout: float = safety.MATCH_TIMEOUT,
    ) -> None:
        self.ruleset = ruleset
        self.timeout = timeout
        ranked = sorted(
            (
                (category.depth, position, category)
                for position, category in enumerate(ruleset.categories)
                if isinstance(category.rule, RegexRule)
            ),
            key=lambda item: (item[0], item[1]),
        )
        # rank = priority: a higher rank wins (deeper; equally deep and later).
        self._paths: tuple[CategoryPath, ...] = tuple(c.path for _, _, c in ranked)
        per_key: dict[Key, list[tuple[int, object, CategoryPath]]] = {k: [] for k in KEYS}
        for rank, (_, _, category) in enumerate(ranked):
            rule = category.rule
            assert isinstance(rule, RegexRule)
            compiled = safety.compile_pattern(rule.regex, rule.ignore_case)
            for key in rule.keys:
                per_key[key].append((1 << rank, compiled, category.path))
        self._timed_out: set[CategoryPath] = set()
        self._mask: dict[Key, Callable[[str], int]] = {}
        for key in KEYS:
            rules = tuple(per_key[key])
            if rules:
                self._mask[key] = functools.lru_cache(maxsize=cache_size)(
                    functools.partial(self._matches, rules)
                )
        self._cached = functools.lru_cache(maxsize=cache_size)(self._classify)
        self._inherited = functools.lru_cache(maxsize=1024)(self._resolve)

    @property
    def version(self) -> str:
        """The rule set's ``rules_version``: what classifications depend on."""
        return self.ruleset.rules_version

    def classify(self, data: Mapping[str, str]) -> CategoryPath:
        """The path of the winning category for one payload (app, title, url, domain)."""
        get = data.get
        return self._cached(
            get("app") or "", get("title") or "", get("url") or "", get("domain") or ""
        )

    def productivity(self, path: Sequence[str]) -> Productivity:
        """The category's productivity, inherited from the nearest ancestor that has one."""
        return self._inherited(tuple(path))[0]

    def color(self, path: Sequence[str]) -> str:
        """The category's ``#rrggbb`` colour, inherited like productivity."""
        return self._inherited(tuple(path))[1]

    def cache_info(self) -> dict[str, tuple[int, int, int]]:
        """(hits, misses, size) of each cache, for tests and benchmarks."""
        out = {"payload": self._cached.cache_info()}
        for key, fn in self._mask.items():
            out[key] = fn.cache_info()  # type: ignore[attr-defined]
        return {name: (i.hits, i.misses, i.currsize) for name, i in out.items()}

    # --- internals ------------------------------------------------------------------

    def _classify(self, app: str, title: str, url: str, domain: str) -> CategoryPath:
        if url and not domain:
            domain = domain_of(url)
        mask = 0
        for key, value in zip(KEYS, (app, title, url, domain), strict=True):
            if value:
                fn = self._mask.get(key)
                if fn is not None:
                    mask |= fn(value)
        if not mask:
            return UNCATEGORIZED
        return self._paths[mask.bit_length() - 1]

    def _matches(self, rules: tuple[tuple[int, object, CategoryPath], ...], value: str) -> int:
        mask = 0
        timeout = self.timeout
        for bit, compiled, path in rules:
            try:
                if safety.search(compiled, value, timeout):
                    mask |= bit
            except TimeoutError:
                if path not in self._timed_out:
                    self._timed_out.add(path)
                    log.warning(
                        "regex for %s timed out after %.3f s; counted as no match "
                        "(logged once per category)",
                        format_path(path),
                        timeout,
                    )
        return mask

    def _resolve(self, path: CategoryPath) -> tuple[Productivity, str]:
        productivity: Productivity | None = None
        color: str | None = None
        for depth in range(len(path), 0, -1):
            category = self.ruleset.get(path[:depth])
            if category is None:
                continue
            productivity = productivity or category.productivity
            color = color or category.color
            if productivity and color:
                break
        return productivity or DEFAULT_PRODUCTIVITY, color or DEFAULT_COLOR
