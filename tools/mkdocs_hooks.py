"""mkdocs hooks: pages generated from the code at every build, so they never go stale.

``mkdocs.yml`` lists this file under ``hooks:``; ``make docs`` (``mkdocs build --strict``) runs it. It adds
three things to the site that are not files under ``docs/``:

* ``reference/scenario-keys.md``: every scenario key, from the JSON Schema that ``dsim schema`` prints
  (:func:`scenario_keys_page`);
* ``reference/cli.md``: every ``dsim`` sub-command's ``--help`` text (:func:`cli_page`);
* ``plots/...``: the committed figures of the repository's ``plots/`` folder, so pages can show them.
  A page links a figure by its path in the repository, relative to the page (``../plots/x.png`` from
  ``docs/energy.md``, ``../../plots/x.png`` from ``docs/how-to/sweeps.md``), which is right on a code
  host too; :func:`site_links` points such links at the site's copy.

It also shows the docstrings' Sphinx roles (``:func:`x` ``) as plain code, and strips the test tags (``slow``, ``not-run``, read by ``tests/test_readme.py``) from fenced blocks'
info strings before a page is rendered (:func:`untagged`), since the Markdown fences take a language only.

Run it alone to print the scenario-keys page: ``.venv/bin/python tools/mkdocs_hooks.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the hook imports this checkout's sim, whatever the working folder


def _schema() -> dict[str, Any]:
    """The JSON Schema of scenario files, exactly as ``dsim schema`` prints it."""
    from sim.config.schema import json_schema  # pydantic: only when a page is built

    return json.loads(json.dumps(json_schema()))


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The record schema ``node`` refers to (or ``None``) and the type text of ``node``."""
    if "$ref" in node:
        return defs[node["$ref"].rsplit("/", 1)[1]], "mapping"
    if node.get("type") == "array" and "$ref" in node.get("items", {}):
        return defs[node["items"]["$ref"].rsplit("/", 1)[1]], "list of mappings"
    if "anyOf" in node:
        record = None
        kinds = []
        for option in node["anyOf"]:
            sub, kind = _resolve(option, defs)
            record = record or sub
            kinds.append(kind)
        return record, " or ".join(dict.fromkeys(kinds))
    if "enum" in node:
        return None, ", ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "any")
    if kind == "array":
        kind = f"list of {_resolve(node.get('items', {}), defs)[1]}"
    return None, {"null": "null", "number": "number", "integer": "integer", "string": "string"}.get(kind, kind)


def _bounds(node: dict[str, Any]) -> str:
    """The range text of a number node (``>= 1e-06``, ``< 2**32``, ...), or of each option of an anyOf."""
    parts = []
    for option in [node, *node.get("anyOf", [])]:
        for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if key in option:
                value = option[key]
                parts.append(f"{sign} {value}" if isinstance(value, int) else f"{sign} {value:g}")
        for key, sign in (("minItems", "items >="), ("maxItems", "items <=")):
            if key in option:
                parts.append(f"{sign} {option[key]}")
    return ", ".join(dict.fromkeys(parts))


