"""Categories, rule sets and team overrides: the pure model and its validation.

A :class:`Category` is a path in a hierarchy (``("Work", "Programming",
"Python")``), a rule, a productivity class and a colour:

* ``rule`` is ``{"type": "regex", "regex": ..., "keys": [...], "ignore_case":
  false}`` -- the regex is *searched* (not anchored: use ``^``/``$``) in each of
  the payload values named by ``keys`` (any of app, title, url, domain; default
  app and title), and the category matches when it is found in any of them --
  or ``{"type": "none"}`` for a grouping node that never matches by itself. A
  rule given without ``type`` is a regex rule when it has a ``regex``.
* ``productivity`` (productive / neutral / unproductive) and ``color``
  (``#rrggbb``) may be left out: the category then inherits them from its
  nearest ancestor that has them; a root without one is neutral and grey
  (:data:`DEFAULT_PRODUCTIVITY`, :data:`DEFAULT_COLOR`). Ancestors need not be
  declared: ``Work > Programming > Python`` alone implies ``Work`` and ``Work >
  Programming`` as plain grouping nodes.

A :class:`RuleSet` is an ordered tuple of categories with unique paths; the
order decides ties (see :mod:`worklens.categories.classify`). Its
:attr:`RuleSet.version` is a content hash of everything in it, and
:attr:`RuleSet.rules_version` a hash of only what classification depends on
(paths, rules, order): key caches of classified events by ``rules_version`` and
caches of anything showing productivity or colours by ``version``.

Errors name the category and the field: :class:`RuleError` carries ``path``
and ``field``, and its text reads "category Work > Chat: color: ..." or "regex
for Work > Chat is too slow (catastrophic backtracking?)". ``RuleSet.parse``,
``Category.parse`` and ``TeamOverrides.parse`` raise it directly; plain
``model_validate`` raises pydantic's ``ValidationError`` whose messages carry the
same text (and whose ``ctx["error"]`` is the :class:`RuleError`).

Every regex is checked when validated (see :mod:`worklens.categories.safety`):
it must compile and be fast on adversarial inputs. Rules already checked when
saved can be loaded with ``trusted=True`` (or validation context ``{"trusted":
True}``), which keeps the compile check and skips the timing probes.

Team overrides (:class:`TeamOverrides`, applied by :func:`merge`) let a team
disable org categories, replace their rules, and add categories of its own;
see :func:`merge` for the exact semantics.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, Self, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import safety

Productivity: TypeAlias = Literal["productive", "neutral", "unproductive"]
Key: TypeAlias = Literal["app", "title", "url", "domain"]
CategoryPath: TypeAlias = tuple[str, ...]

KEYS: tuple[Key, ...] = ("app", "title", "url", "domain")
DEFAULT_KEYS: tuple[Key, ...] = ("app", "title")
UNCATEGORIZED: CategoryPath = ("Uncategorized",)
DEFAULT_PRODUCTIVITY: Productivity = "neutral"
DEFAULT_COLOR = "#9e9e9e"
PATH_SEPARATOR = " > "
MAX_DEPTH = 8
MAX_NAME_LENGTH = 64
MAX_CATEGORIES = 2000
# Bumped when classification semantics change, so every version hash changes.
ENGINE_VERSION = 1


def format_path(path: Iterable[str]) -> str:
    """``("Work", "Chat")`` -> ``"Work > Chat"``."""
    return PATH_SEPARATOR.join(path)


def parse_path(text: str) -> CategoryPath:
    """``"Work > Chat"`` -> ``("Work", "Chat")`` (names are stripped)."""
    return tuple(part.strip() for part in text.split(">"))


class RuleError(ValueError):
    """A category, rule set or override refused.

    ``path`` is the category concerned (``()`` when the problem is not about one
    category), ``field`` the dotted field name (``"rule.regex"``, ``"color"``,
    ``"path"``, ``"disable"`` ...), and ``str(error)`` a message naming both.
    """

    def __init__(self, message: str, *, path: Sequence[str] = (), field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path: CategoryPath = tuple(path)
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_rule_error, (self.message, self.path, self.field))


def _rebuild_rule_error(message: str, path: CategoryPath, field: str) -> RuleError:
    return RuleError(message, path=path, field=field)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- rules --------------------------------------------------------------------------


class RegexRule(_Frozen):
    """Matches when ``regex`` is found in any of the payload values named by ``keys``.

    The regex itself is checked (compiles, fast enough) by :class:`Category`,
    whose path the error message names.
    """

    type: Literal["regex"] = "regex"
    regex: str = Field(min_length=1)
    keys: tuple[Key, ...] = DEFAULT_KEYS
    ignore_case: bool = False

    @field_validator("keys")
    @classmethod
    def _canonical_keys(cls, keys: tuple[Key, ...]) -> tuple[Key, ...]:
        if not keys:
            raise ValueError("must name at least one of app, title, url, domain")
        # One order and no repeats, so equal rules hash equally.
        return tuple(k for k in KEYS if k in keys)


class GroupRule(_Frozen):
    """A grouping node: never matches by itself (its children do)."""

    type: Literal["none"] = "none"


def _rule_tag(value: Any) -> str:
    if isinstance(value, Mapping):
        tag = value.get("type")
        if tag is None:
            return "regex" if "regex" in value else "none"
        return str(tag)
    return str(getattr(value, "type", ""))


Rule: TypeAlias = Annotated[
    Annotated[RegexRule, Tag("regex")] | Annotated[GroupRule, Tag("none")],
    Discriminator(
        _rule_tag,
        custom_error_type="rule_type",
        custom_error_message='type must be "regex" or "none"',
    ),
]


# --- categories ---------------------------------------------------------------------


def _is_trusted(info: ValidationInfo) -> bool:
    return isinstance(info.context, Mapping) and bool(info.context.get("trusted"))


def _context(trusted: bool) -> dict[str, Any]:
    return {"trusted": trusted}


_NO_PATH = "(no valid path)"


def _path_text(raw: Any) -> str:
    """The path of raw (possibly invalid) category data, for error messages."""
    path = raw.get("path") if isinstance(raw, Mapping) else getattr(raw, "path", None)
    if isinstance(path, str):
        return path
    if isinstance(path, Sequence) and path and all(isinstance(p, str) for p in path):
        return format_path(p.strip() for p in path)
    return _NO_PATH


def _field_name(loc: Sequence[int | str]) -> str:
    # Discriminated unions add the tag to the location: rule.regex.regex -> rule.regex
    parts = [str(p) for p in loc]
    if len(parts) >= 2 and parts[0] == "rule" and parts[1] in ("regex", "none"):
        del parts[1]
    return ".".join(parts)


def _rule_error(exc: ValidationError, raw: Any) -> RuleError:
    """One RuleError from a category's ValidationError, naming the path and every bad field."""
    errors = exc.errors(include_url=False)
    first_inner = (errors[0].get("ctx") or {}).get("error")
    if len(errors) == 1 and isinstance(first_inner, RuleError):
        return first_inner
    where = _path_text(raw)
    problems = []
    for error in errors:
        field = _field_name(error["loc"]) or "category"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "is required"
        problems.append((field, message))
    text = "; ".join(f"{field}: {message}" for field, message in problems)
    path = tuple(where.split(PATH_SEPARATOR)) if where != _NO_PATH else ()
    return RuleError(f"category {where}: {text}", path=path, field=problems[0][0])


