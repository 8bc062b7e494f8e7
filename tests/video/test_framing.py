"""Crop framings (utils/video/framing.py): LipNet-PyTorch's mean-face alignment against a plain reimplementation
of its scripts on real GRID clips, through preprocessing, the stream reader and infer.py, with the network's
channel order; and its published crop folders read as a data set."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.fake_data import write_lipnet_pytorch_crops
from utils.data.clip_store import clip_length, load_png_folder
from utils.data.sentence_clips import Normaliser, build_records, clip_batches, discover_clips, load_frames
from utils.data.splits import read_clip_list
from utils.video.framing import (
    PYTORCH_MEAN_FACE,
    pytorch_geometry,
    pytorch_reference,
    pytorch_transform,
)
from utils.video.mouth_extractor import MouthExtractor, decode_video
from utils.video.utterances import UtteranceReader

REPO = Path(__file__).resolve().parents[2]
MOUTH = slice(48, 68)


def face(scale: float, angle: float, shift: tuple[float, float], seed: int = 0) -> np.ndarray:
    """68 landmarks whose points 17-67 are the mean face turned, scaled and moved (0-16, the jaw, are noise)."""
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = np.random.default_rng(seed).uniform(0, 300, (68, 2))
    points[17:] = scale * PYTORCH_MEAN_FACE @ rotation.T + shift
    return points


def reference_crops(frames: list[np.ndarray], landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """LipNet-PyTorch's crops written plainly after its scripts: the 51 points normalised by their spread, the
    rotation from the SVD of their correlation, the frame warped into the 256x256 aligned face, the 160x80
    box at the truncated mouth centre sliced out and resized with Lanczos."""
    target = (PYTORCH_MEAN_FACE + 0.25) / 1.5 * 256
    x, y = target[-20:].mean(0).astype(int)
    crops = []
    for frame, points in zip(frames, landmarks):
        p1, p2 = points[17:] - points[17:].mean(0), target - target.mean(0)
        s1, s2 = p1.std(), p2.std()
        u, _, vt = np.linalg.svd((p1 / s1).T @ (p2 / s2))
        rotation = (s2 / s1) * (u @ vt).T
        matrix = np.hstack([rotation, (target.mean(0) - rotation @ points[17:].mean(0))[:, None]])
        aligned = cv2.warpAffine(frame, matrix, (256, 256))
        crops.append(cv2.resize(aligned[y - 40:y + 40, x - 80:x + 80], size, interpolation=cv2.INTER_LANCZOS4))
    return np.stack(crops)


def test_the_transform_maps_a_turned_scaled_mean_face_back_onto_the_reference():
    points = face(1.7 * 256, 0.3, (40.0, -25.0))
    matrix = pytorch_transform(points)
    mapped = points[17:] @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - pytorch_reference()).max() < 1e-9
    centres, scales, angles = pytorch_geometry(points[None])
    assert scales[0] == pytest.approx(1 / (1.5 * 1.7))  # a unit face is 256 / 1.5 pixels in the aligned square
    assert angles[0] == pytest.approx(0.3)  # crop_frames: the face's turned x axis becomes the crop's
    # The box's centre is the mean face's mouth centre, truncated to whole pixels as the scripts do.
    mouth = points[MOUTH].mean(0) @ matrix[:, :2].T + matrix[:, 2]
    box_centre = centres[0] @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(box_centre - (mouth.astype(int) - (0.5, 0.5))).max() < 1e-9


@pytest.fixture(scope="module")
def clip(grid_dir: Path) -> dict:
    """The pytorch-framed crops of a real clip and what a plain reimplementation of its scripts makes of the
    same frames and landmarks."""
    path = grid_dir / "bbaf2n.mpg"
    extractor = MouthExtractor(size=(128, 64), framing="lipnet_pytorch", step=1)
    mouth = extractor.extract(path)
    video = decode_video(path)
    landmarks = extractor.track(video.frames, path).every_frame(len(video.frames))
    expected = reference_crops(video.frames, landmarks, (128, 64))[..., ::-1]
    return {"path": path, "extractor": extractor, "mouth": mouth, "landmarks": landmarks, "expected": expected}


def test_real_crops_match_the_scripts_frame_by_frame_with_the_mouth_centred(clip: dict):
    frames, expected = clip["mouth"].frames, clip["expected"]
    assert frames.shape == (75, 64, 128, 3)
    error = np.abs(frames.astype(int) - expected.astype(int)).mean(axis=(1, 2, 3))
    assert error.max() < 0.5, error.max()  # grey levels per pixel: the same crops up to rounding
    for points in clip["landmarks"]:
        matrix = pytorch_transform(points)
        mouth = points[MOUTH].mean(0) @ matrix[:, :2].T + matrix[:, 2]
        x, y = pytorch_reference()[-20:].mean(0).astype(int)
        in_crop = (mouth - (x - 80, y - 40) + 0.5) * 0.8 - 0.5  # the 160x80 box shrunk to 128x64
        assert np.abs(in_crop - (63.5, 31.5)).max() < 6, in_crop
    # The default framing of the same clip is another crop (wider, unturned, 100x50).
    assert MouthExtractor().extract(clip["path"]).frames.shape == (75, 50, 100, 3)


def test_a_video_read_as_a_stream_is_cropped_as_the_whole_clip(clip: dict):
    (utterance,) = UtteranceReader(clip["extractor"], step=1).read(clip["path"])
    assert utterance.start == 0 and len(utterance.frames) == 75
    assert np.abs(utterance.frames.astype(int) - clip["mouth"].frames.astype(int)).max() <= 1


def test_a_large_face_is_framed_as_the_same_face_small(clip: dict, tmp_path: Path):
    """A copy of the clip enlarged 4x (H.264): its boxes shrink the source (blurred first, turned), and come out as
    the original's crops, read whole or as a stream."""
    from tests.own_videos import grid_rgb, transcode

    big = transcode(grid_rgb(clip["path"]), tmp_path / "big.mp4", 25, (1440, 1152))
    whole = clip["extractor"].extract(big)
    assert whole.scale < 0.4  # 128 crop pixels for about 360 source pixels
    assert np.abs(whole.frames.astype(int) - clip["mouth"].frames.astype(int)).mean() < 2.5
    (utterance,) = UtteranceReader(clip["extractor"], step=1).read(big)
    assert np.abs(utterance.frames.astype(int) - whole.frames.astype(int)).max() <= 1


