"""Lipread with a trained LipNet: score a preprocessed data set, or read sentences off raw videos.

    python infer.py model_path=checkpoint data_type=valid       # [Target]/[Pred] per clip, CER and WER
    python infer.py model_path=checkpoint video=clips/ > out.tsv  # FILE<TAB>SENTENCE per video
    python infer.py model_path=checkpoint/words video=clips/   # a word checkpoint: FILE<TAB>WORD P ... (top 5)
    python infer.py model_path=checkpoint/words image_path=data/lrw data_type=test  # top-1 overall and per word
    python infer.py model_path=checkpoint video=/dev/video0    # live: SOURCE<TAB>START<TAB>END<TAB>TEXT per utterance

``model_path`` is one of our checkpoints (a run folder, whose best/ is used, a checkpoint folder or
its model.params), the original example's parameter file, or an ONNX file of utils/export_onnx.py
(a LipNet's or a word classifier's), run on onnxruntime without MXNet. ``--video`` takes a file or a folder of
videos of any frame rate, orientation, size and length (utils/video/utterances.py): each is read as
utterances at the network's frame rate; only the ``FILE<TAB>SENTENCE`` lines (the utterances
joined by spaces) or, with ``--format=json``, one JSON object per video go to stdout, everything
else to stderr. ``--subtitles=DIR`` writes DIR/STEM.srt and DIR/STEM.vtt, one cue per utterance.
``--out`` also writes predictions.csv and a self-contained report.html; both folders are made and
proven writable before the model loads. A truncated or damaged video is read as far as it goes and
named on stderr with the length decoded and the length its container declares (JSON: ``warnings``).
An utterance the network or decoder cannot read (too short for the grammar, say) is named on stderr
with its video and times (JSON: its ``error``), and the rest are read. An utterance whose face is too
small to read well (its crops enlarged more than twice) is read with a warning naming its video,
times and face size (JSON: ``warnings``). Exit status: 0 when every clip was read whole, without
warnings, and every output written, 1 when some clip or utterance could not be read, a clip was
read only in part or with a warning, or an output was lost (each is named on stderr), 2 when the
checkpoint, the input or an output folder is unusable. A camera, a network stream, a named pipe or ``-``
is read live, each utterance printed as it ends (utils/reading/live_reading.py, docs/live.md).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from utils.data.splits import MISSING_CLIPS, SPLITS
from utils.reading.live_reading import LIVE_PAUSE, LiveSettings, read_live
from utils.reading.selection import select_like_training
from utils.reading.sentence_videos import VideoLipreader, VideoReading, list_videos, video_json
from utils.reading.word_videos import WordVideoReader, word_json, word_line
from utils.runtime.cli import (
    bounded,
    non_negative_float,
    non_negative_int,
    parse_args,
    parse_speakers,
    positive_int,
    str2bool,
)
from utils.runtime.gpu_preflight import GpuProblem, preflight
from utils.runtime.paths import ALIGN_DIR, CHECKPOINT_DIR, DATASET_DIR
from utils.scoring.report import ClipResult, ordered_groups, write_report
from utils.text.decoders import DECODERS, DEFAULT_BEAM_WIDTH
from utils.video.framing import FRAMINGS
from utils.video.sources import Source, SourceError, parse_source

if TYPE_CHECKING:
    from model.word_classifier import WordClassifier
    from utils.reading.network import Network
    from utils.reading.onnx_words import OnnxWordClassifier
    from utils.scoring.sentence_metrics import GroupedErrorRates
    from utils.text.lm_decoder import LMDecoder

DEFAULT_REPORT_LIMIT = 200


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument("--model_path", default=str(CHECKPOINT_DIR),
                       help="checkpoint: run folder (best/ preferred), checkpoint folder or its model.params, "
                            "the original example's parameter file, or an exported .onnx file (read with "
                            "onnxruntime, no MXNet) (default: %(default)s)")
    model.add_argument("--decoder", default=None, choices=DECODERS,
                       help="CTC decoder (default: the checkpoint's, else greedy)")
    model.add_argument("--beam_width", type=positive_int, default=None,
                       help=f"prefix beam width of the beam decoder (default: the checkpoint's, else "
                            f"{DEFAULT_BEAM_WIDTH})")
    model.add_argument("--lm_path", default=None,
                       help="word n-gram language model (ARPA, from utils/build_lm.py) of the lm decoder "
                            "(default: the checkpoint's)")
    model.add_argument("--lm_weight", type=non_negative_float, default=None,
                       help="weight of the language model's log-probability in the lm decoder (alpha; default: the "
                            "checkpoint's, else 0.5)")
    model.add_argument("--word_bonus", type=bounded(float), default=None,
                       help="score added per word by the lm decoder (beta; default: the checkpoint's, else 1.0)")
    model.add_argument("--num_gpus", type=non_negative_int, default=1,
                       help="GPUs to run on (an ONNX file: onnxruntime-gpu's CUDA, one GPU); 0 or no visible GPU: "
                            "the CPU (default: %(default)s)")
    video = parser.add_argument_group("raw videos")
    video.add_argument("--video", default=None, metavar="SOURCE",
                       help="a video file, or a folder of them (read in file-name order): prints FILE<TAB>SENTENCE "
                            "per video and ignores the data-set options; or a live source (docs/live.md): a camera "
                            "(/dev/video0, or an index), a network stream (rtsp://, rtmp://, http(s)://, udp://, "
                            "tcp://, srt://), a named pipe or - (standard input), printing SOURCE<TAB>START<TAB>END"
                            "<TAB>TEXT per utterance as it ends (default: none, score a data set)")
    video.add_argument("--format", default="text", choices=("text", "json"),
                       help="stdout per video: FILE<TAB>SENTENCE, or one JSON object with utterances and word "
                            "timings (default: %(default)s)")
    video.add_argument("--subtitles", default=None, metavar="DIR",
                       help="write DIR/STEM.srt and DIR/STEM.vtt per video, one cue per utterance; DIR is made "
                            "and checked writable before the work (default: none)")
    video.add_argument("--face", default="largest", choices=("largest", "all"),
                       help="with several faces in view: read the largest, or every face track, each labelled "
                            "(default: %(default)s)")
    video.add_argument("--framing", default=None, choices=FRAMINGS,
                       help="where mouth crops are cut (docs/data.md#framings): lipnet_gluon or lipnet_pytorch; the "
                            "network's channel order stays the checkpoint's (default: the checkpoint's crop.framing, "
                            "lipnet_gluon when it records none)")
    video.add_argument("--max_utterance", type=bounded(float, 0.4, low_open=True), default=None, metavar="SECONDS",
                       help="longest utterance read at once; longer speech is cut where the mouth is stillest "
                            "(default: the training clip length, 75 frames at the checkpoint's frame rate)")
    video.add_argument("--margin", type=non_negative_float, default=None, metavar="SECONDS",
                       help="seconds kept before and after the speech of each utterance, mouth motion at a "
                            "speaking pace (default: up to half a pause, as GRID's clips hold; about 0.15 for a "
                            "model trained on clips cut at subtitle cues)")
    video.add_argument("--edge_search", type=non_negative_float, default=0.0, metavar="SECONDS",
                       help="read each utterance from the start and end, each moved inward by up to SECONDS in steps "
                            "of 2 frames, at which the decoder scores its reading best per frame: for models that "
                            "read by their clips' edges, such as ones trained on clips cut at subtitle cues (about "
                            "20 readings an utterance per 0.4 s searched; default: 0, off)")
    live = parser.add_argument_group("live reading (docs/live.md)")
    live.add_argument("--live", type=str2bool, default=None,
                      help="read as it happens: each utterance printed as soon as it ends, frames dropped (and "
                           "counted) when reading falls behind; a file is then paced by its timestamps; false on a "
                           "stream or pipe reads every frame however far behind (default: true for a camera, "
                           "stream, pipe or -, false for files)")
    live.add_argument("--pause", type=bounded(float, 0.2, 5.0), default=LIVE_PAUSE, metavar="SECONDS",
                      help="read live: seconds of a still mouth after speech that end an utterance, all kept in it; "
                           "a longer pause splits fewer slow sentences and prints later (default: %(default)s; "
                           "files end one after 1.0 s and keep half)")
    live.add_argument("--stall", type=bounded(float, 0.5, 3600.0), default=5.0, metavar="SECONDS",
                      help="seconds a camera or network stream may send nothing (or take to open) before it counts "
                           "as lost; a pipe waits for its writer (default: %(default)s)")
    live.add_argument("--reconnect", type=non_negative_float, default=0.0, metavar="SECONDS",
                      help="keep trying to reopen a lost network stream for this long, its times going on where "
                           "they were lost (default: 0, end when lost)")
    live.add_argument("--show", type=str2bool, default=False,
                      help="read live in a window (OpenCV): the video, the tracked mouth and the text read; "
                           "without a display it says so and reads on (default: %(default)s)")
    live.add_argument("--record", default=None, metavar="FILE.mp4",
                      help="read live: write the video read, with the text as a soft subtitle track, to FILE.mp4 "
                           "(or .mkv) when the read ends (default: none)")
    data = parser.add_argument_group("data set (as main.py selects it)")
    data.add_argument("--data_type", default="valid", choices=("train", "valid", "test"),
                      help="which side of the split to run on; test: a word checkpoint's LRW-layout test split "
                           "(default: %(default)s)")
    data.add_argument("--image_path", default=None,
                      help="mouth crops: sN/{clip}.npz (packed) or sN/{clip}/mouth_*.png folders (default: the "
                           f"checkpoint's training data, else {DATASET_DIR})")
    data.add_argument("--align_path", default=None,
                      help="align files (sN/{clip}.align or flat {clip}.align); clips without one are labelled "
                           f"from their GRID name (default: the checkpoint's, else {ALIGN_DIR})")
    data.add_argument("--split", default=None, choices=SPLITS,
                      help="standard protocol: unseen speakers or overlapped (default: the selection recorded in "
                           "the checkpoint, else unseen)")
    data.add_argument("--train_list", default=None,
                      help="file of SPEAKER/CLIP lines of the training side (default: the checkpoint's selection)")
    data.add_argument("--val_list", default=None,
                      help="file of SPEAKER/CLIP lines of the validation side (default: the checkpoint's selection)")
    data.add_argument("--missing_clips", default="warn", choices=MISSING_CLIPS,
                      help="clips a list names that are absent: warn and go on, or error (default: %(default)s)")
    data.add_argument("--speakers", type=parse_speakers, default=None,
                      help="only these speakers, e.g. 1-34 or 1,2,20 (default: the checkpoint's selection)")
    data.add_argument("--val_speakers", type=parse_speakers, default=None,
                      help="validation side = these speakers, training side = the rest (overrides --split; default: "
                           "the checkpoint's selection). Clips the checkpoint trained on are never scored as "
                           "validation")
    data.add_argument("--batch_size", type=positive_int, default=64,
                      help="clips per forward pass (default: %(default)s)")
    data.add_argument("--num_workers", type=non_negative_int, default=0,
                      help="data-loading worker threads (default: %(default)s)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", default=None,
                     help="folder for predictions.csv and report.html (mouth frames, marked errors, probabilities), "
                          "made and checked writable before the work (default: none)")
    out.add_argument("--report_limit", type=non_negative_int, default=DEFAULT_REPORT_LIMIT,
                     help="clips shown in full in report.html; the CSV has them all (default: %(default)s)")
    out.add_argument("--progress", type=str2bool, default=True, help="show progress bars on stderr (default: true)")
    return parser


def choose_data_paths(args: argparse.Namespace, meta: dict) -> None:
    """``image_path`` and ``align_path`` when the command line leaves them out: those the checkpoint trained
    on (``args`` in meta.json, ``data`` in an ONNX file), else the default locations."""
    recorded = meta.get("args") or meta.get("data") or {}
    for key, default in (("image_path", DATASET_DIR), ("align_path", ALIGN_DIR)):
        if getattr(args, key) is None:
            setattr(args, key, recorded.get(key) or str(default))
            if recorded.get(key):
                print(f"{key}={recorded[key]} (the checkpoint's)", file=sys.stderr)


def choose_decoder(args: argparse.Namespace, meta: dict) -> tuple[str, int]:
    """The decoder and beam width: the command line's, else the checkpoint's, else greedy and 25."""
    saved = meta.get("decoder") or {}
    method = args.decoder or (saved.get("method") if saved.get("method") in DECODERS else "greedy")
    width = args.beam_width if args.beam_width is not None else int(saved.get("beam_width") or DEFAULT_BEAM_WIDTH)
    return method, width


def choose_lm(args: argparse.Namespace, meta: dict, method: str, beam_width: int, network: Network) -> LMDecoder | None:
    """The lm decoder's language model and weights: the command line's, else the checkpoint's, else the defaults."""
    from utils.text.lm_decoder import lm_decoder_for

    saved = meta.get("decoder") or {}

    def pick(name: str) -> object:
        return getattr(args, name) if getattr(args, name) is not None else saved.get(name)

    return lm_decoder_for(method, pick("lm_path"), network.alphabet, beam_width, pick("lm_weight"), pick("word_bonus"))


