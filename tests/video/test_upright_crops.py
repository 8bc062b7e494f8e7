"""Upright crops (``utils.video.roll``): the shared GRID clips turned in the image plane at test time
(15 and -20 degrees, re-encoded as H.264) give the crops the upright clips give; the framing is recorded
by preprocessing, training and the ONNX export, and reading crops as a checkpoint's record says."""
from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fake_data import write_fake_clips
from tests.own_videos import grid_rgb, turned
from utils.data.clip_store import load_packed
from utils.data.manifest import load_manifest, write_manifest
from utils.reading.network import Network
from utils.reading.sentence_videos import VideoLipreader
from utils.text.grid_text import sentence_from_clip_name
from utils.video.mouth_extractor import MouthExtractor
from utils.video.roll import data_upright, roll_angles, turned_growth, upright_of
from utils.video.utterances import UtteranceReader

CLIPS = ("bbaf2n", "lwbsza", "swwp2s")
TURNS = (15, -20)  # degrees counter-clockwise on screen
REPO = Path(__file__).resolve().parents[2]


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each pair of frames (all pixels and channels)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a -= a.mean(axis=1, keepdims=True)
    b -= b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


@pytest.fixture(scope="module")
def turned_clips(grid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    folder = tmp_path_factory.mktemp("turned")
    return {(name, degrees): turned(grid_rgb(grid_dir / f"{name}.mpg"), folder / f"{name}_{degrees}.mp4", degrees)
            for name in CLIPS for degrees in TURNS}


@pytest.fixture(scope="module")
def extractors() -> dict[bool, MouthExtractor]:
    return {upright: MouthExtractor(upright=upright) for upright in (True, False)}


def test_turned_clips_give_the_upright_clips_crops(grid_dir: Path, turned_clips: dict, extractors: dict):
    means: dict[bool, list[float]] = {True: [], False: []}
    for upright, extractor in extractors.items():
        for name in CLIPS:
            original = extractor.extract(grid_dir / f"{name}.mpg")
            for degrees in TURNS:
                clip = extractor.extract(turned_clips[name, degrees])
                assert clip.frames.shape == original.frames.shape == (75, 50, 100, 3)
                r = pearson(original.frames, clip.frames)
                means[upright].append(float(r.mean()))
                if upright:
                    assert r.mean() >= 0.9, (name, degrees, r.mean())
                    # The measured roll is the turn (a counter-clockwise turn is a negative angle in image
                    # coordinates), within 2.5 degrees of what the original head's own roll adds.
                    turn = np.degrees(clip.angles - original.angles)
                    assert np.abs(turn + degrees).max() < 2.5, (name, degrees, turn)
                else:
                    assert clip.angles is None
    # Cut axis-aligned, the tilted mouths match far worse (measured: 0.67-0.89 a clip, 0.78 over all).
    assert np.mean(means[False]) < 0.85 < 0.95 < min(means[True]), means


def test_the_streaming_reader_turns_its_crops_too(grid_dir: Path, turned_clips: dict, extractors: dict):
    reader = UtteranceReader(extractors[True])
    for degrees in TURNS:
        (original,) = list(reader.read(grid_dir / "bbaf2n.mpg"))
        (clip,) = list(reader.read(turned_clips["bbaf2n", degrees]))
        a, b = round(original.start * 25), round(clip.start * 25)
        first, last = max(a, b), min(a + len(original.frames), b + len(clip.frames))
        assert last - first >= 50
        r = pearson(original.frames[first - a: last - a], clip.frames[first - b: last - b])
        assert r.mean() >= 0.9, (degrees, r.mean())
    (axis_aligned,) = list(UtteranceReader(extractors[False]).read(turned_clips["bbaf2n", -20]))
    (upright,) = list(reader.read(turned_clips["bbaf2n", -20]))
    assert not np.array_equal(axis_aligned.frames, upright.frames)


def test_roll_of_landmarks_and_the_room_a_turned_crop_needs():
    points = np.zeros((3, 68, 2))
    points[:, 42:48] = [[10.0, 0.0]]  # the eye on the image's right, 10 px right of the other: upright
    points[1, 42:48] = [[10.0, 10.0]]  # 45 degrees clockwise on screen (y points down)
    points[2, 42:48] = [[-10.0, 0.1]]  # upside down, just past the +-180 degree seam
    angles = roll_angles(points)
    assert angles[:2] == pytest.approx([0.0, math.pi / 4])
    assert angles[2] == pytest.approx(math.pi - 0.01, abs=1e-3)  # unwrapped: no jump to -180 degrees
    assert turned_growth(100, 50, 0.0) == pytest.approx((0.0, 0.0))
    grow_w, grow_h = turned_growth(100, 50, math.radians(90))
    assert (grow_w, grow_h) == pytest.approx((-25.0, 25.0))  # on its side: 50 wide, 100 high


def test_framing_records():
    assert not upright_of({}) and not upright_of({"crop": None}) and not upright_of({"crop": {"upright": 1}})
    assert upright_of({"crop": {"upright": True}}) and not upright_of({"crop": {"upright": False}})
    ok = {"status": "ok"}
    folder = Path("data/crops")

    def framing(*records: dict) -> dict:
        return data_upright({f"s1/c{i}": r for i, r in enumerate(records)}, folder)

    assert framing() == {}
    assert framing(ok, {**ok, "upright": None}) == {}  # made before the setting existed
    assert framing({**ok, "upright": True}, {"status": "no_face", "upright": False}) == {
        "upright": True}  # failed clips have no crops
    assert framing({**ok, "upright": False}, ok) == {"upright": False}
    # prepare_captions.py: a cue's record takes the setting from its video's
    video = {**ok, "kind": "video", "settings": {"upright": True}}
    assert data_upright({"s1/talk": video, "s1/talk_000": {**ok, "video": "s1/talk"}}, folder) == {"upright": True}
    with pytest.raises(ValueError, match=r"data/crops: its manifest records clips cropped upright and others"):
        data_upright({"s1/talk": video, "s1/talk_000": {**ok, "video": "s1/talk"}, "s1/x": ok}, folder)
    with pytest.raises(ValueError, match=r"data/crops: its manifest records clips cropped upright and others"):
        framing({**ok, "upright": True}, ok)


def test_preprocessing_records_the_framing_and_a_change_redoes_the_clip(turned_clips: dict, tmp_path: Path,
                                                                         extractors: dict):
    src, tgt = tmp_path / "videos", tmp_path / "crops"
    (src / "s1").mkdir(parents=True)
    (src / "s1/bbaf2n.mp4").symlink_to(turned_clips["bbaf2n", 15])

    def preprocess(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "utils/preprocess_data.py", f"src_path={src}", f"tgt_path={tgt}",
                               "n_process=1", *extra], cwd=REPO, capture_output=True, text=True, timeout=300)

    crops = {upright: extractor.extract(src / "s1/bbaf2n.mp4").frames for upright, extractor in extractors.items()}

    def made_by() -> list[bool]:  # which extractor's crops the packed (lossy) clip holds
        packed = load_packed(tgt / "s1/bbaf2n.npz").astype(int)
        return [upright for upright, frames in crops.items() if np.abs(packed - frames).mean() < 3.0]

    done = preprocess()
    assert done.returncode == 0, done.stderr
    assert load_manifest(tgt)["s1/bbaf2n"]["upright"] is True and made_by() == [True]
    done = preprocess("upright=false")
    assert done.returncode == 0 and "1 to process" in done.stdout, done.stdout + done.stderr
    assert load_manifest(tgt)["s1/bbaf2n"]["upright"] is False and made_by() == [False]
    assert "0 to process" in preprocess("upright=false").stdout
    assert "upright crop; false: axis-aligned crops" in " ".join(preprocess("--help").stdout.split())


