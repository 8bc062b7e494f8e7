"""The models the real-clip tests share, each trained once per change of what its training depends on.

Each model in ``MODELS`` is trained on the three shared GRID clips by its own recipe and committed under
``tests/assets/<name>/`` (its ``model.params`` and ``meta.json``) with the SHA-256 of everything that shapes its
weights (``recipe_digest``: the code of the network, training, data loading and preprocessing, the pinned
requirements, its recipe, the code of ``prepare`` and ``train``, and the clips). ``real_model`` memorises the clips
(4-5 minutes on 2 cores; docs/tests.md says how its recipe was chosen); ``light_model`` is a small LipNet on 48x24
crops, normalised per clip, that reads darker copies of them as the originals. A test run loads a model when its
digest matches; when it does not, a developer's run retrains it and names the files to commit, and CI, which never
retrains, fails naming the stale model. To retrain the stale ones by hand:

    python -m tests.real_model [--shared=../shared] [--only=NAME] [--all]
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "tests" / "assets"
DIGEST_FILE = "digest.txt"
ASSET_FILES = ("model.params", "meta.json")
# What shapes the trained weights: a change to any of these retrains every model.
DEPENDS_ON = ("model/lipnet.py", "model/backend.py", "model/checkpoint.py", "model/devices.py", "model/adamw.py",
              "model/training", "data_loader.py", "utils/data", "utils/video", "utils/text/grid_text.py",
              "utils/text/alphabet.py", "utils/preprocess_data.py", "utils/estimate_aligns.py", "requirements.txt")


@dataclass(frozen=True)
class CommittedModel:
    """A model the tests share: its name (its folder under ``tests/assets/``), main.py's settings besides the
    data (``recipe``), and preprocess_data's settings for its mouth crops besides the folders (``preprocess``)."""

    name: str
    recipe: tuple[str, ...]
    preprocess: tuple[str, ...] = ()

    @property
    def asset(self) -> Path:
        return ASSETS / self.name


MODELS = {model.name: model for model in (
    # Batch norm and no dropout, so that it can memorise three sentences; aligned_ctc, so that words are spelt
    # where they were said; recode_prob and temporal jitter, so that it reads re-encoded and variable-rate copies;
    # 900 epochs, so that late learners get there (all 18 seeds tried pass). No low_rate_prob: jitter alone reads
    # 12-15 fps copies of the clips as well; with it, no better.
    CommittedModel("real_model", (
        "aligned_ctc=true", "num_gpus=0", "channels=16,32,48", "hidden=128", "norm=batch", "dr_rate=0",
        "flip_prob=0", "jitter_prob=0.05", "batch_size=3", "lr=0.003", "lr_schedule=cosine", "epochs=900",
        "recode_prob=0.5", "seed=1", "val_interval=10", "progress=false", "show_examples=0")),
    # Small and quick: 48x24 crops, a narrow network with batch norm and no dropout, aligned CTC and the grammar
    # decoder, so that it memorises the three sentences in 600 steps; input_norm=clip, so that a clip's light is
    # normalised away, and light_prob, for what that leaves.
    CommittedModel("light_model", (
        "input_norm=clip", "light_prob=0.5", "aligned_ctc=true", "decoder=grammar", "num_gpus=0",
        "channels=8,16,16", "hidden=96", "norm=batch", "dr_rate=0", "flip_prob=0", "jitter_prob=0", "batch_size=3",
        "lr=0.01", "lr_schedule=cosine", "epochs=600", "val_interval=100", "seed=0", "progress=false",
        "show_examples=0"), preprocess=("size=48x24",)),
)}


