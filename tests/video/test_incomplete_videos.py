"""Truncated and damaged videos: read as far as they go, and said to be read in part, by the reader layer
(``read_frames``' shortfall, the mouth crops and word crops that carry it) and by ``infer.py`` (a warning
on stderr naming both lengths, a ``warnings`` field in JSON, exit status 1); whole videos in many
containers are not flagged."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.own_videos import cut, encoded, grid_rgb
from utils.video.reader import read_frames

REPO_ROOT = Path(__file__).resolve().parents[2]
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


# ------------------------------------------------------------------------------------------ infer.py

def infer(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), "num_gpus=0", "progress=false", *argv],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def lipnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LipNet saved as a checkpoint: it reads noise, which is all these tests need."""
    from tests.reading.test_infer import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("lipnet") / "best", {"method": "greedy"})


def test_infer_names_a_truncated_video_with_both_lengths_and_exits_1(halves: dict[str, Path], grid_dir: Path,
                                                                    lipnet: Path, tmp_path: Path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a_whole.mpg").symlink_to(grid_dir / "bbaf2n.mpg")
    (videos / "b_half.mp4").symlink_to(halves["mp4"])
    (videos / "c_half.mpg").symlink_to(halves["mpg"])
    result = infer(f"model_path={lipnet}", f"video={videos}", "format=json")
    assert result.returncode == 1, result.stderr
    records = {r["file"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert list(records) == ["a_whole.mpg", "b_half.mp4", "c_half.mpg"]  # one record each, read all the same
    assert all(r["error"] is None and r["utterances"] for r in records.values())
    assert records["a_whole.mpg"]["warnings"] == [] and records["a_whole.mpg"]["duration"] == 3.0
    (mp4,) = records["b_half.mp4"]["warnings"]
    assert "the container declares 3.00 s (75 frames)" in mp4 and records["b_half.mp4"]["duration"] < 1.5
    assert f"{records['b_half.mp4']['duration']:.2f} s (" in mp4
    (mpg,) = records["c_half.mpg"]["warnings"]
    assert "damaged" in mpg and "the container declares no length" in mpg
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {mp4}", f"warning: {mpg}"] and str(videos / "b_half.mp4") in mp4
    assert "error:" not in result.stderr

    text = infer(f"model_path={lipnet}", f"video={videos / 'b_half.mp4'}")
    assert text.returncode == 1 and text.stdout.startswith("b_half.mp4\t") and f"warning: {mp4}" in text.stderr


def test_infer_reads_whole_copies_with_exit_0(copies: dict[str, Path], grid_dir: Path, lipnet: Path,
                                              tmp_path: Path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for clip in CLIPS:
        (videos / f"{clip}.mpg").symlink_to(grid_dir / f"{clip}.mpg")
    for kind in ("mp4 faststart", "mkv", "webm", "mp4 variable rate"):
        (videos / copies[kind].name).symlink_to(copies[kind])
    result = infer(f"model_path={lipnet}", f"video={videos}", "format=json", f"out={tmp_path / 'out'}")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 7 and all(r["warnings"] == [] and r["error"] is None for r in records)
    assert "warning" not in result.stderr
    assert "7 read, 0 failed" in (tmp_path / "out" / "report.html").read_text()


def test_word_reader_names_a_truncated_clip_and_exits_1(halves: dict[str, Path], grid_dir: Path, tmp_path: Path):
    from model.checkpoint import save_checkpoint
    from model.word_net import WordNet, WordNetConfig
    from utils.data.word_clips import WORD_MEAN, WORD_STD

    words = ["ABOUT", "BECAUSE", "FAMILY", "MONEY", "PEOPLE", "SCHOOL", "WORLD"]
    net = WordNet(WordNetConfig(num_classes=len(words), width_mult=0.125, tcn_width_mult=0.0625, tcn_num_layers=1))
    net.initialize()
    save_checkpoint(tmp_path / "words" / "best", net, None,
                    {"words": words, "normalisation": {"mean": [WORD_MEAN], "std": [WORD_STD]}})
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "half.mpg").symlink_to(halves["mpg"])
    (clips / "whole.mpg").symlink_to(grid_dir / "swwp2s.mpg")
    out = tmp_path / "report"
    result = infer(f"model_path={tmp_path / 'words'}", f"video={clips}", "format=json", f"out={out}")
    assert result.returncode == 1, result.stderr
    half, whole = map(json.loads, result.stdout.splitlines())
    assert whole["file"] == "whole.mpg" and whole["warnings"] == [] and len(whole["top"]) == 5
    assert half["file"] == "half.mpg" and half["error"] is None and len(half["top"]) == 5
    (warning,) = half["warnings"]
    assert f"warning: {warning}" in result.stderr and str(clips / "half.mpg") in warning and "damaged" in warning
    page = (out / "report.html").read_text()
    assert "2 read (1 with warnings), 0 failed" in page and "read in part" in page
    assert "read in part" in (out / "predictions.csv").read_text()


def test_preprocessing_refuses_a_truncated_video_naming_both_lengths(halves: dict[str, Path], grid_dir: Path,
                                                                      tmp_path: Path):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    (src / "s1").mkdir(parents=True)
    (src / "s1" / "bbaf2n.mpg").symlink_to(grid_dir / "bbaf2n.mpg")
    (src / "s1" / "lwbsza.mpg").write_bytes(halves["mpg"].read_bytes())
    result = subprocess.run([sys.executable, "utils/preprocess_data.py", f"src_path={src}", f"tgt_path={tgt}",
                             "n_process=1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stderr
    assert "1 ok, 1 failed, 1 truncated" in result.stdout
    assert re.search(r"truncated: .*lwbsza\.mpg: read in part, .* decoded, the container declares", result.stdout)
    assert (tgt / "s1" / "bbaf2n.npz").is_file() and not (tgt / "s1" / "lwbsza.npz").exists()
