"""Per-clip time of the CTC decoders on synthetic LipNet-like outputs (T=75 frames, 28 classes).

``time_decoders`` is reusable on real model outputs (bench/infer.py); run this file for the synthetic
figures: ``peaked`` is a confident model, ``noisy`` a weak one whose greedy string often has errors,
``random`` pure noise. ``lm`` decodes with a trigram Kneser-Ney model of 2,000 random GRID sentences
(``grid_lm``). Timings on a shared CPU are inflated by whatever else runs.
"""

if __package__ in (None, ""):  # run as a file: find the project's packages
    import _bootstrap  # noqa: F401

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from utils.runtime.cli import non_negative_int, parse_args, positive_int
from utils.scoring.sentence_metrics import cer
from utils.text.alphabet import GRID
from utils.text.decoders import DECODERS, DEFAULT_BEAM_WIDTH, GRID_GRAMMAR, decode
from utils.text.grid_text import BLANK, NUM_CLASSES, encode
from utils.text.language_model import estimate
from utils.text.lm_decoder import LMDecoder

# (peak added to the aligned class's logit, standard deviation of the logit noise) per kind of output.
KINDS = {"peaked": (8.0, 1.0), "noisy": (5.0, 1.5), "random": (0.0, 2.0)}


def random_alignment(sentence: str, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """A CTC path of ``n_frames`` class ids spelling ``sentence``, spare frames spread at random.

    Spare frames lengthen characters or the blanks around them, as speech does; a repeated character
    gets at least one blank between its two runs. ValueError when the sentence cannot fit.
    """
    label = encode(sentence)
    repeats = [i > 0 and c == label[i - 1] for i, c in enumerate(label)]
    spare = n_frames - len(label) - sum(repeats)
    if spare < 0:
        raise ValueError(f"{sentence!r} needs {n_frames - spare} frames, only {n_frames} given")
    # Segments: blank before character 0, character 0, blank before character 1, ..., trailing blank.
    extra = rng.multinomial(spare, np.full(2 * len(label) + 1, 1 / (2 * len(label) + 1)))
    path: list[int] = []
    for i, c in enumerate(label):
        path += [BLANK] * (int(repeats[i]) + extra[2 * i]) + [c] * (1 + extra[2 * i + 1])
    return np.array(path + [BLANK] * extra[-1])


def synthetic_log_probs(sentence: str, n_frames: int, rng: np.random.Generator,
                        peak: float = 8.0, noise: float = 1.0) -> np.ndarray:
    """(n_frames, 28) log_softmax of Gaussian logits with ``peak`` added along a random alignment."""
    logits = noise * rng.standard_normal((n_frames, NUM_CLASSES))
    logits[np.arange(n_frames), random_alignment(sentence, n_frames, rng)] += peak
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def random_sentence(rng: np.random.Generator) -> str:
    return " ".join(slot[rng.integers(len(slot))] for slot in GRID_GRAMMAR)


def grid_lm(beam_width: int = DEFAULT_BEAM_WIDTH, sentences: int = 2000, seed: int = 1) -> LMDecoder:
    """The lm decoder with a trigram model of ``sentences`` random GRID sentences (all 51 words)."""
    rng = np.random.default_rng(seed)
    return LMDecoder(estimate([random_sentence(rng).split() for _ in range(sentences)]), GRID, beam_width)


@dataclass
class DecoderTiming:
    """Per-clip wall times of one decoder (best of the repeats per clip) and the texts it produced."""

    median_ms: float
    mean_ms: float
    max_ms: float
    texts: list[str]


def time_decoders(log_probs_list: Sequence[np.ndarray], methods: Sequence[str] = DECODERS,
                  beam_width: int = DEFAULT_BEAM_WIDTH, repeats: int = 1,
                  progress: bool = False, lm: LMDecoder | None = None) -> dict[str, DecoderTiming]:
    """Decode every (T, 28) clip with every method, timing each clip; ``repeats`` keeps the fastest run.
    ``lm`` defaults to ``grid_lm`` where ``lm`` is among the methods."""
    if not log_probs_list:
        raise ValueError("no clips to time")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if "lm" in methods and lm is None:
        lm = grid_lm(beam_width)
    results = {}
    for method in methods:
        decode(log_probs_list[0], method, beam_width, lm=lm)  # warm-up: builds the grammar trees once
        times, texts = [], []
        for lp in tqdm(log_probs_list, desc=method, disable=not progress, leave=False):
            best = np.inf
            for _ in range(repeats):
                start = time.perf_counter()
                text = decode(lp, method, beam_width, lm=lm)
                best = min(best, time.perf_counter() - start)
            times.append(best * 1e3)
            texts.append(text)
        results[method] = DecoderTiming(statistics.median(times), statistics.mean(times), max(times), texts)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=positive_int, default=20, help="synthetic clips per kind (default 20)")
    parser.add_argument("--frames", type=positive_int, default=75, help="frames per clip (default 75, as GRID)")
    parser.add_argument("--beam-width", "--beam_width", dest="beam_width", type=positive_int,
                        default=DEFAULT_BEAM_WIDTH, help=f"prefix beam width (default {DEFAULT_BEAM_WIDTH})")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="runs per clip, the fastest counted, to damp CPU contention (default 3)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated kinds of synthetic output among {', '.join(KINDS)} (default all)")
    parser.add_argument("--decoders", default=",".join(DECODERS),
                        help=f"comma-separated decoders among {', '.join(DECODERS)} (default all)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="random seed of the synthetic clips (default 0)")
    return parser


def _choices(parser: argparse.ArgumentParser, flag: str, value: str, allowed: Sequence[str]) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in chosen if v not in allowed]
    if bad or not chosen:
        parser.error(f"{flag}: {', '.join(bad) or 'nothing'} not among {', '.join(allowed)}")
    return chosen


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, DecoderTiming]]:
    parser = build_parser()
    args = parse_args(parser, argv)
    kinds = _choices(parser, "--kinds", args.kinds, list(KINDS))
    methods = _choices(parser, "--decoders", args.decoders, DECODERS)
    rng = np.random.default_rng(args.seed)
    print(f"{args.clips} clips per kind, T={args.frames}, beam width {args.beam_width}, "
          f"best of {args.repeats} runs per clip; times in ms per clip")
    print(f"{'kind':8} {'decoder':8} {'median':>8} {'mean':>8} {'max':>8} {'CER':>7}  exact sentences")
    report = {}
    for kind in kinds:
        peak, noise = KINDS[kind]
        targets = [random_sentence(rng) for _ in range(args.clips)]
        try:
            clips = [synthetic_log_probs(s, args.frames, rng, peak, noise) for s in targets]
        except ValueError as err:
            parser.error(f"--frames {args.frames}: {err}")
        report[kind] = time_decoders(clips, methods, args.beam_width, args.repeats, progress=True)
        for method, timing in report[kind].items():
            exact = sum(t == s for t, s in zip(timing.texts, targets))
            print(f"{kind:8} {method:8} {timing.median_ms:8.2f} {timing.mean_ms:8.2f} {timing.max_ms:8.2f}"
                  f" {cer(targets, timing.texts):7.1%}  {exact}/{args.clips}")
    return report


if __name__ == "__main__":
    main()
