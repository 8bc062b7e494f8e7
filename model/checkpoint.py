"""Checkpoints: parameters, trainer state and everything inference needs, in one folder.

A checkpoint is a folder holding ``model.params`` (``save_parameters``), ``trainer.states``
(``Trainer.save_states``) and ``meta.json`` (network config, input normalisation, epoch,
iteration, metrics, decoder). It is written under a temporary name and renamed into place, so a
crash mid-save leaves the previous checkpoint intact. A training run keeps ``last/`` and ``best/``
side by side in its save folder.

``meta.json`` records the size and SHA-256 of ``model.params`` and ``trainer.states``; reading a
checkpoint checks them, so a file truncated or overwritten after it was saved is named with what is
wrong instead of being trained on (4 KB overwritten in place loaded without complaint and made every
batch non-finite). Checkpoints from before the checksums load unchecked, and any parameter file
is refused if it holds NaN or infinite values. When ``last/`` (or ``best/``) is damaged, the error
offers its intact sibling.

``load_lipnet`` also reads the original Apache MXNet example's parameter file, in the names
MXNet 1.9.1 writes and in the older ``gruK.l0_i2h_weight`` names of MXNet before 1.6.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.backend import MXNetError, mx
from model.lipnet import LipNet, LipNetConfig
from model.word_net import WordNet, WordNetConfig
from utils.data.light import recorded_input_norm
from utils.text.alphabet import Alphabet, alphabet_from_record

PARAMS_FILE = "model.params"
STATES_FILE = "trainer.states"
META_FILE = "meta.json"
SIBLINGS = {"last": "best", "best": "last"}  # the two checkpoints of a run folder
FORMAT = "lipnet-mxnet-checkpoint"
# How the original example normalised its RGB crops (after scaling to [0, 1]) and decoded.
EXAMPLE_MEAN = (0.7136, 0.4906, 0.3283)
EXAMPLE_STD = (0.1138, 0.1078, 0.0917)
EXAMPLE_BEAM_WIDTH = 25
# meta.json's "network" names the network's class; checkpoints without one are LipNet's.
NETWORKS = {"lipnet": (LipNet, LipNetConfig), "word_net": (WordNet, WordNetConfig)}
OUTPUT_LAYER = ("dense.weight", "dense.bias")  # LipNet's layer whose size is the alphabet's
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

    @property
    def alphabet(self) -> Alphabet:
        """The alphabet the network spells with (``meta.json``'s ``alphabet``; GRID's when it records none)."""
        return alphabet_from_record(self.meta.get("alphabet"))


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


class DamagedCheckpoint(ValueError):
    """A checkpoint file that is missing or differs from what was saved; the message names it."""


def file_record(path: Path) -> dict:
    """Size and SHA-256 of a file, as ``meta.json`` records them."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"bytes": path.stat().st_size, "sha256": digest}


def verify_files(folder: Path, meta: dict, names: tuple[str, ...]) -> None:
    """DamagedCheckpoint naming the first of ``names`` that differs from its record in ``meta``.

    Files without a record (checkpoints from before the checksums) are not checked.
    """
    records = meta.get("files") or {}
    for name in names:
        record = records.get(name)
        if not isinstance(record, dict):
            continue
        path = folder / name
        if not path.is_file():
            raise DamagedCheckpoint(f"{path}: missing ({META_FILE} records it)")
        size, expected = path.stat().st_size, record.get("bytes")
        if size != expected:
            what = "truncated" if isinstance(expected, int) and size < expected else "changed"
            raise DamagedCheckpoint(f"{path}: damaged ({what}: {size} bytes, {expected} when saved)")
        if file_record(path)["sha256"] != record.get("sha256"):
            raise DamagedCheckpoint(f"{path}: damaged (its SHA-256 differs from the one recorded when it was "
                                    "saved: the same size, other contents)")


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
    for name, array in arrays.items():
        bad = int((~np.isfinite(array.asnumpy())).sum())
        if bad:
            raise DamagedCheckpoint(f"{path}: damaged ({name} holds {bad} NaN or infinite values)")
    renamed = {}
    for name, array in arrays.items():
        name = name.split(":", 1)[-1]  # "arg:" / "aux:" prefixes of symbolic checkpoints
        match = _OLD_GRU_NAME.match(name)
        if match:
            gru, direction, kind, what = match.groups()
            name = f"{gru}._unfused.0.{direction}_cell.{kind}_{what}"
        renamed[name] = array
    return renamed


