"""Default locations, resolved from the repository so that scripts work from any directory."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
VIDEO_DIR = DATA_DIR / "mp4s"
ALIGN_DIR = DATA_DIR / "align"
DATASET_DIR = DATA_DIR / "datasets"
CHECKPOINT_DIR = REPO_ROOT / "checkpoint"
