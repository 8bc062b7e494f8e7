"""Truncated and damaged videos: read as far as they go, and said to be read in part, by the reader layer
(``read_frames``' shortfall, the mouth crops and word crops that carry it) and by ``infer.py`` (a warning
on stderr naming both lengths, a ``warnings`` field in JSON, exit status 1); whole videos in many
containers are not flagged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.own_videos import cut, encoded, grid_rgb
from utils.video.reader import read_frames

CLIPS = ("bbaf2n", "lwbsza", "swwp2s")
# Gaps alternating 1/30 and 1/20 s: a variable-rate video, as phones record.
VFR_TIMES = np.concatenate([[0.0], np.cumsum(np.resize([1 / 30, 1 / 20], 74))])


@pytest.fixture(scope="module")
def frames(grid_dir: Path) -> np.ndarray:
    return grid_rgb(grid_dir / "bbaf2n.mpg")


@pytest.fixture(scope="module")
def copies(frames: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """bbaf2n re-encoded in the containers people send: whole, never flagged."""
    folder = tmp_path_factory.mktemp("copies")
    return {
        "mp4": encoded(frames, folder / "plain.mp4"),
        "mp4 faststart": encoded(frames, folder / "faststart.mp4", muxer_options={"movflags": "faststart"}),
        "mp4 B-frames, 1 s more audio": encoded(frames, folder / "bframes.mp4", codec_options={"preset": "medium"},
                                                audio_seconds=4.0),
        "mkv": encoded(frames, folder / "x.mkv"),
        "mkv, 1 s more audio": encoded(frames, folder / "audio.mkv", audio_seconds=4.0),
        "webm": encoded(frames, folder / "x.webm", codec="libvpx"),
        "mp4 variable rate": encoded(frames, folder / "vfr.mp4", times=VFR_TIMES),
        "mkv variable rate": encoded(frames, folder / "vfr.mkv", times=VFR_TIMES),
        "mpg MPEG-1 B-frames": encoded(frames, folder / "m1.mpg", codec="mpeg1video", codec_options={"bf": "2"}),
        "avi MPEG-4 B-frames": encoded(frames, folder / "m4.avi", codec="mpeg4", codec_options={"bf": "2"}),
    }


@pytest.fixture(scope="module")
def halves(copies: dict[str, Path], grid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Copies cut in half: the moov-first MP4 (its header says 75 frames, 3 s), MKV, WebM and GRID's MPEG-1."""
    folder = tmp_path_factory.mktemp("halves")
    return {"mp4": cut(copies["mp4 faststart"], folder / "half.mp4"),
            "mkv": cut(copies["mkv"], folder / "half.mkv"),
            "webm": cut(copies["webm"], folder / "half.webm"),
            "mpg": cut(grid_dir / "swwp2s.mpg", folder / "half.mpg")}


def read_whole(path: Path) -> tuple[int, object]:
    stream = read_frames(path)
    return sum(1 for _ in stream), stream.shortfall


# ------------------------------------------------------------------------------------------ the reader

@pytest.mark.parametrize("clip", CLIPS)
def test_the_real_clips_are_read_whole(grid_dir: Path, clip: str):
    assert read_whole(grid_dir / f"{clip}.mpg") == (75, None)


@pytest.mark.parametrize("kind", ["mp4", "mp4 faststart", "mp4 B-frames, 1 s more audio", "mkv", "mkv, 1 s more audio",
                                  "webm", "mp4 variable rate", "mkv variable rate", "mpg MPEG-1 B-frames",
                                  "avi MPEG-4 B-frames"])
def test_whole_copies_in_any_container_are_not_flagged(copies: dict[str, Path], kind: str):
    count, shortfall = read_whole(copies[kind])
    assert shortfall is None, shortfall
    assert count >= 75  # 3 s (a little more at a variable rate: its last frame is shown 1/20 s)


@pytest.mark.parametrize("kind, declared", [("mp4", "3.00 s (75 frames)"), ("mkv", "3.00 s"), ("webm", "3.00 s"),
                                            ("mpg", "no length")])
def test_halves_are_read_as_far_as_they_go_and_flagged_with_both_lengths(halves: dict[str, Path], kind: str,
                                                                        declared: str):
    count, shortfall = read_whole(halves[kind])
    assert 20 <= count <= 45  # read as far as it goes: about half of 75 frames
    assert shortfall is not None and shortfall.path == str(halves[kind])
    assert shortfall.decoded_seconds == pytest.approx(count / 25, abs=0.05)
    message = str(shortfall)
    assert message.startswith(f"{halves[kind]}: read in part, ")
    assert f"{shortfall.decoded_seconds:.2f} s ({shortfall.decoded_frames} frames) decoded" in message
    assert f"the container declares {declared}" in message
    if kind == "mpg":  # an MPEG program stream declares no length: its cut shows as a damaged last picture
        assert "damaged" in message
    else:
        assert shortfall.declared_seconds == pytest.approx(3.0)


def test_mouth_crops_and_word_crops_carry_the_shortfall(halves: dict[str, Path], grid_dir: Path):
    """What utils/preprocess_data.py gets from the reader: ``MouthClip.shortfall``, and the word cropper's
    ``crop_video``."""
    from utils.video.mouth_extractor import MouthExtractor
    from utils.video.word_crops import WordCropper

    extractor = MouthExtractor()
    half = extractor.extract(halves["mpg"])
    assert half.shortfall is not None and len(half.frames) == half.shortfall.decoded_frames < 75
    assert extractor.extract(grid_dir / "swwp2s.mpg").shortfall is None
    cropper = WordCropper()
    crops, shortfall = cropper.crop_video(halves["mp4"])
    assert shortfall is not None and shortfall.declared_frames == 75 and len(crops) < 40
    assert cropper.crop_video(grid_dir / "swwp2s.mpg")[1] is None


def test_a_truncated_video_too_short_to_read_says_so(frames: np.ndarray, tmp_path: Path):
    from utils.video.errors import ExtractionError
    from utils.video.mouth_extractor import MouthExtractor
    from utils.video.utterances import UtteranceReader

    tiny = cut(encoded(frames, tmp_path / "x.mkv"), tmp_path / "tiny.mkv", 0.2)
    with pytest.raises(ExtractionError, match=r"at least 0.40 s needed to read it \(read in part, .*declares 3.00 s"):
        list(UtteranceReader(MouthExtractor()).read(tiny))
