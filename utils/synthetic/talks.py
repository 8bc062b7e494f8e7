"""Synthetic captioned talks: any English text said by a drawn speaker, as a video with its ``.srt``.

Why: training on your own captioned videos (``utils/prepare_captions.py``) needs videos with
subtitles; these are made in seconds, with no download, so the whole path (subtitles, cue cutting,
face detection, mouth crops, an open-vocabulary model, a word language model) runs in tests and in
the example in docs/captions.md.

The speech model extends the GRID generator's (``utils.synthetic``): the mouth follows
co-articulated targets (dominance functions), one per viseme class (``VISEMES``: b, m and p are closed
lips; f and v the lower lip under the teeth; e, i and y a spread mouth; ...). Classes are far apart
and look the same on every speaker (who still differ in face, colours, size, position and articulation);
letters within a class are nearly identical (a few hundredths of lip thickness, under the jitter every
target gets). So a reader learns the classes but must guess the letter within one, the confusion a
real lip reader makes, and a word language model repairs it ("bat", "pat" and "mat" look alike; only
one fits the sentence). With a distinct target per character instead (h13a's first design) a frame
told an unseen speaker's character at 0.30 against 0.17 chance, a tiny model barely read (CER 0.77)
and the language model cut the WER by only 7-10%. A space is a brief relaxation of the
lips; a sentence ends in a still, closed mouth held for ``PAUSE`` seconds, so readers that cut
videos at pauses find the sentences.

A talk is ``sentences`` sentences: drawn from a small English grammar (``sentence``, numbers written
as digits: the captions read "3 boats", the mouth says "three boats"), or taken from a text file.
Each sentence is one subtitle cue, from just before its first character to just after its last.
Everything is deterministic in ``(seed, speaker, talk)``.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.runtime.atomic import write_text_atomic
from utils.synthetic import PARAMS, Speaker, make_speaker, render_frames
from utils.synthetic.face import draw_face, make_face_style, mouth_centre, paste_mouth, shift, soft_mask
from utils.synthetic.record import TALKS, claim, differences, listed
from utils.text.captions import CHARACTERS, normalise_text
from utils.text.subtitles import Cue, render_srt
from utils.video.writer import write_video

FPS = 25.0
CHAR_FRAMES = 2.0  # mean frames per character at an average speaking rate
SPACE_FRAMES = 1.6
MAX_SPEECH = 2.2  # seconds of speech per sentence at most (a cue stays within 3 s, GRID's clip length)
PAUSE = (1.3, 1.7)  # seconds of still mouth between sentences: longer than infer.py's 1 s pause
CUE_MARGIN = 0.12  # seconds a cue starts before the first character and ends after the last
LEAD = 0.8  # seconds of rest before the first sentence and after the last
_TALK_STREAM = 5

# Mouth targets by viseme class: opening, width, rounding, lip thickness, upper teeth, lower teeth, tongue,
# lower-lip tuck (utils.synthetic.PARAMS). Classes differ by at least 0.3 in some parameter; the letters
# of one class differ only by a few hundredths of lip thickness, less than the jitter every said target
# gets (0.035), so a reader can tell the class and must guess the letter, as a real lip reader does.
VISEMES: dict[str, tuple[str, tuple[float, ...]]] = {
    "bilabial": ("bmp", (0.00, 1.00, 0.25, 0.95, 0.00, 0.00, 0.00, 0.0)),  # closed lips
    "labiodental": ("fv", (0.22, 1.00, 0.10, 0.90, 1.00, 0.00, 0.00, 1.0)),  # lower lip under upper teeth
    "rounded": ("wuq", (0.15, 0.50, 1.10, 1.55, 0.00, 0.00, 0.00, 0.0)),  # small, pushed-out round
    "open rounded": ("or", (0.75, 0.72, 0.85, 1.25, 0.10, 0.00, 0.15, 0.0)),
    "open": ("ah", (1.00, 1.05, 0.25, 0.90, 0.45, 0.25, 0.20, 0.0)),  # wide open
    "spread": ("eiy", (0.50, 1.40, 0.00, 0.75, 1.00, 0.80, 0.10, 0.0)),
    "sibilant": ("scxzj", (0.12, 1.25, 0.05, 0.85, 1.00, 1.00, 0.00, 0.0)),  # teeth together
    "alveolar": ("dlnt'", (0.42, 1.05, 0.10, 0.90, 0.60, 0.30, 1.00, 0.0)),  # tongue tip up
    "velar": ("gk", (0.62, 0.90, 0.40, 1.00, 0.10, 0.00, 0.00, 0.0)),  # mid-open, relaxed
}
CHARACTER_TARGETS: dict[str, tuple[float, ...]] = {
    c: target[:3] + (target[3] + 0.01 * (i - (len(letters) - 1) / 2),) + target[4:]
    for letters, target in VISEMES.values() for i, c in enumerate(letters)
}
SPACE_TARGET = (0.10, 1.00, 0.25, 1.00, 0.00, 0.00, 0.00, 0.0)  # lips relax between words
REST_TARGET = (0.03, 1.00, 0.25, 1.00, 0.00, 0.00, 0.00, 0.0)  # still and closed between sentences
# How strongly a target pulls the mouth against its neighbours: closures must be reached.
DOMINANCE = {"b": 1.8, "m": 1.8, "p": 1.8, "f": 1.5, "v": 1.5, "u": 1.3, "w": 1.3, "q": 1.3, "o": 1.2, "r": 1.2,
             " ": 0.9}
assert set(CHARACTER_TARGETS) | {" "} == set(CHARACTERS), "every caption character needs a mouth target"

# ---------------------------------------------------------------------------------------------
# Text

SUBJECTS = ("the old man", "my sister", "a small dog", "the teacher", "our neighbour", "the children",
            "his friend", "a young girl", "the farmer", "my brother", "the doctor", "her cat")
VERBS = ("found", "painted", "carried", "opened", "cleaned", "sold", "bought", "watched", "fixed", "lost",
         "moved", "washed")
OBJECTS = ("a red box", "the green door", "an old boat", "the window", "a new car", "the blue chair",
           "the big bag", "a letter", "the white fence", "a warm coat")
COUNTED = ("apples", "books", "boats", "cups", "eggs", "fish", "hats", "keys")
PLACES = ("in the garden", "near the river", "at the station", "on the hill", "by the sea", "after lunch",
          "last night", "at home", "in town", "today")
ADJECTIVES = ("happy", "tired", "late", "early", "hungry", "busy", "quiet", "cold")
_TEMPLATES = (
    "{S} {V} {O}.", "{S} {V} {O} {P}.", "{S} {V} {N} {C}.", "{S} was {A} {P}.", "we {V} {O} {P}.",
    "{S} {V} {O}!", "it's {A} {P}.", "don't forget {O}.", "{S} can't find {O}.", "where is {O}?",
    "I {V} {N} {C} {P}.", "{S} isn't {A}.",
)


def sentence(rng: np.random.Generator) -> str:
    """One sentence of the built-in grammar as captions write it (capital, digits, punctuation)."""
    text = rng.choice(_TEMPLATES).format(
        S=rng.choice(SUBJECTS), V=rng.choice(VERBS), O=rng.choice(OBJECTS), P=rng.choice(PLACES),
        A=rng.choice(ADJECTIVES), C=rng.choice(COUNTED), N=int(rng.integers(2, 20)))
    return text[0].upper() + text[1:]


def text_sentences(text: str, max_characters: int) -> list[str]:
    """A text cut into sentences (at . ! ? and line breaks), long ones split between words into the
    fewest pieces of about equal length that each say at most ``max_characters`` characters; those
    with nothing to say, or a single word too long to say, are left out."""

    def said(words: Sequence[str]) -> int:
        return len(normalise_text(" ".join(words))[0])

    pieces = []
    for part in re.split(r"(?<=[.!?])\s+|\n+", text):
        words = part.split()
        for count in range(1, len(words) + 1):
            target = said(words) / count
            chunks: list[list[str]] = [[]]
            for word in words:  # a piece ends once it reaches the target length, or before it is too long
                if chunks[-1] and (said(chunks[-1]) >= target or said(chunks[-1] + [word]) > max_characters):
                    chunks.append([])
                chunks[-1].append(word)
            if len(chunks) <= count or count == len(words):
                pieces.extend(" ".join(chunk) for chunk in chunks)
                break
    return [p for p in pieces if 0 < said([p]) <= max_characters]


def max_characters(rate: float = 1.0) -> int:
    """Characters a sentence may hold so that it is said within MAX_SPEECH at ``rate``."""
    return int(MAX_SPEECH * FPS / (CHAR_FRAMES * rate))


# ---------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class TalkPlan:
    """What is said when: subtitle cues and mouth targets over the whole talk."""

    cues: tuple[Cue, ...]  # one per sentence, the text as captions write it
    spoken: tuple[str, ...]  # what each cue says, normalised
    n_frames: int
    key_times: np.ndarray  # (K,) frames
    key_targets: np.ndarray  # (K, len(PARAMS))
    key_sigma: np.ndarray  # (K,) frames
    key_weight: np.ndarray  # (K,) dominance
    key_chars: tuple[str, ...]  # (K,) the character each target says ('' for the rests between sentences)

    def trajectory(self, speaker: Speaker, rng: np.random.Generator) -> np.ndarray:
        """(T, len(PARAMS)) mouth parameters: dominance-weighted targets, in the speaker's style."""
        targets = self.key_targets * speaker.style
        said = np.array([c != "" for c in self.key_chars])
        targets = targets + rng.normal(0, 0.035, targets.shape) * said[:, None]
        out = np.empty((self.n_frames, len(PARAMS)), np.float32)
        for first in range(0, self.n_frames, 256):  # a block of frames against the keys near it
            times = np.arange(first, min(first + 256, self.n_frames), dtype=np.float64)
            near = np.flatnonzero((self.key_times > times[0] - 12) & (self.key_times < times[-1] + 12))
            d = (times[:, None] - self.key_times[near][None, :]) / self.key_sigma[near][None, :]
            weights = self.key_weight[near][None, :] * np.exp(-0.5 * d * d)
            rest = np.asarray(REST_TARGET, np.float64)
            out[first:first + len(times)] = (weights @ targets[near] + 1e-6 * rest) / (weights.sum(1, keepdims=True)
                                                                                      + 1e-6)
        return np.clip(out, 0, None)


