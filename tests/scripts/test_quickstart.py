"""The quick start's three stages run end to end (on a tiny setting; the full run is timed in docs/index.md)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from utils import quickstart

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_generates_trains_and_reads_unseen_speakers(tmp_path: Path, capfd: pytest.CaptureFixture):
    status = quickstart.main([
        f"data_path={tmp_path / 'data'}", f"save_dir={tmp_path / 'run'}", "train_speakers=1-2", "val_speakers=3",
        "clips_per_speaker=4", "size=48x24", "channels=4,8,8", "hidden=16", "epochs=1", "batch_size=4",
        "decoder=greedy", "progress=false",
    ])
    assert status == 0
    assert len(list((tmp_path / "data" / "datasets" / "s3").glob("*.npz"))) == 4
    assert (tmp_path / "run" / "best" / "meta.json").is_file()
    out = capfd.readouterr().out
    assert out.count("[Target]") == 4 and out.count("[Pred]") == 4
    assert "CER" in out and "WER" in out and "s3" in out
    # The README's line, as written: the checkpoint brings its data paths and split.
    read = subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False)
    assert read.returncode == 0, read.stderr
    assert read.stdout.count("[Pred]") == 4 and "(4 clips, valid" in read.stdout


def test_overlapping_speakers_are_refused(tmp_path: Path):
    assert quickstart.main([f"data_path={tmp_path}", "train_speakers=1-3", "val_speakers=3"]) == 2
