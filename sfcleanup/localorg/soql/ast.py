"""The parsed query: plain frozen dataclasses, independent of lark and of the schema.

Every node that can be the subject of an error keeps the position of its first token.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal as TypingLiteral

from sfcleanup.localorg.soql.errors import Pos


@dataclass(frozen=True)
class Path:
    """A field path as written: `Name`, `blng__Invoice__r.blng__Account__r.Name`."""

    segments: tuple[str, ...]
    pos: Pos

    @property
    def text(self) -> str:
        return ".".join(self.segments)


class LiteralKind(Enum):
    STRING = "string"
    NUMBER = "number"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    NULL = "null"
    RELATIVE_DATE = "relative date"


@dataclass(frozen=True)
class RelativeDate:
    """A date literal such as LAST_N_DAYS:7, as the half-open day range [today + start, today + end)."""

    start_days: int
    end_days: int


@dataclass(frozen=True)
class Literal:
    """`value` is decoded: str, int/float, bool, None, or a RelativeDate; dates and datetimes are already in
    the store's text form. `raw` is the token as written, which a LIKE pattern decodes again its own way."""

    kind: LiteralKind
    value: str | int | float | bool | RelativeDate | None
    raw: str
    pos: Pos


Operator = TypingLiteral["=", "!=", "<", ">", "<=", ">=", "LIKE", "IN", "NOT IN"]


@dataclass(frozen=True)
class Comparison:
    path: Path
    op: Operator
    values: tuple[Literal, ...]  # one value, except for IN / NOT IN


@dataclass(frozen=True)
class Not:
    operand: Condition


@dataclass(frozen=True)
class And:
    operands: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Condition, ...]


Condition = Comparison | Not | And | Or

AggregateFunction = TypingLiteral["COUNT", "COUNT_DISTINCT"]


@dataclass(frozen=True)
class Aggregate:
    function: AggregateFunction
    path: Path
    pos: Pos


@dataclass(frozen=True)
class SelectField:
    path: Path


@dataclass(frozen=True)
class SelectAggregate:
    aggregate: Aggregate
    alias: str | None


@dataclass(frozen=True)
class SelectCount:
    """`COUNT()`: the number of matching rows, not an aggregate result."""

    pos: Pos


SelectItem = SelectField | SelectAggregate | SelectCount


@dataclass(frozen=True)
class OrderItem:
    target: Path | Aggregate
    descending: bool
    nulls_first: bool  # SOQL's default: nulls first ascending, last descending


@dataclass(frozen=True)
class Query:
    text: str
    select: tuple[SelectItem, ...]
    sobject: str
    sobject_pos: Pos
    where: Condition | None
    group_by: tuple[Path, ...]
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None
