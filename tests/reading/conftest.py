"""Fixtures of the reading tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.own_videos import GRID_CLIPS, grid_rgb


@pytest.fixture(scope="session")
def clips(grid_dir: Path) -> dict[str, np.ndarray]:
    """The shared clips' frames (RGB) by name, decoded once for the files that make copies of them."""
    return {name: grid_rgb(grid_dir / f"{name}.mpg") for name in GRID_CLIPS}
