"""Pydantic validation errors rendered as one line that names the field: ``devices[2].gflops: must be > 0``.

Example::

    >>> from pydantic import BaseModel, ValidationError
    >>> class M(BaseModel):
    ...     gflops: float
    >>> try:
    ...     M.model_validate({"gflops": "fast"})
    ... except ValidationError as exc:
    ...     print(format_validation_error(exc))
    gflops: input should be a valid number, without a unit (the unit is in the key's name) (got 'fast')
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def _loc(parts: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as ``devices[2].gflops``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _kind(value: Any) -> str:
    """How a YAML value reads to its author, for type errors: ``a string ('lenet5')``, ``null``."""
    if value is None:
        return "null"
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list", dict: "a mapping"}
    kind = names.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if isinstance(value, (str, int, float)) and len(repr(value)) <= 40 else kind


def _message(error: ErrorDetails) -> str:
    """One short phrase for one pydantic error."""
    kind = error["type"]
    ctx = {k: (f"{v:g}" if isinstance(v, float) else v) for k, v in error.get("ctx", {}).items()}
    phrases = {
        "missing": "required field is missing",
        "extra_forbidden": "unknown key; check the spelling against `dsim schema`",
        "greater_than": f"must be > {ctx.get('gt')}",
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "less_than": f"must be < {ctx.get('lt')}",
        "less_than_equal": f"must be <= {ctx.get('le')}",
        "literal_error": f"must be one of {ctx.get('expected')}",
        "too_short": "must not be empty",
        "string_too_short": "must not be empty",
        "too_long": "is not supported yet; leave it empty",
        "string_pattern_mismatch": "must start with a letter or digit and use only letters, digits, . _ -",
        "model_type": f"must be a mapping of keys (key: value), not {_kind(error.get('input'))}",
        "dict_type": f"must be a mapping (key: value), not {_kind(error.get('input'))}",
        "list_type": f"must be a list (one '- ' entry per item), not {_kind(error.get('input'))}",
        "tuple_type": f"must be a list like [1, 32, 32], not {_kind(error.get('input'))}",
        "float_parsing": "input should be a valid number, without a unit (the unit is in the key's name)",
        "float_type": "must be a number",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "int_type": "must be a whole number",
        "string_type": "must be a string",
        "bool_parsing": "must be true or false",
    }
    if kind in phrases:
        return phrases[kind]
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"][0].lower() + error["msg"][1:]


def format_validation_error(exc: ValidationError) -> str:
    """The first error as ``field: problem``, counting the rest."""
    errors = exc.errors()
    first = errors[0]
    loc = _loc(tuple(p for p in first["loc"]))
    text = _message(first)
    if first["type"] == "value_error" and not loc:
        line = text  # model-level checks already name their field
    else:
        line = f"{loc}: {text}" if loc else text
    got = (
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "literal_error",
        "int_type",
        "float_type",
        "int_parsing",
        "float_parsing",
        "int_from_float",
        "string_type",
    )
    if first["type"] in got and "input" in first:
        line += f" (got {first['input']!r})"
    if len(errors) > 1:
        line += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return line
