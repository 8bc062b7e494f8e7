"""infer.py end to end: raw videos, data sets, checkpoint errors, the CSV and the HTML report.

Networks here are tiny and randomly initialised (what they predict is noise); a slow test trained
on the shared clips checks that predictions are right. Runs are in-process, so MXNet and dlib load once.
"""
import contextlib
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

import infer
from model.checkpoint import save_checkpoint
from model.lipnet import LipNet, LipNetConfig
from utils.data.clip_store import save_packed
from utils.text.grid_text import ALPHABET, is_grid_sentence

REPO_ROOT = Path(__file__).resolve().parents[2]
GRID_CLIPS = ["bbaf2n.mpg", "lwbsza.mpg", "swwp2s.mpg"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# s1, s2 (validation speakers of the unseen split) and s3; bbaf2n has an align saying something else.
FAKE_CLIPS = ["s1/bbaf2n", "s1/lwbsza", "s2/swwp2s", "s2/pgiz5a", "s3/bgit9a", "s3/lrbe4p"]
ALIGNED = "lay red in a one soon"


def run(*argv: str) -> tuple[int, str, str]:
    """``infer.main(argv)`` with stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = infer.main(list(argv))
    return code, out.getvalue(), err.getvalue()


def make_checkpoint(folder: Path, decoder: dict | None = None) -> Path:
    """A tiny paper LipNet at 64x32 (not the extractor's default 100x50) saved as our checkpoint."""
    net = LipNet(LipNetConfig(channels=(4, 4, 4), hidden=8, width=64, height=32))
    net.initialize(mx.init.Xavier())
    meta = {"normalisation": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}}
    if decoder:
        meta["decoder"] = decoder
    return save_checkpoint(folder, net, None, meta)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "best", {"method": "greedy"})


@pytest.fixture(scope="module")
def video_run(grid_dir: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    out = tmp_path_factory.mktemp("video_out")
    return (*run("--video", str(grid_dir), f"--model_path={checkpoint}", "num_gpus=0", "progress=false",
                 f"out={out}"), out)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for clip in FAKE_CLIPS:
        save_packed(root / "images" / f"{clip}.npz", rng.integers(0, 256, (75, 25, 50, 3), dtype=np.uint8))
    (root / "align" / "s1").mkdir(parents=True)
    (root / "align" / "s1" / "bbaf2n.align").write_text(
        "0 15000 sil\n" + "".join(f"{15000 + 8000 * i} {23000 + 8000 * i} {w}\n" for i, w in enumerate(ALIGNED.split()))
        + "63000 75000 sil\n")
    return root / "images", root / "align"


def data_args(dataset: tuple[Path, Path], checkpoint: Path, *extra: str) -> list[str]:
    images, aligns = dataset
    return [f"image_path={images}", f"align_path={aligns}", f"model_path={checkpoint}", "num_gpus=0",
            "progress=false", "batch_size=2", *extra]


def printed_clips(stdout: str) -> list[str]:
    return re.findall(r"^\[Clip\]\s+(\S+)$", stdout, re.M)


# ------------------------------------------------------------------------------------------ raw videos

def test_video_folder_gives_one_tab_line_per_clip_in_name_order(video_run: tuple):
    code, stdout, stderr, _ = video_run
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == GRID_CLIPS  # the README and .align are not videos
    for line in lines:
        name, sentence = line.split("\t")  # exactly one tab
        assert set(sentence) <= set(ALPHABET)
    assert "decoder greedy" in stderr and "input 64x32" in stderr
    assert not any(line.startswith(tuple(GRID_CLIPS)) for line in stderr.splitlines())


def test_video_out_writes_csv_and_a_self_contained_report(video_run: tuple):
    code, stdout, _, out = video_run
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["clip"] for r in rows] == GRID_CLIPS
    assert [r["prediction"] for r in rows] == [line.split("\t")[1] for line in stdout.splitlines()]
    assert all(r["target"] == r["cer"] == r["wer"] == r["error"] == "" for r in rows)
    page = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 6 and all(s.startswith("data:image/png;base64,") for s in sources)  # strip + heat map
    for name in GRID_CLIPS:
        assert f"<h2>{name}</h2>" in page
    assert "http" not in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")
def test_report_images_load_in_a_headless_browser(video_run: tuple, tmp_path: Path):
    page = (video_run[3] / "report.html").read_text()
    probe = ('<img alt="broken on purpose" src="data:image/png;base64,AAAA"><script>window.addEventListener("load",'
             '()=>{const all=[...document.images];document.title="images "+all.filter(i=>i.complete&&'
             'i.naturalWidth>0).length+"/"+all.length;});</script></body>')
    probed = tmp_path / "report.html"
    probed.write_text(page.replace("</body>", probe))
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    title = re.search(r"<title>(.*?)</title>", result.stdout)
    assert title, f"no DOM from chromium: {result.stderr[-2000:]}"
    assert title.group(1) == "images 6/7"  # every report image decoded; the broken probe did not


