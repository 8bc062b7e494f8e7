"""Shared fixtures: the real GRID clips in ``../shared`` beside the checkout."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "grid").is_dir():
        pytest.fail(f"{SHARED} is missing: the tests need the shared GRID clips beside the checkout")
    return SHARED


@pytest.fixture(scope="session")
def grid_dir(shared_dir: Path) -> Path:
    return shared_dir / "grid"
