"""A LipNet exported by utils/export_onnx.py, run by onnxruntime: reading without MXNet.

Everything reading needs (input size, normalisation, frame rate, alphabet, default decoder) comes
from the file's metadata, so the file alone is enough. Nothing here imports MXNet; this module and
the reading path install from requirements-infer.txt on Python 3.11-3.13 with NumPy 2.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from utils.data.light import recorded_input_norm
from utils.reading.network import Network, NetworkError
from utils.text.alphabet import alphabet_from_record
from utils.video.reader import MODEL_FPS

log = logging.getLogger(__name__)
INPUT, LENGTHS = "frames", "lengths"
# What onnxruntime raises when a run fails (its types derive from Exception alone).
_RUN_ERRORS = (ort_errors.Fail, ort_errors.InvalidArgument, ort_errors.RuntimeException, ort_errors.EPFail)
METADATA_VERSIONS = ("1", "2")  # 2: may record an input normalisation per clip (``utils.data.light``)


def read_metadata(session: ort.InferenceSession, source: str) -> dict[str, object]:
    raw = session.get_modelmeta().custom_metadata_map
    if raw.get("lipnet.version") is None:
        raise ValueError(f"{source}: not a LipNet ONNX file of utils/export_onnx.py (no lipnet.* metadata)")
    if json.loads(raw["lipnet.version"]) not in METADATA_VERSIONS:
        raise ValueError(f"{source}: LipNet metadata version {raw['lipnet.version']} is newer than this reader's")
    try:
        return {key.removeprefix("lipnet."): json.loads(value) for key, value in raw.items()
                if key.startswith("lipnet.")}
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: unreadable LipNet metadata ({err})") from None


def open_session(model: str | Path | bytes, use_gpu: bool = False) -> tuple[ort.InferenceSession, str, str]:
    """An onnxruntime session of an ONNX file (or its bytes), its name for messages and the backend it runs on
    (``onnxruntime CPU`` or ``onnxruntime CUDA``): the CPU, or with ``use_gpu`` CUDA where onnxruntime-gpu sees a
    GPU (else the CPU, with a warning). ValueError naming the file when it is no readable ONNX file."""
    source = "<in memory>" if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise FileNotFoundError(f"{source}: no such ONNX file")
    providers = ["CPUExecutionProvider"]
    if use_gpu:
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            log.warning("num_gpus > 0 but onnxruntime has no CUDA provider (install onnxruntime-gpu): "
                        "reading on the CPU. Pass num_gpus=0 to silence this.")
    options = ort.SessionOptions()
    options.log_severity_level = 4  # a file it cannot load is our error message, not its log too
    try:
        session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                       providers=providers)
    except Exception as err:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        lines = str(err).strip().splitlines() or [type(err).__name__]
        reason = lines[0] if len(lines[0]) <= 200 else lines[0][:200] + "..."
        raise ValueError(f"{source}: not a readable ONNX file ({reason})") from None
    return session, source, "onnxruntime " + ("CUDA" if providers[0].startswith("CUDA") else "CPU")


def network_kind(session: ort.InferenceSession) -> str:
    """meta.json's ``network`` of the model an ONNX file holds: ``lipnet`` (also for files from before the word
    export, which do not say) or ``word_net``."""
    raw = session.get_modelmeta().custom_metadata_map.get("lipnet.network")
    try:
        return str(json.loads(raw)) if raw else "lipnet"
    except json.JSONDecodeError:
        return "lipnet"


class OnnxLipNet(Network):
    """An exported LipNet on onnxruntime: the CPU, or with ``use_gpu`` CUDA where onnxruntime-gpu
    sees a GPU (else the CPU, with a warning)."""

    def __init__(self, model: str | Path | bytes, use_gpu: bool = False,
                 opened: tuple[ort.InferenceSession, str, str] | None = None) -> None:
        """``opened``: what ``open_session`` gave for ``model``, when the caller opened it already."""
        self.session, source, device = opened or open_session(model, use_gpu)
        info = read_metadata(self.session, source)
        if info.get("network", "lipnet") != "lipnet":
            raise ValueError(f"{source}: a {info['network']} ONNX file, not a LipNet's")
        try:
            config, norm = info["config"], info["normalisation"]
            alphabet = alphabet_from_record(info["alphabet"])
            if int(config.get("num_classes", alphabet.num_classes)) != alphabet.num_classes:
                raise ValueError(f"{config['num_classes']} output classes but the {alphabet.name} alphabet "
                                 f"needs {alphabet.num_classes}")
            recorded_input_norm(info)
            decoder = info.get("decoder") or {}
            meta = {"decoder": {k: v for k, v in decoder.items() if v is not None}, "config": config,
                    "normalisation": norm, "metrics": info.get("metrics") or {}, "alphabet": alphabet.to_dict(),
                    "split": info.get("split") or {}, "data": info.get("data") or {},
                    "crop": info.get("crop") or {}}
            super().__init__(config["variant"], config["norm"], int(config["width"]), int(config["height"]),
                             tuple(norm["mean"]), tuple(norm["std"]),
                             float(info.get("frame_rate") or MODEL_FPS),
                             str(info.get("source") or source) if isinstance(model, bytes) else source,
                             device, meta,
                             alphabet)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: incomplete LipNet metadata ({err})") from None
        self.takes_lengths = LENGTHS in {i.name for i in self.session.get_inputs()}

    def log_probs(self, batch: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """With a graph exported with ``lengths=true`` the clips' lengths are fed to it (all of ``T`` when
        not given). A graph without them reads over every frame it is given, padding included (a short
        clip's log-probabilities differed by 0.45 read alone or in a padded batch), so a batch holding a
        clip shorter than ``T`` is read one clip at a time over its own frames; past a clip's length its
        rows are zeros."""
        batch = np.ascontiguousarray(batch, np.float32)
        if self.takes_lengths:
            full = np.full(len(batch), batch.shape[2], np.int32)
            return self._run(batch, full if lengths is None else np.asarray(lengths, np.int32))
        if lengths is None or all(int(n) == batch.shape[2] for n in lengths):
            return self._run(batch)
        rows = [self._run(np.ascontiguousarray(clip[None, :, :int(n)]))[0] for clip, n in zip(batch, lengths)]
        out = np.zeros((len(batch), batch.shape[2], rows[0].shape[-1]), np.float32)
        for row, values in zip(out, rows):
            row[:len(values)] = values
        return out

    def _run(self, batch: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        feed = {INPUT: batch}
        if lengths is not None:
            feed[LENGTHS] = lengths
        try:
            return self.session.run(None, feed)[0]
        except _RUN_ERRORS as err:
            raise NetworkError(f"onnxruntime could not read a batch of shape {batch.shape}: "
                               f"{type(err).__name__}: {str(err).strip().splitlines()[0]}") from err