def test_failed_videos_are_named_and_the_others_still_read(grid_dir: Path, checkpoint: Path, tmp_path: Path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a&<b>.mpg").symlink_to(grid_dir / "bbaf2n.mpg")
    (videos / "broken.mpg").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "notes.txt").write_text("not a video")
    for name, frame in [("flat.avi", lambda rng: np.full((120, 160, 3), 128, np.uint8)),
                        ("noise.avi", lambda rng: rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))]:
        writer = cv2.VideoWriter(str(videos / name), cv2.VideoWriter_fourcc(*"MJPG"), 25, (160, 120))
        rng = np.random.default_rng(1)
        for _ in range(20):
            writer.write(frame(rng))
        writer.release()
    out = tmp_path / "out"
    code, stdout, stderr = run(f"video={videos}", f"model_path={checkpoint}", "num_gpus=0", f"out={out}")
    assert code == 1
    assert [line.split("\t")[0] for line in stdout.splitlines()] == ["a&<b>.mpg"]
    errors = {line for line in stderr.splitlines() if line.startswith("error:")}
    for name, reason in [("broken.mpg", "decode_error"), ("empty.mp4", "empty_file"), ("flat.avi", "no_face"),
                         ("noise.avi", "no_face")]:
        assert any(str(videos / name) in e and f"[{reason}]" in e for e in errors), (name, errors)
    assert len(errors) == 4 and "notes.txt" not in stderr
    page = (out / "report.html").read_text()
    assert "a&amp;&lt;b&gt;.mpg" in page and "a&<b>" not in page
    assert page.count('class="clip failed"') == 4
    with open(out / "predictions.csv", newline="") as f:
        rows = {r["clip"]: r for r in csv.DictReader(f)}
    assert rows["a&<b>.mpg"]["error"] == "" and "[no_face]" in rows["flat.avi"]["error"]


def test_single_video_with_the_checkpoints_beam_decoder(grid_dir: Path, tmp_path: Path):
    beam = make_checkpoint(tmp_path / "run" / "last", {"method": "beam", "beam_width": 3})
    code, stdout, stderr = run(f"video={grid_dir / 'swwp2s.mpg'}", f"model_path={beam.parent}", "num_gpus=0")
    assert code == 0, stderr
    assert stdout.count("\n") == 1 and stdout.startswith("swwp2s.mpg\t")
    assert "decoder beam (beam width 3)" in stderr  # a run folder without best/ falls back to last/


def test_missing_video_path_exits_2(checkpoint: Path, tmp_path: Path):
    code, stdout, stderr = run(f"video={tmp_path / 'nope'}", f"model_path={checkpoint}", "num_gpus=0")
    assert code == 2 and stdout == "" and "nope: no such video file or folder" in stderr


# ------------------------------------------------------------------------------------------ checkpoints

def _corrupt(kind: str, tmp_path: Path) -> Path:
    if kind == "missing":
        return tmp_path / "no_such_checkpoint"
    if kind == "empty folder":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    if kind == "example file of garbage":
        (tmp_path / "epoches_81_loss_15.7157").write_bytes(b"\x00garbage" * 100)
        return tmp_path / "epoches_81_loss_15.7157"
    folder = make_checkpoint(tmp_path / "ck")
    if kind == "bad meta.json":
        (folder / "meta.json").write_text("{not json")
    else:  # truncated parameters
        params = folder / "model.params"
        params.write_bytes(params.read_bytes()[:100])
    return folder


@pytest.mark.parametrize("kind", ["missing", "empty folder", "example file of garbage", "bad meta.json",
                                  "truncated model.params"])
def test_unusable_checkpoint_is_one_clear_line_and_exit_2(kind: str, grid_dir: Path, tmp_path: Path):
    path = _corrupt(kind, tmp_path)
    code, stdout, stderr = run(f"video={grid_dir}", f"model_path={path}", "num_gpus=0")
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("error: cannot load the model: ")
    assert path.name in stderr and "Traceback" not in stderr


def test_command_line_exit_status_without_traceback(grid_dir: Path, tmp_path: Path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "infer.py"), f"model_path={tmp_path / 'gone'}",
                             f"video={grid_dir}", "num_gpus=0"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert "gone: no such checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_default_model_path_is_the_checkpoint_folder_and_prefers_best(dataset, tmp_path, monkeypatch):
    make_checkpoint(tmp_path / "checkpoint" / "last")
    make_checkpoint(tmp_path / "checkpoint" / "best")
    monkeypatch.setattr(infer, "CHECKPOINT_DIR", tmp_path / "checkpoint")
    args = [a for a in data_args(dataset, tmp_path) if not a.startswith("model_path=")]
    code, stdout, stderr = run(*args)
    assert code == 0, stderr
    assert f"model {tmp_path / 'checkpoint' / 'best'} " in stderr


