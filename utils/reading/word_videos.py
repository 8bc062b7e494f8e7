"""Raw clips to their most probable words with a word classifier, through the training data's preprocessing,
and the lines ``infer.py`` prints for them."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from utils.video.reader import Shortfall



class WordVideoReader:
    """A raw clip to its most probable words with a word classifier (``words``: its class list).

    The clip goes through the training data's preprocessing (``utils.video.word_crops``: landmarks,
    the similarity transform to the mean face, the grey 96x96 mouth region), then the centred 88x88
    crop and normalisation ``WordDataset`` gives validation clips. A clip longer than LRW's 29
    frames is read in its middle 29, where the word is expected; a shorter one is padded.
    ``classify`` maps a batch ``(N, 1, 29, 88, 88)`` float32 to class scores ``(N, len(words))``.
    """

    def __init__(self, classify: Callable[[np.ndarray], np.ndarray], words: Sequence[str], top: int = 5,
                 crop: int | None = None, region: int | None = None) -> None:
        from utils.data.word_clips import WORD_CROP
        from utils.video.word_crops import WORD_CROP_SIZE, WordCropper

        self.classify = classify
        self.words = list(words)
        self.top = top
        self.crop = crop or WORD_CROP  # the network's input side, cut from the centre of the region
        self.cropper = WordCropper(size=region or WORD_CROP_SIZE)  # the regions it trained on (same view)

    def read(self, path: Path) -> tuple[list[tuple[str, float]], int, Shortfall | None]:
        """The ``top`` words with their probabilities, the clip's frame count, and whether the file was
        read only in part (truncated or damaged: read as far as it goes); raises ExtractionError naming
        the file when it shows no mouth to read."""
        from utils.data.word_clips import centre_frames, top_words, word_input

        frames, shortfall = self.cropper.crop_video(path)
        scores = self.classify(word_input(centre_frames(frames), crop=self.crop)[None])
        return top_words(scores[0], self.words, self.top), len(frames), shortfall


def word_line(name: str, top: list[tuple[str, float]]) -> str:
    """The text line of one clip: ``FILE<TAB>WORD PROBABILITY`` for each of the top words, most probable first."""
    return "\t".join([name] + [f"{word} {prob:.4f}" for word, prob in top])


def word_json(name: str, top: list[tuple[str, float]] | None, frames: int | None, error: str | None,
              warnings: Sequence[str] = ()) -> str:
    """The --format=json line of one clip."""
    return json.dumps({"file": name, "frames": frames, "error": error,
                       "top": [{"word": w, "probability": round(p, 6)} for w, p in top or []],
                       "warnings": list(warnings)}, ensure_ascii=False)