def describe_decoder(method: str, beam_width: int, lm: LMDecoder | None = None) -> str:
    if lm is not None:
        return lm.describe()
    return f"{method} (beam width {beam_width})" if method == "beam" else method


def report_video(args: argparse.Namespace, video: Path, reading: VideoReading) -> list[str]:
    """stdout (text or JSON), subtitles and stderr notes for one video read; returns its warnings: the
    video read only in part (truncated or damaged), each utterance that could not be read (it gets no
    cue and adds no text; the others do), subtitles that could not be written (named by
    their file: the output's failure, not the video's). Subtitles are written before the JSON record
    goes out, so the record carries their failure: one record per video."""
    from tqdm import tqdm

    from utils.text.subtitles import Cue, write_subtitles

    summary = reading.summary
    labelled = args.face == "all"
    warnings = []
    if reading.incomplete is not None:
        warnings.append(reading.incomplete)
        tqdm.write(f"warning: {reading.incomplete}", file=sys.stderr)
    for unread in reading.unread:
        warnings.append(unread)
        tqdm.write(f"error: {video}: {unread}", file=sys.stderr)
    for small in reading.small_faces:
        warnings.append(small)
        tqdm.write(f"warning: {video}: {small}", file=sys.stderr)
    if summary.faces > 1 and not labelled:
        tqdm.write(f"{video}: {summary.faces} faces seen; reading the largest (--face=all reads each)", file=sys.stderr)
    for start, end in summary.no_face:
        tqdm.write(f"{video}: no face to read from {start:.2f} s to {end:.2f} s (skipped)", file=sys.stderr)
    if args.subtitles is not None:
        cues = [Cue(u.start, u.end, f"[face {u.face}] {u.text}" if labelled else u.text)
                for u in reading.utterances if u.text]
        try:
            write_subtitles(args.subtitles, video.stem, cues)
        except OSError as err:
            warnings.append(f"subtitles not written: {err}")
            tqdm.write(f"error: cannot write the subtitles of {video}: {err}", file=sys.stderr)
    if args.format == "json":
        tqdm.write(video_json(video.name, reading, None, labelled, warnings), file=sys.stdout)
    elif labelled and any(reading.text(face) for face in reading.faces_read):
        for face in reading.faces_read:  # a face none of whose utterances was read is named on stderr only
            if reading.text(face):
                tqdm.write(f"{video.name}#face{face}\t{reading.text(face)}", file=sys.stdout)
    else:
        tqdm.write(f"{video.name}\t{reading.text()}", file=sys.stdout)
    sys.stdout.flush()
    return warnings


