"""What defines a training run, so that a resume continues that run and nothing else.

A checkpoint's ``meta.json`` records the command line of its run (``args``). Resuming
(``main.py model_path=RUN/last``) takes every setting that shapes the run's arithmetic from there:
data, split, alphabet, network, optimiser, schedule, seed and augmentation. A resume that re-read
them from the command line once validated on speakers it had trained on (24/8 clips became 16/16)
because ``val_speakers`` was not repeated. Such a setting given again with another value is refused;
``MAY_CHANGE`` lists the settings a resume may change. Plain Python: ``main.py`` checks a run before
MXNet loads.
"""
from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Collection
from pathlib import Path

from utils.runtime.atomic import remove_output

# Settings a resumed run may change: they leave its arithmetic alone. ``epochs`` may grow; a cosine schedule
# keeps the length it was built for (``schedule_epochs``) and the epochs past it train at its final rate.
# ``num_gpus``/``num_cpus`` split the same batch over other devices.
MAY_CHANGE = ("epochs", "stop_wer", "stop_accuracy", "val_interval", "show_examples", "progress", "num_workers",
              "num_gpus", "num_cpus", "missing_clips", "save_dir")
# Options that are not settings of the run: what to start from and how to start.
NOT_SETTINGS = ("model_path", "fine_tune", "overwrite", "config", "override")
PATH_SETTINGS = ("image_path", "align_path", "train_list", "val_list", "lm_path", "save_dir")
# What a run writes into its save folder; ``--overwrite`` removes exactly these.
RUN_OUTPUTS = ("last", "best", "train.log", "metrics.csv", "curves.png", "tensorboard", "val_words.csv")
CHECKPOINTS = ("last", "best")
META_FILE = "meta.json"


def recordable(args: argparse.Namespace) -> dict:
    """The run's settings as ``meta.json`` records them: paths made absolute, so that the resume command
    works from any directory."""
    settings = {k: v for k, v in vars(args).items() if k not in ("func", "config", "override")}
    for key in PATH_SETTINGS:
        if settings.get(key):
            settings[key] = str(Path(settings[key]).resolve())
    return settings


def _same(key: str, a: object, b: object) -> bool:
    if key in PATH_SETTINGS and a and b:
        return Path(str(a)).resolve() == Path(str(b)).resolve()
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def spell(value: object) -> str:
    """A setting as it is typed on the command line."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def resume_settings(args: argparse.Namespace, given: Collection[str], recorded: dict, checkpoint: Path) -> list[str]:
    """Put the recorded settings of the run in ``checkpoint`` into ``args`` (those of ``MAY_CHANGE`` only where
    the command line leaves them out); returns the settings taken from the checkpoint that differ from
    the command line's defaults (to log).

    ValueError, one line naming the setting, both values and how to start a new run from these weights,
    when ``given`` (the options typed on the command line or in a config file) sets a setting of the run
    to another value. Settings the checkpoint does not record (older versions) keep the command line's.
    """
    taken = []
    for key, value in recorded.items():
        if key in NOT_SETTINGS or key == "save_dir" or not hasattr(args, key):
            continue  # a resume writes into its checkpoint's run folder unless save_dir is given
        if key in given and key in MAY_CHANGE:
            continue
        if key in given:
            if not _same(key, getattr(args, key), value):
                run = checkpoint.parent
                raise ValueError(
                    f"{key}={spell(getattr(args, key))} differs from the run being resumed ({key}={spell(value)} in "
                    f"{checkpoint / META_FILE}): a resume continues its run with that run's settings. Leave {key} "
                    f"out to resume it, start a new run from its weights with fine_tune=true and another "
                    f"save_dir, or start afresh in {run} without model_path and with overwrite=true")
            continue
        if not _same(key, getattr(args, key), value):
            taken.append(f"{key}={spell(value)}")
        setattr(args, key, value)
    # The schedule keeps the length it was built for (checkpoints from before schedule_epochs: their epochs).
    if recorded.get("schedule_epochs") or recorded.get("epochs"):
        args.schedule_epochs = recorded.get("schedule_epochs") or recorded["epochs"]
    return taken


def _run_id(folder: Path) -> str | None:
    try:
        return json.loads((folder / META_FILE).read_text()).get("run_id")
    except (OSError, ValueError):
        return None


def runs_in(save_dir: Path) -> dict[str, str | None]:
    """``{name: run_id}`` of the checkpoints (``last/``, ``best/``) a save folder holds."""
    return {name: _run_id(save_dir / name) for name in CHECKPOINTS if (save_dir / name / META_FILE).is_file()}


def prepare_save_dir(save_dir: Path, overwrite: bool, resumed: Path | None = None, run_id: str | None = None,
                     source: Path | None = None) -> None:
    """Make sure a run may write its checkpoints into ``save_dir``, before any work starts.

    A folder holding another run's checkpoints is refused (a new run once resumed the old one and
    trained nothing, and an old ``best/`` outlived its run beside a new ``last/``), unless ``overwrite``
    removes that run's outputs first (``RUN_OUTPUTS``, nothing else). ``resumed`` is the checkpoint
    folder a resume continues and ``run_id`` its run's id (None for checkpoints from before run ids: then
    the checkpoints of its own folder are taken as its run's); ``source`` is the checkpoint a new run
    starts from (fine-tuning), which is never removed.
    """
    def same_run(name: str, rid: str | None) -> bool:
        if resumed is None:
            return False
        if run_id is not None:
            return rid == run_id
        return resumed.resolve().parent == save_dir.resolve()

    others = [name for name, rid in runs_in(save_dir).items() if not same_run(name, rid)]
    if not others:
        return
    names = ", ".join(f"{name}/" for name in others)
    if source is not None and source.resolve().parent == save_dir.resolve():
        raise ValueError(f"{save_dir} holds the checkpoint this run starts from ({source}): give another save_dir")
    if not overwrite:
        how = f"resume it with model_path={save_dir / others[0]}, " if resumed is None else ""
        raise ValueError(f"{save_dir} holds another run's checkpoints ({names}): {how}give another save_dir, or "
                         "overwrite=true to remove that run's outputs and start afresh there")
    if resumed is not None and resumed.resolve().parent == save_dir.resolve():
        raise ValueError(f"overwrite=true would remove {resumed}, the checkpoint being resumed")
    for name in RUN_OUTPUTS:
        remove_output(save_dir / name)


def new_run_id() -> str:
    return uuid.uuid4().hex