# ------------------------------------------------------------------------------------------ data sets

def test_dataset_prints_target_pred_cer_wer_and_speakers(dataset, checkpoint, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run(*data_args(dataset, checkpoint, f"out={out}"))
    assert code == 0, stderr
    assert printed_clips(stdout) == ["s1/bbaf2n", "s1/lwbsza", "s2/pgiz5a", "s2/swwp2s"]  # unseen split: s1, s2
    targets = re.findall(r"^\[Target\] (.*)$", stdout, re.M)
    assert targets == [ALIGNED, "lay white by s zero again", "place green in z five again", "set white with p two soon"]
    assert len(re.findall(r"^\[Pred\]", stdout, re.M)) == 4
    assert re.search(r"^CER \d\.\d{4}  WER \d\.\d{4}  \(4 clips, valid", stdout, re.M)
    assert re.findall(r"^  (s\d+)\s+CER \d\.\d{4}  WER \d\.\d{4}  \(clips: (\d)\)$", stdout, re.M) == [
        ("s1", "2"), ("s2", "2")]
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["target"] for r in rows] == targets
    assert all(0.0 <= float(r["cer"]) and 0.0 <= float(r["wer"]) <= 1.0 for r in rows)
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 8
    assert '<span class="missed">' in page and "<td>s2</td>" in page


@pytest.mark.parametrize("extra,expected", [
    (["data_type=train"], ["s3/bgit9a", "s3/lrbe4p"]),
    (["--val_speakers=3"], ["s3/bgit9a", "s3/lrbe4p"]),
    (["speakers=2"], ["s2/pgiz5a", "s2/swwp2s"]),
    (["split=overlapped", "data_type=valid"], None),  # one held-out clip per speaker
])
def test_dataset_selection_flags(dataset, checkpoint, extra, expected):
    code, stdout, stderr = run(*data_args(dataset, checkpoint, *extra))
    assert code == 0, stderr
    clips = printed_clips(stdout)
    if expected is None:
        assert sorted(c.split("/")[0] for c in clips) == ["s1", "s2", "s3"]
    else:
        assert clips == expected


def test_dataset_uses_the_selection_recorded_in_the_checkpoint(dataset, tmp_path):
    from utils.data import splits

    train, val = splits.overlapped_split(FAKE_CLIPS)
    definition = {"split": "overlapped", "train_list": None, "val_list": None, "speakers": None, "val_speakers": None}
    net = LipNet(LipNetConfig(channels=(4, 4, 4), hidden=8, width=64, height=32))
    net.initialize(mx.init.Xavier())
    recorded = save_checkpoint(tmp_path / "run" / "best", net, None, {
        "normalisation": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]},
        "split": splits.describe_selection(definition, train, val)})
    code, stdout, stderr = run(*data_args(dataset, recorded))  # no split given: the checkpoint's, not unseen
    assert code == 0, stderr
    assert printed_clips(stdout) == sorted(val) and len(val) == 3
    assert "clips selected as at training (split=overlapped" in stderr and "warning" not in stderr
    assert re.search(r"^mean per-clip CER \d\.\d{4}  WER \d\.\d{4}  \(the mean of each clip's rate", stdout, re.M)
    # a validation clip missing here: named in a warning, and no clip scored on the wrong side
    images = tmp_path / "images"
    shutil.copytree(dataset[0], images)
    (images / f"{val[0]}.npz").unlink()
    code, stdout, stderr = run(*data_args((images, dataset[1]), recorded))
    assert code == 0, stderr
    assert printed_clips(stdout) == sorted(val)[1:]
    assert "warning: clips differ from the checkpoint's: 1 of the checkpoint's 3 validation clips are absent" in stderr
    code, stdout, _ = run(*data_args((images, dataset[1]), recorded, "data_type=train"))
    assert not set(printed_clips(stdout)) & set(val)
    # a selection on the command line wins, less the clips the checkpoint trained on
    code, stdout, stderr = run(*data_args(dataset, recorded, "split=unseen"))
    assert printed_clips(stdout) == sorted(set(val) & {"s1/bbaf2n", "s1/lwbsza", "s2/pgiz5a", "s2/swwp2s"})
    assert "warning: this selection differs from the checkpoint's (split=overlapped): 2 of its 4 validation clips " \
           "were trained on and are left out, 2 of the 2 scored are the checkpoint's validation clips" in stderr


