"""The tokenizer and parser: what they accept (AW's syntax, both servers) and
the errors they give, with the line (entry of the request's list) they point at."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worklens.query2 import QueryError, parse, run_query
from worklens.query2.parser import Assign, Call, DictExpr, If, ListExpr, Literal, Var

from .helpers import DAY, MemorySource


def run(*lines: str) -> object:
    return run_query(list(lines), [DAY], MemorySource({}))[0]


def error(*lines: str) -> QueryError:
    with pytest.raises(QueryError) as info:
        run(*lines)
    return info.value


# --- what parses -------------------------------------------------------------------------


def test_ast_shape() -> None:
    prog = parse(['events = flood(query_bucket("b"), 3);', "RETURN = {'n': [1, 2.5, true]};"])
    a, b = prog.statements
    assert isinstance(a, Assign) and a.name == "events" and a.line == 1
    assert isinstance(a.value, Call) and a.value.name == "flood" and len(a.value.args) == 2
    assert isinstance(b, Assign) and b.name == "RETURN" and b.line == 2
    assert isinstance(b.value, DictExpr)
    key, lst = b.value.items[0]
    assert key == "n" and isinstance(lst, ListExpr)
    assert [x.value for x in lst.items if isinstance(x, Literal)] == [1, 2.5, True]


def test_literals_and_keywords() -> None:
    # aw-core: true/false/True/False; aw-server-rust adds numbers with decimals.
    assert run("RETURN = [true, True, false, False, none, None, null, 0, 42, 1.5, 2.]") == [
        True, True, False, False, None, None, None, 0, 42, 1.5, 2.0]
    assert run("RETURN = {}") == {}
    assert run("RETURN = []") == []


def test_strings_aw_escapes() -> None:
    # aw-core test_query2_test_token_parsing / test_dict / test_list: quotes of
    # either kind, a backslash escapes the quote character...
    assert run("RETURN = 'te\\'st'") == "te'st"
    assert run('RETURN = "te\\"st"') == 'te"st'
    assert run("RETURN = ['\\'',\"\\\"\"]") == ["'", '"']
    assert run("RETURN = {'a': {'a': {'a': 1}}, 'b': {'b\\'\"': ':'}}") == {
        "a": {"a": {"a": 1}}, "b": {"b'\"": ":"}}
    # ... and every other backslash is kept, so web-UI regexes pass unchanged;
    # a doubled backslash before the closing quote no longer swallows it.
    assert run(r'RETURN = "\w+ \\ C:\\Users"') == r"\w+ \\ C:\\Users"
    assert run(r'RETURN = ["a\\", "b"]') == ["a\\\\", "b"]
    # the other quote needs no escape; an escaped other quote stays escaped (aw-core)
    assert run("RETURN = \"it's\"") == "it's"
    assert run("RETURN = '\\\"'") == '\\"'


def test_semicolons_newlines_and_comments_in_and_around_strings() -> None:
    # aw-core test_query2_semicolon_in_string, test_query2_multiline; '#' comments
    # are aw-server-rust's.
    assert run("RETURN = 'hello;world'") == "hello;world"
    assert run('a = "foo;bar"; RETURN = a') == "foo;bar"
    assert run('my = "a', 'b";', "RETURN = my;") == "a\nb"
    assert run("a = 1; # a comment; with = signs", "RETURN = a # trailing") == 1
    assert run("RETURN = '# not a comment'") == "# not a comment"


def test_statement_separators() -> None:
    # ';' between statements; optional after the last (aw-core) and empty
    # statements are fine; several statements may share a line.
    assert run("a = 1;;; b = 2; RETURN = a + b") == 3
    assert run("a = 1;", "", "RETURN = a;", "") == 1


def test_if_elif_else_and_return_keyword() -> None:
    # aw-server-rust: if/elif/else blocks with '==' conditions; 'return x;'
    # sets RETURN (and, as there, does not stop the query).
    prog = parse(["if 1 == 1 { a = 1; } elif 2 == 2 { a = 2; } else { a = 3; }", "return a;"])
    assert isinstance(prog.statements[0], If) and len(prog.statements[0].branches) == 2
    for x, want in ((1, "one"), (2, "two"), (3, "other")):
        assert run(f"x = {x};", "if x == 1 { r = 'one'; } elif x == 2 { r = 'two'; }",
                   "else { r = 'other' }", "RETURN = r;") == want
    assert run("return 1;", "RETURN = 2;") == 2


def test_operators_precedence() -> None:
    # aw-server-rust has + - * / % ==; we use the usual precedence (aw-server-rust
    # evaluates them left to right at one level, so 1 + 2 * 3 would be 9 there).
    assert run("RETURN = [1 + 2 * 3, (1 + 2) * 3, 7 % 4, 7 / 2, -2 - -3, 1 == 1.0]") == [
        7, 9, 3, 3.5, 1, True]
    assert run("RETURN = 'a' + 'b' + \"c\"") == "abc"
    assert run("RETURN = [1] + [2, 3]") == [1, 2, 3]
    assert run("RETURN = none == none") is True


@given(st.text(alphabet=st.characters(blacklist_characters="\\", codec="utf-8"), max_size=40),
       st.sampled_from(['"', "'"]))
def test_string_literal_round_trip(s: str, quote: str) -> None:
    literal = quote + s.replace(quote, "\\" + quote) + quote
    assert run(f"RETURN = {literal};") == s


# --- errors and their lines ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        # aw-core test_query2_bogus_query, one by one
        (["a="], 1, "expected a value to assign to 'a'"),
        (["1 = 2"], 1, "expected a statement such as 'name = value;', found number 1"),
        (["a = unclosed_function(var1"], 1, "unknown function 'unclosed_function'"),
        (["a = flood(var1"], 1, "expected ')' to close the call to 'flood'"),
        (["asd nop() = 2"], 1, "expected '=' after 'asd', found name 'nop'"),
        (['asd = "something is wrong with me'], 1, "unterminated string"),
        (["asd = asd1 asd2"], 1, "expected ';' after the value assigned to 'asd'"),
        # aw-core test_dict / test_list invalid cases
        (["RETURN = {b: 1}"], 1, "expected a dict key (a quoted string), found name 'b'"),
        (["RETURN = {'test': }"], 1, "expected a value for the dict key 'test'"),
        (["RETURN = {'test'p 1}"], 1, "expected ':' after the dict key 'test'"),
        (["RETURN = {'test': #}"], 1, "expected a value, found the end of the query"),
        (["RETURN = {:}"], 1, "expected a dict key"),
        (["RETURN = {'test':1,}"], 1, "expected a dict key (a quoted string), found '}'"),
        (["RETURN = [,]"], 1, "expected a list item, found ','"),
        (["RETURN = [1,]"], 1, "expected a list item, found ']'"),
        (["RETURN = [,2]"], 1, "expected a list item"),
        (["RETURN = #"], 1, "expected a value to assign to 'RETURN', found the end"),
        # lines point at the right entry
        (["a = 1;", "b = fliter_keyvals(a, 'k', []);"], 2,
         "unknown function 'fliter_keyvals' (did you mean 'filter_keyvals'?)"),
        (["events = [];", "events = flood(events;", "RETURN = events;"], 2,
         "expected ')' to close the call to 'flood', found ';'"),
        (["events = [];", "x = merge_events_by_keys(", "  events,", "  ['app'];"], 4,
         "expected ')' to close the call to 'merge_events_by_keys' (opened on line 2)"),
        (["a = 1", "RETURN = a;"], 1,
         "expected ';' after the value assigned to 'a', found name 'RETURN' on line 2"),
        (["a = 1;", "b = [1, 2", "RETURN = a;"], 3, "expected ']' to close the list"),
        (["a = 1;", "RETURN = a @ 2;"], 2, "unexpected character '@'"),
        (["RETURN = 12abc"], 1, "invalid number '12abc'"),
        (["a = 1;", "RETURN = flood();"], 2,
         "flood() takes 1 to 2 arguments (events, pulsetime?), got 0"),
        (["RETURN = sort_by_duration([], [])"], 1, "sort_by_duration() takes 1 argument"),
        (["TIMEINTERVAL = 'x';"], 1, "'TIMEINTERVAL' is predefined and cannot be assigned"),
        (["true = 1;"], 1, "cannot assign to keyword 'true'"),
        (["x = 1;", "flood(x);"], 2, "the result of 'flood(...)' must be assigned"),
        (["nop();"], 1, "unknown function 'nop'"),
        (["else { a = 1; }"], 1, "'else' without a preceding 'if' block"),
        (["if true { a = 1;", "RETURN = 1;"], 2, "expected '}' to close the 'if' block"),
        (["x = if;"], 1, "unexpected keyword 'if' where a value was expected"),
        (["RETURN = 1 +;"], 1, "expected a value after '+'"),
        (["x = __import__('os');"], 1, "unknown function '__import__'"),
        (["x = 'a';", "RETURN = é;"], 2, "invalid name 'é'"),
    ],
)
def test_parse_errors(lines: list[str], line: int, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse(lines)
    assert info.value.line == line
    assert message in info.value.message
    assert str(info.value).startswith(f"line {line}: ")


def test_nesting_and_size_limits() -> None:
    deep = "RETURN = " + "[" * 200 + "]" * 200 + ";"
    with pytest.raises(QueryError, match="nested too deeply"):
        parse([deep])
    with pytest.raises(QueryError, match="nested too deeply"):
        parse(["RETURN = " + "-" * 200 + "1;"])
    with pytest.raises(QueryError, match="expression too long"):
        parse(["RETURN = " + " + ".join(["1"] * 500) + ";"])
    with pytest.raises(QueryError, match="query too long"):
        parse(["RETURN = 1;"] * 10, max_chars=50)
    assert parse(["RETURN = " + "[" * 60 + "]" * 60 + ";"])  # within the limit


def test_lines_must_be_strings() -> None:
    with pytest.raises(QueryError, match="must be a string") as info:
        parse(["a = 1;", 5])  # type: ignore[list-item]
    assert info.value.line == 2
    with pytest.raises(TypeError):
        parse("RETURN = 1;")


def test_variables_are_vars() -> None:
    prog = parse(["a = b;"])
    stmt = prog.statements[0]
    assert isinstance(stmt, Assign) and isinstance(stmt.value, Var) and stmt.value.name == "b"