def run_videos(args: argparse.Namespace, reader: VideoLipreader) -> tuple[list[ClipResult], int]:
    """Read every video as utterances and report each (see ``report_video``); returns the results for
    the HTML report (each with its warnings) and how many videos could not be read."""
    from tqdm import tqdm

    from utils.video.errors import ExtractionError

    videos = list_videos(Path(args.video))
    keep = args.out is not None
    results, failed = [], 0
    for video in tqdm(videos, desc="videos", unit="video", file=sys.stderr, disable=not args.progress,
                      leave=False):
        try:
            reading = reader.read(video, args.face, keep_frames=keep, progress=args.progress)
        except ExtractionError as err:
            message = f"{err} [{err.reason}]"
        except OSError as err:
            message = f"{video}: {err}"
        else:
            warnings = report_video(args, video, reading)
            results.append(ClipResult(video.name, reading.text(), utterances=reading.utterances if keep else None,
                                      warnings=warnings))
            continue
        failed += 1
        tqdm.write(f"error: {message}", file=sys.stderr)
        if args.format == "json":
            tqdm.write(video_json(video.name, None, message, False), file=sys.stdout)
        results.append(ClipResult(video.name, error=message))
    return results, failed


def clip_counts(results: Sequence[ClipResult], failed: int) -> str:
    """The report's count of clips: read (and how many of those with warnings), and failed."""
    read = sum(r.error is None for r in results)
    warned = sum(bool(r.warnings) for r in results)
    return f"{read} read" + (f" ({warned} with warnings)" if warned else "") + f", {failed} failed"