def test_preprocessing_writes_the_framing_as_png_folders_and_records_it(grid_dir: Path, tmp_path: Path, clip: dict):
    src, tgt = tmp_path / "videos", tmp_path / "crops"
    (src / "s1").mkdir(parents=True)
    (src / "s1/bbaf2n.mpg").symlink_to(clip["path"])
    command = [sys.executable, str(REPO / "utils/preprocess_data.py"), f"--src_path={src}", f"--tgt_path={tgt}",
               "--n_process=1", "--framing=lipnet_pytorch", "--format=png"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = tgt / "s1/bbaf2n"
    assert sorted(p.name for p in folder.iterdir()) == [f"mouth_{i:03d}.png" for i in range(75)]
    assert np.array_equal(load_png_folder(folder), clip["mouth"].frames)  # PNG: lossless
    (record,) = [json.loads(line) for line in (tgt / "manifest.jsonl").read_text().splitlines()]
    assert (record["framing"], record["size"], record["status"]) == ("lipnet_pytorch", "128x64", "ok")
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0 and "1 already done" in again.stdout
    # Another framing is another output: the clip is made again, in the default framing and size.
    other = subprocess.run(command[:-2] + ["--format=png"], capture_output=True, text=True, cwd=tmp_path)
    assert other.returncode == 0 and "0 already done" in other.stdout, other.stdout
    assert load_png_folder(folder).shape == (75, 50, 100, 3)
    bad = subprocess.run(command[:-2] + ["--layout=lrw", "--framing=lipnet_pytorch"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "its own framing" in bad.stderr


def test_records_from_before_the_framing_setting_count_as_the_default_framing(tmp_path: Path):
    from utils.preprocess_data import Job, clip_settings, input_stamps, is_done

    video = tmp_path / "s1/x.mpg"
    video.parent.mkdir()
    video.write_bytes(b"x")
    job = Job("s1/x", video, tmp_path / "out/s1/x.npz")
    record = {"clip": "s1/x", "status": "failed", "size": "100x50", "format": "packed", "layout": "grid",
              "inputs": input_stamps(job, "grid")}
    assert is_done(job, record, clip_settings((100, 50), "packed", "grid", upright=False))  # cut axis-aligned
    assert not is_done(job, record, clip_settings((100, 50), "packed", "grid", "lipnet_pytorch", upright=False))
    assert not is_done(job, record, clip_settings((100, 50), "packed", "grid"))  # upright now: cut again


def test_bgr_networks_get_the_channels_reversed():
    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    rgb, bgr = (np.empty((3, 2, 4, 6), np.float32) for _ in range(2))
    Normaliser((0.1, 0.2, 0.3), (1.0, 2.0, 4.0)).normalise_into(frames, rgb)
    Normaliser((0.1, 0.2, 0.3), (1.0, 2.0, 4.0), "bgr").normalise_into(frames, bgr)
    assert np.allclose(rgb[0], (frames[..., 0] / 255 - 0.1) / 1.0)
    assert np.allclose(bgr[0], (frames[..., 2] / 255 - 0.1) / 1.0)
    assert np.allclose(bgr[2], (frames[..., 0] / 255 - 0.3) / 4.0)
    with pytest.raises(ValueError, match="unknown channel order 'rbg'"):
        Normaliser((0, 0, 0), (1, 1, 1), "rbg")


def test_lipnet_pytorch_crop_folders_read_as_a_data_set(tmp_path: Path):
    # Frame i (of 12, so 10.jpg sorts after 9.jpg only by number): red 20 + 15 i, green a gradient, blue 220 - 15 i.
    frames = np.zeros((12, 80, 160, 3), np.uint8)
    frames[..., 0] = (20 + 15 * np.arange(12))[:, None, None]
    frames[..., 1] = np.linspace(0, 255, 160).astype(np.uint8)
    frames[..., 2] = (220 - 15 * np.arange(12))[:, None, None]
    clips = {"s1/bbaf2n": frames, "s2/bbaf3n": frames[:10]}
    lip, aligns = write_lipnet_pytorch_crops(tmp_path, clips)
    found = discover_clips(lip)
    assert list(found) == ["s1/bbaf2n", "s2/bbaf3n"]
    (record, _) = build_records(found, aligns)
    assert (record.clip_id, record.sentence) == ("s1/bbaf2n", "bin blue at f two now")
    assert clip_length(found["s1/bbaf2n"]) == 12
    frames = load_png_folder(found["s1/bbaf2n"])  # frames 1..12 in the order of their numbers, RGB
    assert frames.shape == (12, 80, 160, 3)
    assert np.abs(frames.astype(int) - clips["s1/bbaf2n"].astype(int)).mean(axis=(1, 2, 3)).max() < 2
    resized = load_frames(found["s1/bbaf2n"], (128, 64))
    expected = np.stack([cv2.resize(f, (128, 64), interpolation=cv2.INTER_LANCZOS4) for f in frames])
    assert np.array_equal(resized, expected)
    # A network taking BGR gets what LipNet-PyTorch's loader gives it: cv2.imread, Lanczos to 128x64, / 255.
    ((_, data, lengths),) = clip_batches([record], (128, 64), Normaliser((0, 0, 0), (1, 1, 1), "bgr"), 1)
    files = sorted(found["s1/bbaf2n"].glob("*.jpg"), key=lambda f: int(f.stem))
    theirs = np.stack([cv2.resize(cv2.imread(str(f)), (128, 64), interpolation=cv2.INTER_LANCZOS4) for f in files])
    assert lengths.tolist() == [12] and np.allclose(data[0], theirs.transpose(3, 0, 1, 2) / 255.0, atol=1e-6)
    listing = tmp_path / "unseen_val.txt"
    listing.write_text("s1/video/mpg_6000/bbaf2n\ns2/bbaf3n\n")
    assert read_clip_list(listing) == ["s1/bbaf2n", "s2/bbaf3n"]
