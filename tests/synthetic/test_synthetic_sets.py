"""One folder, one synthetic set: every generator records its parameters in its folder (utils/synthetic/record.py),
refuses a request that would mix another set in, lets a set grow only where the clips made stay valid, and
``--overwrite`` starts clean. The refusals are tested as a user meets them: make_synthetic.py as a process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from utils import make_synthetic, synthetic
from utils.data.clip_store import load_clip
from utils.synthetic.record import RECORD_NAME, SetMismatch
from utils.synthetic.talks import generate_talks
from utils.synthetic.words import generate_words

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = (32, 16)


def make(*args: str) -> subprocess.CompletedProcess:
    """utils/make_synthetic.py as a user runs it."""
    return subprocess.run([sys.executable, "utils/make_synthetic.py", "n_process=1", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def contents(root: Path) -> dict[str, bytes]:
    return {f.relative_to(root).as_posix(): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def refusal(proc: subprocess.CompletedProcess) -> str:
    """The one-line error of a refused run (exit status 1, no traceback)."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def split_speakers(root: Path) -> dict[str, set[int]]:
    return {split: {int(p.stem.split("_")[1]) // 1000 for p in root.glob(f"*/{split}/*.npz")}
            for split in ("train", "val", "test")}


# ------------------------------------------------------------------ what a user meets


def test_word_set_rerun_with_other_splits_is_refused_and_overwrite_starts_clean(tmp_path: Path):
    common = ["layout=lrw", f"tgt_path={tmp_path}", "words=ABOUT,MONEY", "clips_per_speaker=1", "size=32x32"]
    assert make(*common, "train_speakers=1-8", "val_speakers=9-10", "test_speakers=none").returncode == 0
    before = contents(tmp_path)
    line = refusal(make(*common, "train_speakers=1-10", "val_speakers=11-12", "test_speakers=none"))
    assert line == (f"error: {tmp_path} holds a synthetic set made with other parameters (speakers 9, 10 in val/, "
                    "not train/); rerun with --overwrite to delete it and start clean")
    assert contents(tmp_path) == before  # nothing written or deleted
    done = make(*common, "train_speakers=1-10", "val_speakers=11-12", "test_speakers=none", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert "24 clips written, 0 already present" in done.stdout
    assert split_speakers(tmp_path) == {"train": set(range(1, 11)), "val": {11, 12}, "test": set()}


def test_grid_rerun_with_another_size_or_seed_is_refused_and_overwrite_starts_clean(tmp_path: Path):
    common = [f"tgt_path={tmp_path}", "speakers=1-2", "clips_per_speaker=3"]
    assert make(*common, "size=48x24").returncode == 0
    line = refusal(make(*common, "size=64x32"))
    assert "(size 48x24, not 64x32)" in line and "--overwrite" in line
    line = refusal(make(*common, "size=48x24", "seed=1"))
    assert "(seed 0, not 1)" in line
    again = make(*common, "size=48x24")  # the same parameters still resume, skipping what is there
    assert again.returncode == 0 and "0 clips written, 6 already present" in again.stdout
    done = make(*common, "size=64x32", "seed=1", "overwrite=true")
    assert done.returncode == 0 and "6 clips written, 0 already present" in done.stdout
    clips = sorted(tmp_path.glob("datasets/s*/*.npz"))
    assert len(clips) == 6 and len(list(tmp_path.glob("align/s*/*.align"))) == 6  # no clip of the first set left
    assert {load_clip(c).shape for c in clips} == {(75, 32, 64, 3)}
    assert sorted(c.stem for c in clips if c.parent.name == "s1") == sorted(synthetic.speaker_sentences(1, 1, 3))


def test_talks_with_another_text_or_fewer_speakers_are_refused(tmp_path: Path):
    book = tmp_path / "book.txt"
    book.write_text("The old man found a red box.\n")
    talks = tmp_path / "talks"
    common = ["talks=1", "sentences_per_talk=1", f"tgt_path={talks}"]
    assert make(*common, "speakers=1-2", f"text={book}").returncode == 0
    line = refusal(make(*common, "speakers=1-2"))
    assert "sentences of a text of sha256" in line and "not the built-in grammar" in line
    assert "speakers 2 not asked for" in refusal(make(*common, "speakers=1", f"text={book}"))
    assert (talks / "speakers.txt").read_text() == "s1_talk0 s1\ns2_talk0 s2\n"
    done = make(*common, "speakers=1", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in talks.iterdir()) == [RECORD_NAME, "s1_talk0.mp4", "s1_talk0.srt", "speakers.txt"]
    assert (talks / "speakers.txt").read_text() == "s1_talk0 s1\n"


def test_a_folder_made_before_records_is_refused_until_overwrite(tmp_path: Path):
    common = [f"tgt_path={tmp_path}", "speakers=1", "clips_per_speaker=2", "size=32x16"]
    assert make(*common).returncode == 0
    (tmp_path / RECORD_NAME).unlink()  # as every set made before this change
    line = refusal(make(*common))
    assert line == (f"error: {tmp_path} holds synthetic files but no record of the parameters they were made with "
                    f"({RECORD_NAME}: made before records were kept); rerun with --overwrite to delete it and "
                    "start clean")
    done = make(*common, "--overwrite")
    assert done.returncode == 0 and "2 clips written, 0 already present" in done.stdout
    assert json.loads((tmp_path / RECORD_NAME).read_text()) == {
        "layout": "grid", "seed": 0, "size": [32, 16], "clips": {"1": 2}}


def test_overwrite_deletes_nothing_where_other_files_lie_among_the_clips(tmp_path: Path):
    """A --tgt_path pointing at real preprocessed GRID data (its manifest beside the clips) loses nothing."""
    common = [f"tgt_path={tmp_path}", "speakers=1", "clips_per_speaker=2", "size=32x16"]
    assert make(*common).returncode == 0
    (tmp_path / "datasets" / "manifest.jsonl").write_text("{}\n")
    before = contents(tmp_path)
    line = refusal(make(*common, "seed=2", "--overwrite"))
    assert f"{tmp_path / 'datasets' / 'manifest.jsonl'} is not one of their files" in line
    assert contents(tmp_path) == before


def test_a_folder_of_another_layout_is_refused(tmp_path: Path):
    assert make(f"tgt_path={tmp_path}", "speakers=1", "clips_per_speaker=1", "size=32x16").returncode == 0
    line = refusal(make("layout=lrw", f"tgt_path={tmp_path}", "words=ABOUT", "clips_per_speaker=1", "size=32x32"))
    assert "(the grid layout, not lrw)" in line


# ------------------------------------------------------------------ the library, as the quick starts use it


def test_generate_refuses_another_size_and_overwrite_replaces_the_set(tmp_path: Path):
    synthetic.generate(tmp_path, [1, 2], 2, seed=0, size=(48, 24), progress=False)
    with pytest.raises(SetMismatch, match=r"\(size 48x24, not 64x32\); rerun with --overwrite"):
        synthetic.generate(tmp_path, [1, 2], 2, seed=0, size=(64, 32), progress=False)
    with pytest.raises(SetMismatch, match=r"\(seed 0, not 1\)"):
        synthetic.generate(tmp_path, [1, 2], 2, seed=1, size=(48, 24), progress=False)
    report = synthetic.generate(tmp_path, [1, 2], 2, seed=1, size=(64, 32), progress=False, overwrite=True)
    assert (report.written, report.skipped) == (4, 0)
    clips = sorted(tmp_path.glob("datasets/s*/*.npz"))
    assert sorted(f"{c.parent.name}/{c.stem}" for c in clips) == sorted(report.clip_ids)
    assert {load_clip(c).shape[1:3] for c in clips} == {(32, 64)}


def test_asking_for_fewer_clips_than_a_speaker_has_is_refused(tmp_path: Path):
    synthetic.generate(tmp_path, [1, 2], 3, size=SMALL, progress=False)
    with pytest.raises(SetMismatch, match=r"\(3 clips of s1, s2, not 2\)"):
        synthetic.generate(tmp_path, [1, 2, 3], 2, size=SMALL, progress=False)
    report = synthetic.generate(tmp_path, [3], 2, size=SMALL, progress=False)  # another speaker alone: allowed
    assert (report.written, report.skipped) == (2, 0)


def test_a_grid_set_grown_by_speakers_and_clips_is_the_set_drawn_at_once(tmp_path: Path):
    synthetic.generate(tmp_path / "grown", [1], 2, seed=3, size=SMALL, progress=False)
    synthetic.generate(tmp_path / "grown", [2], 3, seed=3, size=SMALL, progress=False)
    report = synthetic.generate(tmp_path / "grown", [1, 2], 3, seed=3, size=SMALL, progress=False)
    assert (report.written, report.skipped) == (1, 5)
    synthetic.generate(tmp_path / "once", [1, 2], 3, seed=3, size=SMALL, progress=False)
    assert contents(tmp_path / "grown") == contents(tmp_path / "once")  # the record included


def test_a_word_set_grown_by_words_speakers_and_clips_is_the_set_drawn_at_once(tmp_path: Path):
    small = {"train": (1,), "val": (3,)}
    full = {"train": (1, 2), "val": (3,), "test": (4,)}
    generate_words(tmp_path / "grown", ["ABOUT"], small, 1, seed=2, size=32, n_process=1, progress=False)
    report = generate_words(tmp_path / "grown", ["ABOUT", "MONEY"], full, 2, seed=2, size=32, n_process=1,
                            progress=False)
    assert (report.written, report.skipped) == (14, 2)
    generate_words(tmp_path / "once", ["ABOUT", "MONEY"], full, 2, seed=2, size=32, n_process=1, progress=False)
    assert contents(tmp_path / "grown") == contents(tmp_path / "once")
    for less, message in [
        ((["ABOUT"], full, 2), r"words MONEY not asked for"),
        ((["ABOUT", "MONEY"], {"train": (1, 2), "val": (3,)}, 2), r"speakers 4 not asked for"),
        ((["ABOUT", "MONEY"], full, 1), r"2 clips per speaker, not 1"),
        ((["ABOUT", "MONEY"], {"train": (1, 2, 3), "val": (), "test": (4,)}, 2), r"speakers 3 in val/, not train/"),
    ]:
        with pytest.raises(SetMismatch, match=message):
            generate_words(tmp_path / "grown", *less, seed=2, size=32, n_process=1, progress=False)
    with pytest.raises(SetMismatch, match=r"size 32x32, not 48x48"):
        generate_words(tmp_path / "grown", ["ABOUT", "MONEY"], full, 2, seed=2, size=48, n_process=1, progress=False)


def test_talks_grown_by_speakers_and_talks_are_the_talks_drawn_at_once(tmp_path: Path):
    generate_talks(tmp_path / "grown", [1], 1, 1, seed=4, progress=False)
    report = generate_talks(tmp_path / "grown", [1, 2], 2, 1, seed=4, progress=False)
    assert (report.written, report.skipped) == (3, 1)
    generate_talks(tmp_path / "once", [1, 2], 2, 1, seed=4, progress=False)
    assert contents(tmp_path / "grown") == contents(tmp_path / "once")
    with pytest.raises(SetMismatch, match=r"sentences per talk 1, not 2; 2 talks per speaker, not 1"):
        generate_talks(tmp_path / "grown", [1, 2], 1, 2, seed=4, progress=False)


# ------------------------------------------------------------------ options


@pytest.mark.parametrize("argv,message", [
    (["seed=-1"], "--seed: expected an integer of at least 0"),
    (["clips_per_speaker=0"], "--clips_per_speaker: expected an integer from 1 to 64000"),
    (["clips_per_speaker=64001"], "--clips_per_speaker: expected an integer from 1 to 64000"),
    (["layout=lrw", "clips_per_speaker=1000"], "--clips_per_speaker: expected at most 999 with layout=lrw"),
    (["layout=lrw", "train_speakers=1,100"], "--train_speakers: speakers are 0-99 with layout=lrw"),
    (["n_process=0"], "--n_process: expected an integer of at least 1"),
    (["size=4x2"], "--size: expected at least 8x4"),
    (["layout=lrw", "size=16x16"], "--size: the lrw layout's mouth regions are square, at least 32x32"),
    (["talks=0"], "--talks: expected an integer of at least 1"),
    (["talks=1", "sentences_per_talk=0"], "--sentences_per_talk: expected an integer of at least 1"),
    (["overwrite=maybe"], "--overwrite: expected a boolean"),
])
def test_bad_options_are_refused_when_parsed(argv: list[str], message: str, tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exc:
        make_synthetic.main([f"tgt_path={tmp_path}", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_every_option_says_its_default():
    for action in make_synthetic.build_parser()._actions:
        if action.dest != "help":
            assert "(default" in (action.help or ""), action.option_strings