def test_caption_clips_record_the_framing(grid_dir: Path, turned_clips: dict, tmp_path: Path, extractors: dict):
    src, tgt = tmp_path / "talks", tmp_path / "clips"
    src.mkdir()
    (src / "s1.mp4").symlink_to(turned_clips["bbaf2n", 15])
    (src / "s1.srt").write_text("1\n00:00:00,000 --> 00:00:03,000\nBin blue at F two now\n")
    reference = extractors[True].extract(grid_dir / "bbaf2n.mpg").frames  # the upright clip's crops

    def prepare(*extra: str) -> float:
        """Run utils/prepare_captions.py; the mean Pearson r of its clip against the reference."""
        done = subprocess.run([sys.executable, "utils/prepare_captions.py", f"src_path={src}", f"tgt_path={tgt}",
                               "n_process=1", *extra], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        frames = load_packed(tgt / "s1/s1_000.npz")
        n = min(len(frames), len(reference))
        assert n >= 70
        return float(pearson(frames[:n], reference[:n]).mean())

    assert prepare() >= 0.9
    records = load_manifest(tgt)
    assert records["s1/s1"]["settings"]["upright"] is True and data_upright(records, tgt) == {"upright": True}
    assert prepare("upright=false") < 0.9  # the setting changed: the clip is cut again, axis-aligned
    records = load_manifest(tgt)
    assert records["s1/s1"]["settings"]["upright"] is False and data_upright(records, tgt) == {"upright": False}


def test_the_model_trained_on_the_shared_clips_reads_them_turned(real_model: dict, turned_clips: dict,
                                                                 tmp_path: Path):
    """infer.py on the turned copies, with the model trained on the upright clips (whose checkpoint records
    upright crops, having been trained on preprocess_data.py's): every sentence read right."""
    assert json.loads((real_model["model"] / "meta.json").read_text())["crop"]["upright"] is True
    for (name, degrees), path in turned_clips.items():
        (tmp_path / f"{name}_{degrees}.mp4").symlink_to(path)
    done = subprocess.run([sys.executable, "infer.py", f"model_path={real_model['model']}", f"video={tmp_path}",
                           "num_gpus=0", "progress=false", "format=json"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    texts = {Path(r["file"]).name: " ".join(u["text"] for u in r["utterances"])
             for r in map(json.loads, done.stdout.splitlines())}
    assert texts == {f"{name}_{degrees}.mp4": sentence_from_clip_name(name) for name, degrees in turned_clips}


class _Stub(Network):
    def log_probs(self, batch: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        raise NotImplementedError


def _network(meta: dict) -> Network:
    return _Stub("base", "batch", 100, 50, (0.5,) * 3, (0.2,) * 3, 25.0, "stub", "none", meta)


def test_reading_crops_as_the_checkpoint_records():
    assert VideoLipreader(_network({"crop": {"upright": True}})).extractor.upright
    assert not VideoLipreader(_network({})).extractor.upright  # the original example's, and older ones


def test_training_and_the_onnx_export_carry_the_data_upright(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    import main
    from model.loading import load_network
    from utils import export_onnx

    data = tmp_path / "clips"
    made = write_fake_clips(data)
    records = {clip: {"clip": clip, "status": "ok", "upright": True} for clip in made}
    write_manifest(data, records)
    tiny = [f"image_path={data}", "channels=4,8,8", "hidden=16", "batch_size=4", "num_gpus=0", "progress=false",
            "val_speakers=3", "align_path=/nonexistent", "epochs=1"]
    assert main.main([*tiny, f"save_dir={tmp_path / 'run'}"]) == 0
    meta = json.loads((tmp_path / "run/last/meta.json").read_text())
    assert meta["crop"] == {"framing": "lipnet_gluon", "channel_order": "rgb", "upright": True}
    assert export_onnx.main([f"model_path={tmp_path / 'run/last'}", f"out={tmp_path / 'net.onnx'}"]) == 0
    for path in (tmp_path / "run/last", tmp_path / "net.onnx"):
        network = load_network(str(path), num_gpus=0)
        assert upright_of(network.meta), path
    write_manifest(data, {**records, "s1/bbaf2n": {"clip": "s1/bbaf2n", "status": "ok"}})
    with caplog.at_level(logging.ERROR, logger="lipnet"):
        assert main.main([*tiny, f"save_dir={tmp_path / 'mixed'}"]) == 2  # crops of both framings: refused
    assert f"{data}: its manifest records clips cropped upright and others cropped axis-aligned" in caplog.text
    write_manifest(data, {})
    assert main.main([*tiny, f"save_dir={tmp_path / 'old'}"]) == 0
    assert "upright" not in json.loads((tmp_path / "old/last/meta.json").read_text())["crop"]