def exit_status(results: Sequence[ClipResult], failed: int) -> int:
    """1 when some clip failed or was read with a warning (read only in part, a face too small, an output not
    written), else 0."""
    return 1 if failed or any(r.warnings for r in results) else 0


def check_outputs(args: argparse.Namespace) -> str | None:
    """Why ``--out`` (or, reading videos, ``--subtitles``) cannot be written, naming the flag and the
    folder; None when each is a folder this process can write (made if missing). Checked before any
    model loads or video is read, so a run does not do its work and then fail to keep it."""
    from utils.runtime.atomic import NotWritableError, ensure_writable_dir
    from utils.video.recorder import check_record_path

    outputs = [("--out", args.out)] + ([("--subtitles", args.subtitles)] if args.video is not None else [])
    for flag, folder in outputs:
        if folder is not None:
            try:
                ensure_writable_dir(folder)
            except NotWritableError as err:
                return f"{flag} {err}"
    try:
        if args.record is not None:
            check_record_path(args.record)
    except ValueError as err:
        return f"--record {err}"
    return None


def run_word_videos(args: argparse.Namespace, reader: WordVideoReader) -> tuple[list[ClipResult], int]:
    """Read the word of every clip and print its top words (text or JSON lines on stdout); returns the
    results for the report (top word as the prediction; a clip read only in part, truncated or damaged,
    with a warning, also on stderr) and how many clips could not be read."""
    from tqdm import tqdm

    from utils.data.word_clips import WORD_FRAMES
    from utils.video.errors import ExtractionError

    videos = list_videos(Path(args.video))
    results, failed = [], 0
    for video in tqdm(videos, desc="clips", unit="clip", file=sys.stderr, disable=not args.progress, leave=False):
        try:
            top, frames, shortfall = reader.read(video)
        except ExtractionError as err:
            message = f"{err} [{err.reason}]"
        except OSError as err:
            message = f"{video}: {err}"
        else:
            warnings = [str(shortfall)] if shortfall is not None else []
            for warning in warnings:
                tqdm.write(f"warning: {warning}", file=sys.stderr)
            if frames != WORD_FRAMES:
                how = "its middle" if frames > WORD_FRAMES else "padded to"
                tqdm.write(f"{video}: {frames} frames, read as {how} {WORD_FRAMES} (a word clip is "
                           f"{WORD_FRAMES} frames with the word in the middle)", file=sys.stderr)
            line = (word_json(video.name, top, frames, None, warnings) if args.format == "json"
                    else word_line(video.name, top))
            tqdm.write(line, file=sys.stdout)
            results.append(ClipResult(video.name, top[0][0], warnings=warnings))
            continue
        failed += 1
        tqdm.write(f"error: {message}", file=sys.stderr)
        if args.format == "json":
            tqdm.write(word_json(video.name, None, None, message), file=sys.stdout)
        results.append(ClipResult(video.name, error=message))
    sys.stdout.flush()
    return results, failed


