"""Files in ``torch.save``'s two layouts, written without torch, so that the reader's tests need no torch.

``write_torch_file(obj, path, layout)`` pickles ``obj`` as torch does: every ``np.ndarray`` (or ``Strided``
view of one) becomes ``torch._utils._rebuild_tensor_v2`` of a storage given by a persistent id, dicts stay
dicts and OrderedDicts; ``layout`` is ``"zip"`` (torch 1.6 and later: ``archive/data.pkl``,
``archive/data/<key>``, ``archive/byteorder``, ``archive/version``) or ``"legacy"`` (magic number,
protocol version and system information pickles, the object, the storage keys, then each storage's bytes
after its int64 element count). ``bench/reference/lipnet_pytorch_outputs.py`` checks that torch.load
reads both. ``Global`` puts any global into a pickle, for the hostile files of the tests.
"""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_NAMES = {np.dtype(code): name for code, name in (
    ("f4", "FloatStorage"), ("f8", "DoubleStorage"), ("f2", "HalfStorage"), ("i8", "LongStorage"),
    ("i4", "IntStorage"), ("i2", "ShortStorage"), ("i1", "CharStorage"), ("u1", "ByteStorage"), ("?", "BoolStorage"))}


@dataclass(frozen=True)
class Global:
    """A global the pickle names (``module.name``) whatever this process has; called, it does nothing."""

    module: str
    name: str

    def __call__(self, *args: object) -> None:  # save_reduce wants a callable
        return None


@dataclass
class Call:
    """A pickled call of ``func`` with ``args`` (``func(*args)`` when unpickled)."""

    func: Global
    args: tuple

    def __reduce__(self) -> tuple:
        return self.func, self.args


@dataclass
class Strided:
    """A tensor of ``shape`` and ``stride`` (elements) at ``offset`` in a storage holding the 1-D ``base``;
    ``storage`` names torch's storage class where the dtype's own is not the one (``BFloat16Storage`` of
    uint16 bits); ``view`` = (start, size) makes the tensor's storage a view of that part of the base's (the
    legacy layout's storage views, of torch before 1.0), ``offset`` then counting from its start."""

    base: np.ndarray
    offset: int
    shape: tuple
    stride: tuple
    storage: str | None = None
    view: tuple[int, int] | None = None


class _Storage:
    def __init__(self, key: str, data: np.ndarray, name: str) -> None:
        self.key, self.data, self.name = key, data, name  # 1-D; views of one base array share its storage
        self.view: tuple | None = None  # (view key, start, size) of a storage view


class _View(_Storage):
    def __init__(self, root: _Storage, start: int, size: int) -> None:
        super().__init__(root.key, root.data, root.name)
        self.view = (f"view{start}-{size}", start, size)


class _Pickler(pickle._Pickler):  # the Python pickler: its save() can write a GLOBAL of any name
    def __init__(self, file: io.BytesIO, legacy: bool, storages: dict[str, _Storage]) -> None:
        super().__init__(file, protocol=2)
        self.legacy, self.storages = legacy, storages

    def save(self, obj: object, save_persistent_id: bool = True) -> None:
        if isinstance(obj, Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        if isinstance(obj, np.ndarray | Strided):
            obj = self._tensor(obj)
        super().save(obj, save_persistent_id)

    def _tensor(self, value: np.ndarray | Strided) -> Call:
        if isinstance(value, np.ndarray):
            value = Strided(value.reshape(-1), 0, value.shape,
                            tuple(int(np.prod(value.shape[i + 1:])) for i in range(value.ndim)))
        storage = next((s for s in self.storages.values() if s.data is value.base), None)
        if storage is None:
            storage = _Storage(str(len(self.storages)), value.base,
                               value.storage or STORAGE_NAMES[value.base.dtype])
            self.storages[storage.key] = storage
        if value.view is not None:
            storage = _View(storage, *value.view)
        return Call(Global("torch._utils", "_rebuild_tensor_v2"),
                    (storage, value.offset, tuple(value.shape), tuple(value.stride), False, OrderedDict()))

    def persistent_id(self, obj: object) -> tuple | None:
        if not isinstance(obj, _Storage):
            return None
        kind = Global("torch", obj.name)
        if self.legacy:
            return "storage", kind, obj.key, "cpu", obj.data.size, obj.view
        return "storage", kind, obj.key, "cpu", obj.data.size


def pickled(obj: object, legacy: bool = False) -> tuple[bytes, dict[str, np.ndarray]]:
    """The pickle of ``obj`` as torch writes it and the storages it refers to (key -> 1-D array)."""
    buffer, storages = io.BytesIO(), {}
    _Pickler(buffer, legacy, storages).dump(obj)
    return buffer.getvalue(), {key: s.data for key, s in storages.items()}


def write_torch_file(obj: object, path: str | Path, layout: str = "zip", byteorder: str = "little") -> Path:
    """Write ``obj`` to ``path`` in torch.save's ``"zip"`` or ``"legacy"`` layout, as a machine of ``byteorder``
    (``"little"`` or ``"big"``) writes it."""
    path = Path(path)
    data, storages = pickled(obj, legacy=layout == "legacy")
    order = "<" if byteorder == "little" else ">"

    def raw(array: np.ndarray) -> bytes:
        return array.astype(array.dtype.newbyteorder(order)).tobytes()

    if layout == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("archive/data.pkl", data)
            archive.writestr("archive/byteorder", byteorder)
            for key, array in storages.items():
                archive.writestr(f"archive/data/{key}", raw(array))
            archive.writestr("archive/version", "3\n")
        return path
    with open(path, "wb") as f:
        for header in (MAGIC_NUMBER, PROTOCOL_VERSION,
                       {"protocol_version": PROTOCOL_VERSION, "little_endian": byteorder == "little",
                        "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, f, protocol=2)
        f.write(data)
        pickle.dump(sorted(storages), f, protocol=2)
        for key in sorted(storages):
            f.write(struct.pack(f"{order}q", storages[key].size) + raw(storages[key]))
    return path
