"""SOQL errors in the shape Salesforce reports them, so clients see the same text against the local org."""

from __future__ import annotations

from dataclasses import dataclass

MALFORMED_QUERY = "MALFORMED_QUERY"
INVALID_FIELD = "INVALID_FIELD"
INVALID_TYPE = "INVALID_TYPE"
INVALID_QUERY_FILTER_OPERATOR = "INVALID_QUERY_FILTER_OPERATOR"


@dataclass(frozen=True)
class Pos:
    """A 1-based row and column in the query text, as lark reports them and Salesforce prints them."""

    line: int
    column: int


class SoqlError(Exception):
    """A query Salesforce would refuse; `error_code` and `message` go to the client unchanged."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message

    def __str__(self) -> str:
        return self.message


def positioned(error_code: str, text: str, pos: Pos, reason: str) -> SoqlError:
    """Salesforce echoes the query up to the offending row, puts a caret under the column, then the reason.

    Only the rows up to the error are echoed so that the caret line sits right under the row it points into.
    """
    rows = text.split("\n")[: max(pos.line, 1)]
    caret = " " * max(pos.column - 1, 0) + "^"
    echo = "\n".join(rows)
    return SoqlError(error_code, f"\n{echo}\n{caret}\nERROR at Row:{pos.line}:Column:{pos.column}\n{reason}")


def no_such_column(text: str, pos: Pos, name: str, entity: str) -> SoqlError:
    return positioned(
        INVALID_FIELD,
        text,
        pos,
        f"No such column '{name}' on entity '{entity}'. If you are attempting to use a custom field, be sure "
        "to append the '__c' after the custom field name. Please reference your WSDL or the describe call for "
        "the appropriate names.",
    )


def unknown_relationship(text: str, pos: Pos, name: str) -> SoqlError:
    return positioned(
        INVALID_FIELD,
        text,
        pos,
        f"Didn't understand relationship '{name}' in field path. If you are attempting to use a custom "
        "relationship, be sure to append the '__r' after the custom relationship name. Please reference your "
        "WSDL or the describe call for the appropriate names.",
    )


def unknown_sobject(text: str, pos: Pos, name: str) -> SoqlError:
    return positioned(
        INVALID_TYPE,
        text,
        pos,
        f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to "
        "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
        "appropriate names.",
    )


def malformed(text: str, pos: Pos, reason: str) -> SoqlError:
    return positioned(MALFORMED_QUERY, text, pos, reason)