def plan_talk(written: Sequence[str], speaker: Speaker, rng: np.random.Generator) -> TalkPlan:
    """Timing of a talk saying each of ``written`` (sentences as captions write them) in turn."""
    times: list[float] = []
    targets: list[tuple[float, ...]] = []
    sigmas: list[float] = []
    weights: list[float] = []
    chars: list[str] = []

    def key(time: float, target: tuple[float, ...], sigma: float, weight: float, char: str = "") -> None:
        times.append(time)
        targets.append(target)
        sigmas.append(sigma)
        weights.append(weight)
        chars.append(char)

    def rest(start: float, end: float) -> None:
        for time in np.arange(start, end, 2.0):
            key(float(time), REST_TARGET, 1.6, 0.8)

    cues, spoken = [], []
    t = LEAD * FPS
    rest(0.0, t - 1.0)
    for text in written:
        said, problem = normalise_text(text)
        if problem:
            raise ValueError(f"{text!r}: {problem}")
        rate = speaker.rate * rng.uniform(0.92, 1.08)
        durations = np.array([(SPACE_FRAMES if c == " " else CHAR_FRAMES) for c in said]) * rate
        durations *= rng.uniform(0.8, 1.2, len(said))
        squeeze = min(1.0, MAX_SPEECH * FPS / durations.sum())
        durations *= squeeze
        centres = t + np.cumsum(durations) - durations / 2
        for c, centre, duration in zip(said, centres, durations):
            target = SPACE_TARGET if c == " " else CHARACTER_TARGETS[c]
            key(float(centre), target, max(duration * speaker.crispness, 0.35), DOMINANCE.get(c, 1.0), c)
        end = t + durations.sum()
        cues.append(Cue(max(t / FPS - CUE_MARGIN, 0.0), end / FPS + CUE_MARGIN, text))
        spoken.append(said)
        pause = rng.uniform(*PAUSE) * FPS
        rest(end + 1.2, end + pause - 1.0)
        t = end + pause
    n_frames = int(np.ceil(t - (PAUSE[0] * FPS) + LEAD * FPS)) if written else int(2 * LEAD * FPS)
    rest(t - 1.0, n_frames + 2.0)
    return TalkPlan(tuple(cues), tuple(spoken), n_frames, np.array(times), np.array(targets, np.float32),
                    np.array(sigmas), np.array(weights), tuple(chars))


