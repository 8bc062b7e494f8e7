"""Word-level preprocessing: aligned mouth regions (utils/video/word_crops.py) and preprocess_data.py layout=lrw
on a small LRW-layout tree made from the real GRID clips, with a missing .txt, a corrupt video, an empty word folder."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import data_loader
import infer
from utils.data.clip_store import load_clip
from utils.data.word_clips import WORD_MEAN, WORD_STD, info_text, read_duration, word_input
from utils.preprocess_data import load_manifest, main
from utils.reading import word_videos
from utils.video.mouth_extractor import read_video
from utils.video.word_crops import EYE_SPAN, MEAN_FACE, STABLE_POINTS, WordCropper, aligned_crops, similarity
from utils.video.writer import write_video

CLIP = slice(20, 49)  # 29 frames of a GRID clip, as long as an LRW clip


def _moved(frames: list[np.ndarray], angle: float, scale: float, shift: tuple[float, float]) -> tuple[
        list[np.ndarray], np.ndarray]:
    h, w = frames[0].shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    matrix[:, 2] += shift
    return [cv2.warpAffine(f, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE) for f in frames], matrix


@pytest.fixture(scope="module")
def face(grid_dir: Path) -> list[np.ndarray]:
    return read_video(grid_dir / "bbaf2n.mpg")[0][CLIP]


@pytest.fixture(scope="module")
def cropper() -> WordCropper:
    return WordCropper()


def test_similarity_recovers_a_known_transform():
    points = np.random.default_rng(0).normal(size=(5, 2))
    angle = 0.4
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale, found, shift = similarity(points, 1.7 * points @ rotation.T + (3.0, -2.0))
    assert scale == pytest.approx(1.7) and found == pytest.approx(angle)
    np.testing.assert_allclose(shift, (3.0, -2.0), atol=1e-9)


def test_exact_landmarks_give_the_same_crop_of_a_moved_face(face: list[np.ndarray], cropper: WordCropper):
    """Geometry alone: the face and its landmarks moved together give the same mouth region."""
    landmarks = cropper.extractor.track(face, "bbaf2n").every_frame(len(face))
    base = aligned_crops(face, landmarks)
    moved, matrix = _moved(face, 15, 0.8, (20, -10))
    moved_points = landmarks @ matrix[:, :2].T + matrix[:, 2]
    again = aligned_crops(moved, moved_points)
    assert base.shape == (29, 96, 96) and base.dtype == np.uint8
    assert np.abs(again[:, 8:-8, 8:-8].astype(float) - base[:, 8:-8, 8:-8]).mean() < 2.0


@pytest.mark.parametrize("angle, scale, shift", [(12, 1.0, (0, 0)), (0, 0.7, (30, -20)), (-10, 1.3, (-25, 15))])
def test_a_shifted_scaled_rotated_face_gives_the_same_mouth_region(face: list[np.ndarray], cropper: WordCropper,
                                                                   angle: float, scale: float, shift: tuple):
    """The whole path (dlib's landmarks found afresh on the moved face): the same crop within tolerance,
    where a crop that ignored the rotation or scale would differ by far more."""
    base = cropper.crop_frames(face, bgr=True)
    moved, _ = _moved(face, angle, scale, shift)
    again = cropper.crop_frames(moved, bgr=True)
    difference = np.abs(again.astype(float) - base).mean()
    assert difference < 4.0
    assert np.corrcoef(again.ravel(), base.ravel())[0, 1] > 0.97
    if angle:  # the crop of the moved face without undoing its rotation is much further off
        turned = np.stack([cv2.warpAffine(c, cv2.getRotationMatrix2D((47.5, 47.5), angle, 1.0), (96, 96),
                                          borderMode=cv2.BORDER_REPLICATE) for c in base])
        assert np.abs(turned.astype(float) - base).mean() > 2 * difference


def test_a_turned_crop_of_a_large_frame_is_blurred_over_its_whole_footprint():
    """Shrinking blurs the source first; a turned crop must take every pixel from the blurred area, or its
    corners would repeat that area's edge."""
    from utils.video.mouth_extractor import crop_frames

    y, x = np.mgrid[:800, :800]
    frame = np.repeat((127 + 100 * np.sin(x / 23.0) * np.cos(y / 31.0)).astype(np.uint8)[..., None], 3, axis=2)
    angle = np.radians(40)
    crop = crop_frames([frame], np.array([[400.0, 400.0]]), 0.2, (96, 96), np.array([angle]))[0].astype(float)
    # the crop of the frame turned by the same angle about the centre, without turning the crop: the same pixels
    turned = cv2.warpAffine(frame, cv2.getRotationMatrix2D((399.5, 399.5), np.degrees(angle), 1.0), (800, 800))
    straight = crop_frames([turned], np.array([[399.5, 399.5]]), 0.2, (96, 96))[0].astype(float)
    corners = np.abs(crop - straight)[[*range(4, 16), *range(-16, -4)]][:, [*range(4, 16), *range(-16, -4)]]
    assert corners.mean() < 3


def test_the_mean_face_frames_the_mouth_level_at_about_half_the_crop(face: list[np.ndarray], cropper: WordCropper):
    """Where the mouth corners land in the crop: the transform that makes the crops, applied to the landmarks."""
    landmarks = cropper.extractor.track(face, "bbaf2n").every_frame(len(face))
    reference = MEAN_FACE * EYE_SPAN * 96
    for points in landmarks[::7]:
        scale, angle, _ = similarity(points[list(STABLE_POINTS)], reference)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        corners = (points[[48, 54]] - points[48:68].mean(0)) @ rotation.T * scale + 47.5
        left, right = corners
        assert abs(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0]))) < 6  # level
        assert 0.35 < (right[0] - left[0]) / 96 < 0.6  # about 45% of the crop
        assert abs((left[0] + right[0]) / 2 - 47.5) < 4  # centred


