"""Checkpoints: parameters, trainer state and everything inference needs, in one folder.

A checkpoint is a folder holding ``model.params`` (``save_parameters``), ``trainer.states``
(``Trainer.save_states``) and ``meta.json`` (network config, input normalisation, epoch,
iteration, metrics, decoder). It is written under a temporary name and renamed into place, so a
crash mid-save leaves the previous checkpoint intact. A training run keeps ``last/`` and ``best/``
side by side in its save folder.

``load_lipnet`` also reads the original Apache MXNet example's parameter file, in the names
MXNet 1.9.1 writes and in the older ``gruK.l0_i2h_weight`` names of MXNet before 1.6.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import mxnet as mx
from mxnet.base import MXNetError

from model.lipnet import LipNet, LipNetConfig

PARAMS_FILE = "model.params"
STATES_FILE = "trainer.states"
META_FILE = "meta.json"
FORMAT = "lipnet-mxnet-checkpoint"
# How the original example normalised its RGB crops (after scaling to [0, 1]) and decoded.
EXAMPLE_MEAN = (0.7136, 0.4906, 0.3283)
EXAMPLE_STD = (0.1138, 0.1078, 0.0917)
EXAMPLE_BEAM_WIDTH = 25
_OLD_GRU_NAME = re.compile(r"^(gru\d+)\.([lr])0_(i2h|h2h)_(weight|bias)$")


@dataclass
class LoadedLipNet:
    """A ready network plus what inference needs to feed and decode it."""

    net: LipNet
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def config(self) -> LipNetConfig:
        return self.net.config


def _resolve(path: Path, prefer: str) -> Path:
    """A checkpoint folder from a run folder (``prefer`` = 'best' or 'last') or the folder itself."""
    if (path / META_FILE).is_file():
        return path
    for name in (prefer, "last" if prefer == "best" else "best"):
        if (path / name / META_FILE).is_file():
            return path / name
    raise FileNotFoundError(f"{path}: no checkpoint here (expected {META_FILE}, or a last/ or best/ folder)")


def read_meta(path: str | Path, prefer: str = "last") -> tuple[Path, dict]:
    """The checkpoint folder that ``path`` names and its metadata; clear errors for anything else."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    folder = _resolve(path if path.is_dir() else path.parent, prefer)
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder / META_FILE}: not a readable checkpoint description ({err})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / META_FILE}: not a LipNet checkpoint (format {meta.get('format')!r})")
    return folder, meta


def load_param_file(path: str | Path) -> dict[str, mx.nd.NDArray]:
    """Arrays of an MXNet parameter file, with old recurrent names mapped to MXNet 1.9.1's."""
    try:
        arrays = mx.nd.load(str(path))
    except MXNetError as err:
        # MXNet's message is a C++ traceback whose last line says what went wrong.
        lines = str(err).strip().splitlines()
        reason = lines[-1].removeprefix("MXNetError: ") if lines else "unknown error"
        raise ValueError(f"{path}: not a readable MXNet parameter file ({reason})") from None
    if not isinstance(arrays, dict) or not arrays:
        raise ValueError(f"{path}: not a parameter file of named arrays")
    renamed = {}
    for name, array in arrays.items():
        name = name.split(":", 1)[-1]  # "arg:" / "aux:" prefixes of symbolic checkpoints
        match = _OLD_GRU_NAME.match(name)
        if match:
            gru, direction, kind, what = match.groups()
            name = f"{gru}._unfused.0.{direction}_cell.{kind}_{what}"
        renamed[name] = array
    return renamed


