"""The ``--where`` clause of ``segspark export``: a user's text, validated and rendered again, never pasted.

:func:`validate_where` tokenises the clause and accepts only the table's column names, literals (strings,
numbers, ``DATE``/``TIMESTAMP``, ``TRUE``/``FALSE``/``NULL``), comparisons, arithmetic, ``AND``/``OR``/``NOT``,
``IN (...)``, ``BETWEEN``, ``IS [NOT] NULL`` and ``[NOT] LIKE``. Anything else (a semicolon, a comment, a
function call, a subquery, an unknown column) is a usage error naming the token and its place. The accepted
tokens are rendered again: columns backquoted in the table's spelling, keywords upper-case, string literals
re-escaped, tokens separated by spaces.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from segspark.errors import ConfigError

__all__ = ["validate_where", "where_error"]

#: Keywords the clause may use (case-insensitive), rendered upper-case.
_KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL", "LIKE", "TRUE", "FALSE"})
#: Words that start a query: a subquery, never a column.
_QUERY_WORDS = frozenset({"SELECT", "FROM", "WITH", "VALUES", "TABLE", "UNION", "EXCEPT", "INTERSECT", "EXISTS"})
#: Other SQL words that are not allowed; named as such rather than reported as unknown columns.
_SQL_WORDS = frozenset(
    {
        "ALL", "ANY", "AS", "CASE", "CAST", "DELETE", "DISTINCT", "DIV", "DROP", "ELSE", "END", "ESCAPE",
        "ILIKE", "INSERT", "INTERVAL", "JOIN", "LIMIT", "MERGE", "ORDER", "REGEXP", "RLIKE", "SOME", "THEN",
        "UPDATE", "WHEN", "WHERE", "XOR",
    }
)  # fmt: skip
#: Operators, longest first so that ``<=`` is not read as ``<`` then ``=``.
_OPERATORS = ("==", "!=", "<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?")


@dataclass(frozen=True)
class _Token:
    #: ident, string, number, typed (a DATE/TIMESTAMP literal), keyword, op, lparen, rparen or comma.
    kind: str
    #: The token as it is rendered for Spark.
    sql: str
    #: 1-based character position in the user's text.
    pos: int
    #: The token as the user wrote it (for messages).
    raw: str


#: Tokens that end an operand, and tokens that start one: two in a row lack an operator between them.
_ENDS_OPERAND = {"ident", "string", "number", "typed", "rparen"}
_STARTS_OPERAND = {"ident", "string", "number", "typed", "lparen"}
_LITERAL_KEYWORDS = {"TRUE", "FALSE", "NULL"}


def where_error(message: str) -> ConfigError:
    """The usage error for a ``--where`` clause segspark will not run, its message prefixed with ``--where:``."""
    # segspark.errors has no usage-error class of its own; ConfigError is the one the CLI maps to exit 2.
    return ConfigError(f"--where: {message}")


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _quote_string(value: str) -> str:
    """A Spark SQL string literal holding exactly ``value``.

    Spark (with ``spark.sql.parser.escapedStringLiterals`` false, its default) reads backslash escapes inside
    literals, so backslashes and quotes are escaped with one. A doubled quote is not used: Spark 3.5 reads
    ``'it''s'`` as the two adjacent literals ``'it'`` and ``'s'``, that is ``its``.
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _resolve_column(name: str, columns: Sequence[str], pos: int, raw: str) -> str:
    if name in columns:
        return name
    matches = [c for c in columns if c.casefold() == name.casefold()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise where_error(f"column {raw} at character {pos} is ambiguous: it could be {', '.join(matches)}")
    raise where_error(f"unknown column {raw} at character {pos}; columns are {', '.join(columns)}")


def _next_char(text: str, index: int) -> str:
    """The first character at or after ``index`` that is not white space ('' at the end)."""
    rest = text[index:].lstrip()
    return rest[:1]


def _read_quoted(text: str, start: int, quote: str, what: str) -> tuple[str, int]:
    """The content of the ``quote``-delimited token at ``start`` (a doubled quote stands for one) and the index
    after it."""
    parts = []
    i = start + 1
    while True:
        end = text.find(quote, i)
        if end < 0:
            raise where_error(f"unterminated {what} starting at character {start + 1}")
        parts.append(text[i:end])
        if text.startswith(quote * 2, end):
            parts.append(quote)
            i = end + 2
            continue
        return "".join(parts), end + 1


def _typed_literal(keyword: str, value: str, pos: int) -> str:
    """``DATE '...'`` or ``TIMESTAMP '...'`` once the value is checked to be one."""
    try:
        if keyword == "DATE":
            if not _DATE.fullmatch(value):
                raise ValueError
            dt.date.fromisoformat(value)
        else:
            if not _TIMESTAMP.fullmatch(value):
                raise ValueError
            dt.datetime.fromisoformat(value)
    except ValueError:
        shape = "yyyy-mm-dd" if keyword == "DATE" else "yyyy-mm-dd[ hh:mm[:ss[.ffffff]]]"
        raise where_error(f"{keyword} '{value}' at character {pos} is not a {keyword.lower()} {shape}") from None
    return f"{keyword} '{value}'"


def _scan(text: str, columns: Sequence[str]) -> list[_Token]:
    """The clause's tokens; a character, word or literal outside the accepted language is an error."""
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        pos = i + 1
        if ch.isspace():
            i += 1
            continue
        if text.startswith("--", i) or text.startswith("/*", i):
            raise where_error(f"'{text[i : i + 2]}' (a comment) is not allowed at character {pos}")
        if ch == "'":
            value, end = _read_quoted(text, i, "'", "string")
            tokens.append(_Token("string", _quote_string(value), pos, text[i:end]))
            i = end
            continue
        if ch == "`":
            name, end = _read_quoted(text, i, "`", "quoted column name")
            raw = text[i:end]
            if _next_char(text, end) == "(":
                raise where_error(f"function calls are not allowed: '{raw}(' at character {pos}")
            column = _resolve_column(name, columns, pos, f"'{raw}'")
            tokens.append(_Token("ident", _quote_identifier(column), pos, raw))
            i = end
            continue
        number = _NUMBER.match(text, i)
        if number and (ch.isdigit() or ch == "."):
            end = number.end()
            if end < len(text) and (text[end].isalnum() or text[end] in "_.`'"):
                tail = _WORD.match(text, end)
                bad = text[i : tail.end() if tail else end + 1]
                raise where_error(f"'{bad}' at character {pos} is neither a number nor a column name")
            tokens.append(_Token("number", number.group(), pos, number.group()))
            i = end
            continue
        word = _WORD.match(text, i)
        if word:
            raw = word.group()
            upper = raw.upper()
            end = word.end()
            if upper in _KEYWORDS:
                tokens.append(_Token("keyword", upper, pos, raw))
            elif upper in ("DATE", "TIMESTAMP") and _next_char(text, end) == "'":
                start = len(text) - len(text[end:].lstrip())
                value, end = _read_quoted(text, start, "'", "string")
                tokens.append(_Token("typed", _typed_literal(upper, value, pos), pos, text[i:end]))
            elif _next_char(text, end) == "(":
                raise where_error(f"function calls are not allowed: '{raw}(' at character {pos}")
            elif upper in _QUERY_WORDS:
                raise where_error(f"'{raw}' is not allowed at character {pos}: subqueries are not allowed")
            elif upper in _SQL_WORDS:
                raise where_error(f"'{raw}' is not allowed at character {pos}")
            else:
                column = _resolve_column(raw, columns, pos, f"'{raw}'")
                tokens.append(_Token("ident", _quote_identifier(column), pos, raw))
            i = end
            continue
        operator = next((op for op in _OPERATORS if text.startswith(op, i)), None)
        if operator:
            tokens.append(_Token("op", operator, pos, operator))
            i += len(operator)
            continue
        if ch in "(),":
            kind = {"(": "lparen", ")": "rparen", ",": "comma"}[ch]
            tokens.append(_Token(kind, ch, pos, ch))
            i += 1
            continue
        hint = "; quote text with single quotes" if ch == '"' else ""
        raise where_error(f"'{ch}' is not allowed at character {pos}{hint}")
    return tokens


def _ends_operand(token: _Token) -> bool:
    return token.kind in _ENDS_OPERAND or (token.kind == "keyword" and token.sql in _LITERAL_KEYWORDS)


def _starts_operand(token: _Token) -> bool:
    return token.kind in _STARTS_OPERAND or (token.kind == "keyword" and token.sql in _LITERAL_KEYWORDS)


def _check_structure(tokens: list[_Token]) -> None:
    """Parentheses balance, commas only in IN lists, IN and IS followed by what they need, no missing operator.

    Spark's own parser checks the rest of the grammar (``a = = 1``); :func:`run_export` turns its error into
    the same usage error.
    """
    open_parens: list[tuple[str, int]] = []  # ("in" | "group", position)
    previous: _Token | None = None
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if previous is not None and _ends_operand(previous) and _starts_operand(token):
            raise where_error(f"an operator is missing before '{token.raw}' at character {token.pos}")
        if token.kind == "lparen":
            in_list = previous is not None and previous.kind == "keyword" and previous.sql == "IN"
            open_parens.append(("in" if in_list else "group", token.pos))
            if following is not None and following.kind == "rparen":
                raise where_error(f"empty parentheses at character {token.pos}")
        elif token.kind == "rparen":
            if not open_parens:
                raise where_error(f"')' at character {token.pos} has no matching '('")
            open_parens.pop()
        elif token.kind == "comma":
            if not open_parens or open_parens[-1][0] != "in":
                raise where_error(
                    f"',' is not allowed at character {token.pos}: commas only separate the values of IN (...)"
                )
        elif token.kind == "keyword" and token.sql == "IN":
            if following is None or following.kind != "lparen":
                raise where_error(f"IN at character {token.pos} must be followed by a list such as ('a', 'b')")
        elif token.kind == "keyword" and token.sql == "IS":
            after = [t.sql for t in tokens[index + 1 : index + 3]]
            if after[:1] != ["NULL"] and after != ["NOT", "NULL"]:
                raise where_error(f"IS at character {token.pos} must be followed by NULL or NOT NULL")
        previous = token
    if open_parens:
        raise where_error(f"'(' at character {open_parens[-1][1]} is never closed")
    last = tokens[-1]
    if not _ends_operand(last):
        raise where_error(f"the clause ends after '{last.raw}' at character {last.pos}: a value is missing")


def _render(tokens: list[_Token]) -> str:
    # Operators always stand apart: a unary minus glued to another ("- -3" as "--3") would start a comment.
    parts: list[str] = []
    for index, token in enumerate(tokens):
        glued = index == 0 or token.kind in ("rparen", "comma") or tokens[index - 1].kind == "lparen"
        parts.append(token.sql if glued else " " + token.sql)
    return "".join(parts)


def validate_where(text: str, columns: Sequence[str]) -> str:
    """Check a ``--where`` clause against a table's columns and return it as Spark SQL.

    Pure Python, no Spark. Accepted: the table's column names (any case, or backquoted), string literals in
    single quotes (``''`` inside stands for one quote; a backslash is an ordinary character), numbers,
    ``DATE 'yyyy-mm-dd'`` and ``TIMESTAMP 'yyyy-mm-dd hh:mm:ss'`` literals, TRUE, FALSE, NULL, the comparisons
    ``= == != <> < <= > >=``, ``+ - * /``, AND, OR, NOT, ``IN (...)``, ``BETWEEN ... AND ...``,
    ``IS [NOT] NULL``, ``[NOT] LIKE`` and parentheses.

    Parameters
    ----------
    text : the clause as the user typed it.
    columns : the table's column names; a column in the clause is matched case-insensitively.

    Returns
    -------
    str
        The clause rendered again from its tokens: columns backquoted in the table's spelling, keywords upper
        case, string literals escaped for Spark's parser.

    Raises
    ------
    ConfigError
        (exit 2) naming the offending token and its 1-based character position: an unknown column, a ``;``,
        a comment, a function call, a subquery, unbalanced parentheses, an unterminated string, empty text.
    """
    if not text or not text.strip():
        raise where_error('the clause is empty; give a condition such as "segment_id = 3"')
    tokens = _scan(text, list(columns))
    _check_structure(tokens)
    return _render(tokens)