class Category(_Frozen):
    """One node of the hierarchy; see the module docstring."""

    path: CategoryPath
    rule: Rule = GroupRule()
    productivity: Productivity | None = None
    color: str | None = None

    @field_validator("path", mode="before")
    @classmethod
    def _path_from_text(cls, value: Any) -> Any:
        return parse_path(value) if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: CategoryPath) -> CategoryPath:
        if not path:
            raise ValueError("must have at least one name")
        if len(path) > MAX_DEPTH:
            raise ValueError(f"is {len(path)} levels deep, at most {MAX_DEPTH}")
        names = tuple(name.strip() for name in path)
        for name in names:
            if not name:
                raise ValueError("has an empty name")
            if len(name) > MAX_NAME_LENGTH:
                raise ValueError(f"name {name[:20]!r}... is over {MAX_NAME_LENGTH} characters")
            if ">" in name or not name.isprintable():
                raise ValueError(f"name {name!r} contains '>' or a control character")
        return names

    @field_validator("color")
    @classmethod
    def _check_color(cls, color: str | None) -> str | None:
        if color is None:
            return None
        text = color.strip().lower()
        if len(text) != 7 or text[0] != "#" or any(c not in "0123456789abcdef" for c in text[1:]):
            raise ValueError(f"must be #rrggbb, got {color!r}")
        return text

    @model_validator(mode="wrap")
    @classmethod
    def _errors_name_the_path(
        cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo
    ) -> Self:
        if isinstance(data, cls):
            # Already validated (and frozen): a rule set built from categories, or
            # merge(), must not re-probe regexes, which may have been loaded trusted.
            return data
        try:
            category = handler(data)
        except ValidationError as exc:
            raise _rule_error(exc, data) from None
        rule = category.rule
        if isinstance(rule, RegexRule):
            try:
                if _is_trusted(info):
                    safety.check_syntax(rule.regex, rule.ignore_case)
                else:
                    safety.check_pattern(rule.regex, rule.ignore_case)
            except safety.UnsafePattern as exc:
                raise RuleError(
                    f"regex for {format_path(category.path)} {exc}",
                    path=category.path,
                    field="rule.regex",
                ) from None
        return category

    @classmethod
    def parse(cls, data: Any, *, trusted: bool = False) -> Category:
        """Validate one category; raises :class:`RuleError`."""
        result: Category = _parse(cls, data, trusted)
        return result

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def depth(self) -> int:
        return len(self.path)

    def __str__(self) -> str:
        return format_path(self.path)