def test_dataset_lists_grammar_decoder_and_workers(dataset, checkpoint, tmp_path):
    (tmp_path / "train.txt").write_text("s1/bbaf2n\n")
    (tmp_path / "val.txt").write_text("# held out\ns2/swwp2s\ns3/lrbe4p\n")
    code, stdout, stderr = run(*data_args(dataset, checkpoint, f"train_list={tmp_path / 'train.txt'}",
                                          f"val_list={tmp_path / 'val.txt'}", "decoder=grammar", "num_workers=1",
                                          "batch_size=1"))
    assert code == 0, stderr
    assert printed_clips(stdout) == ["s2/swwp2s", "s3/lrbe4p"]
    predictions = re.findall(r"^\[Pred\]\s+(.*)$", stdout, re.M)
    assert len(predictions) == 2 and all(is_grid_sentence(p) for p in predictions)  # the grammar decoder's promise
    assert "decoder grammar" in stderr


def test_decoder_flags_override_the_checkpoint(dataset, tmp_path):
    beam = make_checkpoint(tmp_path / "beam", {"method": "beam", "beam_width": 3})
    assert "decoder beam (beam width 3)" in run(*data_args(dataset, beam))[2]
    assert "decoder beam (beam width 7)" in run(*data_args(dataset, beam, "beam_width=7"))[2]
    assert "decoder greedy" in run(*data_args(dataset, beam, "decoder=greedy"))[2]
    no_decoder = make_checkpoint(tmp_path / "plain")
    assert "decoder greedy" in run(*data_args(dataset, no_decoder))[2]


def test_report_limit_caps_the_html_not_the_csv(dataset, checkpoint, tmp_path):
    code, _, stderr = run(*data_args(dataset, checkpoint, f"out={tmp_path}", "report_limit=1"))
    assert code == 0, stderr
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "3 more clip(s)" in page
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 5


def test_unreadable_clip_is_named_and_the_rest_scored(dataset, checkpoint, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(dataset[0], images)
    (images / "s1" / "bbaf2n.npz").write_bytes(b"not a packed clip")
    code, stdout, stderr = run(*data_args((images, dataset[1]), checkpoint))
    assert code == 1
    assert printed_clips(stdout) == ["s1/lwbsza", "s2/pgiz5a", "s2/swwp2s"]
    assert str(images / "s1" / "bbaf2n.npz") in stderr and "1 of 4 clips could not be read" in stderr


def test_clip_too_short_for_the_grammar_is_named_and_the_rest_scored(dataset, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(dataset[0], images)
    save_packed(images / "s1" / "lwbsza.npz", np.zeros((12, 25, 50, 3), np.uint8))  # under the grammar's 20 frames
    grammar = make_checkpoint(tmp_path / "ckpt" / "best", {"method": "grammar"})
    code, stdout, stderr = run(*data_args((images, dataset[1]), grammar))
    assert code == 1
    assert printed_clips(stdout) == ["s1/bbaf2n", "s2/pgiz5a", "s2/swwp2s"] and "CER " in stdout
    assert str(images / "s1" / "lwbsza.npz") in stderr and "12 frames cannot hold any sentence" in stderr
    assert "1 of 4 clips could not be read" in stderr


def test_missing_image_folder_exits_2(checkpoint, tmp_path):
    code, stdout, stderr = run(f"image_path={tmp_path / 'none'}", f"model_path={checkpoint}", "num_gpus=0")
    assert code == 2 and stdout == "" and "none: no such image folder" in stderr


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason="checks the CPU fallback of the default num_gpus=1")
def test_default_num_gpus_falls_back_to_the_cpu_with_a_warning(dataset, checkpoint):
    args = [a for a in data_args(dataset, checkpoint) if a != "num_gpus=0"]
    code, stdout, stderr = run(*args)
    assert code == 0 and "sees no GPU" in stderr and printed_clips(stdout)


# ------------------------------------------------------------------------------------------ bench

def test_bench_reports_every_figure_as_json(grid_dir: Path, checkpoint: Path, capsys):
    from bench.infer import main as bench_main

    figures = bench_main([f"model_path={checkpoint}", f"clips_dir={grid_dir}", "repeats=1", "copies=2",
                          "batch_size=4", "decoder=beam", "beam_width=4"])
    last = capsys.readouterr().out.splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(figures))
    assert [c["clip"] for c in figures["clips"]] == GRID_CLIPS
    for clip in figures["clips"]:
        assert clip["total_ms"] >= clip["extract_ms"] + clip["network_ms"] + clip["decoder_ms"] - 0.1
    assert set(figures["decoders_ms"]) == {"greedy", "beam", "grammar", "lm"}
    assert figures["throughput"]["clips"] == 6 and figures["throughput"]["clips_per_s"] > 0
    assert figures["input"] == "64x32" and figures["decoder"] == "beam"
    with pytest.raises(SystemExit):
        bench_main(["copies=0"])