def set_parameters(net: LipNet, arrays: dict[str, mx.nd.NDArray], source: str | Path, ctx: object,
                   fresh: tuple[str, ...] = ()) -> None:
    """Copy ``arrays`` into ``net``; every name and shape must match exactly, except the parameters named in
    ``fresh``, which are left out of ``arrays`` and keep their fresh initialisation."""
    params = net._collect_params_with_prefix()
    arrays = {name: array for name, array in arrays.items() if name not in fresh}
    missing = sorted(set(params) - set(arrays) - set(fresh))
    extra = sorted(set(arrays) - set(params))
    if missing or extra:
        raise ValueError(
            f"{source}: parameters do not match this {type(net).__name__} "
            f"({getattr(net.config, 'variant', net.config.to_dict())}): "
            f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {extra[:4]}{'...' if len(extra) > 4 else ''}"
        )
    for name, param in params.items():
        if name in arrays and tuple(arrays[name].shape) != tuple(param.shape):
            raise ValueError(f"{source}: {name} has shape {arrays[name].shape}, the network needs {param.shape}")
    # Loaded as Gluon's own load_parameters does, without running the initialisers first: the GRUs'
    # orthogonal ones cost an SVD per weight (0.5-1 s of a reader's start-up) for values overwritten here.
    for name, param in params.items():
        if name in arrays:
            param._load_init(arrays[name], ctx)
        else:  # a fresh output layer (fine-tuning to another alphabet)
            param.initialize(ctx=ctx)


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

    config: LipNetConfig | WordNetConfig
    arrays: dict[str, mx.nd.NDArray]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    meta: dict
    folder: Path | None  # our checkpoint's folder; None for the example's parameter file
    source: Path

    @property
    def alphabet(self) -> Alphabet:
        """The alphabet the network spells with (``meta.json``'s ``alphabet``; GRID's when it records none)."""
        return alphabet_from_record(self.meta.get("alphabet"))


def _read_folder(path: Path, prefer: str, states: bool) -> CheckpointContents:
    folder, meta = read_meta(path, prefer)
    verify_files(folder, meta, (PARAMS_FILE, STATES_FILE) if states else (PARAMS_FILE,))
    network = meta.get("network", "lipnet")
    if network not in NETWORKS:
        raise ValueError(f"{folder / META_FILE}: unknown network {network!r} (expected one of {', '.join(NETWORKS)})")
    try:
        config = NETWORKS[network][1](**meta["config"])
        mean, std = tuple(meta["normalisation"]["mean"]), tuple(meta["normalisation"]["std"])
        recorded_input_norm(meta)
        alphabet = alphabet_from_record(meta.get("alphabet"))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{folder / META_FILE}: incomplete checkpoint description ({err})") from None
    if network == "lipnet" and config.num_classes != alphabet.num_classes:
        raise ValueError(f"{folder / META_FILE}: the network has {config.num_classes} output classes but its "
                         f"{alphabet.name} alphabet needs {alphabet.num_classes}")
    return CheckpointContents(config, load_param_file(folder / PARAMS_FILE), mean, std, meta, folder,
                              folder / PARAMS_FILE)


def _intact_sibling(folder: Path, states: bool) -> str:
    """' ; {run}/best (epoch N) is intact: ...' where ``folder`` is a run's last/ (or best/) and the
    other one reads cleanly, else ''."""
    other = SIBLINGS.get(folder.name)
    if other is None or not (folder.parent / other / META_FILE).is_file():
        return ""
    try:
        contents = _read_folder(folder.parent / other, other, states)
    except (OSError, ValueError):
        return ""
    epoch = contents.meta.get("state", {}).get("epoch")
    when = f" (after epoch {epoch})" if isinstance(epoch, int) else ""
    return f"; {contents.folder}{when} is intact: use model_path={contents.folder}"


def read_checkpoint(path: str | Path, prefer: str = "best", states: bool = False) -> CheckpointContents:
    """Read one of our checkpoints (a run folder, a checkpoint folder or its ``model.params``) or the
    original example's parameter file (either naming); clear errors for anything else.

    The recorded checksums of ``model.params``, and with ``states`` (a resume) of ``trainer.states``,
    are checked; an error about a run's ``last/`` or ``best/`` offers the other one if it is intact.
    """
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
    try:
        return _read_folder(path, prefer, states)
    except ValueError as err:
        folder = _resolve(path if path.is_dir() else path.parent, prefer)
        raise type(err)(f"{err}{_intact_sibling(folder, states)}") from None


def load_trainer_states(trainer: mx.gluon.Trainer, path: Path) -> None:
    """``trainer.load_states`` with an error naming the file where it is not a readable trainer state
    (checkpoints from before the checksums, whose damage only shows here)."""
    try:
        trainer.load_states(str(path))
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, MXNetError) as err:
        raise DamagedCheckpoint(f"{path}: not a readable trainer state ({type(err).__name__}: {err})") from None


def load_lipnet(path: str | Path, ctx: object = None, prefer: str = "best") -> LoadedLipNet:
    """A ready network from whatever ``read_checkpoint`` reads, with everything inference needs."""
    contents = read_checkpoint(path, prefer)
    net = build_network(contents.config)  # a word classifier's checkpoint gives a WordNet
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


def network_name(net: LipNet | WordNet) -> str:
    """The key of ``net``'s class in ``NETWORKS``, as meta.json records it."""
    return next(name for name, (cls, _) in NETWORKS.items() if isinstance(net, cls))


def build_network(config: LipNetConfig | WordNetConfig) -> LipNet | WordNet:
    """A fresh network of the class ``config`` describes."""
    return next(cls(config) for cls, config_cls in NETWORKS.values() if isinstance(config, config_cls))


def save_checkpoint(folder: str | Path, net: LipNet | WordNet, trainer: mx.gluon.Trainer | None, meta: dict) -> Path:
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
        files = {name: file_record(tmp / name) for name in (PARAMS_FILE, STATES_FILE) if (tmp / name).is_file()}
        full = {"format": FORMAT, "version": 1, "network": network_name(net), "config": net.config.to_dict(), **meta,
                "files": files}
        (tmp / META_FILE).write_text(json.dumps(full, indent=2, sort_keys=True))
        _replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