def _cell(text: str) -> str:
    """``text`` fit for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _rows(record: dict[str, Any], prefix: str, defs: dict[str, Any], out: list[list[str]]) -> None:
    """One table row per key of ``record``, then the rows of its nested records, keys prefixed."""
    required = set(record.get("required", ()))
    nested = []
    for key, node in record.get("properties", {}).items():
        sub, kind = _resolve(node, defs)
        default = "required" if key in required else json.dumps(node.get("default"))
        if sub is not None and key not in required and isinstance(node.get("default"), dict):
            default = "see below"
        shown_default = default if default in ("required", "see below") else f"`{default}`"
        cells = [f"`{prefix}{key}`", kind, shown_default, _bounds(node), node.get("description", "")]
        out.append([_cell(c) for c in cells])
        if sub is not None:
            nested.append((f"{prefix}{key}{'[]' if 'list' in kind else ''}.", sub))
    for sub_prefix, sub in nested:
        _rows(sub, sub_prefix, defs, out)


def scenario_keys_page(schema: dict[str, Any]) -> str:
    """The Markdown reference of every scenario key in ``schema`` (the JSON Schema of ``dsim schema``).

    One table per top-level key, in schema order; nested records follow with dotted keys (``[]`` marks a
    list item: ``devices[].gflops``).

    >>> page = scenario_keys_page({"properties": {"seed": {"type": "integer", "default": 0, "minimum": 0}}})
    >>> "| `seed` | integer | `0` | >= 0 |  |" in page
    True
    """
    defs = schema.get("$defs", {})
    lines = [
        "# Scenario keys",
        "",
        "Generated from `dsim schema` (the JSON Schema of scenario files) at every docs build, so it matches",
        "the code. Units are in the key names (`_mbps` megabits/s, `_ms` milliseconds, `_kB` 1e3 bytes,",
        "`gflops` 1e9 FLOP/s). The [scenario guide](scenario.md) explains the keys with examples.",
        "",
        "```sh",
        ".venv/bin/dsim schema > results/scenario.schema.json   # the same schema, for editors",
        "```",
        "",
    ]
    header = ["| key | type | default | range | meaning |", "| --- | --- | --- | --- | --- |"]
    top: list[list[str]] = []
    sections: list[tuple[str, list[list[str]]]] = []
    required = set(schema.get("required", ()))
    for key, node in schema.get("properties", {}).items():
        rows: list[list[str]] = []
        _rows({"properties": {key: node}, "required": [key] if key in required else []}, "", defs, rows)
        if _resolve(node, defs)[0] is None:
            top.extend(rows)
        else:
            sections.append((key, rows))
    lines += ["## Top level", "", *header, *("| " + " | ".join(r) + " |" for r in top), ""]
    for key, rows in sections:
        lines += [f"## `{key}`", "", *header, *("| " + " | ".join(r) + " |" for r in rows), ""]
    return "\n".join(lines)


def cli_page(parser: argparse.ArgumentParser) -> str:
    """The Markdown reference of the ``dsim`` command: the ``--help`` text of it and of every sub-command.

    The help is wrapped at 100 columns whatever the terminal, so the page is the same on every build.
    """
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width otherwise
    try:
        return _cli_page(parser)
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def _cli_page(parser: argparse.ArgumentParser) -> str:
    """:func:`cli_page` at the current terminal width."""
    lines = [
        "# The `dsim` command",
        "",
        "Generated from the argument parser (`dsim COMMAND --help`) at every docs build. `dsim` is",
        "`.venv/bin/dsim` after `make demo`; `.venv/bin/python -m sim` is the same command.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
        "",
    ]
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in subs.choices.items():
        lines += [f"## `dsim {name}`", "", "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


TAGGED_FENCE = re.compile(r"^(\s*```\w+)((?: +(?:slow|not-run))+) *$", re.M)


def untagged(markdown: str) -> str:
    r"""``markdown`` with the test tags removed from its fences' info strings.

    >>> untagged("```sh not-run\nmake demo\n```")
    '```sh\nmake demo\n```'
    """
    return TAGGED_FENCE.sub(r"\1", markdown)


LINK = re.compile(r"\]\(([^)\s]+)\)")


def site_links(markdown: str, page_path: str) -> str:
    """``markdown`` of the page ``docs/<page_path>`` with links into the repository's ``plots/`` folder
    pointed at the site's copy of it (the site's root is ``docs/``, where ``plots/`` is added).

    >>> site_links("![f](../../plots/a/f.png) [p](../design.md)", "how-to/sweeps.md")
    '![f](../plots/a/f.png) [p](../design.md)'
    >>> site_links("![f](../plots/e.png)", "energy.md")
    '![f](plots/e.png)'
    """
    folder = posixpath.dirname(page_path)

    def point(match: re.Match[str]) -> str:
        target = match[1]
        in_repo = posixpath.normpath(posixpath.join("docs", folder, target))
        if "://" in target or not in_repo.startswith("plots/"):
            return match[0]
        return f"]({posixpath.relpath(in_repo, folder or '.')})"

    return LINK.sub(point, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: render tagged fences (```` ```sh slow ````) as plain ones (```` ```sh ````), and point
    links to the repository's figures at the site's copy."""
    return site_links(untagged(markdown), page.file.src_uri)


SPHINX_ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|exc):<code>~?")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs hook: docstrings' Sphinx roles (``:func:`x` ``) shown as plain code, not as ``:func:x``."""
    return SPHINX_ROLE.sub("<code>", html)


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated pages and the repository's committed figures to the site."""
    from mkdocs.structure.files import File  # reason: mkdocs is imported only when mkdocs runs this hook

    from sim.cli import parser  # reason: this checkout's sim, after sys.path above

    pages = {
        "reference/scenario-keys.md": scenario_keys_page(_schema()),
        "reference/cli.md": cli_page(parser()),
    }
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))
    for figure in sorted((ROOT / "plots").rglob("*.png")):
        files.append(File(str(figure.relative_to(ROOT)), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


if __name__ == "__main__":
    print(scenario_keys_page(_schema()))