def set_parameters(net: LipNet, arrays: dict[str, mx.nd.NDArray], source: str | Path, ctx: object) -> None:
    """Copy ``arrays`` into ``net``; every name and shape must match exactly."""
    params = net._collect_params_with_prefix()
    missing = sorted(set(params) - set(arrays))
    extra = sorted(set(arrays) - set(params))
    if missing or extra:
        raise ValueError(
            f"{source}: parameters do not match this LipNet ({net.config.variant} variant): "
            f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {extra[:4]}{'...' if len(extra) > 4 else ''}"
        )
    for name, param in params.items():
        if tuple(arrays[name].shape) != tuple(param.shape):
            raise ValueError(f"{source}: {name} has shape {arrays[name].shape}, the network needs {param.shape}")
    net.initialize(ctx=ctx, force_reinit=False)
    for name, param in params.items():
        param.set_data(arrays[name])


def example_config_for(arrays: dict[str, mx.nd.NDArray]) -> LipNetConfig:
    """The example-variant config whose shapes match a parameter file of the original example."""
    try:
        channels = tuple(int(arrays[f"conv{i}.weight"].shape[0]) for i in (1, 2, 3))
        hidden = int(arrays["gru1._unfused.0.l_cell.h2h_weight"].shape[1])
        classes = int(arrays["dense.weight"].shape[0])
    except KeyError as err:
        raise ValueError(f"not a LipNet parameter file: no {err.args[0]}") from None
    return LipNetConfig(variant="example", channels=channels, hidden=hidden, num_classes=classes)


@dataclass
class CheckpointContents:
    """What a checkpoint or the example's parameter file holds, before a network is built."""

    config: LipNetConfig
    arrays: dict[str, mx.nd.NDArray]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    meta: dict
    folder: Path | None  # our checkpoint's folder; None for the example's parameter file
    source: Path


def read_checkpoint(path: str | Path, prefer: str = "best") -> CheckpointContents:
    """Read one of our checkpoints (a run folder, a checkpoint folder or its ``model.params``) or the
    original example's parameter file (either naming); clear errors for anything else."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint or parameter file")
    if path.is_file() and not (path.parent / META_FILE).is_file():
        arrays = load_param_file(path)
        try:
            config = example_config_for(arrays)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        meta = {"decoder": {"method": "beam", "beam_width": EXAMPLE_BEAM_WIDTH}}
        return CheckpointContents(config, arrays, EXAMPLE_MEAN, EXAMPLE_STD, meta, None, path)
    folder, meta = read_meta(path, prefer)
    try:
        config = LipNetConfig(**meta["config"])
        mean, std = tuple(meta["normalisation"]["mean"]), tuple(meta["normalisation"]["std"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{folder / META_FILE}: incomplete checkpoint description ({err})") from None
    return CheckpointContents(config, load_param_file(folder / PARAMS_FILE), mean, std, meta, folder,
                              folder / PARAMS_FILE)


def load_lipnet(path: str | Path, ctx: object = None, prefer: str = "best") -> LoadedLipNet:
    """A ready network from whatever ``read_checkpoint`` reads, with everything inference needs."""
    contents = read_checkpoint(path, prefer)
    net = LipNet(contents.config)
    set_parameters(net, contents.arrays, contents.source, ctx or mx.cpu())
    return LoadedLipNet(net, contents.mean, contents.std, contents.meta, contents.folder or contents.source)


def _replace_folder(tmp: Path, target: Path) -> None:
    """Put ``tmp`` at ``target``; an old ``target`` is moved aside first and removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(folder: str | Path, net: LipNet, trainer: mx.gluon.Trainer | None, meta: dict) -> Path:
    """Write a checkpoint folder atomically; ``meta`` gets the network config and format added."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not tempfile.mkdtemp: the folder then follows the umask like every other file of a run
    # (mkdtemp makes it owner-only).
    tmp = folder.parent / f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        net.save_parameters(str(tmp / PARAMS_FILE))
        if trainer is not None:
            trainer.save_states(str(tmp / STATES_FILE))
        full = {"format": FORMAT, "version": 1, "config": net.config.to_dict(), **meta}
        (tmp / META_FILE).write_text(json.dumps(full, indent=2, sort_keys=True))
        _replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
