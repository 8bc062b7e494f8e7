"""Captioned videos end to end (utils/captions_quickstart.py at a tiny size): synthetic talks with
subtitles -> prepare_captions.py -> build_lm.py -> a small LipNet trained on several synthetic speakers
(alphabet=captions) -> infer.py --video --subtitles on a talk by a speaker never trained on, scored."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from utils import captions_quickstart
from utils.text.captions import read_captions

# Six sentences said by every speaker: the test checks the path, not the model's reach (bench/captions.py
# measures that with the open grammar). Digits and apostrophes go through normalisation.
SENTENCES = """The 3 boats are red.
Don't open the green door!
Where is the old man?
We watched 12 fish.
He found a warm coat.
It's cold at home.
"""


@pytest.mark.slow
def test_talks_to_clips_to_model_to_subtitles_of_an_unseen_speaker(tmp_path: Path):
    text = tmp_path / "sentences.txt"
    text.write_text(SENTENCES)
    data = tmp_path / "data"
    status = captions_quickstart.main([
        f"data_path={data}", f"save_dir={tmp_path / 'checkpoint'}", f"text={text}",
        "train_speakers=1-8", "val_speakers=9", "test_speakers=10", "sentences=6", "test_sentences=6",
        "size=48x24", "channels=8,16,16", "hidden=48", "epochs=30", "batch_size=4", "lr=6e-3", "progress=false",
    ])
    assert status == 0
    results = json.loads((data / "results.json").read_text())["results"]
    # every sentence of the training talks became a clip with its transcript
    clips = sorted((data / "clips").glob("s*/*.npz"))
    assert len(clips) == 9 * 6 and all(c.with_suffix(".txt").is_file() for c in clips)
    # the unseen speaker's talk was cut at its sentences and read, with and without the language model
    reference = read_captions(data / "test_talks" / "s10_talk0.srt")
    vocabulary = {w for c in clips for w in c.with_suffix(".txt").read_text().split()}
    for decoder in ("beam", "lm"):
        written = read_captions(data / f"read_{decoder}" / "s10_talk0.srt")
        assert len(written) == len(reference) == 6, f"{decoder}: {written}"
        for cue, said in zip(written, reference):
            assert cue.start < said.end and said.start < cue.end, f"{decoder}: {cue} is not {said}"
    lm_words = {w for c in read_captions(data / "read_lm" / "s10_talk0.srt") for w in c.text.split()}
    assert lm_words <= vocabulary, "the language model spells only words of the training transcripts"
    # Eight training speakers saying each sentence once, not three saying them twice: with three the
    # model memorises them and the validation loss on the unseen speaker rises; with eight it follows the
    # training loss. A model this small, trained this briefly, only starts to read: its characters are
    # better than chance and the language model turns them into fewer wrong words; bench/captions.py
    # measures the language model's cut on a larger model.
    assert results["beam"]["cer"] < 0.9, results
    assert results["lm"]["wer"] < min(results["beam"]["wer"], 0.95), results
