"""Files that ``torch.save`` wrote, read as NumPy arrays without torch and without running their pickles' code.

A ``torch.save`` file is a pickle, and unpickling calls whatever global the pickle names: ``torch.load``
of a hostile file runs its code. Here the unpickler hands out only what a saved state dict (or a
training checkpoint's dict around one) needs: ``collections.OrderedDict``, torch's tensor- and
parameter-rebuilding functions (replaced by our own, which make NumPy arrays), its storage types and
NumPy scalars. Any other global is refused with ``UnsafePickle`` naming it, before anything the file
asked for has run.

Both layouts torch has written are read:

* the zip archive of torch 1.6 and later: ``<name>/data.pkl`` (the object, whose storages are
  persistent ids) and ``<name>/data/<key>`` (each storage's raw bytes), ``<name>/byteorder``;
* the legacy stream of torch before 1.6 (and ``_use_new_zipfile_serialization=False``): pickles of
  the magic number, the protocol version and the writer's byte order and type sizes, then the
  object, then the list of storage keys, then each storage's raw bytes after an int64 element count.

Anything else (TorchScript archives, torch's tar files from before 2017, other pickles, other
files) is ``NotATorchFile`` saying what the file is.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy file
PROTOCOL_VERSION = 1001
MAX_INFLATION = 64  # the most a zip member may inflate (torch's are stored: 1)
BROADCAST_ELEMENTS = 1 << 20  # the most elements a tensor may have beyond its storage's (a broadcast view)
# torch's storage classes and the NumPy types of their elements (bfloat16 is widened to float32).
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "BFloat16Storage": "bfloat16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")  # where training checkpoints keep the weights


class TorchFileError(ValueError):
    """A file that cannot be read as a ``torch.save`` file; the message names the file and the reason."""


class NotATorchFile(TorchFileError):
    """A file that is not what ``torch.save`` writes (or is a kind of torch file this reader does not read)."""


class UnsafePickle(TorchFileError):
    """A pickle that asks for a global a saved state dict never needs; nothing it asked for has run."""

    def __init__(self, source: str | Path, global_name: str) -> None:
        hint = ""
        if global_name.startswith(("torch.nn.", "__torch__.", "__main__.")):
            hint = " (a whole pickled model? save its state_dict() with torch.save instead)"
        super().__init__(f"{source}: refused: its pickle asks for {global_name}, which a saved state dict never "
                         "needs (only tensors, storages, OrderedDict and NumPy scalars are rebuilt); nothing it "
                         f"asked for was run{hint}")
        self.global_name = global_name


@dataclass(frozen=True)
class _StorageType:
    """What the pickle's ``torch.FloatStorage`` (and the like) stands for: only an element type."""

    name: str
    code: str

    @property
    def itemsize(self) -> int:
        return 2 if self.code == "bfloat16" else np.dtype(self.code).itemsize


_STORAGE_TYPES = {name: _StorageType(name, code) for name, code in STORAGE_DTYPES.items()}


class _Storage:
    """One storage: its element type, element count and (once read) its elements; a legacy view is an offset
    into its root's."""

    def __init__(self, kind: _StorageType, numel: int, root: _Storage | None = None, offset: int = 0) -> None:
        self.kind, self.numel, self.root, self.offset = kind, numel, root, offset
        self.data: np.ndarray | None = None

    def elements(self) -> np.ndarray | None:
        if self.root is None:
            return self.data
        root = self.root.elements()
        return None if root is None else root[self.offset:self.offset + self.numel]


