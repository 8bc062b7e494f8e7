"""utils/weights/torch_file.py: torch.save's two layouts read to the bit, hostile pickles refused before anything
runs, and every other file named for what it is. The files are written by tests/weights/torch_writer.py (no torch);
bench/reference/lipnet_pytorch_outputs.py checks with torch that torch.load reads that writer's files."""
from __future__ import annotations

import io
import pickle
import struct
import tarfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from tests.weights.torch_fixtures import LAYOUT_FILES, expected_views, fixture_state
from tests.weights.torch_writer import Call, Global, Strided, write_torch_file
from utils.weights.torch_file import (
    NotATorchFile,
    TorchFileError,
    UnsafePickle,
    file_layout,
    find_state_dict,
    read_torch_file,
)

LAYOUTS = ("zip", "legacy")


def _saved() -> tuple[dict, dict]:
    """A training checkpoint's dict (what is written) and what reading it must give."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal(30).astype(np.float32)
    bits = np.array([0x3FC0, 0xC020, 0x0000], np.uint16)  # bfloat16 1.5, -2.5, 0
    weights = OrderedDict([
        ("conv.weight", rng.standard_normal((4, 3, 2, 2)).astype(np.float32)),
        ("double", rng.standard_normal(5)), ("half", np.float16([0.5, -3.25])),
        ("steps", np.arange(6, dtype=np.int64).reshape(2, 3)), ("ints", np.int32([7, -8])),
        ("small", np.int16([1, -2])), ("bytes", np.int8([-5, 6])), ("pixels", np.uint8([0, 255])),
        ("mask", np.array([True, False])), ("scalar", np.array(2.5, np.float32)),
        ("empty", np.zeros((0, 3), np.float32)),
        ("transposed", Strided(base, 2, (3, 4), (1, 5))),  # a transpose's strides, at an offset
        ("row", Strided(base, 10, (5,), (1,))),  # a second view of the same storage
        ("bf16", Strided(bits, 0, (3,), (1,), storage="BFloat16Storage")),
    ])
    saved = {"epoch": 12, "best": np.float64(0.25), "model_state_dict": weights, "lr": [1e-3, {"beta": (0.9, 0.99)}]}
    expected = dict(weights)
    expected["transposed"] = np.lib.stride_tricks.as_strided(base[2:], (3, 4), (4, 20)).copy()
    expected["row"] = base[10:15].copy()
    expected["bf16"] = np.float32([1.5, -2.5, 0.0])
    return saved, expected


@pytest.mark.parametrize("byteorder", ["little", "big"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_both_layouts_read_every_tensor_to_the_bit_with_the_dicts_around_them(tmp_path: Path, layout: str,
                                                                              byteorder: str):
    saved, expected = _saved()
    path = write_torch_file(saved, tmp_path / "checkpoint.pth.tar", layout, byteorder)
    assert file_layout(path) == layout
    got = read_torch_file(path)
    assert got["epoch"] == 12 and got["best"] == 0.25 and got["lr"] == [1e-3, {"beta": (0.9, 0.99)}]
    weights = got["model_state_dict"]
    assert isinstance(weights, OrderedDict) and list(weights) == list(expected)
    for name, array in expected.items():
        assert weights[name].dtype == array.dtype and weights[name].shape == array.shape, name
        assert np.array_equal(weights[name], array), name
        assert weights[name].flags.c_contiguous and weights[name].flags.writeable, name
    key, state = find_state_dict(got, path)
    assert key == "model_state_dict" and list(state) == list(expected)


def test_storage_views_of_the_legacy_layout_read_from_their_start(tmp_path: Path):
    base = np.arange(20, dtype=np.float32)
    path = write_torch_file({"a": Strided(base, 1, (2, 3), (3, 1), view=(4, 10)),
                             "b": Strided(base, 0, (2,), (1,), view=(4, 10)), "c": Strided(base, 0, (20,), (1,))},
                            tmp_path / "views.pt", "legacy")
    got = read_torch_file(path)
    assert np.array_equal(got["a"], base[5:11].reshape(2, 3)) and np.array_equal(got["b"], base[4:6])
    assert np.array_equal(got["c"], base)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_files_torch_itself_wrote_read_to_the_bit(layout: str):
    path = LAYOUT_FILES[layout]
    assert file_layout(path) == layout
    got = read_torch_file(path)
    state = fixture_state()
    expected = {**state, **expected_views(state)}
    assert type(got) is dict and list(got) == list(expected)  # a dict saved as a dict
    for name, array in expected.items():
        assert got[name].dtype == array.dtype and np.array_equal(got[name], array), name


def test_find_state_dict_takes_the_object_itself_and_drops_dataparallels_prefix(tmp_path: Path):
    one = np.ones(2, np.float32)
    assert find_state_dict({"module.a": one, "module.b": one}, "f") == (None, {"a": one, "b": one})
    assert list(find_state_dict({"state_dict": {"module.a": one, "b": one}}, "f")[1]) == ["module.a", "b"]
    with pytest.raises(TorchFileError, match=r"f: no state dict .*\['epoch', 'optimizer'\]"):
        find_state_dict({"epoch": 3, "optimizer": {"lr": 0.1}}, "f")


def _evil(marker: Path) -> Call:
    return Call(Global("os", "system"), (f"touch {marker}",))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("where", ["beside the weights", "as a weight's storage offset"])
def test_a_pickle_that_calls_os_system_is_refused_naming_it_and_nothing_runs(tmp_path: Path, layout: str, where: str):
    marker = tmp_path / "ran"
    if where == "beside the weights":
        saved = {"w": np.ones(3, np.float32), "payload": _evil(marker)}
    else:
        saved = {"w": Call(Global("torch._utils", "_rebuild_tensor_v2"), (_evil(marker), 0, (1,), (1,)))}
    path = write_torch_file(saved, tmp_path / "evil.pt", layout)
    with pytest.raises(UnsafePickle, match=r"evil.pt: refused: its pickle asks for os.system") as caught:
        read_torch_file(path)
    assert caught.value.global_name == "os.system"
    assert not marker.exists()


@pytest.mark.parametrize("name", ["builtins.eval", "builtins.getattr", "torch.nn.modules.linear.Linear",
                                  "numpy.load", "collections.Counter", "torch.FloatStorage.__new__"])
def test_every_other_global_is_refused(tmp_path: Path, name: str):
    module, attribute = name.rsplit(".", 1)
    path = write_torch_file({"x": Call(Global(module, attribute), ("1",))}, tmp_path / "f.pt", "zip")
    with pytest.raises(UnsafePickle, match=f"asks for {name}"):
        read_torch_file(path)


def test_a_hostile_first_pickle_of_a_legacy_file_is_refused(tmp_path: Path):
    marker = tmp_path / "ran"
    path = tmp_path / "f.pt"
    data = io.BytesIO()
    pickle.dump(0, data, protocol=2)
    from tests.weights.torch_writer import pickled
    path.write_bytes(pickled(_evil(marker))[0] + data.getvalue())
    with pytest.raises(UnsafePickle, match="os.system"):
        read_torch_file(path)
    assert not marker.exists()


def test_other_files_are_named_for_what_they_are(tmp_path: Path):
    cases = {"empty.pt": b"", "text.pt": b"hello, world\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with zipfile.ZipFile(tmp_path / "script.pt", "w") as z:
        z.writestr("model/data.pkl", pickle.dumps(1, protocol=2))
        z.writestr("model/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("model/code/__torch__/m.py", "")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "x")
    with tarfile.open(tmp_path / "old.tar", "w") as t:
        info = tarfile.TarInfo("pickle")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    expected = {"empty.pt": "an empty file", "text.pt": "a file starting with b'hello, world",
                "plain.pkl": "a pickle, but not one torch.save wrote", "script.pt": "a TorchScript archive",
                "other.zip": "a zip archive, but not one torch.save writes", "old.tar": "a tar archive"}
    for name, message in expected.items():
        with pytest.raises(NotATorchFile, match=f"{name}: .*{message}"):
            read_torch_file(tmp_path / name)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_truncated_file_is_an_error_not_a_partial_read(tmp_path: Path, layout: str):
    path = write_torch_file({"a": np.ones(1000, np.float32), "b": np.ones(10, np.float32)}, tmp_path / "f.pt", layout)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(TorchFileError, match=r"f.pt: (truncated|a damaged zip|damaged)"):
        read_torch_file(path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_tensor_reaching_past_its_storage_is_damage(tmp_path: Path, layout: str):
    path = write_torch_file({"w": Strided(np.ones(6, np.float32), 4, (2, 2), (2, 1))}, tmp_path / "f.pt", layout)
    with pytest.raises(TorchFileError, match=r"damaged \(w: shape \(2, 2\) at offset 4 reaches element 7 of a "
                                             r"storage of 6\)"):
        read_torch_file(path)


def test_a_hostile_element_count_or_zip_bomb_is_refused_before_it_is_read(tmp_path: Path):
    legacy = write_torch_file({"w": np.ones(4, np.float32)}, tmp_path / "f.pt", "legacy")
    data = legacy.read_bytes()
    count = struct.pack("<q", 4)
    at = data.rindex(count)  # the storage's element count, before its 16 bytes
    legacy.write_bytes(data[:at] + struct.pack("<q", 1 << 40) + data[at + 8:])
    with pytest.raises(TorchFileError, match=r"f.pt: damaged \(storage 0 holds 1099511627776 elements, its tensors "
                                             r"need 4\)"):
        read_torch_file(legacy)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02N." + bytes(1 << 20))
    with pytest.raises(TorchFileError, match=r"bomb.pt: refused \(archive/data.pkl inflates from \d+ to 1048580 "
                                             r"bytes"):
        read_torch_file(bomb)


def test_a_zip_storage_of_the_wrong_size_is_damage(tmp_path: Path):
    path = write_torch_file({"w": np.ones(4, np.float32)}, tmp_path / "f.pt", "zip")
    damaged = tmp_path / "g.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name)[:8] if name == "archive/data/0" else src.read(name))
    with pytest.raises(TorchFileError, match=r"g.pt: damaged \(archive/data/0 holds 8 bytes, its FloatStorage of 4 "
                                             r"elements needs 16\)"):
        read_torch_file(damaged)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_huge_broadcast_view_is_refused_before_it_is_made(tmp_path: Path, layout: str):
    path = write_torch_file({"w": Strided(np.ones(1, np.float32), 0, (1 << 30,), (0,))}, tmp_path / "f.pt", layout)
    with pytest.raises(TorchFileError, match=r"damaged \(w: \(1073741824,\) is 1073741824 elements, from a storage "
                                             r"of 1\)"):
        read_torch_file(path)
    small = write_torch_file({"w": Strided(np.float32([3]), 0, (2, 3), (0, 0))}, tmp_path / "g.pt", layout)
    assert np.array_equal(read_torch_file(small)["w"], np.full((2, 3), 3, np.float32))


def test_containers_nested_too_deep_are_an_error_not_a_crash(tmp_path: Path):
    depth = 100_000
    nested = b"\x80\x02" + pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1) + pickle.STOP  # [[[...]]]
    path = tmp_path / "deep.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", nested)
    with pytest.raises(TorchFileError, match="deep.pt: damaged or hostile"):
        read_torch_file(path)


def test_a_pickled_model_is_refused_with_a_hint(tmp_path: Path):
    path = write_torch_file({"net": Call(Global("torch.nn.modules.container", "Sequential"), ())}, tmp_path / "m.pt")
    with pytest.raises(UnsafePickle, match=r"Sequential.*save its state_dict\(\) with torch.save instead"):
        read_torch_file(path)
