"""Text -> ast.Query: lark's LALR parser, then a walk of its tree into the dataclasses of `ast`.

Syntax errors become MALFORMED_QUERY in Salesforce's shape, pointing at lark's offending token.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from sfcleanup.localorg.soql import ast, literals
from sfcleanup.localorg.soql.errors import Pos, malformed
from sfcleanup.sftime import normalise_date, normalise_datetime

_COMPARATORS: dict[str, ast.Operator] = {
    "=": "=",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    ">": ">",
    "<=": "<=",
    ">=": ">=",
}
_LIST_OPERATORS: dict[str, ast.Operator] = {"like": "LIKE", "in_list": "IN", "not_in_list": "NOT IN"}


@cache
def _lark() -> Lark:
    grammar = files(__package__).joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual")


def parse(text: str) -> ast.Query:
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    return _Builder(text).query(tree)


def _syntax_error(text: str, exc: UnexpectedInput) -> Exception:
    line = max(exc.line, 1)
    column = max(exc.column, 1)
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        shown = "<EOF>" if token.type == "$END" else str(token)
    elif isinstance(exc, UnexpectedCharacters):
        index = exc.pos_in_stream if exc.pos_in_stream is not None else len(text)
        shown = text[index] if index < len(text) else "<EOF>"
    else:
        shown = "<EOF>"
    return malformed(text, Pos(line, column), f"unexpected token: '{shown}'")


def _pos(token: Token) -> Pos:
    return Pos(token.line or 1, token.column or 1)


def _tree(node: Tree[Token] | Token) -> Tree[Token]:
    assert isinstance(node, Tree), f"expected a subtree, got {node!r}"
    return node


def _token(node: Tree[Token] | Token) -> Token:
    assert isinstance(node, Token), f"expected a token, got {node!r}"
    return node


class _Builder:
    """Walks the tree lark produced for grammar.lark; node names are the grammar's rule aliases."""

    def __init__(self, text: str) -> None:
        self.text = text

    def query(self, tree: Tree[Token]) -> ast.Query:
        select_list, sobject, *clauses = tree.children
        name = _token(sobject)
        parts = {_tree(clause).data: _tree(clause) for clause in clauses}
        where = parts.get("where_clause")
        group = parts.get("group_clause")
        order = parts.get("order_clause")
        return ast.Query(
            text=self.text,
            select=tuple(self.select_item(_tree(item)) for item in _tree(select_list).children),
            sobject=str(name),
            sobject_pos=_pos(name),
            where=self.condition(_tree(where.children[0])) if where else None,
            group_by=tuple(self.path(_tree(p)) for p in group.children) if group else (),
            order_by=tuple(self.order_item(_tree(item)) for item in order.children) if order else (),
            limit=self.integer(parts.get("limit_clause")),
            offset=self.integer(parts.get("offset_clause")),
        )

    def integer(self, clause: Tree[Token] | None) -> int | None:
        return None if clause is None else int(_token(clause.children[0]))

    def path(self, tree: Tree[Token]) -> ast.Path:
        tokens = [_token(child) for child in tree.children]
        return ast.Path(tuple(str(t) for t in tokens), _pos(tokens[0]))

    def aggregate(self, tree: Tree[Token]) -> ast.Aggregate:
        function, path = tree.children
        keyword = _token(function)
        name: ast.AggregateFunction = "COUNT" if keyword.type == "COUNT" else "COUNT_DISTINCT"
        return ast.Aggregate(name, self.path(_tree(path)), _pos(keyword))

    def select_item(self, tree: Tree[Token]) -> ast.SelectItem:
        if tree.data == "select_field":
            return ast.SelectField(self.path(_tree(tree.children[0])))
        if tree.data == "select_count":
            return ast.SelectCount(_pos(_token(tree.children[0])))
        aggregate = self.aggregate(_tree(tree.children[0]))
        alias = str(_token(tree.children[1])) if len(tree.children) > 1 else None
        return ast.SelectAggregate(aggregate, alias)

    def order_item(self, tree: Tree[Token]) -> ast.OrderItem:
        target_tree = _tree(tree.children[0])
        target = self.path(target_tree) if target_tree.data == "path" else self.aggregate(target_tree)
        modifiers = {_token(child).type for child in tree.children[1:]}
        descending = "DESC" in modifiers
        if "FIRST" in modifiers:
            nulls_first = True
        elif "LAST" in modifiers:
            nulls_first = False
        else:
            nulls_first = not descending
        return ast.OrderItem(target, descending, nulls_first)

    def condition(self, tree: Tree[Token]) -> ast.Condition:
        kind = tree.data
        if kind == "and_chain":
            return ast.And(tuple(self.condition(_tree(child)) for child in tree.children))
        if kind == "or_chain":
            return ast.Or(tuple(self.condition(_tree(child)) for child in tree.children))
        if kind == "negation":
            return ast.Not(self.condition(_tree(tree.children[0])))
        path = self.path(_tree(tree.children[0]))
        if kind == "compare":
            op = _COMPARATORS[str(_token(tree.children[1]))]
            return ast.Comparison(path, op, (self.value(_tree(tree.children[2])),))
        values = tuple(self.value(_tree(child)) for child in tree.children[1:])
        return ast.Comparison(path, _LIST_OPERATORS[str(kind)], values)

    def value(self, tree: Tree[Token]) -> ast.Literal:
        child = tree.children[0]
        if isinstance(child, Tree):
            keyword, *count = (_token(c) for c in child.children)
            relative = literals.relative_date(str(keyword), int(count[0]) if count else None)
            raw = str(keyword) + (f":{count[0]}" if count else "")
            return ast.Literal(ast.LiteralKind.RELATIVE_DATE, relative, raw, _pos(keyword))
        token = _token(child)
        raw, pos = str(token), _pos(token)
        kind = token.type
        try:
            if kind == "STRING":
                return ast.Literal(ast.LiteralKind.STRING, literals.decode_string(raw[1:-1]), raw, pos)
            if kind == "NUMBER":
                number: int | float = float(raw) if "." in raw else int(raw)
                return ast.Literal(ast.LiteralKind.NUMBER, number, raw, pos)
            if kind == "DATE":
                return ast.Literal(ast.LiteralKind.DATE, normalise_date(raw), raw, pos)
            if kind == "DATETIME":
                return ast.Literal(ast.LiteralKind.DATETIME, normalise_datetime(raw), raw, pos)
        except literals.IllegalEscape as exc:
            raise malformed(
                self.text,
                pos,
                f"Invalid string literal {raw}. Illegal character sequence '{exc.sequence}' in string literal.",
            ) from None
        except ValueError:
            # The lexer checked the shape; only calendar-impossible values (2026-02-30) get here.
            raise malformed(self.text, pos, f"invalid date: '{raw}'") from None
        if kind == "NULL":
            return ast.Literal(ast.LiteralKind.NULL, None, raw, pos)
        return ast.Literal(ast.LiteralKind.BOOLEAN, kind == "TRUE", raw, pos)