# ---------------------------------------------------------------------------------------------
# preprocess_data.py layout=lrw


@pytest.fixture(scope="module")
def lrw_src(tmp_path_factory: pytest.TempPathFactory, grid_dir: Path) -> Path:
    src = tmp_path_factory.mktemp("lipread_mp4")

    def clip(grid: str, path: str, duration: float | None = 0.4) -> None:
        frames = read_video(grid_dir / grid)[0][CLIP]
        target = src / path
        target.parent.mkdir(parents=True, exist_ok=True)
        write_video(target, [f[16:272, 52:308, ::-1] for f in frames], 25)  # 256x256, as LRW's clips
        if duration is not None:
            target.with_suffix(".txt").write_text(info_text(path.split("/")[0], duration))

    clip("bbaf2n.mpg", "ABOUT/train/ABOUT_00001.mp4", 0.53)
    clip("lwbsza.mpg", "ABOUT/val/ABOUT_00002.mp4")
    clip("swwp2s.mpg", "MONEY/train/MONEY_00001.mp4")
    clip("swwp2s.mpg", "MONEY/train/MONEY_00003.mp4", duration=None)  # no .txt
    (src / "MONEY/test").mkdir(parents=True)
    (src / "MONEY/test/MONEY_00002.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 corrupt" * 50)
    (src / "MONEY/test/MONEY_00002.txt").write_text(info_text("MONEY", 0.4))
    (src / "EMPTY/train").mkdir(parents=True)  # a word folder with no clips
    clip("bbaf2n.mpg", "ABOUT/stray.mp4")  # not in a split folder
    return src


@pytest.fixture(scope="module")
def lrw_run(lrw_src: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path, str]:
    tgt = tmp_path_factory.mktemp("lrw")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = main(["layout=lrw", f"src_path={lrw_src}", f"tgt_path={tgt}", "n_process=1"])
    return status, tgt, out.getvalue()


def test_lrw_clips_become_aligned_grey_regions_with_their_txt(lrw_run: tuple, lrw_src: Path, cropper: WordCropper):
    status, tgt, _ = lrw_run
    assert status == 1  # some clips failed
    frames = load_clip(tgt / "ABOUT/train/ABOUT_00001.npz")
    assert frames.shape == (29, 96, 96) and frames.dtype == np.uint8
    expected = cropper.crop(lrw_src / "ABOUT/train/ABOUT_00001.mp4")
    assert np.abs(frames.astype(float) - expected).mean() < 2  # the same crops, through the JPEG mosaic
    assert read_duration(tgt / "ABOUT/train/ABOUT_00001.txt") == pytest.approx(0.53)
    records = load_manifest(tgt)
    ok = records["ABOUT/train/ABOUT_00001"]
    assert (ok["status"], ok["frames"], ok["size"], ok["duration"], ok["layout"]) == ("ok", 29, "96x96", 0.53, "lrw")
    assert sorted(p.relative_to(tgt).as_posix() for p in tgt.rglob("*.npz")) == [
        "ABOUT/train/ABOUT_00001.npz", "ABOUT/val/ABOUT_00002.npz", "MONEY/train/MONEY_00001.npz"]
    dataset = data_loader.WordDataset(str(tgt), "train")
    assert dataset.words == ["ABOUT", "MONEY"] and dataset[0][0].shape == (1, 29, 88, 88)