@dataclass
class _PendingTensor:
    """A tensor whose storage may be read only after the pickle (legacy files); made an array by ``_resolve``."""

    storage: _Storage
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage: object, offset: object, size: object, stride: object, requires_grad: object = False,
                    backward_hooks: object = None, metadata: object = None) -> _PendingTensor:
    """``torch._utils._rebuild_tensor(_v2)``: the tensor's place in its storage, checked to be plain integers."""
    if not isinstance(storage, _Storage):
        raise TypeError(f"a tensor rebuilt from {type(storage).__name__}, not a storage")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride) or not all(
            type(v) is int and v >= 0 for v in (offset, *size, *stride)):
        raise TypeError(f"a tensor with offset {offset!r}, size {size!r} and stride {stride!r}")
    if metadata:  # the conjugate or negative bit of a lazily conjugated or negated view
        raise TypeError(f"a tensor with metadata {metadata!r} (conjugate or negative views are not read)")
    return _PendingTensor(storage, offset, size, stride)


def _rebuild_parameter(data: object, *_: object) -> object:
    """``torch._utils._rebuild_parameter(_with_state)``: an ``nn.Parameter`` is its tensor."""
    return data


def _latin1_bytes(text: object, encoding: str = "latin1") -> bytes:
    """``_codecs.encode``, which protocol-2 pickles use for bytes; only the Latin-1 encoding of a string."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") != "latin1":
        raise TypeError(f"_codecs.encode of {type(text).__name__} as {encoding!r}")
    return text.encode("latin1")


def _numpy_dtype(code: object, align: object = False, copy: object = False) -> np.dtype:
    """``numpy.dtype`` of a plain numeric type code (how a NumPy scalar is pickled)."""
    if not isinstance(code, str) or np.dtype(code).kind not in "biufc":
        raise TypeError(f"numpy.dtype({code!r})")
    return np.dtype(code)


def _numpy_scalar(dtype: object, data: object = b"") -> np.generic:
    """``numpy.core.multiarray.scalar``: a NumPy number from its bytes."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes | str):
        raise TypeError(f"numpy scalar of {dtype!r}")
    raw = data.encode("latin1") if isinstance(data, str) else data
    return np.frombuffer(raw, dtype=dtype, count=1)[0]