def run_dataset(args: argparse.Namespace, network: Network, decoder: str, beam_width: int,
                lm: LMDecoder | None = None) -> tuple[list[ClipResult], int, GroupedErrorRates]:
    """Evaluate one side of a split; print [Target]/[Pred] per clip, then CER and WER overall and per speaker."""
    from utils.data import sentence_clips as clip_data
    from utils.scoring.sentence_evaluation import evaluate_network

    if args.data_type == "test":
        raise ValueError("data_type=test is a word checkpoint's LRW-layout split; GRID's protocols have a training "
                         "and a validation side (train, valid)")
    choose_data_paths(args, network.meta)
    clips = clip_data.discover_clips(args.image_path)
    train_ids, val_ids = select_like_training(args, network.meta, clips)
    ids = val_ids if args.data_type == "valid" else train_ids
    records = clip_data.build_records({c: clips[c] for c in ids}, args.align_path)
    if not records:
        raise ValueError(f"no {args.data_type} clips under {args.image_path} for this selection "
                         f"(split {args.split or 'as at training'!r}, speakers {args.speakers or 'all'})")
    result = evaluate_network(network, records, args.batch_size, decoder, beam_width, args.num_workers,
                              keep_log_probs=args.out is not None,
                              progress=f"{args.data_type} clips" if args.progress else None, lm=lm)
    for clip_id, target, prediction in zip(result.clip_ids, result.targets, result.predictions):
        print(f"[Clip]   {clip_id}\n[Target] {target}\n[Pred]   {prediction}")
    failed = len(records) - len(result.clip_ids)
    if failed:
        print(f"error: {failed} of {len(records)} clips could not be read (named above)", file=sys.stderr)
    if not result.clip_ids:
        return [], failed, result.rates
    overall = result.rates.overall
    print(f"CER {overall.cer:.4f}  WER {overall.wer:.4f}  ({overall.sentences} clips, {args.data_type}, "
          f"decoder {decoder})")
    print(f"mean per-clip CER {overall.mean_clip_cer:.4f}  WER {overall.mean_clip_wer:.4f}  "
          "(the mean of each clip's rate, as LipNet-PyTorch reports)")
    for speaker, rates in ordered_groups(result.rates):
        print(f"  {speaker:<5} CER {rates.cer:.4f}  WER {rates.wer:.4f}  (clips: {rates.sentences})")
    by_id = {r.clip_id: r for r in records}
    results = []
    for i, clip_id in enumerate(result.clip_ids):
        frames = log_probs = None
        if args.out is not None and i < args.report_limit:
            frames = clip_data.load_frames(by_id[clip_id].path, (network.width, network.height))
            log_probs = result.log_probs[i]
        results.append(ClipResult(clip_id, result.predictions[i], result.targets[i], frames, log_probs))
    return results, failed, result.rates


