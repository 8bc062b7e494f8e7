"""bench/captions.py at a tiny size: one run of the captions quick start per seed, the validation speaker's
talk read besides the test speakers', the WERs and the language model's cut per seed and over the seeds,
and the thread count, in its last (JSON) line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils.text.captions import normalise_text, read_captions

REPO_ROOT = Path(__file__).resolve().parents[2]


def words(srt: Path) -> int:
    return sum(len(normalise_text(c.text)[0].split()) for c in read_captions(srt))


@pytest.mark.slow
def test_each_seed_reads_the_validation_and_test_speakers_and_the_spread_is_reported(tmp_path: Path):
    work = tmp_path / "work"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "captions.py"), f"work={work}", "seeds=3,0",
         "train_speakers=1-2", "val_speakers=3", "test_speakers=4", "sentences=2", "test_sentences=2",
         "channels=4,4,4", "hidden=8", "epochs=1", "batch_size=2", "n_process=1"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=900, check=False,
        env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["seeds"] == [3, 0] and summary["omp_num_threads"] == "1"
    assert "OMP_NUM_THREADS=1" in result.stdout
    texts = []
    for run, seed in zip(summary["runs"], (3, 0), strict=True):
        data = work / f"seed-{seed}" / "data"
        references = [data / "test_talks" / "s4_talk0.srt", data / "talks" / "s3_talk0.srt"]
        texts.append([c.text for srt in references for c in read_captions(srt)])
        assert run["seed"] == seed
        for decoder in ("beam", "lm"):
            scored = run["results"][decoder]
            # both unseen speakers' talks were read and scored, every word of them
            assert (data / f"read_{decoder}" / "s3_talk0.srt").is_file()
            assert scored["talks"] == 2 and set(scored["talk_wer"]) == {"s3_talk0", "s4_talk0"}
            assert scored["words"] == sum(words(srt) for srt in references)
            assert f"reading validation ({decoder})" in run["seconds"]
        beam, lm = run["results"]["beam"]["wer"], run["results"]["lm"]["wer"]
        assert run["lm_cut"] == round(1 - lm / beam, 3)
        assert f"seed {seed}: {run['results']['beam']['words']} words of 2 talks" in result.stdout
    assert texts[0] != texts[1], "each seed draws its own talks"
    for key, values in (("beam_wer", [r["results"]["beam"]["wer"] for r in summary["runs"]]),
                        ("lm_cut", [r["lm_cut"] for r in summary["runs"]])):
        spread = summary["over_seeds"][key]
        assert spread["min"] == round(min(values), 3) and spread["max"] == round(max(values), 3)
        assert abs(spread["mean"] - sum(values) / 2) < 1e-3
    assert summary["target_met"] == (summary["over_seeds"]["lm_cut"]["mean"] >= 0.30)