def recipe_digest(model: CommittedModel, grid_dir: Path) -> str:
    """SHA-256 of the model's recipe and crop settings, of the code of ``prepare`` and ``train``, of the files in
    ``DEPENDS_ON`` (each folder's ``.py`` files), by path and content, and of the shared clips and align file the
    model is trained on."""
    digest = hashlib.sha256()
    digest.update(repr(model.recipe).encode())
    digest.update(repr(model.preprocess).encode())
    for step in (prepare, train):
        digest.update(inspect.getsource(step).encode())
    files = []
    for name in DEPENDS_ON:
        path = REPO_ROOT / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for path in files:
        digest.update(f"{path.relative_to(REPO_ROOT)}\n".encode())
        digest.update(path.read_bytes())
    for path in sorted(grid_dir.glob("*.mpg")) + sorted(grid_dir.glob("*.align")):
        digest.update(f"{path.name}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare(model: CommittedModel, grid_dir: Path, root: Path) -> dict[str, Path]:
    """The data the model trains on, under ``root``: links to the raw videos (speaker s1), their mouth crops (by
    the model's ``preprocess`` settings), align files (swwp2s's own, the others estimated from mouth motion) and
    the clip lists. It validates on copies of the crops filed as speaker s2, since a run's validation clips are
    never its training clips."""
    from utils import estimate_aligns, preprocess_data

    videos = root / "videos" / "s1"
    videos.mkdir(parents=True)
    for clip in sorted(grid_dir.glob("*.mpg")):
        (videos / clip.name).symlink_to(clip)  # read in place, never copied
    crops = root / "crops"
    if preprocess_data.main([f"src_path={root / 'videos'}", f"tgt_path={crops}", "n_process=2",
                             *model.preprocess]) != 0:
        raise RuntimeError(f"preprocessing the shared clips into {crops} failed")
    aligns = root / "aligns"
    (aligns / "s1").mkdir(parents=True)
    for align in grid_dir.glob("*.align"):
        (aligns / "s1" / align.name).symlink_to(align)  # the real ones are kept; the others are estimated
    if estimate_aligns.main([f"src_path={root / 'videos'}", f"tgt_path={aligns}", "n_process=2"]) != 0:
        raise RuntimeError(f"estimating align files into {aligns} failed")
    shutil.copytree(crops / "s1", crops / "s2")
    train_list, val_list = root / "clips.txt", root / "val.txt"
    train_list.write_text("".join(f"s1/{clip.stem}\n" for clip in sorted(grid_dir.glob("*.mpg"))))
    val_list.write_text(train_list.read_text().replace("s1/", "s2/"))
    return {"videos": videos, "crops": crops, "aligns": aligns, "train_list": train_list, "val_list": val_list}


def train(model: CommittedModel, data: dict[str, Path], save_dir: Path) -> Path:
    """Train by the model's recipe into ``save_dir``; returns its last checkpoint."""
    import main

    code = main.main([f"image_path={data['crops']}", f"align_path={data['aligns']}", f"train_list={data['train_list']}",
                      f"val_list={data['val_list']}", f"save_dir={save_dir}", *model.recipe])
    if code != 0:
        raise RuntimeError(f"training {model.name} into {save_dir} failed (exit status {code})")
    return save_dir / "last"


def committed_digest(model: CommittedModel) -> str | None:
    path = model.asset / DIGEST_FILE
    if not path.is_file() or not all((model.asset / name).is_file() for name in ASSET_FILES):
        return None
    return path.read_text().strip()


def commit(model: CommittedModel, last: Path, digest: str) -> list[Path]:
    """Copy the checkpoint's reading files into the model's asset folder with ``digest``; returns the files to
    commit."""
    model.asset.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ASSET_FILES:
        shutil.copyfile(last / name, model.asset / name)
        written.append(model.asset / name)
    (model.asset / DIGEST_FILE).write_text(digest + "\n")  # last: a digest names complete files
    return [*written, model.asset / DIGEST_FILE]


class StaleModel(Exception):
    """The committed model was trained by other code or another recipe, and this run may not retrain it."""


def load_or_train(model: CommittedModel, grid_dir: Path, root: Path,
                  may_train: bool) -> tuple[dict[str, Path], Path, list[Path]]:
    """``(data, checkpoint folder, files to commit)`` under ``root``: the committed model when its digest matches,
    else (``may_train``) one retrained by the recipe and committed, whose files are listed to be committed, else
    StaleModel naming it."""
    digest, committed = recipe_digest(model, grid_dir), committed_digest(model)
    if committed != digest and not may_train:
        raise StaleModel(f"{model.asset} is stale: what it was trained by changed (digest {digest[:16]}, committed "
                         f"{(committed or 'none')[:16]}); retrain it with python -m tests.real_model "
                         f"--only={model.name} and commit its files")
    data = prepare(model, grid_dir, root)
    last = root / "run" / "last"
    with retrain_lock(model):  # pytest -n 2: one worker retrains, the other then finds the model committed
        if committed_digest(model) == digest:
            last.mkdir(parents=True)
            for name in ASSET_FILES:
                shutil.copyfile(model.asset / name, last / name)
            return data, last, []
        return data, last, commit(model, train(model, data, root / "run"), digest)


@contextlib.contextmanager
def retrain_lock(model: CommittedModel) -> Iterator[None]:
    """Hold an exclusive lock beside the committed model while it is read or retrained."""
    model.asset.mkdir(parents=True, exist_ok=True)
    with open(model.asset / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO_ROOT.parent / "shared"),
                        help="the shared folder holding grid/ (default: %(default)s)")
    parser.add_argument("--only", choices=sorted(MODELS),
                        help="retrain only this model (default: every committed model)")
    parser.add_argument("--all", action="store_true",
                        help="retrain the models whose digest matches too (default: only the stale ones)")
    args = parser.parse_args(argv)
    grid_dir = Path(args.shared) / "grid"
    if not grid_dir.is_dir():
        print(f"error: {grid_dir}: no such folder of shared GRID clips", file=sys.stderr)
        return 2
    for model in [MODELS[args.only]] if args.only else MODELS.values():
        digest = recipe_digest(model, grid_dir)
        if not args.all and committed_digest(model) == digest:
            print(f"{model.name}: current (digest {digest[:16]}), not retrained")
            continue
        with tempfile.TemporaryDirectory() as root, retrain_lock(model):
            last = train(model, prepare(model, grid_dir, Path(root)), Path(root) / "run")
            files = commit(model, last, digest)
        print(f"{model.name}: retrained; commit " + " ".join(str(f.relative_to(REPO_ROOT)) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
