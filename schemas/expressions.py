"""Derived-feature expressions of a dataset profile: a small, safe arithmetic language.

A profile may define features computed row-wise from its typed fields, e.g.
``quantity * unit_price_usd`` or ``days_since_last_purchase / max(membership_years * 365.25, 1)``.
The grammar is Python's expression syntax restricted to:

- numbers, and names of the profile's fields (booleans count 0/1; a category counts as its
  ordinal ``levels`` value, NaN for a level the profile does not list);
- ``+``, ``-``, ``*``, ``/``, unary ``-`` and parentheses;
- ``max(a, b)`` and ``min(a, b)`` (element-wise).

Everything else (attributes, subscripts, other calls, comparisons) is rejected when the profile
is loaded, so a profile file can never run code. Division follows IEEE 754: ``0 / 0`` is NaN,
which the featuriser imputes with the training median.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
}
_FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {"max": np.maximum, "min": np.minimum}


class ExpressionError(ValueError):
    """An expression outside the allowed grammar, or naming an unknown field."""


def parse_expression(text: str) -> ast.expr:
    """Parse and check an expression against the grammar.

    Parameters
    ----------
    text : str

    Returns
    -------
    ast.expr
        The checked syntax tree.

    Raises
    ------
    ExpressionError
        On a syntax error or any construct outside the grammar.
    """
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"not an expression: {text!r} ({exc.msg})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            continue
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            continue
        if isinstance(node, ast.Call):
            if (
                isinstance(node.func, ast.Name)
                and node.func.id in _FUNCTIONS
                and len(node.args) == 2
                and not node.keywords
            ):
                continue
            raise ExpressionError(f"{text!r}: only max(a, b) and min(a, b) may be called")
        if isinstance(node, (ast.operator, ast.unaryop, ast.expr_context)):
            continue
        raise ExpressionError(f"{text!r}: {type(node).__name__} is not allowed (numbers, fields, + - * /, max, min)")
    return tree


def expression_names(text: str) -> set[str]:
    """Field names an expression reads (function names excluded)."""
    tree = parse_expression(text)
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls}


def evaluate(text: str, columns: Mapping[str, Any], levels: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Evaluate an expression row-wise.

    Parameters
    ----------
    text : str
        An expression of the grammar above.
    columns : mapping of str to array-like of shape (n_samples,)
        Typed field values (a frame or a dict of arrays).
    levels : mapping of str to mapping of str to float
        Ordinal levels of the category fields the expression may read.

    Returns
    -------
    ndarray of shape (n_samples,), float64
    """
    tree = parse_expression(text)

    def value(name: str) -> np.ndarray:
        if name in levels:
            raw = np.asarray(columns[name], dtype=object)
            out = np.full(raw.shape, np.nan)
            for level, number in levels[name].items():
                out[raw == level] = number
            return out
        return np.asarray(columns[name], dtype=np.float64)

    def walk(node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, (int, float))  # checked by parse_expression
            return float(node.value)
        if isinstance(node, ast.Name):
            return value(node.id)
        if isinstance(node, ast.UnaryOp):
            return np.negative(walk(node.operand))
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](walk(node.args[0]), walk(node.args[1]))

    with np.errstate(invalid="ignore", divide="ignore"):
        # Every expression reads at least one field (checked when the profile loads), so this is an array.
        return np.asarray(walk(tree), dtype=np.float64)
