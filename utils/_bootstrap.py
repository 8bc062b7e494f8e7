"""Run as a file (``python utils/SCRIPT.py``, from any directory), a script here finds the project's packages:
imported first by each script when run so, this puts the repository root where Python put the script's
folder at the head of ``sys.path`` (in its place, so that ``bench/onnx.py`` cannot shadow the onnx package)."""
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)
