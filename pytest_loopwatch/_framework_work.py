"""The app line behind work a framework does on the loop outside the endpoint: the
endpoint's `return` for serialising what it returned, the endpoint's definition (and its
body model) for parsing and validating the request body before it runs.

Such a stall's sampled stack holds no app frame at all (the endpoint has returned, or has
not begun), so the line is found off the loop, in the endpoint's source.
"""

from __future__ import annotations

import ast
import fnmatch
import inspect
import linecache
import re
import typing
from typing import Any

from ._records import Frame, SampledStack


def _any_of(*patterns: str) -> re.Pattern[str]:
    """`module:qualname` matching any of the fnmatch `patterns`."""
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns))


_SERIALISING = _any_of(
    "fastapi.routing:serialize_response",
    "fastapi.routing:_prepare_response_content",
    "fastapi.encoders:*",
    "starlette.responses:*",
    "litestar.response*:*",
    "litestar.serialization*:*",
)
_PARSING = _any_of(
    "fastapi.dependencies.utils:*",
    "starlette.requests:*",
    "starlette.formparsers:*",
    "multipart*:*",
    "python_multipart*:*",
    "litestar._kwargs*:*",
    "litestar.connection*:*",
)


def framework_work(stack: SampledStack) -> str | None:
    """`serialising` or `parsing`, by the innermost framework frame that says which."""
    for _, _, qualname, module, _ in reversed(stack):
        name = f"{module}:{qualname}"
        if _SERIALISING.match(name):
            return "serialising"
        if _PARSING.match(name):
            return "parsing"
    return None


def _definition(function: Any) -> tuple[str, ast.FunctionDef | ast.AsyncFunctionDef] | None:
    code = getattr(function, "__code__", None)
    if code is None:
        return None
    source = "".join(linecache.getlines(code.co_filename))
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == code.co_name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if first == code.co_firstlineno:
                return code.co_filename, node
    return None


def _returns(node: ast.AST) -> list[ast.Return]:
    """The function's own `return`s, not those of functions nested in it."""
    found: list[ast.Return] = []
    pending = list(ast.iter_child_nodes(node))
    while pending:
        child = pending.pop()
        if isinstance(child, ast.Return) and child.value is not None:
            found.append(child)
        elif not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(ast.iter_child_nodes(child))
    return sorted(found, key=lambda returned: returned.lineno)


def _frame(file: str, line: int, function: str) -> Frame:
    return Frame(file, line, function, linecache.getline(file, line).strip(), True)


def app_line_for(work: str, endpoint: Any) -> Frame | None:
    """The endpoint's last `return` for `serialising`, its `def` line for `parsing`."""
    target = inspect.unwrap(endpoint) if callable(endpoint) else endpoint
    found = _definition(target)
    if found is None:
        return None
    file, node = found
    function = getattr(target, "__qualname__", node.name)
    if work == "serialising":
        returns = _returns(node)
        if returns:
            return _frame(file, returns[-1].lineno, function)
    return _frame(file, node.lineno, function)


def body_models(endpoint: Any) -> list[str]:
    """The classes the endpoint takes that are models (pydantic's, dataclasses, msgspec's):
    what the body is parsed into and validated as."""
    target = inspect.unwrap(endpoint) if callable(endpoint) else endpoint
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: no names
        return []
    return [
        hint.__qualname__
        for name, hint in hints.items()
        if name != "return"
        and isinstance(hint, type)
        and any(
            hasattr(hint, marker)
            for marker in ("model_fields", "__dataclass_fields__", "__struct_fields__")
        )
    ]
