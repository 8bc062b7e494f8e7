"""utils/preprocess_data.py end to end on the real GRID clips plus broken and faceless files."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.own_videos import encoded, grid_rgb
from utils.data.clip_store import load_packed, load_png_folder
from utils.preprocess_data import build_parser, load_manifest, main
from utils.video.mouth_extractor import MouthExtractor

REPO = Path(__file__).resolve().parents[2]
GOOD = {"s1/bbaf2n": "bbaf2n.mpg", "s1/lwbsza": "lwbsza.mpg", "s2/swwp2s": "swwp2s.mpg"}
BAD = {"s3/empty": "empty_file", "s3/cut": "too_short", "s3/notvideo": "decode_error", "s3/noise": "no_face",
       "s3/half": "truncated"}


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def link_clips(src: Path, grid_dir: Path, clips: dict[str, str]) -> None:
    """Lay out clip ids (speaker/clip) as links to the shared clips, in a temporary folder."""
    for clip, file in clips.items():
        (src / clip).parent.mkdir(parents=True, exist_ok=True)
        (src / clip).with_suffix(".mpg").symlink_to(grid_dir / file)


def write_noise_video(path: Path, frames: int = 30) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    writer.release()


@pytest.fixture(scope="module")
def src(tmp_path_factory, grid_dir: Path) -> Path:
    src = tmp_path_factory.mktemp("videos")
    link_clips(src, grid_dir, GOOD)
    (src / "s3").mkdir()
    (src / "s3/empty.mpg").write_bytes(b"")
    whole = (grid_dir / "bbaf2n.mpg").read_bytes()
    (src / "s3/cut.mpg").write_bytes(whole[:4096])
    (src / "s3/half.mpg").write_bytes(whole[:len(whole) // 2])  # 38 frames of a clip cut off: no crops
    encoded(grid_rgb(grid_dir / "bbaf2n.mpg")[:38], src / "s3/short.mp4")  # a whole clip of 38 frames: kept
    (src / "s3/notvideo.mp4").write_text("this is not a video\n")
    (src / "s3/readme.txt").write_text("not a video suffix: ignored\n")
    (src / "s3/._noise.avi").write_bytes(b"\0\5\26\7 macOS resource fork: ignored")
    write_noise_video(src / "s3/noise.avi")
    return src


@pytest.fixture(scope="module")
def serial(src: Path, tmp_path_factory) -> tuple[int, Path]:
    tgt = tmp_path_factory.mktemp("serial")
    return main([f"--src_path={src}", f"--tgt_path={tgt}", "--n_process=1"]), tgt


@pytest.fixture(scope="module")
def parallel(src: Path, tmp_path_factory) -> tuple[int, Path]:
    tgt = tmp_path_factory.mktemp("parallel")
    return main([f"src_path={src}", f"tgt_path={tgt}", "n_process=2"]), tgt  # key=value spelling too


def test_every_clip_gets_its_status_while_the_good_ones_succeed(serial, src):
    rc, tgt = serial
    assert rc == 1  # a partial failure is not a success
    records = load_manifest(tgt)
    assert set(records) == set(GOOD) | set(BAD) | {"s3/short"}
    assert records["s3/short"]["status"] == "ok" and records["s3/short"]["frames"] == 38  # kept, length noted
    assert "read in part" in records["s3/half"]["message"]  # both lengths named
    for clip in GOOD:
        assert records[clip]["status"] == "ok" and records[clip]["frames"] == 75
        assert records[clip]["size"] == "100x50" and records[clip]["format"] == "packed"
        assert load_packed(tgt / f"{clip}.npz").shape == (75, 50, 100, 3)
    for clip, reason in BAD.items():
        assert records[clip]["status"] == reason
        assert records[clip]["message"].startswith(str(src / clip)), records[clip]["message"]
        assert not (tgt / f"{clip}.npz").exists()
    assert sorted(p.name for p in tgt.rglob("*") if p.is_file()) == [
        "bbaf2n.npz", "lwbsza.npz", "manifest.jsonl", "short.npz", "swwp2s.npz"]
    for file in ("s1/bbaf2n.npz", "manifest.jsonl"):  # not the owner-only mode of a temporary file
        assert (tgt / file).stat().st_mode & 0o777 == 0o666 & ~umask()


def test_manifest_is_one_sorted_json_record_per_clip(serial):
    lines = (serial[1] / "manifest.jsonl").read_text().splitlines()
    clips = [json.loads(line)["clip"] for line in lines]
    assert clips == sorted([*GOOD, *BAD, "s3/short"])


def test_serial_and_parallel_runs_give_identical_output(serial, parallel):
    assert parallel[0] == serial[0]
    for clip in [*GOOD, "s3/short"]:
        assert (serial[1] / f"{clip}.npz").read_bytes() == (parallel[1] / f"{clip}.npz").read_bytes()
    assert load_manifest(serial[1]) == load_manifest(parallel[1])


def test_packed_clips_are_small_and_close_to_the_crops(serial, grid_dir):
    raw = MouthExtractor().extract(grid_dir / "swwp2s.mpg").frames
    packed = load_packed(serial[1] / "s2/swwp2s.npz")
    assert np.abs(packed.astype(int) - raw).mean() < 3.0
    png_bytes = sum(len(cv2.imencode(".png", frame[..., ::-1])[1]) for frame in raw)
    assert (serial[1] / "s2/swwp2s.npz").stat().st_size * 4 <= png_bytes


def test_rerun_skips_done_and_failed_clips(serial, src, tmp_path, capsys):
    tgt = tmp_path / "tgt"
    shutil.copytree(serial[1], tgt)
    before = {p: p.stat().st_mtime_ns for p in tgt.rglob("*.npz")}
    assert main([f"--src_path={src}", f"--tgt_path={tgt}", "--n_process=1"]) == 1
    assert "0 to process" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in tgt.rglob("*.npz")} == before
    assert load_manifest(tgt) == load_manifest(serial[1])


def test_retry_failed_processes_failed_clips_again_and_a_fixed_video_is_retried_anyway(tmp_path, grid_dir, capsys):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    link_clips(src, grid_dir, {"s1/bbaf2n": "bbaf2n.mpg"})
    (src / "s9").mkdir()
    (src / "s9/late.mpg").write_bytes(b"")
    args = [f"--src_path={src}", f"--tgt_path={tgt}", "--n_process=1"]
    assert main(args) == 1 and load_manifest(tgt)["s9/late"]["status"] == "empty_file"
    done = (tgt / "s1/bbaf2n.npz").stat().st_mtime_ns
    (tgt / "s9/.late.x1y2.tmp").write_bytes(b"half")  # what a killed run leaves behind
    capsys.readouterr()
    assert main(args) == 1  # the same empty file: still recorded as failed, not retried without the flag
    out = capsys.readouterr().out
    assert "0 to process" in out and "removed 1 temporary file" in out
    assert not (tgt / "s9/.late.x1y2.tmp").exists()
    assert main(args + ["retry_failed=true"]) == 1  # retried: the same file fails the same way
    assert "1 to process" in capsys.readouterr().out and load_manifest(tgt)["s9/late"]["status"] == "empty_file"
    (src / "s9/late.mpg").unlink()
    (src / "s9/late.mpg").symlink_to(grid_dir / "lwbsza.mpg")  # the file is fixed: another input, read again
    assert main(args) == 0
    assert "1 to process" in capsys.readouterr().out
    assert load_manifest(tgt)["s9/late"]["status"] == "ok"
    assert load_packed(tgt / "s9/late.npz").shape == (75, 50, 100, 3)
    assert (tgt / "s1/bbaf2n.npz").stat().st_mtime_ns == done


def test_png_format_has_the_original_layout(tmp_path, grid_dir, serial):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    link_clips(src, grid_dir, {"s1/bbaf2n": "bbaf2n.mpg"})
    args = [f"--src_path={src}", f"--tgt_path={tgt}", "--n_process=1", "--format=png"]
    assert main(args) == 0
    folder = tgt / "s1/bbaf2n"
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask()
    assert sorted(p.name for p in folder.iterdir()) == [f"mouth_{i:03d}.png" for i in range(75)]
    assert sorted(p.relative_to(tgt).as_posix() for p in tgt.iterdir()) == ["manifest.jsonl", "s1"]
    for png in folder.iterdir():
        image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        assert image.shape == (50, 100, 3) and image.dtype == np.uint8
    frames = load_png_folder(folder)
    assert np.abs(frames.astype(int) - load_packed(serial[1] / "s1/bbaf2n.npz")).mean() < 3.0
    assert load_manifest(tgt)["s1/bbaf2n"]["format"] == "png"
    mtime = folder.stat().st_mtime_ns
    assert main(args) == 0 and folder.stat().st_mtime_ns == mtime  # done: skipped


def test_size_option_and_a_size_change_redoes_the_clip(tmp_path, grid_dir):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    link_clips(src, grid_dir, {"s2/swwp2s": "swwp2s.mpg"})
    assert main([f"src_path={src}", f"tgt_path={tgt}", "n_process=1", "size=128x64"]) == 0
    assert load_packed(tgt / "s2/swwp2s.npz").shape == (75, 64, 128, 3)
    assert load_manifest(tgt)["s2/swwp2s"]["size"] == "128x64"
    assert main([f"src_path={src}", f"tgt_path={tgt}", "n_process=1"]) == 0
    assert load_packed(tgt / "s2/swwp2s.npz").shape == (75, 50, 100, 3)


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "utils/preprocess_data.py", *args, "n_process=1"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_a_replaced_video_is_processed_again(tmp_path, grid_dir, serial):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    for clip, file in (("s1/bbaf2n", "bbaf2n.mpg"), ("s2/swwp2s", "swwp2s.mpg")):
        (src / clip).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grid_dir / file, src / f"{clip}.mpg")
    args = (f"src_path={src}", f"tgt_path={tgt}")
    assert run_script(*args).returncode == 0
    first = (tgt / "s1/bbaf2n.npz").read_bytes()
    kept = (tgt / "s2/swwp2s.npz").stat().st_mtime_ns
    shutil.copyfile(grid_dir / "lwbsza.mpg", src / "s1/bbaf2n.mpg")  # another clip under the same name
    rerun = run_script(*args)
    assert rerun.returncode == 0 and "1 already done or failed before, 1 to process" in rerun.stdout, rerun.stdout
    assert (tgt / "s1/bbaf2n.npz").read_bytes() != first
    assert (tgt / "s1/bbaf2n.npz").read_bytes() == (serial[1] / "s1/lwbsza.npz").read_bytes()  # the new video's crops
    assert (tgt / "s2/swwp2s.npz").stat().st_mtime_ns == kept
    stamp = load_manifest(tgt)["s1/bbaf2n"]["inputs"]["video"]
    assert stamp == {"size": (grid_dir / "lwbsza.mpg").stat().st_size,
                     "mtime_ns": (src / "s1/bbaf2n.mpg").stat().st_mtime_ns}


def test_another_format_and_size_replace_the_old_output_and_an_unchanged_rerun_skips(tmp_path, grid_dir, serial):
    from utils.data.clip_store import load_clip
    from utils.data.sentence_clips import discover_clips

    src, tgt = tmp_path / "src", tmp_path / "tgt"
    clips = {"s1/bbaf2n": "bbaf2n.mpg", "s1/lwbsza": "lwbsza.mpg"}
    link_clips(src, grid_dir, clips)  # links to the files the serial run read: its records are theirs
    (tgt / "s1").mkdir(parents=True)
    for clip in clips:
        shutil.copy(serial[1] / f"{clip}.npz", tgt / f"{clip}.npz")
    records = load_manifest(serial[1])
    (tgt / "manifest.jsonl").write_text("".join(json.dumps(records[clip]) + "\n" for clip in clips))
    args = (f"src_path={src}", f"tgt_path={tgt}", "format=png", "size=50x24")
    assert "0 to process" in run_script(f"src_path={src}", f"tgt_path={tgt}").stdout  # packed 100x50: done

    run = run_script(*args)
    assert run.returncode == 0 and "2 to process" in run.stdout, run.stdout
    assert not list(tgt.rglob("*.npz"))  # the packed outputs were replaced, not left beside the PNGs
    found = discover_clips(tgt)
    assert found == {clip: tgt / clip for clip in clips}
    records = load_manifest(tgt)
    for clip, path in found.items():
        assert (records[clip]["format"], records[clip]["size"]) == ("png", "50x24")
        assert load_clip(path).shape == (75, 24, 50, 3)

    before = {p: p.stat().st_mtime_ns for p in tgt.rglob("*.png")}
    again = run_script(*args)  # unchanged: a stat of each video decides it, none is read
    assert again.returncode == 0 and "2 already done or failed before, 0 to process" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in tgt.rglob("*.png")} == before

    shutil.copy(serial[1] / "s1/bbaf2n.npz", tgt / "s1/bbaf2n.npz")  # an old output beside the current one
    with pytest.raises(ValueError, match=re.escape(f"{tgt / 's1/bbaf2n'} and {tgt / 's1/bbaf2n.npz'}")):
        discover_clips(tgt)
    healed = run_script(*args)
    assert healed.returncode == 0 and "1 to process" in healed.stdout
    assert discover_clips(tgt) == found and not list(tgt.rglob("*.npz"))


def test_interrupted_run_keeps_a_valid_manifest_and_resumes(tmp_path, grid_dir, monkeypatch):
    import utils.preprocess_data as prep

    src, tgt = tmp_path / "src", tmp_path / "tgt"
    link_clips(src, grid_dir, GOOD)
    real = prep.process_clip
    calls = []

    def interrupted_after_one(job):
        if calls:
            raise KeyboardInterrupt
        calls.append(job.clip)
        return real(job)

    monkeypatch.setattr(prep, "process_clip", interrupted_after_one)
    assert main([f"--src_path={src}", f"--tgt_path={tgt}", "--n_process=1"]) == 130
    assert list(load_manifest(tgt)) == calls
    monkeypatch.setattr(prep, "process_clip", real)
    first = (tgt / f"{calls[0]}.npz").stat().st_mtime_ns
    assert main([f"--src_path={src}", f"--tgt_path={tgt}", "--n_process=1"]) == 0
    assert set(load_manifest(tgt)) == set(GOOD)
    assert (tgt / f"{calls[0]}.npz").stat().st_mtime_ns == first


def test_killed_run_resumes_and_skips_finished_clips(tmp_path, grid_dir):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    six = {f"s{k}/{Path(clip).name}": file for k in (1, 2) for clip, file in GOOD.items()}
    link_clips(src, grid_dir, six)
    cmd = [sys.executable, "utils/preprocess_data.py", f"src_path={src}", f"tgt_path={tgt}", "n_process=1"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = tgt / "manifest.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.is_file() and manifest.read_text().count('"status": "ok"'):
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {clip: (tgt / f"{clip}.npz").stat().st_mtime_ns
                for clip, record in load_manifest(tgt).items() if record["status"] == "ok"}
    assert 1 <= len(finished) < 6, "the run should have been killed halfway"
    assert main([f"--src_path={src}", f"--tgt_path={tgt}", "--n_process=1"]) == 0
    records = load_manifest(tgt)
    assert len(records) == 6 and all(r["status"] == "ok" for r in records.values())
    assert all((tgt / f"{clip}.npz").stat().st_mtime_ns == mtime for clip, mtime in finished.items())
    assert not list(tgt.rglob("*.tmp"))


def test_torn_manifest_line_is_ignored(tmp_path):
    torn = '{"clip": "s1/a", "status": "ok", "frames": 75}\n{"clip": "s1/b", "sta'
    (tmp_path / "manifest.jsonl").write_text(torn)
    assert list(load_manifest(tmp_path)) == ["s1/a"]


def test_nothing_to_do_is_an_error(tmp_path):
    assert main([f"--src_path={tmp_path / 'absent'}", f"--tgt_path={tmp_path / 'out'}"]) == 2
    (tmp_path / "videos").mkdir()
    assert main([f"--src_path={tmp_path / 'videos'}", f"--tgt_path={tmp_path / 'out'}"]) == 2


@pytest.mark.parametrize("setting, expected", [("n_process=0", "--n_process: expected an integer of at least 1"),
                                               ("n_process=two", "--n_process: expected an integer of at least 1"),
                                               ("size=100x0", "--size: size must be positive")])
def test_settings_are_range_checked_when_parsed(tmp_path, setting, expected):
    proc = subprocess.run([sys.executable, "utils/preprocess_data.py", f"src_path={tmp_path}",
                           f"tgt_path={tmp_path / 'out'}", setting], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_every_flag_has_help_with_its_default_and_the_script_runs_from_utils():
    for action in build_parser()._actions:
        assert action.help and (action.dest == "help" or "default" in action.help), action.dest
    out = subprocess.run([sys.executable, "preprocess_data.py", "--help"], cwd=REPO / "utils",
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--src_path", "--tgt_path", "--n_process", "--size", "--format", "--retry_failed"):
        assert flag in out


def test_summary_names_failures_and_odd_lengths(capsys):
    from utils.preprocess_data import Job, summarise

    jobs = [Job(c, Path(f"{c}.mpg"), Path(f"out/{c}.npz")) for c in ("s1/a", "s1/b", "s1/c", "s1/d")]
    records = {"s1/a": {"clip": "s1/a", "status": "ok", "frames": 75, "message": ""},
               "s1/b": {"clip": "s1/b", "status": "ok", "frames": 40, "message": ""},
               "s1/c": {"clip": "s1/c", "status": "no_face", "frames": None, "message": "s1/c.mpg: no face"}}
    assert summarise(jobs, records, processed=3, seconds=1.5) == 1
    out = capsys.readouterr().out
    assert "processed 3 clip(s) in 1.5 s, 2.00 clips/s" in out
    assert "4 clip(s): 2 ok, 1 failed, 1 no_face, 1 not processed yet" in out
    assert "1 ok clip(s) with other than 75 frames (kept): s1/b (40)" in out
    assert "no_face: s1/c.mpg: no face" in out and "--retry_failed" in out


def test_find_jobs_maps_videos_to_targets(tmp_path, capsys):
    from utils.preprocess_data import find_jobs

    for name in ("s1/a.mpg", "s1/a.MP4", "s2/b.avi", "s2/notes.txt", "s2/.c.mpg", "top.mov"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(b"x")
    packed = find_jobs(tmp_path / "src", tmp_path / "tgt", "packed")
    assert [(j.clip, j.source.name, j.target.relative_to(tmp_path / "tgt").as_posix()) for j in packed] == [
        ("s1/a", "a.MP4", "s1/a.npz"), ("s2/b", "b.avi", "s2/b.npz"), ("top", "top.mov", "top.npz")]
    assert "a.mpg ignored" in capsys.readouterr().err
    png = find_jobs(tmp_path / "src", tmp_path / "tgt", "png")
    assert [j.target.relative_to(tmp_path / "tgt").as_posix() for j in png] == ["s1/a", "s2/b", "top"]


# Tests run as root, whose CAP_DAC_OVERRIDE writes anywhere: a child without it sees modes as a user does.
WITHOUT_ROOT_WRITE = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                      "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_read_only_target_is_one_line_and_exit_2(tmp_path, grid_dir):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    link_clips(src, grid_dir, {"s1/bbaf2n": "bbaf2n.mpg"})
    tgt.mkdir()
    tgt.chmod(0o555)
    proc = subprocess.run([*WITHOUT_ROOT_WRITE, sys.executable, "utils/preprocess_data.py", f"src_path={src}",
                           f"tgt_path={tgt}", "n_process=1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"error: cannot write the crops: {tgt}: not writable (Permission denied)\n"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_unwritable_speaker_folder_is_refused_before_any_video_is_read(tmp_path, grid_dir):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    link_clips(src, grid_dir, {"s1/bbaf2n": "bbaf2n.mpg", "s2/swwp2s": "swwp2s.mpg"})
    (tgt / "s2").mkdir(parents=True)
    (tgt / "s2").chmod(0o555)
    proc = subprocess.run([*WITHOUT_ROOT_WRITE, sys.executable, "utils/preprocess_data.py", f"src_path={src}",
                           f"tgt_path={tgt}", "n_process=1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"error: cannot write the crops: {tgt / 's2'}: not writable (Permission denied)\n"
    assert "to process" not in proc.stdout  # refused before the work: no clip read, none written
    assert not (tgt / "manifest.jsonl").exists() and not list(tgt.rglob("*.npz"))


def test_manifest_that_cannot_be_written_mid_run_is_named(tmp_path, grid_dir, monkeypatch, capsys):
    import utils.data.manifest
    import utils.preprocess_data as prep

    src, tgt = tmp_path / "src", tmp_path / "tgt"
    link_clips(src, grid_dir, {"s1/bbaf2n": "bbaf2n.mpg"})
    real = prep.write_manifest
    calls = []

    def full_disk_at_the_end(*args):
        calls.append(args)
        if len(calls) > 1:
            raise OSError(28, "No space left on device", str(tgt / "manifest.jsonl"))
        real(*args)

    monkeypatch.setattr(prep, "write_manifest", full_disk_at_the_end)  # at the start
    monkeypatch.setattr(utils.data.manifest, "write_manifest", full_disk_at_the_end)  # at the end (append_results)
    assert main([f"src_path={src}", f"tgt_path={tgt}", "n_process=1"]) == 2
    err = capsys.readouterr().err
    assert f"error: {tgt / 'manifest.jsonl'}: cannot write (No space left on device" in err
    assert list(load_manifest(tgt)) == ["s1/bbaf2n"]  # the appended record survived


def test_rerun_with_everything_done_exits_0_as_the_readme_says(tmp_path, grid_dir, capsys):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    link_clips(src, grid_dir, {"s1/bbaf2n": "bbaf2n.mpg"})
    args = [f"src_path={src}", f"tgt_path={tgt}", "n_process=1"]
    assert main(args) == 0
    assert main(args) == 0
    assert "0 to process" in capsys.readouterr().out
    page = (REPO / "docs" / "data.md").read_text()
    section = page[page.index("## Mouth crops"):page.index("### The mouth extractor")]
    statuses = section[section.index("**Exit status**"):].split("\n-", 1)[0]
    assert "0 when every clip is ok, also on a rerun that finds everything done" in " ".join(statuses.split())


def child_pids(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie that nobody has reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_workers_die_quietly_with_a_killed_parent(tmp_path, grid_dir):
    src, tgt = tmp_path / "src", tmp_path / "tgt"
    link_clips(src, grid_dir, {f"s{k}/{Path(c).name}": f for k in (1, 2) for c, f in GOOD.items()})
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "utils/preprocess_data.py", f"src_path={src}", f"tgt_path={tgt}",
                                 "n_process=2"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while len(child_pids(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        workers = child_pids(proc.pid)
        assert len(workers) >= 2, "the pool did not start"
        time.sleep(0.5)  # the workers are inside their first clip
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 2
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    survivors = [pid for pid in workers if alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "workers outlived their parent"
    time.sleep(0.2)
    assert "Traceback" not in log.read_text() and "BrokenPipeError" not in log.read_text()