def score_word_set(args: argparse.Namespace, classifier: WordClassifier | OnnxWordClassifier) -> int:
    """A word classifier on a split of an LRW-layout tree (``--image_path``, ``--data_type``): top-1 and
    top-5 accuracy, accuracy per word and the most confused pairs on stdout; with ``--out`` also
    words.csv (per word) and the usual predictions.csv and report.html (said vs read per clip). An ONNX
    file reads the clips without MXNet (``read_word_set``), a checkpoint through the training's loader."""
    choose_data_paths(args, classifier.meta)
    split = {"valid": "val"}.get(args.data_type, args.data_type)
    progress = f"{split} clips" if args.progress else None
    if hasattr(classifier, "net"):
        import data_loader
        from model.training.word_task import evaluate_words

        dataset = data_loader.WordDataset(args.image_path, split, words=classifier.words, crop=classifier.crop)
        loader = data_loader.make_word_loader(dataset, args.batch_size, num_workers=args.num_workers)
        predictions: list = []
        scores = evaluate_words(classifier.net, loader, classifier.words, classifier.ctxs, progress=progress,
                                predictions=predictions)
        read_clips, unreadable, problems = dataset.clips, dataset.unreadable, dataset.problems
    else:
        from utils.reading.onnx_words import read_word_set

        reading = read_word_set(classifier, args.image_path, split, classifier.words, classifier.crop,
                                args.batch_size, progress)
        scores, predictions = reading.scores, reading.predictions
        read_clips, unreadable, problems = reading.clips, reading.unreadable, reading.problems
    failed = len(unreadable) + len(problems)
    if unreadable:
        print(f"error: {len(unreadable)} of {len(read_clips)} clips could not be read (named above)", file=sys.stderr)
    if problems:
        print(f"error: {len(problems)} word folders were left out (named above)", file=sys.stderr)
    print(f"top-1 {scores.accuracy:.4f}  top-5 {scores.top5_accuracy:.4f}  ({scores.clips} clips, {split})")
    for word, clips, correct, accuracy in scores.per_word():
        print(f"  {word}\t{accuracy:.4f}\t{correct}/{clips}")
    for said, read, count in scores.confused_pairs(10):
        print(f"  confused: {said} read as {read} x{count}")
    if args.out is not None:
        results = [ClipResult(read_clips[i].clip_id, classifier.words[p], classifier.words[t])
                   for i, t, p, *_ in predictions]
        details = {"model": classifier.source, "clips": f"{scores.clips} read",
                   "top-1": f"{scores.accuracy:.4f}", "top-5": f"{scores.top5_accuracy:.4f}"}
        try:
            scores.write_csv(str(Path(args.out) / "words.csv"))
            paths = write_report(args.out, results, f"Words on {args.image_path} ({split})", details, None,
                                 args.report_limit)
        except OSError as err:
            print(f"error: cannot write the report to {args.out}: {err}", file=sys.stderr)
            return 2
        print(f"wrote {Path(args.out) / 'words.csv'}, {paths[0]} and {paths[1]}", file=sys.stderr)
    return 1 if failed else 0