def test_bad_lrw_input_is_named_with_its_reason_and_the_run_goes_on(lrw_run: tuple, lrw_src: Path):
    status, tgt, output = lrw_run
    records = load_manifest(tgt)
    missing = records["MONEY/train/MONEY_00003"]
    assert missing["status"] == "missing_txt"
    assert str(lrw_src / "MONEY/train/MONEY_00003.txt") in missing["message"]
    corrupt = records["MONEY/test/MONEY_00002"]
    assert corrupt["status"] in ("decode_error", "too_short")
    assert str(lrw_src / "MONEY/test/MONEY_00002.mp4") in corrupt["message"]
    assert not (tgt / "MONEY/test/MONEY_00002.npz").exists() and not (tgt / "MONEY/test/MONEY_00002.txt").exists()
    assert f"{lrw_src / 'EMPTY'}: a word folder with no video clip" in output
    assert f"{lrw_src / 'ABOUT/stray.mp4'}: not in LRW's layout" in output
    assert "ABOUT/stray" not in records
    assert f"missing_txt: {missing['message']}" in output


def test_lrw_rerun_skips_done_clips_and_a_bad_txt_gets_its_own_status(lrw_run: tuple, lrw_src: Path,
                                                                      capsys: pytest.CaptureFixture):
    _, tgt, _ = lrw_run
    before = (tgt / "ABOUT/train/ABOUT_00001.npz").stat().st_mtime_ns
    assert main(["layout=lrw", f"src_path={lrw_src}", f"tgt_path={tgt}", "n_process=1"]) == 1
    assert "0 to process" in capsys.readouterr().out
    assert (tgt / "ABOUT/train/ABOUT_00001.npz").stat().st_mtime_ns == before
    (lrw_src / "MONEY/train/MONEY_00003.txt").write_text("Text:  MONEY\n")
    try:
        main(["layout=lrw", f"src_path={lrw_src}", f"tgt_path={tgt}", "n_process=1", "retry_failed=1"])
    finally:
        (lrw_src / "MONEY/train/MONEY_00003.txt").unlink()
    record = load_manifest(tgt)["MONEY/train/MONEY_00003"]
    assert record["status"] == "bad_txt" and "no 'Duration" in record["message"]
    lines = (tgt / "manifest.jsonl").read_text().splitlines()
    assert all(json.loads(line)["layout"] == "lrw" for line in lines)


def test_lrw_layout_refuses_png_and_non_square_crops(lrw_src: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["layout=lrw", f"src_path={lrw_src}", f"tgt_path={tmp_path}", "format=png"]) == 2
    assert main(["layout=lrw", f"src_path={lrw_src}", f"tgt_path={tmp_path}", "size=96x48"]) == 2
    assert "square" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# infer.py: the top words of a raw clip


class _Classifier:
    """Stands in for a word network: remembers its input, scores words by fixed logits."""

    def __init__(self, count: int) -> None:
        self.logits = np.linspace(2.0, -2.0, count)[None]
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch)
        return np.repeat(self.logits, len(batch), axis=0)


WORDS = ["ABOUT", "BECAUSE", "FAMILY", "MONEY", "PEOPLE", "SCHOOL", "WORLD"]


