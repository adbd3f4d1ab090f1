"""Refusing category regexes that do not compile or are pathologically slow.

Patterns are compiled with the `regex` module (a superset of :mod:`re`'s
syntax, ``VERSION0`` semantics, so anything written for Python's ``re`` works)
because its matching functions take a ``timeout=``.

At save time (:func:`check_pattern`) a pattern is refused when

* it is longer than :data:`MAX_PATTERN_LENGTH` characters;
* a counted repetition is too large (``a{5000}``, or nested ones whose product is
  over :data:`MAX_REPEAT_PRODUCT`): the `regex` module expands those while
  compiling, and ``(?:(?:a{1000}){1000}){1000}`` would hold the compiler for
  minutes before any timeout could apply;
* it does not compile;
* it is too slow on adversarial inputs: long runs of one character (``a``,
  ``x``, ``0``, space, each literal character of the pattern, upper and lower
  case), alternating two-character runs (``a.``, ``a ``, ``a/`` ...) and each
  of those with a character that makes the match fail at the very end, 5,000
  characters each (a window title is at most 2,048). Each probe may take
  :data:`PROBE_TIMEOUT` seconds and all of them together :data:`PROBE_BUDGET`;
  over either, the pattern is refused as "too slow (catastrophic
  backtracking?)". ``(a+)+$``, ``(a|aa)+$``, ``(x+x+)+y`` and the like take
  seconds to hours there; an ordinary pattern takes microseconds, and even a
  quadratic one (``.*a.*b``) a few tens of milliseconds.

At classification time every search still passes :data:`MATCH_TIMEOUT`
(:func:`search`): the save-time probes are a heuristic, and rules stored before
a check existed are not re-probed when loaded as trusted.

Verdicts and compiled patterns are cached per (pattern, ignore_case), so
validating the same rule set again (every load from the database) costs a dict
lookup per rule.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import regex

MAX_PATTERN_LENGTH = 2000
MAX_REPEAT = 1000  # largest {m,n} bound
MAX_REPEAT_PRODUCT = 10_000  # largest product of nested {m,n} bounds
PROBE_LENGTH = 5000
PROBE_TIMEOUT = 0.25  # seconds, one adversarial input
PROBE_BUDGET = 1.0  # seconds, all adversarial inputs of one pattern
MATCH_TIMEOUT = 0.1  # seconds, one search at classification time

Pattern = Any  # regex.Pattern[str]; the regex module ships no type information


class UnsafePattern(ValueError):
    """Why a pattern is refused; the text completes "regex for <path> ..."."""


def compile_pattern(pattern: str, ignore_case: bool = False) -> Pattern:
    """The compiled pattern, after :func:`check_syntax`; raises :class:`UnsafePattern`."""
    return _compile(pattern, ignore_case)


def check_syntax(pattern: str, ignore_case: bool = False) -> None:
    """Length, repetition counts and compilation; cheap and deterministic."""
    _compile(pattern, ignore_case)


def check_pattern(pattern: str, ignore_case: bool = False) -> None:
    """Everything :func:`check_syntax` checks, plus the adversarial timing probes.

    Raises :class:`UnsafePattern` whose text reads after "regex for <path> ",
    e.g. "is too slow (catastrophic backtracking?)".
    """
    verdict = _probe_verdict(pattern, ignore_case)
    if verdict:
        raise UnsafePattern(verdict)


def search(compiled: Pattern, text: str, timeout: float = MATCH_TIMEOUT) -> bool:
    """Whether ``compiled`` matches anywhere in ``text``; raises TimeoutError."""
    return compiled.search(text, timeout=timeout) is not None


# --- compilation ----------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str, ignore_case: bool) -> Pattern:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsafePattern(
            f"is too long ({len(pattern)} characters, at most {MAX_PATTERN_LENGTH})"
        )
    if not pattern:
        raise UnsafePattern("is empty")
    largest, product = _repeat_counts(pattern)
    if largest > MAX_REPEAT:
        raise UnsafePattern(f"has a repetition count too large ({largest}, at most {MAX_REPEAT})")
    if product > MAX_REPEAT_PRODUCT:
        raise UnsafePattern(
            f"has nested repetition counts too large (their product is {product}, "
            f"at most {MAX_REPEAT_PRODUCT})"
        )
    flags = regex.VERSION0 | (regex.IGNORECASE if ignore_case else 0)
    try:
        return regex.compile(pattern, flags)
    except (regex.error, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise UnsafePattern(f"does not compile: {exc}") from None


_COUNT = regex.compile(r"\{(\d*)(?:(,)(\d*))?\}")


def _repeat_counts(pattern: str) -> tuple[int, int]:
    """(largest single ``{m,n}`` bound, largest product of nested bounds).

    A small scanner, not a parser: it skips escapes and character classes and
    tracks groups, which is all that is needed to see ``(?:a{100}){100}``.
    Braces that are not a counted repetition (``a{b}``, fuzzy ``{e<=1}``) are
    literal text or something else and count for nothing here.
    """
    largest = 0
    # weight of the widest repeated thing seen so far inside each open group
    stack: list[int] = [1]
    last_atom = 1  # weight of the atom a quantifier would apply to
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            last_atom = 1
            continue
        if c == "[":
            i = _skip_class(pattern, i)
            last_atom = 1
            continue
        if c == "(":
            stack.append(1)
            i += 1
            continue
        if c == ")":
            inner = stack.pop() if len(stack) > 1 else 1
            stack[-1] = max(stack[-1], inner)
            last_atom = inner
            i += 1
            continue
        if c == "{":
            m = _COUNT.match(pattern, i)
            if m and (m.group(1) or m.group(3)):
                bounds = [int(g) for g in (m.group(1), m.group(3)) if g]
                bound = max(bounds)
                largest = max(largest, bound)
                weight = last_atom * max(bound, 1)
                stack[-1] = max(stack[-1], weight)
                last_atom = weight
                i = m.end()
                continue
        last_atom = 1
        i += 1
    return largest, max(stack)


def _skip_class(pattern: str, i: int) -> int:
    """Index just after the character class opening at ``pattern[i] == "["``."""
    n = len(pattern)
    j = i + 1
    if j < n and pattern[j] == "^":
        j += 1
    if j < n and pattern[j] == "]":  # a leading "]" is literal
        j += 1
    depth = 1  # the regex module allows nested sets ([[a-z]--[aeiou]]) in V1
    while j < n:
        c = pattern[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return n


# --- timing probes ----------------------------------------------------------------

_BASE_CHARS = "ax0 ._-/"
_SEPARATORS = " ._-/,:"
_ENDINGS = ("", "!", "\x00")
_MAX_LITERAL_CHARS = 16


def adversarial_inputs(pattern: str, length: int = PROBE_LENGTH) -> list[str]:
    """The inputs a pattern must get through quickly to be accepted."""
    chars: list[str] = []
    for c in _BASE_CHARS + _literal_chars(pattern):
        for variant in (c, c.lower(), c.upper()):
            if variant not in chars:
                chars.append(variant)
    runs = [c * length for c in chars]
    runs += [("a" + sep) * (length // 2) for sep in _SEPARATORS]
    return [run + end for run in runs for end in _ENDINGS]


def _literal_chars(pattern: str) -> str:
    seen: list[str] = []
    for c in pattern:
        if (c.isalnum() or c in "@#%&=~'\"<>;") and c not in seen:
            seen.append(c)
            if len(seen) == _MAX_LITERAL_CHARS:
                break
    return "".join(seen)


@functools.lru_cache(maxsize=4096)
def _probe_verdict(pattern: str, ignore_case: bool) -> str:
    """Empty when the pattern is fast enough, else the reason it is refused."""
    compiled = _compile(pattern, ignore_case)
    deadline = time.perf_counter() + PROBE_BUDGET
    for text in adversarial_inputs(pattern):
        left = deadline - time.perf_counter()
        if left <= 0:
            return "is too slow (catastrophic backtracking?)"
        try:
            compiled.search(text, timeout=min(PROBE_TIMEOUT, left))
        except TimeoutError:
            return "is too slow (catastrophic backtracking?)"
    return ""


def clear_caches() -> None:
    """Forget cached verdicts and compiled patterns (tests, or after a slow spell)."""
    _compile.cache_clear()
    _probe_verdict.cache_clear()