def read_words(args: argparse.Namespace, classifier: WordClassifier | OnnxWordClassifier) -> int:
    """``--video`` with a word checkpoint: the top 5 words of each clip (``run_word_videos``), and with
    ``--out`` the CSV and HTML report (the top word as the prediction)."""
    print(f"model {classifier.source} (word classifier, {len(classifier.words)} words)", file=sys.stderr)
    try:
        if args.video is None:
            return score_word_set(args, classifier)
        results, failed = run_word_videos(args, WordVideoReader(
            classifier, classifier.words, crop=classifier.crop, region=classifier.region))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out is not None and results:
        details = {"model": classifier.source, "clips": clip_counts(results, failed)}
        try:
            csv_path, html_path = write_report(args.out, results, f"Words on {args.video}", details, None,
                                               args.report_limit)
        except OSError as err:
            print(f"error: cannot write the report to {args.out}: {err}", file=sys.stderr)
            return 2
        print(f"wrote {csv_path} and {html_path}", file=sys.stderr)
    return exit_status(results, failed)


def reads_live(source: Source | None, args: argparse.Namespace) -> bool:
    """Whether ``--video`` is read live: a camera, stream or pipe, or anything with --live=true given (a
    stream with --live=false is still read as a stream, every frame)."""
    return source is not None and (source.live or bool(args.live))


