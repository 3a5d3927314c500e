"""The documentation site's sources: citations of docs/design.md resolve, the nav names real pages, and the
generated scenario-keys page lists every key of the schema.

``make docs`` builds the site with ``mkdocs build --strict`` (broken links and anchors fail it); these
checks are the ones that build cannot make: text in code that cites a section, and a generated page that
must cover the schema.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import yaml

from sim.config.schema import json_schema

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
CITATION = re.compile(r"docs/design\.md\s+(§[\w.]+(?:(?:-|\s+and\s+|,\s+)§[\w.]+)*)")
NUMBER = re.compile(r"§(\d+[a-z]?(?:\.\d+)?)")  # §3, §3b, §3.7 (a sentence's full stop is not part of it)


def _hooks() -> ModuleType:
    """tools/mkdocs_hooks.py, imported by path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "tools" / "mkdocs_hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections() -> set[str]:
    """The section numbers of docs/design.md's headings: ``## 3. Semantics`` gives 3, ``### 3.7 Engine`` 3.7."""
    found = re.findall(r"^#{2,3} (\d+[a-z]?(?:\.\d+)?)\.? ", DESIGN.read_text(encoding="utf-8"), re.M)
    return set(found)


def test_every_design_citation_names_a_section_of_the_page() -> None:
    sections = _sections()
    assert {"1", "3", "3.5", "3.7", "3b", "5", "7"} <= sections
    cited: dict[str, str] = {}
    for path in sorted([*ROOT.glob("sim/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py")]):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"DESIGN (section|§|\d)", text), f"{path}: cite docs/design.md §N instead"
        for group in CITATION.findall(text):
            for number in NUMBER.findall(group):
                cited[number] = str(path.relative_to(ROOT))
    assert len(cited) >= 8
    missing = {n: p for n, p in cited.items() if n not in sections}
    assert not missing, f"cited sections that docs/design.md does not have: {missing}"


def test_the_citation_pattern_reads_ranges_and_lists() -> None:
    text = "rules (docs/design.md §3.2-§3.4) and (docs/design.md §3.7 and §3.8), see docs/design.md §7."
    groups = CITATION.findall(text)
    assert [NUMBER.findall(g) for g in groups] == [["3.2", "3.4"], ["3.7", "3.8"], ["7"]]


def test_every_nav_entry_is_a_page_or_a_generated_one() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    generated = {"reference/scenario-keys.md", "reference/cli.md"}

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        assert isinstance(nav, dict), nav
        return [p for value in nav.values() for p in pages(value)]

    listed = pages(config["nav"])
    assert len(listed) >= 15 and "design.md" in listed and generated <= set(listed)
    for page in listed:
        assert page in generated or (ROOT / "docs" / page).is_file(), f"mkdocs.yml nav: no page docs/{page}"


def test_the_scenario_keys_page_lists_every_key_of_the_schema() -> None:
    schema = json_schema()
    page = _hooks().scenario_keys_page(schema)
    records = [schema, *schema["$defs"].values()]
    keys = {key for record in records for key in record.get("properties", {})}
    assert len(keys) > 60
    for key in keys:  # every key ends a dotted key cell: `network.links[].up_mbps`
        assert re.search(rf"\| `([\w\[\].]+\.)?{re.escape(key)}` \|", page), f"scenario keys page misses {key}"
    assert "| `devices[].gflops` | number or null | `null` | >= 1e-06, <= 1e+09 |" in page


def test_test_tags_are_removed_before_a_page_is_rendered() -> None:
    untagged = _hooks().untagged
    text = "```sh slow\na\n```\n```console not-run\n$ b\n```\n```yaml\nc: 1\n```\n"
    assert untagged(text) == "```sh\na\n```\n```console\n$ b\n```\n```yaml\nc: 1\n```\n"


def test_every_relative_link_of_the_docs_names_a_file_of_the_repository() -> None:
    """Links are repository paths relative to their page, so they work on a code host as in the site."""
    generated = {"docs/reference/scenario-keys.md", "docs/reference/cli.md"}
    checked = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            path = target.split("#")[0]
            if not path or "://" in target or target.startswith("mailto:"):
                continue
            in_repo = (page.parent / path).resolve().relative_to(ROOT).as_posix()
            assert in_repo in generated or (ROOT / in_repo).exists(), f"{page.relative_to(ROOT)}: no {target}"
            checked += 1
    assert checked >= 40


def test_figure_links_are_pointed_at_the_sites_copy() -> None:
    site_links = _hooks().site_links
    assert site_links("![f](../../plots/a/f.png)", "how-to/sweeps.md") == "![f](../plots/a/f.png)"
    assert site_links("![f](../plots/e.png) [d](design.md)", "energy.md") == "![f](plots/e.png) [d](design.md)"
