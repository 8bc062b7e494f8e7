"""The README stays short and its links stay true; every page mkdocs.yml names exists and every page is named.

``mkdocs build --strict`` (in .ci/run) checks the links and anchors inside docs/; the README is outside the
site, so its links to the pages (which GitHub follows) are checked here, anchors included.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


class _MkdocsLoader(yaml.SafeLoader):
    """Safe loading that reads mkdocs.yml's ``!!python/name:`` tags as plain strings instead of importing."""


_MkdocsLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)


def prose(markdown: str) -> str:
    """The text outside fenced code blocks and code spans, where a bracket pair is a link."""
    return CODE_SPAN.sub("", FENCE.sub("", markdown))


def anchors(markdown: str) -> set[str]:
    """Heading ids as GitHub and MkDocs' toc both make them: lower case, punctuation dropped, spaces to hyphens."""
    ids = set()
    for title in HEADING.findall(FENCE.sub("", markdown)):
        text = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower())
        ids.add(text.strip().replace(" ", "-"))
    return ids


def nav_pages(nav: list) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def mkdocs_config() -> dict:
    return yaml.load((REPO / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_MkdocsLoader)


def test_readme_is_at_most_300_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move the detail to a page under docs/"


def test_every_page_in_the_nav_exists_and_every_page_is_in_the_nav():
    config = mkdocs_config()
    assert config.get("docs_dir", "docs") == "docs"
    pages = nav_pages(config["nav"])
    missing = [page for page in pages if not (DOCS / page).is_file()]
    assert not missing, f"mkdocs.yml names pages that do not exist: {missing}"
    unlisted = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in pages)
    assert not unlisted, f"pages under docs/ that mkdocs.yml's nav does not name: {unlisted}"
    assert len(pages) == len(set(pages)), "a page is named twice in mkdocs.yml's nav"


def test_mermaid_diagrams_render_in_mkdocs():
    """docs/architecture.md draws with Mermaid: the superfences fence that lets Material render it is configured."""
    assert "```mermaid" in (DOCS / "architecture.md").read_text(encoding="utf-8")
    extensions = mkdocs_config()["markdown_extensions"]
    superfences = next(e["pymdownx.superfences"] for e in extensions if isinstance(e, dict)
                       and "pymdownx.superfences" in e)
    assert {"name": "mermaid", "class": "mermaid", "format": "pymdownx.superfences.fence_code_format"} \
        in superfences["custom_fences"]


def test_readme_relative_links_resolve():
    text = README.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve() if path else README
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with that anchor in {file.relative_to(REPO)}")
    assert not broken, "README.md links that do not resolve:\n" + "\n".join(broken)
    assert "docs/index.md" in text


def test_readme_names_every_docs_page():
    linked = {target.partition("#")[0] for target in LINK.findall(prose(README.read_text(encoding="utf-8")))}
    pages = {f"docs/{page}" for page in nav_pages(mkdocs_config()["nav"])}
    assert pages <= linked, f"pages the README does not link to: {sorted(pages - linked)}"


def test_the_readme_test_command_is_the_one_ci_runs():
    assert ".venv/bin/python -m pytest" in README.read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert ".venv/bin/python -m pytest" in ci
    assert "mkdocs build --strict" in ci
