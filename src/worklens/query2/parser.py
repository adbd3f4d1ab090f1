"""Tokenizer and recursive-descent parser for query2, producing an AST.

The request's ``query`` is a list of strings; they are joined with newlines
(as aw-server-rust does) and every error names the 1-based index of the entry
it is in ("line 3: ...").

Grammar (the union of aw-core's and aw-server-rust's, see the compatibility
notes in :mod:`worklens.query2`)::

    program   := statement* EOF
    statement := ";"                                   (empty)
               | NAME "=" expr end
               | "return" expr end                     (= "RETURN = expr", aw-server-rust)
               | "if" expr block ("elif" expr block)* ("else" block)?
    end       := ";" | before "}" or the end of the query
    block     := "{" statement* "}"
    expr      := sum ("==" sum)*
    sum       := product (("+" | "-") product)*
    product   := unary (("*" | "/" | "%") unary)*
    unary     := "-" unary | primary
    primary   := NUMBER | STRING | true | false | none
               | NAME "(" (expr ("," expr)*)? ")" | NAME
               | "[" (expr ("," expr)*)? "]"
               | "{" (STRING ":" expr ("," STRING ":" expr)*)? "}"
               | "(" expr ")"

Strings take double or single quotes and may span lines; a backslash before
the quote character stands for the quote, every other backslash is kept as
written (so regexes like ``"\\w+"`` pass through unchanged, as in AW); a
backslash always takes the next character with it, so ``"a\\\\"`` ends where
expected. ``#`` starts a comment to the end of the text line (aw-server-rust).
``true``/``True``, ``false``/``False`` and ``none``/``None``/``null`` are literals.
Function names are checked here, with their argument counts, against
:data:`worklens.query2.functions.FUNCTIONS`. Nothing is ever evaluated with
Python's ``eval``: numbers and strings are decoded by hand.
"""

from __future__ import annotations

import difflib
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import QueryError
from .functions import FUNCTIONS

PREDEFINED = ("NAME", "STARTTIME", "ENDTIME", "TIMEINTERVAL")
"""Variables every query starts with; they are read-only."""

_LITERALS: dict[str, Any] = {
    "true": True,
    "True": True,
    "false": False,
    "False": False,
    "none": None,
    "None": None,
    "null": None,
}
_KEYWORDS = frozenset({"if", "elif", "else", "return", *_LITERALS})
_DIGITS = frozenset("0123456789")
_PUNCT = ("==", "=", "+", "-", "*", "/", "%", "(", ")", "[", "]", "{", "}", ",", ":", ";")

DEFAULT_MAX_NESTING = 64
DEFAULT_MAX_CHARS = 1_000_000


# --- AST -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any  # None, bool, int, float or str
    line: int


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    line: int


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Expr, ...]
    line: int


@dataclass(frozen=True, slots=True)
class DictExpr:
    items: tuple[tuple[str, Expr], ...]
    line: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]
    line: int


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # "+", "-", "*", "/", "%", "=="
    left: Expr
    right: Expr
    line: int


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    line: int


Expr = Literal | Var | ListExpr | DictExpr | Call | BinOp | Neg


@dataclass(frozen=True, slots=True)
class Assign:
    name: str
    value: Expr
    line: int


@dataclass(frozen=True, slots=True)
class If:
    branches: tuple[tuple[Expr, tuple[Stmt, ...]], ...]
    orelse: tuple[Stmt, ...]
    line: int


Stmt = Assign | If


@dataclass(frozen=True, slots=True)
class Program:
    statements: tuple[Stmt, ...]
    line_count: int


# --- tokens ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "name", "number", "string", "op", "eof"
    value: Any
    line: int
    text: str


def _describe(tok: Token) -> str:
    if tok.kind == "eof":
        return "the end of the query"
    if tok.kind == "string":
        shown = tok.text if len(tok.text) <= 40 else tok.text[:37] + "..."
        return f"string {shown}"
    if tok.kind == "number":
        return f"number {tok.text}"
    if tok.kind == "name":
        return f"keyword '{tok.text}'" if tok.text in _KEYWORDS else f"name '{tok.text}'"
    return f"'{tok.text}'"