_GLOBALS: dict[str, Callable] = {
    "collections.OrderedDict": OrderedDict,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "_codecs.encode": _latin1_bytes,
    "numpy.dtype": _numpy_dtype,
    "numpy.core.multiarray.scalar": _numpy_scalar,
    "numpy._core.multiarray.scalar": _numpy_scalar,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only ``_GLOBALS`` and torch's storage types; every other global is refused."""

    def __init__(self, file: BinaryIO, source: str | Path, persistent: Callable[[tuple], object] | None) -> None:
        super().__init__(file, encoding="latin1")  # latin1: the str of Python 2 pickles, as torch.load reads them
        self._source, self._persistent = source, persistent

    def find_class(self, module: str, name: str) -> object:
        if module == "torch" and name in _STORAGE_TYPES:
            return _STORAGE_TYPES[name]
        allowed = _GLOBALS.get(f"{module}.{name}")
        if allowed is None:
            raise UnsafePickle(self._source, f"{module}.{name}")
        return allowed

    def persistent_load(self, pid: object) -> object:
        if self._persistent is None:
            raise pickle.UnpicklingError(f"a persistent id {pid!r} where none belongs")
        return self._persistent(pid)


def _load_pickle(file: BinaryIO, source: str | Path, persistent: Callable[[tuple], object] | None = None) -> object:
    """One pickle from ``file``; UnsafePickle as it is, anything else going wrong a TorchFileError."""
    try:
        return _RestrictedUnpickler(file, source, persistent).load()
    except TorchFileError:  # UnsafePickle among them, from find_class
        raise
    except Exception as err:  # noqa: BLE001 (a damaged pickle fails in many ways; each is reported as damage)
        raise TorchFileError(f"{source}: damaged or not a saved state dict ({type(err).__name__}: {err})") from None


def _storage_type(value: object, source: str | Path) -> _StorageType:
    if not isinstance(value, _StorageType):
        raise TorchFileError(f"{source}: a storage of unknown type {value!r}")
    return value


def _elements(raw: bytes, kind: _StorageType, big_endian: bool) -> np.ndarray:
    """The elements of a storage from its raw bytes, in native byte order (bfloat16 widened to float32)."""
    order = ">" if big_endian else "<"
    if kind.code == "bfloat16":
        halves = np.frombuffer(raw, dtype=f"{order}u2").astype(np.uint32)
        return (halves << 16).view(np.float32)
    return np.frombuffer(raw, dtype=np.dtype(kind.code).newbyteorder(order)).astype(kind.code)


def _member(archive: zipfile.ZipFile, name: str, source: str | Path) -> zipfile.ZipInfo:
    """A member of the archive, refused before it is read when it inflates far beyond its stored size (torch
    stores its members uncompressed; a zip bomb would fill the memory)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise TorchFileError(f"{source}: damaged (no {name} in the archive)") from None
    if info.file_size > MAX_INFLATION * info.compress_size + 4096:
        raise TorchFileError(f"{source}: refused ({name} inflates from {info.compress_size} to {info.file_size} "
                             "bytes; torch stores its members uncompressed)")
    return info


def _zip_storage_loader(archive: zipfile.ZipFile, prefix: str, source: str | Path,
                        big_endian: bool) -> Callable[[tuple], object]:
    storages: dict[str, _Storage] = {}

    def load(pid: tuple) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage":
            raise TorchFileError(f"{source}: an unknown persistent id {pid!r} (expected a storage)")
        _, kind, key, _location, numel = pid
        kind = _storage_type(kind, source)
        if key in storages:
            return storages[key]
        name = f"{prefix}data/{key}"
        info = _member(archive, name, source)
        if type(numel) is not int or info.file_size != numel * kind.itemsize:
            raise TorchFileError(f"{source}: damaged ({name} holds {info.file_size} bytes, its {kind.name} of "
                                 f"{numel} elements needs {numel * kind.itemsize if type(numel) is int else '?'})")
        storage = _Storage(kind, numel)
        storage.data = _elements(archive.read(info), kind, big_endian)
        storages[key] = storage
        return storage

    return load


def _read_zip(path: Path) -> object:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise NotATorchFile(f"{path}: a damaged zip archive ({err})") from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            raise NotATorchFile(f"{path}: a TorchScript archive (torch.jit.save), not a torch.save file; "
                                "save the model's state_dict() with torch.save instead")
        if not pickles:
            raise NotATorchFile(f"{path}: a zip archive, but not one torch.save writes (no <name>/data.pkl in it)")
        if len(pickles) > 1:
            raise NotATorchFile(f"{path}: a zip archive with {len(pickles)} data.pkl files; torch.save writes one")
        prefix = pickles[0][:-len("data.pkl")]
        big_endian = False
        if f"{prefix}byteorder" in names:
            order = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise TorchFileError(f"{path}: damaged (byte order {order!r})")
            big_endian = order == "big"
        try:
            data = archive.read(_member(archive, pickles[0], path))
            return _load_pickle(io.BytesIO(data), path, _zip_storage_loader(archive, prefix, path, big_endian))
        except (zipfile.BadZipFile, OSError) as err:  # a CRC mismatch, a truncated member
            raise TorchFileError(f"{path}: damaged ({err})") from None


def _read_legacy(path: Path, f: BinaryIO) -> object:
    magic = _load_pickle(f, path)
    if magic != MAGIC_NUMBER:
        raise NotATorchFile(f"{path}: a pickle, but not one torch.save wrote (it starts with {magic!r:.60}, "
                            "not torch's magic number)")
    version = _load_pickle(f, path)
    if version != PROTOCOL_VERSION:
        raise NotATorchFile(f"{path}: a legacy torch file of protocol {version!r}; this reader reads "
                            f"{PROTOCOL_VERSION}")
    info = _load_pickle(f, path)
    big_endian = isinstance(info, Mapping) and info.get("little_endian") is False
    roots: dict[str, _Storage] = {}
    views: dict[str, _Storage] = {}

    def load(pid: tuple) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            what = pid[0] if isinstance(pid, tuple) and pid else pid
            raise TorchFileError(f"{path}: holds a {what!r} where a saved state dict holds storages "
                                 "(a whole pickled module? save its state_dict() instead)")
        _, kind, key, _location, numel, view = pid
        kind = _storage_type(kind, path)
        if type(numel) is not int or numel < 0:
            raise TorchFileError(f"{path}: damaged (storage {key} of {numel!r} elements)")
        root = roots.setdefault(key, _Storage(kind, numel))
        if view is None:
            return root
        view_key, offset, size = view
        if view_key not in views:
            if not (type(offset) is int and type(size) is int and 0 <= offset and offset + size <= root.numel):
                raise TorchFileError(f"{path}: damaged (a view {offset!r}+{size!r} of a storage of {root.numel})")
            views[view_key] = _Storage(kind, size, root, offset)
        return views[view_key]

    result = _load_pickle(f, path, load)
    keys = _load_pickle(f, path)
    if not isinstance(keys, list):
        raise TorchFileError(f"{path}: damaged (no list of storages after the object)")
    order = ">" if big_endian else "<"
    size = os.fstat(f.fileno()).st_size
    for key in keys:
        storage = roots.get(key)
        if storage is None:
            raise TorchFileError(f"{path}: damaged (storage {key!r} is listed but nothing uses it)")
        head = f.read(8)
        if len(head) < 8:
            raise TorchFileError(f"{path}: truncated (storage {key} of {len(keys)} is missing)")
        (count,) = struct.unpack(f"{order}q", head)
        if count != storage.numel:
            raise TorchFileError(f"{path}: damaged (storage {key} holds {count} elements, its tensors need "
                                 f"{storage.numel})")
        nbytes = count * storage.kind.itemsize
        left = size - f.tell()
        if nbytes > left:  # checked before reading: a hostile count must not allocate what the file does not hold
            raise TorchFileError(f"{path}: truncated (storage {key} has {left} of its {nbytes} bytes)")
        raw = f.read(nbytes)
        storage.data = _elements(raw, storage.kind, big_endian)
    return result


def _materialise(tensor: _PendingTensor, where: str, source: str | Path) -> np.ndarray:
    elements = tensor.storage.elements()
    if elements is None:
        raise TorchFileError(f"{source}: damaged ({where}: its storage's data is not in the file)")
    count = int(np.prod(tensor.size, dtype=object)) if tensor.size else 1  # Python ints: no overflow
    if count > max(elements.size, BROADCAST_ELEMENTS):
        # Only a broadcast view (a stride of 0) has more elements than its storage; a big one is a hostile file.
        raise TorchFileError(f"{source}: damaged ({where}: {tensor.size} is {count} elements, from a storage of "
                             f"{elements.size})")
    if count == 0:
        return np.zeros(tensor.size, dtype=elements.dtype)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True))
    if last >= elements.size:
        raise TorchFileError(f"{source}: damaged ({where}: shape {tensor.size} at offset {tensor.offset} reaches "
                             f"element {last} of a storage of {elements.size})")
    view = np.lib.stride_tricks.as_strided(elements[tensor.offset:], shape=tensor.size,
                                           strides=[s * elements.itemsize for s in tensor.stride], writeable=False)
    return np.array(view, order="C")


def _resolve(value: object, where: str, source: str | Path) -> object:
    """``value`` with every pending tensor made an array, containers rebuilt as their own types."""
    if isinstance(value, _PendingTensor):
        return _materialise(value, where, source)
    if isinstance(value, dict):  # a dict or an OrderedDict: the only mappings the unpickler builds
        resolved = type(value)()
        for key, item in value.items():
            resolved[key] = _resolve(item, f"{where}.{key}" if where else str(key), source)
        return resolved
    if isinstance(value, list | tuple):
        items = [_resolve(item, f"{where}[{i}]", source) for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, _Storage | _StorageType):
        raise TorchFileError(f"{source}: holds a bare storage at {where or 'the top'}; a state dict holds tensors")
    return value


def file_layout(path: str | Path) -> str:
    """``"zip"`` (torch 1.6 and later) or ``"legacy"`` (earlier): which of torch's layouts ``path`` looks like
    from its first bytes; ``"unknown"`` for anything else (``read_torch_file`` then says what it is)."""
    with open(path, "rb") as f:
        head = f.read(4)
    return "zip" if head == b"PK\x03\x04" else "legacy" if head[:1] == b"\x80" else "unknown"


def read_torch_file(path: str | Path) -> Any:  # noqa: ANN401 (whatever object was saved)
    """The object that ``torch.save`` wrote to ``path``, with every tensor a NumPy array (a C-contiguous copy)
    and every dict an ``OrderedDict`` or ``dict`` as saved.

    Raises ``UnsafePickle`` for a pickle asking for any other global (naming it; nothing has run),
    ``NotATorchFile`` for anything torch.save did not write (saying what it is), ``TorchFileError``
    for a damaged or truncated one, ``OSError`` when it cannot be read at all."""
    path = Path(path)
    try:
        return _read(path)
    except RecursionError:  # containers nested thousands deep: no state dict, a hostile file
        raise TorchFileError(f"{path}: damaged or hostile (containers nested too deep to read)") from None


def _read(path: Path) -> object:
    with open(path, "rb") as f:
        head = f.read(512)
        if head.startswith(b"PK\x03\x04"):
            return _resolve(_read_zip(path), "", path)
        if len(head) > 262 and head[257:262] == b"ustar":
            raise NotATorchFile(f"{path}: a tar archive (torch.save's format before torch 0.1.10, or not a torch "
                                "file); load it with that torch and save it again to read it here")
        if not head.startswith(b"\x80"):
            what = "an empty file" if not head else f"a file starting with {head[:16]!r}"
            raise NotATorchFile(f"{path}: not a file torch.save writes ({what}; expected a zip archive or a pickle)")
        f.seek(0)
        return _resolve(_read_legacy(path, f), "", path)


def find_state_dict(saved: object, source: str | Path,
                    keys: tuple[str, ...] = STATE_DICT_KEYS) -> tuple[str | None, dict[str, np.ndarray]]:
    """The state dict in what ``read_torch_file`` returned: the object itself when it maps names to arrays,
    else the first of ``keys`` that does (a training checkpoint's dict); returns that key (None for the
    object itself) and the dict, with a ``module.`` prefix that every name has (``nn.DataParallel``'s) removed.

    TorchFileError naming the file and the keys it holds when there is none."""
    def is_state_dict(value: object) -> bool:
        return (isinstance(value, Mapping) and bool(value)
                and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in value.items()))

    found: tuple[str | None, Mapping] | None = None
    if is_state_dict(saved):
        found = (None, saved)
    elif isinstance(saved, Mapping):
        found = next(((k, saved[k]) for k in keys if is_state_dict(saved.get(k))), None)
    if found is None:
        holds = f"a dict of {sorted(map(str, saved))[:8]}" if isinstance(saved, Mapping) else type(saved).__name__
        raise TorchFileError(f"{source}: no state dict of named tensors in it (it holds {holds}; looked for the "
                             f"object itself and {', '.join(keys)})")
    key, state = found
    names = list(state)
    if all(n.startswith("module.") for n in names):
        names = [n.removeprefix("module.") for n in names]
    return key, dict(zip(names, state.values(), strict=True))


def state_mismatches(state: Mapping[str, object], expected: Mapping[str, tuple[str, tuple[int, ...]]]
                     ) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """How a published state dict differs from what an importer expects (``expected``: each of its names with our
    name for it and the shape it needs): its unknown names, its missing names, and ``(name, shape, needed)`` for
    each wrong shape, so that the importer names them all in one error."""
    unknown = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    wrong = [(name, tuple(np.shape(state[name])), shape) for name, (_, shape) in expected.items()
             if name in state and tuple(np.shape(state[name])) != shape]
    return unknown, missing, wrong