# ---------------------------------------------------------------------------------------------
# Rendering


def _talk_rng(seed: int, speaker: int, talk: int) -> np.random.Generator:
    return np.random.default_rng([seed, _TALK_STREAM, speaker, talk])


def talk_sentences(seed: int, speaker: int, talk: int, count: int, source: Sequence[str] | None = None) -> list[str]:
    """The sentences of a talk: drawn from the grammar, or from ``source`` sentences (without
    repeating one within the talk while there are enough)."""
    rng = np.random.default_rng([seed, _TALK_STREAM, speaker, talk, 1])
    if source is None:
        limit = max_characters()
        out: list[str] = []
        while len(out) < count:
            candidate = sentence(rng)
            if len(normalise_text(candidate)[0]) <= limit:
                out.append(candidate)
        return out
    if not source:
        raise ValueError("no sentence to say")
    order = np.concatenate([rng.permutation(len(source)) for _ in range(-(-count // len(source)))])
    return [source[i] for i in order[:count]]


def render_talk(seed: int, speaker: int, talk: int, written: Sequence[str]) -> tuple[Iterator[np.ndarray], TalkPlan]:
    """Frames (RGB, face.FRAME_SIZE, FPS, made as they are consumed) and plan of a speaker's talk."""
    style = make_speaker(seed, speaker)
    face_style = make_face_style(seed, speaker)
    rng = _talk_rng(seed, speaker, talk)
    plan = plan_talk(written, style, rng)
    params = plan.trajectory(style, rng)
    patch_w = int(round(face_style.mouth_width / (2 * style.scale))) & ~1
    patch_h = (patch_w // 2) & ~1
    brightness = style.light[0]
    face = draw_face(face_style, np.clip(style.skin * brightness, 0, 255))
    mx, my = mouth_centre(face_style)
    corner = (mx - style.centre[0] * patch_w, my - style.centre[1] * patch_h)
    mask = soft_mask((patch_w, patch_h))
    drift = [np.interp(np.arange(plan.n_frames), np.linspace(0, plan.n_frames, 12), rng.uniform(-3, 3, 12))
             for _ in range(2)]

    def frames() -> Iterator[np.ndarray]:
        for first in range(0, plan.n_frames, 100):  # mouths drawn 100 frames at a time: memory stays flat
            mouths = render_frames(params[first:first + 100], style, rng, (patch_w, patch_h))
            for i, mouth in enumerate(mouths, first):
                yield shift(paste_mouth(face, mouth, corner, mask), drift[0][i], drift[1][i])

    return frames(), plan


def write_talk(directory: str | Path, stem: str, seed: int, speaker: int, talk: int,
               written: Sequence[str]) -> tuple[Path, Path]:
    """``DIRECTORY/STEM.mp4`` and ``DIRECTORY/STEM.srt`` (the subtitles last: their presence marks the
    talk done), each under a temporary name first."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frames, plan = render_talk(seed, speaker, talk, written)
    video = write_video(directory / f"{stem}.mp4", frames, FPS)
    subtitles = directory / f"{stem}.srt"
    write_text_atomic(subtitles, render_srt(plan.cues))
    return video, subtitles


@dataclass
class TalksReport:
    """What ``generate_talks`` did: the talks' stems by speaker number, and how many were written."""

    stems: dict[str, int]
    written: int = 0
    skipped: int = 0


def generate_talks(tgt_path: str | Path, speakers: Sequence[int], talks_per_speaker: int = 1,
                   sentences_per_talk: int = 12, seed: int = 0, text: str | None = None,
                   progress: bool = True, overwrite: bool = False) -> TalksReport:
    """Talks ``s{N}_talk{K}.mp4`` + ``.srt`` for every speaker N, and ``speakers.txt`` (the mapping
    ``utils/prepare_captions.py speaker=`` takes) under ``tgt_path``; talks already written are kept.

    ``tgt_path`` records the request (``utils.synthetic.record``): another seed, sentences per talk or
    text, or fewer speakers or talks than the folder holds, raises ``SetMismatch`` before anything is
    written, unless ``overwrite`` deletes the old talks first; more speakers and talks add to them.
    """
    from tqdm import tqdm

    tgt_path = Path(tgt_path)
    source = text_sentences(text, max_characters()) if text is not None else None
    if source is not None and not source:
        raise ValueError("the text has no sentence that can be said")
    report = TalksReport({f"s{s}_talk{k}": s for s in sorted(set(speakers)) for k in range(talks_per_speaker)})
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16] if text is not None else None
    wanted = {"seed": seed, "sentences_per_talk": sentences_per_talk, "text": digest,
              "talks_per_speaker": talks_per_speaker, "speakers": sorted(set(speakers))}
    claim(tgt_path, TALKS, wanted, _merge_talks, overwrite)
    write_text_atomic(tgt_path / "speakers.txt", "".join(f"{stem} s{s}\n" for stem, s in report.stems.items()))
    for stem, speaker in tqdm(report.stems.items(), desc="synthetic talks", unit="talk", disable=not progress):
        if (tgt_path / f"{stem}.srt").is_file() and (tgt_path / f"{stem}.mp4").is_file():
            report.skipped += 1
            continue
        talk = int(stem.rsplit("talk", 1)[1])
        write_talk(tgt_path, stem, seed, speaker, talk,
                   talk_sentences(seed, speaker, talk, sentences_per_talk, source))
        report.written += 1
    return report


def _merge_talks(recorded: dict, wanted: dict) -> tuple[dict, list[str]]:
    """Talks grow by speakers and talks; the seed, sentences per talk and text are fixed, and a request
    must cover the folder, as ``speakers.txt`` and utils/prepare_captions.py take every talk in it."""
    problems = differences(recorded, wanted, {"seed": str, "sentences_per_talk": str})
    if recorded.get("text") != wanted["text"]:
        def source(digest: str | None) -> str:
            return "the built-in grammar" if digest is None else f"a text of sha256 {digest}"
        problems.append(f"sentences of {source(recorded.get('text'))}, not {source(wanted['text'])}")
    left_out = sorted(set(recorded.get("speakers", ())) - set(wanted["speakers"]))
    if left_out:
        problems.append(f"speakers {listed(left_out)} not asked for")
    if recorded.get("talks_per_speaker", 0) > wanted["talks_per_speaker"]:
        problems.append(f"{recorded['talks_per_speaker']} talks per speaker, not {wanted['talks_per_speaker']}")
    return wanted, problems
