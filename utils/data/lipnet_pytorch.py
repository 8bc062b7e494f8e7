"""LipNet-PyTorch's published GRID crops as a data set: its ``lip/`` folder of frames and its
``GRID_align_txt/`` word alignments (github.com/VIPL-Audio-Visual-Speech-Understanding/LipNet-PyTorch,
``GRID_LIP_160x80_TXT.zip``), read in place so its crops can be scored and fine-tuned on without
preprocessing GRID's videos.

Its layout: ``lip/sN/video/mpg_6000/CLIP/1.jpg ... 75.jpg`` (160x80 JPEG crops in the
``lipnet_pytorch`` framing of ``utils.video.framing``, numbered from 1 as ffmpeg's ``%d`` names them),
``GRID_align_txt/sN/align/CLIP.align`` (GRID's own align files), and clip lists naming
``sN/video/mpg_6000/CLIP`` a line. Here such a clip is ``sN/CLIP`` like any other; its frames are
resized to the network's input with Lanczos interpolation, as its loader resizes them.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

CLIP_FOLDER = Path("video", "mpg_6000")  # between a speaker's folder and its clips' folders
ALIGN_FOLDER = "align"  # between a speaker's folder and its align files
_LIST_LINE = re.compile(r"^([^/]+)/video/mpg_6000/([^/]+)$")


def clip_folders(speaker: Path) -> Iterator[Path]:
    """The clip folders of a speaker's folder in LipNet-PyTorch's layout (``sN/video/mpg_6000/CLIP``), none
    for a folder of another layout."""
    folder = speaker / CLIP_FOLDER
    if folder.is_dir():
        yield from sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def align_file(align_path: Path, speaker: str, name: str) -> Path:
    """Where LipNet-PyTorch's ``GRID_align_txt`` keeps a clip's align file."""
    return align_path / speaker / ALIGN_FOLDER / f"{name}.align"


def list_clip_id(line: str) -> str:
    """A clip id (``sN/CLIP``) from a line of LipNet-PyTorch's clip lists (``sN/video/mpg_6000/CLIP``); any
    other line as it is."""
    match = _LIST_LINE.match(line)
    return f"{match[1]}/{match[2]}" if match else line


def is_lipnet_pytorch_clip(path: Path) -> bool:
    """A clip folder in LipNet-PyTorch's layout (``.../video/mpg_6000/CLIP``), told by its path alone."""
    return Path(path).parent.parts[-len(CLIP_FOLDER.parts):] == CLIP_FOLDER.parts