class _Lines:
    """Maps offsets in the joined text to 1-based entry numbers."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.starts: list[int] = []
        pos = 0
        for line in lines:
            self.starts.append(pos)
            pos += len(line) + 1
        if not self.starts:
            self.starts.append(0)

    def at(self, offset: int) -> int:
        return max(1, bisect_right(self.starts, offset))

    @property
    def count(self) -> int:
        return len(self.starts)


def tokenize(text: str, lines: _Lines) -> list[Token]:
    toks: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == '"' or c == "'":
            j = i + 1
            parts: list[str] = []
            seg = j
            while True:
                if j >= n:
                    raise QueryError(
                        f"unterminated string: the {c} opened here is never closed", lines.at(i)
                    )
                ch = text[j]
                if ch == "\\" and j + 1 < n:
                    if text[j + 1] == c:
                        parts.append(text[seg:j])
                        parts.append(c)
                        seg = j + 2
                    j += 2
                elif ch == c:
                    parts.append(text[seg:j])
                    break
                else:
                    j += 1
            toks.append(Token("string", "".join(parts), lines.at(i), text[i : j + 1]))
            i = j + 1
        elif c in _DIGITS:
            j = i
            while j < n and text[j] in _DIGITS:
                j += 1
            is_float = j < n and text[j] == "."
            if is_float:
                j += 1
                while j < n and text[j] in _DIGITS:
                    j += 1
            if j < n and (text[j].isalpha() or text[j] == "_"):
                k = j
                while k < n and (text[k].isalnum() or text[k] == "_"):
                    k += 1
                raise QueryError(f"invalid number '{text[i:k]}'", lines.at(i))
            raw = text[i:j]
            value: int | float = float(raw) if is_float else int(raw)
            toks.append(Token("number", value, lines.at(i), raw))
            i = j
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            if not word.isascii():
                raise QueryError(f"invalid name '{word}' (names are ASCII letters, digits, _)",
                                 lines.at(i))
            toks.append(Token("name", word, lines.at(i), word))
            i = j
        else:
            for p in _PUNCT:
                if text.startswith(p, i):
                    toks.append(Token("op", p, lines.at(i), p))
                    i += len(p)
                    break
            else:
                raise QueryError(f"unexpected character {c!r}", lines.at(i))
    toks.append(Token("eof", None, lines.at(max(0, n - 1)) if n else 1, ""))
    return toks


# --- parser ----------------------------------------------------------------------------


def suggest(name: str, candidates: Sequence[str]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Parser:
    def __init__(self, toks: list[Token], max_nesting: int) -> None:
        self.toks = toks
        self.pos = 0
        self.depth = 0
        self.max_nesting = max_nesting

    # token helpers
    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def prev(self) -> Token:
        return self.toks[self.pos - 1] if self.pos else self.toks[0]

    def advance(self) -> Token:
        tok = self.toks[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def is_op(self, value: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind == "op" and tok.value == value

    def is_word(self, value: str) -> bool:
        tok = self.peek()
        return tok.kind == "name" and tok.value == value

    def error(self, message: str, tok: Token | None = None) -> QueryError:
        return QueryError(message, (tok or self.peek()).line)

    def expect_op(self, value: str, context: str, opened: Token | None = None) -> Token:
        if self.is_op(value):
            return self.advance()
        found = self.peek()
        where = ""
        if opened is not None and opened.line != found.line:
            where = f" (opened on line {opened.line})"
        raise self.error(f"expected '{value}' {context}{where}, found {_describe(found)}", found)

    def nest(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > self.max_nesting:
            raise self.error(f"expression nested too deeply (more than {self.max_nesting} levels)",
                             tok)

    # statements
    def program(self) -> tuple[Stmt, ...]:
        stmts = self.statements(top=True)
        if self.peek().kind != "eof":
            raise self.error(f"unexpected {_describe(self.peek())}")
        return stmts

    def statements(self, top: bool) -> tuple[Stmt, ...]:
        out: list[Stmt] = []
        while True:
            tok = self.peek()
            if tok.kind == "eof" or (not top and self.is_op("}")):
                return tuple(out)
            if self.is_op(";"):
                self.advance()
                continue
            out.append(self.statement())

    def end_statement(self, what: str) -> None:
        if self.is_op(";"):
            self.advance()
            return
        if self.peek().kind == "eof" or self.is_op("}"):
            return
        last, found = self.prev(), self.peek()
        hint = f" on line {found.line}" if found.line != last.line else ""
        raise QueryError(f"expected ';' after {what}, found {_describe(found)}{hint}", last.line)

    def statement(self) -> Stmt:
        tok = self.peek()
        if tok.kind == "name" and tok.value == "if":
            return self.if_statement()
        if tok.kind == "name" and tok.value == "return":
            self.advance()
            value = self.expr()
            self.end_statement("the returned value")
            return Assign("RETURN", value, tok.line)
        if tok.kind == "name" and self.is_op("=", 1):
            name = tok.value
            if name in _KEYWORDS:
                raise self.error(f"cannot assign to keyword '{name}'", tok)
            if name in PREDEFINED:
                raise self.error(f"'{name}' is predefined and cannot be assigned", tok)
            self.advance()
            self.advance()
            if self.peek().kind == "eof" or self.is_op(";") or self.is_op("}"):
                raise self.error(f"expected a value to assign to '{name}', found "
                                 f"{_describe(self.peek())}")
            value = self.expr()
            self.end_statement(f"the value assigned to '{name}'")
            return Assign(name, value, tok.line)
        if tok.kind == "name" and tok.value in ("elif", "else"):
            raise self.error(f"'{tok.value}' without a preceding 'if' block", tok)
        if tok.kind == "name" and self.is_op("(", 1):
            if tok.value not in FUNCTIONS:
                raise self.error(f"unknown function '{tok.value}'"
                                 f"{suggest(tok.value, list(FUNCTIONS))}", tok)
            raise self.error(
                f"the result of '{tok.value}(...)' must be assigned, e.g. "
                f"'RETURN = {tok.value}(...);'", tok)
        if tok.kind == "name" and tok.value not in _KEYWORDS:
            raise self.error(f"expected '=' after '{tok.value}', found {_describe(self.peek(1))}",
                             self.peek(1))
        raise self.error(f"expected a statement such as 'name = value;', found {_describe(tok)}",
                         tok)

    def if_statement(self) -> If:
        first = self.advance()  # "if"
        branches: list[tuple[Expr, tuple[Stmt, ...]]] = []
        cond = self.expr()
        branches.append((cond, self.block(first)))
        orelse: tuple[Stmt, ...] = ()
        while True:
            if self.is_word("elif"):
                tok = self.advance()
                cond = self.expr()
                branches.append((cond, self.block(tok)))
            elif self.is_word("else"):
                tok = self.advance()
                orelse = self.block(tok)
                break
            else:
                break
        return If(tuple(branches), orelse, first.line)

    def block(self, keyword: Token) -> tuple[Stmt, ...]:
        opened = self.expect_op("{", f"to open the '{keyword.value}' block")
        self.nest(opened)
        body = self.statements(top=False)
        self.expect_op("}", f"to close the '{keyword.value}' block", opened)
        self.depth -= 1
        return body

    # expressions
    def expr(self) -> Expr:
        return self.binary(0)

    _LEVELS: tuple[tuple[str, ...], ...] = (("==",), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> Expr:
        if level == len(self._LEVELS):
            return self.unary()
        ops = self._LEVELS[level]
        left = self.binary(level + 1)
        chain = 0
        while self.peek().kind == "op" and self.peek().value in ops:
            op = self.advance()
            chain += 1
            if chain + self.depth > self.max_nesting:
                raise self.error(f"expression too long (more than {self.max_nesting} operators "
                                 "in a row)", op)
            if self.peek().kind == "eof" or self.is_op(";"):
                raise self.error(f"expected a value after '{op.value}', found "
                                 f"{_describe(self.peek())}")
            right = self.binary(level + 1)
            left = BinOp(op.value, left, right, op.line)
        return left

    def unary(self) -> Expr:
        if self.is_op("-"):
            tok = self.advance()
            self.nest(tok)
            operand = self.unary()
            self.depth -= 1
            return Neg(operand, tok.line)
        return self.primary()

    def primary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "number" or tok.kind == "string":
            self.advance()
            return Literal(tok.value, tok.line)
        if tok.kind == "name":
            name = tok.value
            if name in _LITERALS:
                self.advance()
                return Literal(_LITERALS[name], tok.line)
            if name in _KEYWORDS:
                raise self.error(f"unexpected keyword '{name}' where a value was expected", tok)
            self.advance()
            if self.is_op("("):
                return self.call(tok)
            return Var(name, tok.line)
        if tok.kind == "op":
            if tok.value == "[":
                return self.list_expr()
            if tok.value == "{":
                return self.dict_expr()
            if tok.value == "(":
                self.advance()
                self.nest(tok)
                inner = self.expr()
                self.expect_op(")", "to close the '('", tok)
                self.depth -= 1
                return inner
        raise self.error(f"expected a value, found {_describe(tok)}", tok)

    def call(self, name_tok: Token) -> Call:
        name = name_tok.value
        spec = FUNCTIONS.get(name)
        if spec is None:
            raise self.error(f"unknown function '{name}'{suggest(name, list(FUNCTIONS))}",
                             name_tok)
        opened = self.advance()  # "("
        self.nest(opened)
        args: list[Expr] = []
        if not self.is_op(")"):
            while True:
                if self.is_op(",") or self.is_op(")"):
                    raise self.error(f"expected an argument to '{name}', found "
                                     f"{_describe(self.peek())}")
                args.append(self.expr())
                if self.is_op(","):
                    self.advance()
                    continue
                break
        self.expect_op(")", f"to close the call to '{name}'", opened)
        self.depth -= 1
        lo, hi = spec.min_args, spec.max_args
        if len(args) < lo or (hi is not None and len(args) > hi):
            raise self.error(
                f"{name}() takes {spec.arity_text()} ({spec.params_text()}), got {len(args)}",
                name_tok,
            )
        return Call(name, tuple(args), name_tok.line)

    def list_expr(self) -> ListExpr:
        opened = self.advance()
        self.nest(opened)
        items: list[Expr] = []
        if not self.is_op("]"):
            while True:
                if self.is_op(",") or self.is_op("]"):
                    raise self.error(f"expected a list item, found {_describe(self.peek())}")
                items.append(self.expr())
                if self.is_op(","):
                    self.advance()
                    continue
                break
        self.expect_op("]", "to close the list", opened)
        self.depth -= 1
        return ListExpr(tuple(items), opened.line)

    def dict_expr(self) -> DictExpr:
        opened = self.advance()
        self.nest(opened)
        items: list[tuple[str, Expr]] = []
        if not self.is_op("}"):
            while True:
                key = self.peek()
                if key.kind != "string":
                    raise self.error(f"expected a dict key (a quoted string), found "
                                     f"{_describe(key)}", key)
                self.advance()
                self.expect_op(":", f"after the dict key {key.text}")
                if self.is_op(",") or self.is_op("}"):
                    raise self.error(f"expected a value for the dict key {key.text}, found "
                                     f"{_describe(self.peek())}")
                items.append((key.value, self.expr()))
                if self.is_op(","):
                    self.advance()
                    continue
                break
        self.expect_op("}", "to close the dict", opened)
        self.depth -= 1
        return DictExpr(tuple(items), opened.line)


def parse(
    lines: Sequence[str],
    *,
    max_nesting: int = DEFAULT_MAX_NESTING,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Program:
    """Parse the request's query lines into a :class:`Program`; QueryError if invalid."""
    if isinstance(lines, str):
        raise TypeError("parse() takes the list of query lines, not one string")
    for i, line in enumerate(lines):
        if not isinstance(line, str):
            raise QueryError(f"each query line must be a string, got {type(line).__name__}",
                             i + 1)
    text = "\n".join(lines)
    if len(text) > max_chars:
        raise QueryError(f"query too long ({len(text)} characters, at most {max_chars})")
    line_map = _Lines(lines)
    toks = tokenize(text, line_map)
    stmts = _Parser(toks, max_nesting).program()
    return Program(stmts, line_map.count)
