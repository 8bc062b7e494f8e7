"""Default locations, resolved from the repository so that scripts work from any directory."""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
VIDEO_DIR = DATA_DIR / "mp4s"
ALIGN_DIR = DATA_DIR / "align"
DATASET_DIR = DATA_DIR / "datasets"
CHECKPOINT_DIR = REPO_ROOT / "checkpoint"


def cache_dir() -> Path:
    """Where files derived on this machine are kept between runs: ``$XDG_CACHE_HOME/lipnet``, else
    ``~/.cache/lipnet`` (read when called, so a test can point it elsewhere)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lipnet"
