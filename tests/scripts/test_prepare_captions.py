"""utils/prepare_captions.py on synthetic captioned talks: clips, transcripts, manifest, skips, failures, resume."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from utils.data.clip_store import load_clip
from utils.data.sentence_clips import build_records, discover_clips
from utils.prepare_captions import build_parser, main
from utils.synthetic.talks import generate_talks
from utils.text.captions import normalise_text, read_captions

REPO = Path(__file__).resolve().parents[2]
SIZE = "48x24"


def manifest(tgt: Path) -> dict[str, dict]:
    return {r["clip"]: r for r in map(json.loads, (tgt / "manifest.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def talks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two speakers' talks, plus: a talk with hand-written cues, one with a broken .srt, one without
    subtitles and a file that is no video."""
    root = tmp_path_factory.mktemp("talks")
    generate_talks(root, speakers=[1, 2], sentences_per_talk=3, seed=3, progress=False)
    first = read_captions(root / "s1_talk0.srt")[0]
    shutil.copy(root / "s1_talk0.mp4", root / "custom.mp4")
    (root / "custom.srt").write_text(
        f"1\n00:00:00,100 --> 00:00:00,300\nToo short\n\n"
        f"2\n{_srt_time(first.start)} --> {_srt_time(first.end)}\n{first.text}\n\n"
        f"3\n00:00:03,000 --> 00:00:03,900\n[Music]\n\n"
        f"4\n00:09:00,000 --> 00:09:02,000\nLong after the end\n")
    shutil.copy(root / "s2_talk0.mp4", root / "broken.mp4")
    (root / "broken.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nfine\n\n2\n00:00:03,000 to 00:00:04,000\nbad\n")
    shutil.copy(root / "s2_talk0.mp4", root / "silent.mp4")
    (root / "junk.mp4").write_bytes(b"not a video at all" * 100)
    (root / "junk.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nhello\n")
    with open(root / "speakers.txt", "a") as f:
        f.write("custom s1\n# comment\nbroken s2\n")
    return root


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


