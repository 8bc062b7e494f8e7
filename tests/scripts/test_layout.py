"""The layout holds: entry scripts apart from the library, one place that imports MXNet, short files, and one
bootstrap per script folder in place of ``sys.path`` edits. (The import layers are ``lint-imports``' job.)"""
from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 600


def source_files() -> list[Path]:
    """The project's Python files outside tests/."""
    return sorted(p for p in REPO_ROOT.rglob("*.py")
                  if not {".venv", ".git", "site", "tests"} & set(p.relative_to(REPO_ROOT).parts))


def test_every_file_directly_in_utils_is_an_entry_script():
    for path in sorted((REPO_ROOT / "utils").glob("*.py")):
        if path.name in ("__init__.py", "_bootstrap.py"):
            continue
        text = path.read_text()
        assert re.search(r"^def main\(", text, re.M) and 'if __name__ == "__main__":' in text, \
            f"{path.name}: library code belongs in a sub-package of utils/"


def test_no_source_file_is_over_600_lines():
    lines = {str(p.relative_to(REPO_ROOT)): len(p.read_text().splitlines()) for p in source_files()}
    long = {name: n for name, n in lines.items() if n > MAX_LINES}
    assert not long, long


def test_mxnet_is_imported_in_one_module():
    importing = [str(p.relative_to(REPO_ROOT)) for p in source_files()
                 if re.search(r"^(import mxnet|from mxnet)", p.read_text(), re.M)]
    assert importing == ["model/backend.py"]


def test_at_most_three_places_edit_sys_path():
    edits = [f"{p.relative_to(REPO_ROOT)}:{n}" for p in source_files()
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"sys\.path(\.insert|\.append|\[[^]]*\]\s*=)", line)]
    assert len(edits) <= 3, edits


def test_no_import_cycles():
    import grimp  # import-linter's graph builder (requirements-dev.txt)

    graph = grimp.build_graph("model", "utils", cache_dir=None)
    cycles = sorted({tuple(sorted((module, imported))) for module in graph.modules
                     for imported in graph.find_modules_directly_imported_by(module)
                     if imported in graph.modules and graph.chain_exists(importer=imported, imported=module)})
    assert not cycles, cycles
