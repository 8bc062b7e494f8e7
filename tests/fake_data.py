"""Small packed clip sets with GRID names, for tests that need data but not real video."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from utils.data.clip_store import save_packed
from utils.text.grid_text import sentence_from_clip_name

NAMES = ["bbaf2n", "lwbsza", "swwp2s", "pgic3a", "brak4p", "lrbe5s", "sgwl6n", "pbam7a",
         "bwiq8s", "lgat9p", "sraz1n", "pwbx2a"]


def write_fake_clips(root: Path, speakers: int = 3, per_speaker: int = 4, size: tuple[int, int] = (48, 24),
                     frames: int | Sequence[int] = 75, seed: int = 0) -> dict[str, str]:
    """Clips whose pixels follow their sentence's letters, so a network can fit them; returns {clip_id: sentence}.
    ``frames`` is every clip's length, or lengths taken in turn."""
    rng = np.random.default_rng(seed)
    width, height = size
    made = {}
    cycle = [frames] if isinstance(frames, int) else list(frames)
    for s in range(1, speakers + 1):
        for name in NAMES[(s - 1) % 4: (s - 1) % 4 + per_speaker]:
            n_frames = cycle[len(made) % len(cycle)]
            sentence = sentence_from_clip_name(name)
            codes = np.array([ord(c) for c in sentence], np.float64)
            levels = np.interp(np.linspace(0, len(codes) - 1, n_frames), np.arange(len(codes)), codes)
            clip = np.empty((n_frames, height, width, 3), np.uint8)
            base = rng.integers(0, 40, (height, width, 3))
            for t, level in enumerate(levels):
                clip[t] = np.clip(base + (level - 96) * 8, 0, 255)
            save_packed(root / f"s{s}" / f"{name}.npz", clip)
            made[f"s{s}/{name}"] = sentence
    return made


def write_lipnet_pytorch_crops(root: Path, clips: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """A LipNet-PyTorch download of ``clips`` (RGB frames by clip id): lip/sN/video/mpg_6000/CLIP/1.jpg ... and
    GRID_align_txt/sN/align/CLIP.align (the sentence of the GRID name, 0.2 s a word)."""
    lip, aligns = root / "lip", root / "GRID_align_txt"
    for clip_id, frames in clips.items():
        speaker, name = clip_id.split("/")
        folder = lip / speaker / "video/mpg_6000" / name
        folder.mkdir(parents=True)
        for i, frame in enumerate(frames, start=1):
            cv2.imwrite(str(folder / f"{i}.jpg"), frame[..., ::-1])
        (aligns / speaker / "align").mkdir(parents=True, exist_ok=True)
        words = ["sil", *sentence_from_clip_name(name).split(), "sil"]
        (aligns / speaker / "align" / f"{name}.align").write_text(
            "".join(f"{i * 5000} {(i + 1) * 5000} {word}\n" for i, word in enumerate(words)))
    return lip, aligns