@pytest.fixture(scope="module")
def prepared(talks: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    tgt = tmp_path_factory.mktemp("crops")
    status = main([f"src_path={talks}", f"tgt_path={tgt}", f"speaker={talks / 'speakers.txt'}", "n_process=1",
                   f"size={SIZE}"])
    return tgt, status


def test_each_cue_becomes_a_clip_with_its_transcript(talks: Path, prepared: tuple[Path, int]):
    tgt, _ = prepared
    records = manifest(tgt)
    for speaker in (1, 2):
        cues = read_captions(talks / f"s{speaker}_talk0.srt")
        for index, cue in enumerate(cues):
            clip = tgt / f"s{speaker}" / f"s{speaker}_talk0_{index:03d}.npz"
            frames = load_clip(clip)
            assert frames.shape[1:] == (24, 48, 3)
            assert abs(len(frames) - (cue.end - cue.start) * 25) <= 2
            assert clip.with_suffix(".txt").read_text() == normalise_text(cue.text)[0] + "\n"
    video = records["s1/s1_talk0"]
    assert (video["status"], video["cues"], video["clips"], video["settings"]["size"]) == ("ok", 3, 3, SIZE)


def test_data_loader_reads_the_transcripts(talks: Path, prepared: tuple[Path, int]):
    tgt, _ = prepared
    records = {r.clip_id: r.sentence for r in build_records(discover_clips(tgt), align_path=None)}
    said = {f"s{s}/s{s}_talk0_{i:03d}": normalise_text(cue.text)[0]
            for s in (1, 2) for i, cue in enumerate(read_captions(talks / f"s{s}_talk0.srt"))}
    assert {clip: text for clip, text in records.items() if "talk" in clip} == said
    assert any("'" in text for text in said.values())  # the caption alphabet's apostrophe is read


def test_skipped_cues_and_failed_videos_are_in_the_manifest_and_the_run_goes_on(talks: Path,
                                                                                prepared: tuple[Path, int]):
    tgt, status = prepared
    records = manifest(tgt)
    custom = {r["clip"]: r for r in records.values() if r.get("video") == "s1/custom" and r["clip"] != "s1/custom"}
    assert [custom[f"s1/custom_{i:03d}"]["status"] for i in range(4)] == ["too_short", "ok", "no_speech", "too_short"]
    assert "beyond the end of the video" in custom["s1/custom_003"]["message"]
    assert (tgt / "s1" / "custom_001.npz").is_file() and not (tgt / "s1" / "custom_000.npz").exists()
    broken = records["s2/broken"]
    assert broken["status"] == "bad_subtitles"
    assert broken["message"].startswith(f"{talks / 'broken.srt'}:5: ")
    assert records["silent/silent"]["status"] == "no_subtitles"
    assert records["junk/junk"]["status"] == "decode_error"
    assert status == 1  # some videos failed; the others were read


def test_a_rerun_resumes_and_other_settings_redo(talks: Path, prepared: tuple[Path, int], tmp_path: Path):
    tgt = tmp_path / "crops"
    shutil.copytree(prepared[0], tgt)  # a moved data set resumes: the manifest names clips relative to it
    kept = tgt / "s2" / "s2_talk0_000.npz"
    stamp = kept.stat().st_mtime_ns
    removed = tgt / "s1" / "s1_talk0_002.npz"
    removed.unlink()
    (tgt / "s1" / ".s1_talk0_009.npz.tmp").write_bytes(b"left by a killed run")
    base = [sys.executable, "utils/prepare_captions.py", f"src_path={talks}", f"tgt_path={tgt}",
            f"speaker={talks / 'speakers.txt'}", "n_process=2", f"size={SIZE}"]
    run = subprocess.run(base, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "removed 1 temporary file" in run.stdout
    assert "1 to read" in run.stdout, run.stdout  # only the talk that lost a clip
    assert removed.is_file() and kept.stat().st_mtime_ns == stamp
    assert run.returncode == 1  # the failed videos are still failed (not retried)
    again = subprocess.run([*base, "gap=0.2", "--margin=0.5"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "0 already done or failed before" in again.stdout
    records = manifest(tgt)
    assert records["s2/s2_talk0"]["settings"]["gap"] == 0.2 and records["s2/s2_talk0"]["settings"]["margin"] == 0.5
    # half a second of the talk's pauses on each side of the cue
    cue, span = read_captions(talks / "s2_talk0.srt")[1], records["s2/s2_talk0_001"]
    assert span["start"] == pytest.approx(cue.start - 0.5, abs=1e-3)
    assert span["end"] == pytest.approx(cue.end + 0.5, abs=1e-3)
    assert abs(len(load_clip(tgt / "s2" / "s2_talk0_001.npz")) - (cue.end - cue.start + 1.0) * 25) <= 2
    (talks / "silent.srt").write_text((talks / "s2_talk0.srt").read_text())  # subtitles added since
    try:
        added = subprocess.run([*base, "gap=0.2", "--margin=0.5"], cwd=REPO, capture_output=True, text=True,
                               timeout=300)
    finally:
        (talks / "silent.srt").unlink()
    assert "1 to read" in added.stdout and manifest(tgt)["silent/silent"]["clips"] == 3


def test_bad_speaker_mapping_and_folders_are_refused(talks: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    mapping = tmp_path / "map.txt"
    mapping.write_text("a s1\nb has three parts\n")
    assert main([f"src_path={talks}", f"tgt_path={tmp_path / 'x'}", f"speaker={mapping}"]) == 2
    assert f"{mapping}:2: expected 'STEM SPEAKER'" in capsys.readouterr().err
    assert main([f"src_path={tmp_path / 'none'}", f"tgt_path={tmp_path / 'x'}"]) == 2
    assert main([f"src_path={talks}", f"tgt_path={tmp_path / 'x'}", "min_duration=4", "max_duration=3"]) == 2


def run_script(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "utils/prepare_captions.py", *args, "n_process=1", f"size={SIZE}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_a_replaced_talk_video_is_read_again(talks: Path, tmp_path: Path):
    src, tgt = tmp_path / "src", tmp_path / "crops"
    src.mkdir()
    shutil.copyfile(talks / "s1_talk0.mp4", src / "talk.mp4")
    shutil.copyfile(talks / "s1_talk0.srt", src / "talk.srt")
    args = (f"src_path={src}", f"tgt_path={tgt}")
    assert run_script(*args).returncode == 0
    first = {p.name: p.read_bytes() for p in (tgt / "talk").glob("*.npz")}
    assert len(first) == 3
    unchanged = run_script(*args)
    assert unchanged.returncode == 0 and "1 already done or failed before, 0 to read" in unchanged.stdout
    shutil.copyfile(talks / "s2_talk0.mp4", src / "talk.mp4")  # another video, the same subtitles
    rerun = run_script(*args)
    assert rerun.returncode == 0 and "0 already done or failed before, 1 to read" in rerun.stdout, rerun.stdout
    video = manifest(tgt)["talk/talk"]
    assert video["inputs"]["video"]["size"] == (talks / "s2_talk0.mp4").stat().st_size
    now = {p.name: p.read_bytes() for p in (tgt / "talk").glob("*.npz")}
    assert len(now) == video["clips"] and all(now[name] != first.get(name) for name in now)


def test_edited_subtitles_are_read_again_and_touched_ones_are_not(talks: Path, tmp_path: Path):
    src, tgt = tmp_path / "src", tmp_path / "crops"
    src.mkdir()
    shutil.copyfile(talks / "s1_talk0.mp4", src / "talk.mp4")
    shutil.copyfile(talks / "s1_talk0.srt", src / "talk.srt")
    args = (f"src_path={src}", f"tgt_path={tgt}")
    assert run_script(*args).returncode == 0
    stamp = (src / "talk.srt").stat()
    os.utime(src / "talk.srt", ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # touched, the same cues
    assert "0 to read" in run_script(*args).stdout
    cues = (src / "talk.srt").read_text()
    edited = cues.replace(read_captions(src / "talk.srt")[0].text, "hello there")
    assert len(edited) != len(cues)
    (src / "talk.srt").write_text(edited)
    assert "1 to read" in run_script(*args).stdout
    assert (tgt / "talk" / "talk_000.txt").read_text() == "hello there\n"


# Tests run as root, whose CAP_DAC_OVERRIDE writes anywhere: a child without it sees modes as a user does.
WITHOUT_ROOT_WRITE = ("setpriv", "--inh-caps=-dac_override,-dac_read_search",
                      "--bounding-set=-dac_override,-dac_read_search")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_unwritable_output_folder_is_refused_before_any_video_is_read(talks: Path, tmp_path: Path):
    src, tgt = tmp_path / "src", tmp_path / "crops"
    src.mkdir()
    for suffix in (".mp4", ".srt"):
        shutil.copyfile(talks / f"s1_talk0{suffix}", src / f"talk{suffix}")
    (tgt / "talk").mkdir(parents=True)
    (tgt / "talk").chmod(0o555)
    run = run_script(f"src_path={src}", f"tgt_path={tgt}", prefix=WITHOUT_ROOT_WRITE)
    assert run.returncode == 2
    assert run.stderr == f"error: cannot write the clips: {tgt / 'talk'}: not writable (Permission denied)\n"
    assert "to read" not in run.stdout and not (tgt / "manifest.jsonl").exists()


@pytest.mark.parametrize("setting, expected", [
    ("n_process=0", "--n_process: expected an integer of at least 1"),
    ("gap=-0.1", "--gap: expected a number of at least 0"),
    ("min_duration=0", "--min_duration: expected a number above 0"),
    ("max_duration=nan", "--max_duration: expected a number above 0"),
    ("margin=-1", "--margin: expected a number of at least 0"),
    ("size=0x24", "--size: size must be positive"),
])
def test_settings_are_range_checked_when_parsed(tmp_path: Path, setting: str, expected: str):
    run = subprocess.run([sys.executable, "utils/prepare_captions.py", f"src_path={tmp_path}",
                          f"tgt_path={tmp_path / 'out'}", setting], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and expected in run.stderr, run.stderr
    assert not (tmp_path / "out").exists()


def test_every_flag_has_help_with_its_default():
    for action in build_parser()._actions:
        assert action.help and (action.dest == "help" or "default" in action.help), action.dest