def check_live(args: argparse.Namespace) -> str | None:
    """Why the live options cannot go together as given (one line), or None."""
    try:
        source = parse_source(args.video) if args.video is not None else None
    except SourceError as err:
        return str(err)
    live = reads_live(source, args)
    if not live and (args.show or args.record is not None or args.live):
        return "--show, --record and --live=true read a video or stream live: give one with --video"
    if live and Path(args.video).is_dir():
        return f"{args.video}: a folder is read file by file, not live (drop --live)"
    if live and args.out is not None:
        return "--out reports on files and data sets; a live read writes --subtitles and --record"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s", force=True)
    # the backend loads here, after the command line is valid
    from model.loading import load_network, load_word_classifier
    from utils.reading.network import is_onnx
    problem = check_outputs(args) or check_live(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    video_source = parse_source(args.video) if args.video is not None else None

    if not is_onnx(args.model_path):  # GPUs MXNet cannot run stop here, with the reason (the CPU build skips this)
        try:
            for line in preflight(args.num_gpus):
                print(line, file=sys.stderr)
        except GpuProblem as err:
            print(f"error: {err}", file=sys.stderr)
            return 2

    try:
        classifier = load_word_classifier(args.model_path, args.num_gpus)
        if classifier is not None:
            if reads_live(video_source, args):
                print("error: live reading needs a sentence model (LipNet); a word classifier reads word clips",
                      file=sys.stderr)
                return 2
            return read_words(args, classifier)
        network = load_network(args.model_path, args.num_gpus)
    except (OSError, ValueError) as err:
        print(f"error: cannot load the model: {err}", file=sys.stderr)
        return 2
    decoder, beam_width = choose_decoder(args, network.meta)
    try:
        lm = choose_lm(args, network.meta, decoder, beam_width, network)
    except (OSError, ValueError) as err:
        print(f"error: cannot load the language model: {err}", file=sys.stderr)
        return 2
    source = network.source
    print(f"model {network.describe()}, decoder {describe_decoder(decoder, beam_width, lm)}", file=sys.stderr)
    try:
        if args.video is not None:
            reader = VideoLipreader(network, decoder, beam_width, args.max_utterance, lm, args.margin, args.edge_search,
                                    args.framing)
            if reads_live(video_source, args):
                return read_live(video_source, reader, LiveSettings(
                    args.live if args.live is not None else video_source.live, args.pause, args.stall, args.reconnect,
                    args.show, args.record, args.format, args.face, args.subtitles))
            results, failed = run_videos(args, reader)
            rates, title = None, f"LipNet on {args.video}"
        else:
            results, failed, rates = run_dataset(args, network, decoder, beam_width, lm)
            title = f"LipNet on {args.image_path} ({args.data_type})"
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out is not None and results:
        details = {"model": source, "decoder": describe_decoder(decoder, beam_width, lm),
                   "clips": clip_counts(results, failed)}
        try:
            csv_path, html_path = write_report(args.out, results, title, details, rates, args.report_limit)
        except OSError as err:
            print(f"error: cannot write the report to {args.out}: {err}", file=sys.stderr)
            return 2
        print(f"wrote {csv_path} and {html_path}", file=sys.stderr)
    return exit_status(results, failed)


if __name__ == "__main__":
    sys.exit(main())
