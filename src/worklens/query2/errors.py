"""The one exception every query2 failure is reported with."""

from __future__ import annotations


class QueryError(Exception):
    """A query that cannot be parsed or evaluated.

    ``line`` is 1-based and counts the entries of the request's ``query`` list
    (an entry may itself span several text lines; it is still one line here).
    It is ``None`` only for errors that belong to no line, such as a malformed
    time period. ``str(error)`` is ``"line N: message"`` (or just the message).
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)
