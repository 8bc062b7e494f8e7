"""The mouth extractor on the real GRID clips, checked against landmarks found independently."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.video.mouth_extractor import (
    MOUTH,
    REASONS,
    ExtractionError,
    MouthExtractor,
    crop_frames,
    frontal_face_detector,
    gaussian_smooth,
    load_models,
    read_video,
)
from utils.video.writer import write_video

CLIPS = ("bbaf2n", "lwbsza", "swwp2s")
W, H = 100, 50
REPO_ROOT = Path(__file__).resolve().parents[2]
# Tests run as root, whose CAP_DAC_OVERRIDE reads any file: a child without it sees modes as a user does.
WITHOUT_ROOT_READ = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                     "--bounding-set=-dac_override,-dac_read_search"]


def read_video_in_child(path: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """``read_video(path)`` in a fresh process; prints the failure reason; stderr is the process's own."""
    code = ("import sys\nfrom utils.video.mouth_extractor import ExtractionError, read_video\n"
            "try:\n    read_video(sys.argv[1])\nexcept ExtractionError as err:\n    print(err.reason, err)\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    return subprocess.run([*(prefix or []), sys.executable, "-c", code, str(path)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def extractor() -> MouthExtractor:
    return MouthExtractor()


@pytest.fixture(scope="module")
def extracted(grid_dir: Path, extractor: MouthExtractor) -> dict:
    return {name: extractor.extract(grid_dir / f"{name}.mpg") for name in CLIPS}


@pytest.fixture(scope="module")
def rgb_frames(grid_dir: Path) -> dict[str, np.ndarray]:
    return {name: np.stack([f[..., ::-1] for f in read_video(grid_dir / f"{name}.mpg")[0]]) for name in CLIPS}


@pytest.fixture(scope="module")
def reference_mouths(rgb_frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 20 mouth points of every frame, fitted on the full frame in a box the detector found on the
    full frame (every 5th frame, GRID heads barely move), with no tracking or smoothing."""
    detector, predictor = load_models()
    out = {}
    for name, frames in rgb_frames.items():
        points = []
        for t, frame in enumerate(frames):
            if t % 5 == 0:
                faces = detector(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 0)
                assert len(faces) == 1, f"{name}: the reference needs one face in frame {t}"
            shape = predictor(frame, faces[0])
            points.append([(p.x, p.y) for p in shape.parts()][MOUTH])
        out[name] = np.array(points, dtype=np.float64)
    return out


def to_crop(points: np.ndarray, centres: np.ndarray, scale: float, size=(W, H)) -> np.ndarray:
    """Source pixels (T, N, 2) into crop pixels, by the geometry MouthClip documents."""
    crop_centre = (np.array(size, dtype=np.float64) - 1) / 2
    return scale * (points - centres[:, None, :]) + crop_centre


@pytest.mark.parametrize("name", CLIPS)
def test_clip_is_75_rgb_crops_with_a_face_in_every_examined_frame(extracted, name):
    clip = extracted[name]
    assert clip.frames.shape == (75, H, W, 3) and clip.frames.dtype == np.uint8
    assert clip.centres.shape == (75, 2)
    assert clip.examined[0] == 0 and clip.examined[-1] == 74 and len(clip.examined) == 26
    assert clip.found.all() and clip.missed == 0
    assert clip.fps == 25.0 and clip.source_size == (360, 288)


@pytest.mark.parametrize("name", CLIPS)
def test_every_crop_holds_the_mouth_centred(extracted, reference_mouths, name):
    clip = extracted[name]
    mouth = to_crop(reference_mouths[name], clip.centres, clip.scale)
    # all 20 mouth points of every frame lie inside the crop, away from its border
    assert mouth[..., 0].min() >= 0.15 * W and mouth[..., 0].max() <= 0.85 * W
    assert mouth[..., 1].min() >= 0.1 * H and mouth[..., 1].max() <= 0.9 * H
    # and the mouth centre of every frame is near the crop centre
    offset = mouth.mean(axis=1) - (np.array([W, H]) - 1) / 2
    assert np.abs(offset[:, 0]).max() < 0.06 * W, offset[:, 0]
    assert np.abs(offset[:, 1]).max() < 0.12 * H, offset[:, 1]


@pytest.mark.parametrize("name", CLIPS)
def test_crop_pixels_are_the_frame_at_the_documented_geometry(extracted, rgb_frames, name):
    clip = extracted[name]
    u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    for t in (0, 37, 74):
        cx, cy = clip.centres[t]
        cos, sin = np.cos(clip.angles[t]), np.sin(clip.angles[t])  # the crop turned with the head (upright)
        du, dv = (u - (W - 1) / 2) / clip.scale, (v - (H - 1) / 2) / clip.scale
        map_x = (cx + cos * du - sin * dv).astype(np.float32)
        map_y = (cy + sin * du + cos * dv).astype(np.float32)
        expected = cv2.remap(rgb_frames[name][t], map_x, map_y, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
        assert np.abs(expected.astype(int) - clip.frames[t]).mean() < 1.0


@pytest.mark.parametrize("name", CLIPS)
def test_track_is_smooth_and_follows_the_mouth(extracted, reference_mouths, name):
    clip = extracted[name]
    assert np.abs(np.diff(clip.centres, n=2, axis=0)).max() < 0.5  # no frame-to-frame jitter
    raw = reference_mouths[name].mean(axis=1)
    assert np.abs(np.diff(raw, n=2, axis=0)).max() > 1.0  # which the raw per-frame centroid has
    assert np.abs(clip.centres - raw).max() < 3.0


@pytest.mark.parametrize("name", CLIPS)
def test_scale_matches_the_original_examples_framing(extracted, reference_mouths, name):
    """The original took 100 px = its first frame's mouth extent, widened by its padding arithmetic."""
    xs = reference_mouths[name][0, :, 0]
    original_width = xs.max() * 1.19 - xs.min() * 0.81
    assert 0.85 < (W / extracted[name].scale) / original_width < 1.15


def test_a_video_file_gives_the_crops_of_its_whole_frames(tmp_path, extractor, extracted, rgb_frames):
    """extract() converts to colour only the patch each crop reads: the crops must be those cut from the
    whole frames, for GRID's clips, an enlarged copy (crops blurred before shrinking) and a copy cut off
    below the mouth (crops reaching past the frame's edge)."""
    for name in CLIPS:
        whole = extractor.extract_frames(rgb_frames[name])
        assert np.array_equal(extracted[name].centres, whole.centres), name
        assert np.array_equal(extracted[name].frames, whole.frames), name
    frames = rgb_frames["swwp2s"][:30]
    videos = {"enlarged": [cv2.resize(f, (720, 576), interpolation=cv2.INTER_CUBIC) for f in frames],
              "cut below the mouth": [np.ascontiguousarray(f[:212]) for f in frames]}
    for what, images in videos.items():
        path = write_video(tmp_path / "clip.mp4", images, 25)
        clip = extractor.extract(path)
        whole = extractor.extract_frames(np.stack([f[..., ::-1] for f in read_video(path)[0]]))
        assert np.array_equal(clip.frames, whole.frames), what
        reach = clip.centres[:, 1].max() + H / 2 / clip.scale
        assert (clip.scale < 0.8) if what == "enlarged" else (reach > 212), (what, clip.scale, reach)


def test_frames_without_a_face_take_the_track_from_their_neighbours(extractor, extracted, rgb_frames):
    frames = rgb_frames["bbaf2n"].copy()
    frames[30:42] = 128  # the face is gone for 12 frames (examined: 30, 33, 36, 39)
    clip = extractor.extract_frames(frames, name="bbaf2n with a gap")
    assert clip.frames.shape == (75, H, W, 3)
    assert clip.missed == 4 and not clip.found[np.isin(clip.examined, [30, 33, 36, 39])].any()
    assert np.abs(np.diff(clip.centres, n=2, axis=0)).max() < 0.5
    assert np.abs(clip.centres - extracted["bbaf2n"].centres).max() < 3.0
    assert clip.scale == pytest.approx(extracted["bbaf2n"].scale, rel=0.05)


def test_too_few_faces_is_rejected_with_the_reason(extractor, rgb_frames):
    frames = rgb_frames["lwbsza"].copy()
    frames[20:] = 128
    with pytest.raises(ExtractionError) as err:
        extractor.extract_frames(frames, name="mostly-blank")
    assert err.value.reason == "few_faces" and "mostly-blank" in str(err.value)
    assert "7 of 26" in str(err.value)


def test_no_face_at_all_is_rejected(extractor):
    frames = np.random.default_rng(0).integers(0, 256, (20, 120, 160, 3), dtype=np.uint8)
    with pytest.raises(ExtractionError) as err:
        extractor.extract_frames(frames, name="noise")
    assert err.value.reason == "no_face" and str(err.value).startswith("noise: ")


def test_small_faces_are_found_by_upsampling(rgb_frames):
    frames = np.stack([cv2.resize(f, (144, 115), interpolation=cv2.INTER_AREA)
                       for f in rgb_frames["swwp2s"][:20]])
    extractor = MouthExtractor(size=(64, 32))
    assert not extractor.detector(frames[0], 0)  # too small for the detector without upsampling
    clip = extractor.extract_frames(frames)
    assert clip.frames.shape == (20, 32, 64, 3) and clip.found.all()


def test_size_option_changes_the_crop_not_the_framing(extracted, rgb_frames):
    clip = MouthExtractor(size=(128, 64)).extract_frames(rgb_frames["bbaf2n"][:30])
    assert clip.frames.shape == (30, 64, 128, 3)
    assert clip.scale / extracted["bbaf2n"].scale == pytest.approx(1.28, rel=0.05)


def test_step_one_examines_every_frame(rgb_frames):
    clip = MouthExtractor(step=1).extract_frames(rgb_frames["lwbsza"][:12])
    assert list(clip.examined) == list(range(12)) and clip.found.all()


def test_unreadable_files_get_machine_readable_reasons(tmp_path, grid_dir, extractor):
    (tmp_path / "empty.mpg").write_bytes(b"")
    (tmp_path / "text.mpg").write_text("not a video\n")
    (tmp_path / "cut.mpg").write_bytes((grid_dir / "bbaf2n.mpg").read_bytes()[:4096])
    cases = {"absent.mpg": "missing", "empty.mpg": "empty_file", "text.mpg": "decode_error",
             "cut.mpg": "too_short"}
    for file, reason in cases.items():
        with pytest.raises(ExtractionError) as err:
            extractor.extract(tmp_path / file)
        assert err.value.reason == reason and err.value.path == str(tmp_path / file)
        assert str(err.value).startswith(f"{tmp_path / file}: ")
    assert set(cases.values()) <= set(REASONS)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_unreadable_file_is_permission_denied_not_a_decode_error(tmp_path, grid_dir):
    video = tmp_path / "locked.mpg"
    video.write_bytes((grid_dir / "bbaf2n.mpg").read_bytes())
    video.chmod(0)
    proc = read_video_in_child(video, WITHOUT_ROOT_READ)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"permission_denied {video}: permission denied"), proc.stdout
    assert "permission_denied" in REASONS


def test_other_read_errors_are_named_with_the_os_reason(tmp_path, monkeypatch):
    video = tmp_path / "clip.mpg"
    video.write_bytes(b"x" * 100)
    real_open = open

    def failing_open(file, *args, **kwargs):
        if Path(file) == video:
            raise OSError(5, "Input/output error")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(ExtractionError, match="Input/output error") as err:
        read_video(video)
    assert err.value.reason == "read_error"


def test_ffmpeg_messages_stay_off_stderr(tmp_path):
    """A truncated mp4 (its index, the moov atom, is at the end) makes FFmpeg log "moov atom not found"."""
    video = tmp_path / "cut.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120))
    for frame in np.random.default_rng(0).integers(0, 255, (20, 120, 160, 3), dtype=np.uint8):
        writer.write(frame)
    writer.release()
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    proc = read_video_in_child(video)
    assert proc.stdout.startswith("decode_error "), proc.stdout
    assert proc.stderr == ""


def test_models_load_once_per_process(extractor):
    import face_recognition_models

    default = face_recognition_models.pose_predictor_model_location()
    assert load_models() is load_models(None) is load_models(Path(default)) is load_models(default)
    assert MouthExtractor(size=(64, 32)).predictor is extractor.predictor


def test_the_face_detector_is_dlibs_own_loaded_from_a_cached_copy(tmp_path, rgb_frames, monkeypatch):
    import dlib

    built = dlib.get_frontal_face_detector()
    built.save(str(tmp_path / "reference.svm"))
    reference = (tmp_path / "reference.svm").read_bytes()
    grey = [cv2.cvtColor(frames[t], cv2.COLOR_RGB2GRAY) for frames in rgb_frames.values() for t in (0, 40)]
    expected = [list(built(image, 0)) for image in grey]
    cache = tmp_path / "cache"
    first = frontal_face_detector(cache)  # built, and saved for next time
    (copy,) = cache.glob("dlib-*-frontal_face_detector.svm")
    assert copy.read_bytes() == reference and [list(first(image, 0)) for image in grey] == expected
    copy.write_bytes(reference[:50_000])  # damaged: built again and the copy rewritten
    assert [list(frontal_face_detector(cache)(image, 0)) for image in grey] == expected
    assert copy.read_bytes() == reference
    with monkeypatch.context() as patch:  # from the copy, not built
        patch.setattr(dlib, "get_frontal_face_detector", lambda: pytest.fail("built although a copy was saved"))
        assert [list(frontal_face_detector(cache)(image, 0)) for image in grey] == expected
    (tmp_path / "blocker").write_text("")  # a cache that cannot be made: still a detector
    assert [list(frontal_face_detector(tmp_path / "blocker" / "cache")(image, 0)) for image in grey] == expected
    assert not list(cache.glob(".*.tmp"))


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        MouthExtractor(size=(0, 50))
    with pytest.raises(ValueError):
        MouthExtractor(step=0)
    with pytest.raises(ValueError):
        MouthExtractor(min_face_fraction=0)
    with pytest.raises(ValueError):
        ExtractionError("bogus", "x", "y")


@pytest.mark.parametrize("scale", [1.0, 0.3, 2.0])
def test_crop_frames_puts_the_centre_at_the_crop_centre(scale):
    frame = np.zeros((400, 600, 3), dtype=np.uint8)
    frame[200:203, 300:303] = 255  # a 3x3 dot centred on (301, 201)
    crop = crop_frames([frame], np.array([[301.0, 201.0]]), scale, (40, 20))[0, ..., 0].astype(float)
    ys, xs = np.mgrid[:20, :40]
    centre = (float((xs * crop).sum() / crop.sum()), float((ys * crop).sum() / crop.sum()))
    assert centre == pytest.approx((19.5, 9.5), abs=0.3)


def test_gaussian_smooth_keeps_constant_and_linear_tracks():
    line = np.stack([np.arange(20.0), np.full(20, 5.0)], axis=1)
    smoothed = gaussian_smooth(line, 2.0)
    assert np.allclose(smoothed[6:-6], line[6:-6]) and np.allclose(smoothed[:, 1], 5.0)
    assert np.array_equal(gaussian_smooth(line, 0), line)


def test_track_follows_a_moving_head_and_a_jump(extractor, extracted, rgb_frames):
    """Slide the clip across a larger canvas (1.2 px/frame), then jump 60 px: the local search loses the
    face at the jump, the full-frame search finds it again, and the track follows both."""
    offsets = np.array([(round(1.2 * t), round(0.6 * t)) for t in range(75)])
    offsets[40:] += (60, 0)
    canvas = np.zeros((75, 288 + 60, 360 + 160, 3), dtype=np.uint8)
    for t, (dx, dy) in enumerate(offsets):
        canvas[t, dy:dy + 288, dx:dx + 360] = rgb_frames["swwp2s"][t]
    clip = extractor.extract_frames(canvas)
    assert clip.found.all()
    error = np.abs(clip.centres - (extracted["swwp2s"].centres + offsets))
    assert error[:34].max() < 2.0 and error[47:].max() < 2.0