def test_word_reading_prints_the_top_5_with_probabilities(lrw_run: tuple, lrw_src: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture):
    _, tgt, _ = lrw_run
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "a.mp4").symlink_to(lrw_src / "ABOUT/train/ABOUT_00001.mp4")
    (folder / "b.mp4").write_bytes(b"not a video at all" * 20)
    classify = _Classifier(len(WORDS))
    reader = word_videos.WordVideoReader(classify, WORDS)
    args = argparse.Namespace(video=str(folder), format="text", progress=False)
    results, failed = infer.run_word_videos(args, reader)
    out, err = capsys.readouterr()
    assert failed == 1 and [r.prediction for r in results] == ["ABOUT", ""]
    line, = out.splitlines()
    name, *tops = line.split("\t")
    assert name == "a.mp4" and [t.split(" ")[0] for t in tops] == WORDS[:5]
    probs = [float(t.split(" ")[1]) for t in tops]
    assert probs == sorted(probs, reverse=True) and 0.5 < sum(probs) <= 1.0
    assert f"error: {folder / 'b.mp4'}" in err
    # the network saw the clip as training sees the preprocessed clip (through the JPEG mosaic: close)
    (batch,) = classify.batches
    expected = data_loader.WordDataset(str(tgt), "train")[0][0]
    assert batch.shape == (1, 1, 29, 88, 88) and np.abs(batch[0] - expected).mean() < 0.05

    args.format = "json"
    infer.run_word_videos(args, reader)
    good, bad = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert good["file"] == "a.mp4" and good["frames"] == 29 and good["error"] is None
    assert [t["word"] for t in good["top"]] == WORDS[:5]
    assert good["top"][0]["probability"] == pytest.approx(probs[0], abs=1e-4)
    assert bad["file"] == "b.mp4" and bad["top"] == [] and "b.mp4" in bad["error"]


def test_a_longer_clip_is_read_in_its_middle(tmp_path: Path, grid_dir: Path, capsys: pytest.CaptureFixture):
    frames = read_video(grid_dir / "bbaf2n.mpg")[0][10:59]  # 49 frames
    write_video(tmp_path / "long.mp4", [f[16:272, 52:308, ::-1] for f in frames], 25)
    classify = _Classifier(len(WORDS))
    reader = word_videos.WordVideoReader(classify, WORDS, top=3)
    infer.run_word_videos(argparse.Namespace(video=str(tmp_path / "long.mp4"), format="text", progress=False), reader)
    out, err = capsys.readouterr()
    assert len(out.strip().split("\t")) == 4
    assert "49 frames, read as its middle 29" in err
    whole = reader.cropper.crop(tmp_path / "long.mp4")
    np.testing.assert_array_equal(classify.batches[0][0], word_input(whole[10:39]))


def test_infer_reads_the_top_5_words_with_a_word_checkpoint(lrw_src: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture):
    """infer.py end to end: a word checkpoint (a small untrained network) and raw clips, text and JSON."""
    from model.checkpoint import save_checkpoint
    from model.word_net import WordNet, WordNetConfig

    net = WordNet(WordNetConfig(num_classes=len(WORDS), width_mult=0.125, tcn_width_mult=0.0625, tcn_num_layers=1))
    net.initialize()
    save_checkpoint(tmp_path / "run" / "best", net, None,
                    {"words": WORDS, "normalisation": {"mean": [WORD_MEAN], "std": [WORD_STD]}})
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "about.mp4").symlink_to(lrw_src / "ABOUT/train/ABOUT_00001.mp4")
    (clips / "money.mp4").symlink_to(lrw_src / "MONEY/train/MONEY_00001.mp4")
    argv = [f"model_path={tmp_path / 'run'}", f"video={clips}", "num_gpus=0", "progress=0"]
    assert infer.main(argv) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["about.mp4", "money.mp4"]
    for line in lines:
        tops = [item.rsplit(" ", 1) for item in line.split("\t")[1:]]
        assert len(tops) == 5 and {word for word, _ in tops} <= set(WORDS)
        probs = [float(p) for _, p in tops]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-3
    assert "word classifier, 7 words" in err
    assert infer.main(argv + ["format=json", f"out={tmp_path / 'report'}"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in records] == ["about.mp4", "money.mp4"] and all(len(r["top"]) == 5 for r in records)
    assert (tmp_path / "report" / "predictions.csv").is_file()
    # Without --video a word checkpoint scores a data set: a missing one is named.
    assert infer.main([f"model_path={tmp_path / 'run'}", "num_gpus=0", f"image_path={tmp_path / 'none'}"]) == 2
    assert f"error: {tmp_path / 'none'}" in capsys.readouterr().err
    broken = json.loads((tmp_path / "run" / "best" / "meta.json").read_text())
    broken["words"] = WORDS[:3]
    (tmp_path / "run" / "best" / "meta.json").write_text(json.dumps(broken))
    assert infer.main(argv) == 2
    assert "3 words for 7 classes" in capsys.readouterr().err