def _parse(model: type[_Frozen], data: Any, trusted: bool) -> Any:
    try:
        return model.model_validate(data, context=_context(trusted))
    except ValidationError as exc:
        raise _first_rule_error(exc) from None


def _first_rule_error(exc: ValidationError) -> RuleError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    inner = (first.get("ctx") or {}).get("error")
    if isinstance(inner, RuleError):
        if len(errors) == 1:
            return inner
        more = len(errors) - 1
        return RuleError(
            f"{inner.message} (and {more} more problem{'s' if more > 1 else ''})",
            path=inner.path,
            field=inner.field,
        )
    field = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    return RuleError(f"{field or 'rule set'}: {message}", field=field)


# --- rule sets ----------------------------------------------------------------------


def _canonical_hash(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RuleSet(_Frozen):
    """Ordered categories with unique paths; see the module docstring."""

    categories: tuple[Category, ...] = ()

    _version: str = PrivateAttr(default="")
    _rules_version: str = PrivateAttr(default="")
    _by_path: dict[CategoryPath, Category] = PrivateAttr(default_factory=dict)

    @field_validator("categories")
    @classmethod
    def _unique_paths(cls, categories: tuple[Category, ...]) -> tuple[Category, ...]:
        if len(categories) > MAX_CATEGORIES:
            raise ValueError(f"{len(categories)} categories, at most {MAX_CATEGORIES}")
        seen: set[CategoryPath] = set()
        for category in categories:
            if category.path in seen:
                raise RuleError(
                    f"category {format_path(category.path)} is defined twice "
                    "(use one regex with alternatives, or a sub-category)",
                    path=category.path,
                    field="path",
                )
            seen.add(category.path)
        return categories

    @model_validator(mode="after")
    def _index(self) -> Self:
        dumped = [c.model_dump(mode="json") for c in self.categories]
        self._version = _canonical_hash({"engine": ENGINE_VERSION, "categories": dumped})
        self._rules_version = _canonical_hash(
            {"engine": ENGINE_VERSION, "rules": [[d["path"], d["rule"]] for d in dumped]}
        )
        self._by_path = {c.path: c for c in self.categories}
        return self

    @classmethod
    def parse(cls, data: Any, *, trusted: bool = False) -> RuleSet:
        """Validate a rule set (``{"categories": [...]}``); raises :class:`RuleError`.

        ``trusted=True`` for rules that were checked when saved: regexes are
        still compiled, but not timed against adversarial inputs again.
        """
        result: RuleSet = _parse(cls, data, trusted)
        return result

    @property
    def version(self) -> str:
        """Hash of the whole content: changes with any rule, order, productivity or colour."""
        return self._version

    @property
    def rules_version(self) -> str:
        """Hash of what classification depends on: paths, rules and their order."""
        return self._rules_version

    def get(self, path: Sequence[str]) -> Category | None:
        return self._by_path.get(tuple(path))

    def __contains__(self, path: object) -> bool:
        return isinstance(path, Sequence) and tuple(path) in self._by_path

    def __len__(self) -> int:
        return len(self.categories)

    def paths(self) -> list[CategoryPath]:
        """Every declared path and every implied ancestor, parents before children."""
        out: dict[CategoryPath, None] = {}
        for category in self.categories:
            for depth in range(1, category.depth + 1):
                out.setdefault(category.path[:depth], None)
        return sorted(out)

    def to_data(self) -> dict[str, Any]:
        """The JSON-compatible form that :meth:`parse` reads back."""
        return self.model_dump(mode="json")


# --- team overrides -----------------------------------------------------------------


def _as_path(value: Any) -> Any:
    return parse_path(value) if isinstance(value, str) else value


class TeamOverrides(_Frozen):
    """A team's changes to its organization's rule set; applied by :func:`merge`.

    * ``disable``: paths (lists of names, or ``"Work > Chat"`` strings) of org
      categories to switch off, each with everything under it;
    * ``replace``: categories whose ``rule`` replaces the org category's rule at
      the same path (same place in the order); their ``productivity`` and
      ``color``, when given, replace the org's too, and when left out the org's
      are kept;
    * ``add``: new categories, placed after all org categories (so on a tie in
      depth they win over them), in the order given.

    A path may appear only once across the three lists.
    """

    add: tuple[Category, ...] = ()
    replace: tuple[Category, ...] = ()
    disable: tuple[CategoryPath, ...] = ()

    @field_validator("disable", mode="before")
    @classmethod
    def _paths_from_text(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [_as_path(v) for v in value]
        return value

    @field_validator("disable")
    @classmethod
    def _check_disable(cls, paths: tuple[CategoryPath, ...]) -> tuple[CategoryPath, ...]:
        out = []
        for path in paths:
            names = tuple(name.strip() for name in path)
            if not names or not all(names):
                raise ValueError(f"path {format_path(path)!r} has an empty name")
            out.append(names)
        return tuple(out)

    @model_validator(mode="after")
    def _each_path_once(self) -> Self:
        seen: dict[CategoryPath, str] = {}
        items = [("add", c.path) for c in self.add]
        items += [("replace", c.path) for c in self.replace]
        items += [("disable", p) for p in self.disable]
        for field, path in items:
            if path in seen:
                raise RuleError(
                    f"category {format_path(path)}: {field}: already listed in {seen[path]}",
                    path=path,
                    field=field,
                )
            seen[path] = field
        return self

    @classmethod
    def parse(cls, data: Any, *, trusted: bool = False) -> TeamOverrides:
        """Validate overrides (``{"add": [...], "replace": [...], "disable": [...]}``)."""
        result: TeamOverrides = _parse(cls, data, trusted)
        return result

    def __bool__(self) -> bool:
        return bool(self.add or self.replace or self.disable)


def _under(path: CategoryPath, root: CategoryPath) -> bool:
    return path[: len(root)] == root


def merge(
    org_rules: RuleSet, team_overrides: TeamOverrides | None, *, strict: bool = False
) -> RuleSet:
    """The rule set a team classifies with: the org's, with the team's overrides.

    Applied in this order:

    1. ``disable``: every org category at or under each disabled path is removed
       (disabling ``Media`` removes ``Media > Video`` too). Only org categories
       are affected: a team may disable ``Media`` and add its own ``Media > ...``.
    2. ``replace``: the org category at the same path keeps its place in the
       order and takes the override's rule; its productivity and colour are
       replaced only where the override gives them.
    3. ``add``: appended after the org categories, in the order given, so at
       equal depth a team category wins over an org one (later wins ties).

    Org rule sets change after a team saved its overrides, so by default merging
    never fails on a stale override: a disabled path that no longer exists is
    ignored, a replaced path that no longer exists is added, and an added path
    that now exists in the org replaces it. With ``strict=True`` (when the team
    saves its overrides) each of those is a :class:`RuleError` naming the path.
    """
    if not team_overrides:
        return org_rules
    categories = list(org_rules.categories)

    for root in team_overrides.disable:
        kept = [c for c in categories if not _under(c.path, root)]
        if strict and len(kept) == len(categories):
            raise RuleError(
                f"category {format_path(root)}: disable: "
                "no such category in the organization rules",
                path=root,
                field="disable",
            )
        categories = kept

    index = {c.path: i for i, c in enumerate(categories)}
    appended: list[Category] = []
    for override in team_overrides.replace:
        i = index.get(override.path)
        if i is None:
            if strict:
                disabled = any(_under(override.path, d) for d in team_overrides.disable)
                why = "it is disabled" if disabled else "no such category in the organization rules"
                raise RuleError(
                    f"category {format_path(override.path)}: replace: {why}",
                    path=override.path,
                    field="replace",
                )
            appended.append(override)
            continue
        categories[i] = _replaced(categories[i], override)

    for added in team_overrides.add:
        i = index.get(added.path)
        if i is not None:
            if strict:
                raise RuleError(
                    f"category {format_path(added.path)}: add: already exists in the "
                    "organization rules (use replace)",
                    path=added.path,
                    field="add",
                )
            categories[i] = _replaced(categories[i], added)
            continue
        appended.append(added)

    # Categories are validated already: building the rule set does not re-check them.
    return RuleSet(categories=(*categories, *appended))


def _replaced(org: Category, override: Category) -> Category:
    return Category.model_construct(
        path=org.path,
        rule=override.rule,
        productivity=override.productivity or org.productivity,
        color=override.color or org.color,
    )
