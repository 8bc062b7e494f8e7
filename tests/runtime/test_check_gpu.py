"""The GPU check and the CUDA library loader, with the driver and the GPU probe stubbed (no GPU here).

What a GPU itself would answer is stubbed with the texts MXNet and the driver give; the loader's
dependency order and the probe's network run for real, on the CPU build and its own libraries.
"""
import json
import logging
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import infer
import main
from utils import check_gpu
from utils.runtime import cuda_libs, gpu_preflight
from utils.runtime.gpu_preflight import (
    Build,
    Gpu,
    GpuProblem,
    ProbeResult,
    Report,
    check,
    classify,
    kernels_for,
    preflight,
)

REPO = Path(__file__).resolve().parents[2]
GIB = 2**30
CUDA_BUILD = Build("mxnet-cu117 1.9.1", True)
A100 = Gpu(0, "NVIDIA A100-SXM4-80GB", (8, 0), 80 * GIB)
L4 = Gpu(1, "NVIDIA L4", (8, 9), 24 * GIB)
H100 = Gpu(1, "NVIDIA H100 80GB HBM3", (9, 0), 80 * GIB)

# Every compute capability NVIDIA has shipped from 5.0 to 12.0, and the machine code of the build
# that runs there: SASS for sm_XY runs on X.Z with Z >= Y only.
SHIPPED = {
    (5, 0): "sm_50", (5, 2): "sm_50", (5, 3): "sm_50",  # Maxwell: GTX 750, GTX 9xx / M40, Jetson Nano
    (6, 0): "sm_60", (6, 1): "sm_60", (6, 2): "sm_60",  # Pascal: P100, GTX 10xx / P40 / P4, Jetson TX2
    (7, 0): "sm_70", (7, 2): "sm_70", (7, 5): "sm_70",  # V100, Jetson Xavier, Turing T4 / RTX 20xx
    (8, 0): "sm_80", (8, 6): "sm_86", (8, 7): "sm_86",  # A100, RTX 30xx / A10 / A40, Jetson Orin
    (8, 9): "sm_86",  # Ada: RTX 40xx, L4, L40
    (9, 0): None,  # Hopper: H100, H200
    (10, 0): None, (10, 1): None, (10, 3): None, (11, 0): None, (12, 0): None, (12, 1): None,  # Blackwell
}


def probe_never(indices: Sequence[int]) -> dict:
    raise AssertionError(f"the probe ran on {list(indices)}")


def driver_with(*gpus: Gpu, version: int = 12040):
    return lambda: (version, list(gpus))


def probe_ok(indices: Sequence[int]) -> dict:
    return {i: ProbeResult(True, seconds=1.5, free=70 * GIB) for i in indices}


# ---- which GPUs the build can run ----

@pytest.mark.parametrize("capability", sorted(SHIPPED))
def test_kernels_for_every_shipped_compute_capability(capability: tuple):
    assert kernels_for(capability) == SHIPPED[capability]


def test_support_across_every_minor_version_from_5_to_12():
    for major in range(5, 13):
        for minor in range(10):
            arch = kernels_for((major, minor))
            assert (arch is not None) == (major <= 8), (major, minor)
            if arch:  # same major, never a newer minor than the GPU's
                assert arch[3] == str(major) and int(arch[4]) <= minor
    assert kernels_for((3, 7)) is None  # Kepler (K80): older than any machine code in the build


@pytest.mark.parametrize("capability, name", [((5, 2), "Maxwell"), ((6, 1), "Pascal"), ((7, 0), "Volta"),
                                              ((7, 5), "Turing"), ((8, 6), "Ampere"), ((8, 9), "Ada"),
                                              ((9, 0), "Hopper"), ((10, 0), "Blackwell"), ((12, 0), "Blackwell")])
def test_generation_names(capability: tuple, name: str):
    assert gpu_preflight.generation(*capability) == name


def test_unsupported_gpu_names_the_generations_that_can_run_and_onnx():
    message = str(gpu_preflight.unsupported(H100))
    assert "GPU 1 (NVIDIA H100 80GB HBM3, compute capability 9.0, Hopper, 80.0 GiB)" in message
    for name in ("Maxwell", "Pascal", "Volta", "Turing", "Ampere", "Ada"):
        assert name in message
    assert "utils/export_onnx.py" in message and "model_path=MODEL.onnx" in message


# ---- error texts ----

@pytest.mark.parametrize("text, kind, words", [
    ("OSError: libcudnn.so.8: cannot open shared object file: No such file or directory", "library_missing",
     ["libcudnn.so.8", "nvidia-cudnn-cu11", "pip install -r requirements-gpu.txt"]),
    ("libcublasLt.so.11: cannot open shared object file: No such file or directory", "library_missing",
     ["libcublasLt.so.11", "nvidia-cublas-cu11"]),
    ("OSError: libcuda.so.1: cannot open shared object file: No such file or directory", "no_driver",
     ["no NVIDIA driver", "libcuda.so.1", "release 520"]),
    ("MXNetError: Check failed: e == cudaSuccess (209 vs. 0) : CUDA: no kernel image is available for execution "
     "on the device", "unsupported", ["Hopper", "Ampere", "export_onnx"]),
    ("MXNetError: cudaMalloc retry failed: out of memory", "out_of_memory", ["ran out of memory", "nvidia-smi"]),
    ("CUDNN_STATUS_ALLOC_FAILED", "out_of_memory", ["ran out of memory"]),
    ("cuModuleLoadDataEx failed: CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "driver_too_old", ["release 520"]),
    ("MXNetError: CUDA: CUDA driver version is insufficient for CUDA runtime version", "driver_too_old",
     ["release 520"]),
    ("Traceback ...\nMXNetError: GPU is not enabled", "cpu_build", ["requirements-gpu.txt"]),
    ("Traceback (most recent call last):\n  ...\nMXNetError: something else entirely\n", "probe_failed",
     ["GPU 1 (NVIDIA H100", "failed the check: MXNetError: something else entirely"]),
])
def test_error_texts_are_classified_with_a_clear_message(text: str, kind: str, words: list):
    problem = classify(text, H100)
    assert problem.kind == kind
    for word in words:
        assert word in str(problem)


# ---- the whole check, with the driver and the probe stubbed ----

def test_cpu_build_without_driver_reports_both_and_probes_nothing():
    report = check(build=Build("mxnet 1.9.1", False), driver=lambda: gpu_preflight.query_driver("libnosuch.so.1"),
                   probe=probe_never)
    assert [p.kind for p in report.problems] == ["cpu_build", "no_driver"]
    assert "pip install -r requirements-gpu.txt" in str(report.problems[0])


def test_cuda_build_without_driver_says_import_fails():
    report = check(build=CUDA_BUILD, driver=lambda: gpu_preflight.query_driver("libnosuch.so.1"), probe=probe_never)
    [problem] = report.problems
    assert problem.kind == "no_driver" and "`import mxnet` fails" in str(problem)


def test_missing_library_is_named_and_nothing_is_probed():
    build = Build("mxnet-cu117 1.9.1", True, {"libcudnn.so.8": "libcudnn.so.8: cannot open shared object file",
                                                "libcuda.so.1": "libcuda.so.1: cannot open shared object file"})
    report = check(build=build, driver=driver_with(A100), probe=probe_never)
    [problem] = report.problems  # libcuda.so.1 is the driver's, and the driver answered
    assert problem.kind == "library_missing"
    assert "libcudnn.so.8 (from nvidia-cudnn-cu11)" in str(problem)
    assert "libcuda.so.1" not in str(problem)


def test_old_driver_is_named():
    report = check(1, build=CUDA_BUILD, driver=driver_with(A100, version=11070), probe=probe_never)
    assert [p.kind for p in report.problems] == ["driver_too_old"]
    assert "CUDA 11.7 only" in str(report.problems[0])


def test_no_gpu_visible(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    report = check(build=CUDA_BUILD, driver=driver_with(), probe=probe_never)
    assert [p.kind for p in report.problems] == ["no_gpu"]
    assert "CUDA_VISIBLE_DEVICES=''" in str(report.problems[0])


def test_more_gpus_wanted_than_visible():
    report = check(2, build=CUDA_BUILD, driver=driver_with(A100), probe=probe_never)
    assert [str(p) for p in report.problems] == ["num_gpus=2 but only 1 GPU(s) are visible"]


def test_unsupported_gpu_stops_a_run_before_any_probe():
    report = check(2, build=CUDA_BUILD, driver=driver_with(A100, H100), probe=probe_never)
    assert [p.kind for p in report.problems] == ["unsupported"]
    assert "GPU 1 (NVIDIA H100" in str(report.problems[0])


def test_full_report_lists_each_gpu_and_probes_those_with_kernels_first():
    probed = []

    def probe(indices: Sequence[int]) -> dict:
        probed.append(list(indices))
        return {0: ProbeResult(False, error="CUDA: no kernel image is available for execution on the device"),
                1: ProbeResult(True, seconds=2.25, free=20 * GIB)}

    h100, l4 = Gpu(0, H100.name, H100.capability, H100.memory), Gpu(1, L4.name, L4.capability, L4.memory)
    report = check(build=CUDA_BUILD, driver=driver_with(h100, l4), probe=probe)
    assert probed == [[1, 0]]
    assert report.lines == [
        "MXNet: mxnet-cu117 1.9.1, CUDA build",
        "NVIDIA driver: supports CUDA 12.4; 2 GPU(s) visible",
        "GPU 0 (NVIDIA H100 80GB HBM3, compute capability 9.0, Hopper, 80.0 GiB): MXNet has no kernels for it; "
        "check failed: unsupported",
        "GPU 1 (NVIDIA L4, compute capability 8.9, Ada, 24.0 GiB): MXNet has kernels for it (sm_86); forward and "
        "backward ran in 2.2 s, 20.0 GiB free",
    ]
    assert [p.kind for p in report.problems] == ["unsupported"]


def test_out_of_memory_in_the_probe():
    def probe(indices: Sequence[int]) -> dict:
        return {0: ProbeResult(False, error="MXNetError: cudaMalloc retry failed: out of memory")}

    report = check(1, build=CUDA_BUILD, driver=driver_with(A100), probe=probe)
    [problem] = report.problems
    assert problem.kind == "out_of_memory" and str(problem).startswith("GPU 0 (NVIDIA A100-SXM4-80GB")


def test_working_gpu_has_no_problem():
    report = check(1, build=CUDA_BUILD, driver=driver_with(A100, H100), probe=probe_ok)
    assert report.problems == []
    assert report.lines[-1].endswith("MXNet has kernels for it (sm_80); forward and backward ran in 1.5 s, "
                                     "70.0 GiB free")
    assert len(report.lines) == 3  # only the GPU a run would use


def test_missing_driver_library_is_no_driver():
    with pytest.raises(GpuProblem) as caught:
        gpu_preflight.query_driver("libnosuch.so.1")
    assert caught.value.kind == "no_driver"
    with pytest.raises(GpuProblem, match="it has no cuInit: not an NVIDIA driver's library"):
        gpu_preflight.query_driver("libc.so.6")


def test_probe_process_that_dies_names_the_gpus_it_left(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DMLC_ROLE", "worker")

    def run(command: list, **kwargs) -> subprocess.CompletedProcess:
        assert command[1:3] == ["-m", "model.gpu_probe"] and command[3:] == ["0", "1"]
        assert "DMLC_ROLE" not in kwargs["env"]  # MXNet's import would make a server of it
        return subprocess.CompletedProcess(command, -11, '{"device": 0, "ok": true, "seconds": 1.0}\n',
                                           "Segmentation fault in libcudnn_cnn_infer.so.8")

    monkeypatch.setattr(gpu_preflight.subprocess, "run", run)
    results = gpu_preflight.run_probe([0, 1])
    assert results[0] == ProbeResult(True, 1.0)
    assert not results[1].ok
    assert "ended (exit status -11) before finishing GPU 1" in results[1].error
    assert "Segmentation fault" in results[1].error


# ---- main.py and infer.py ----

def test_preflight_on_the_cpu_build_runs_no_check():
    assert not cuda_libs.is_cuda_build()  # the test environment's MXNet
    assert preflight(1, check_fn=lambda n: pytest.fail("checked")) == []


def test_preflight_raises_the_first_problem_and_lets_no_gpu_fall_back(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cuda_libs, "is_cuda_build", lambda: True)
    unsupported = GpuProblem("unsupported", "GPU 0 cannot")
    with pytest.raises(GpuProblem, match="GPU 0 cannot"):
        preflight(1, check_fn=lambda n: Report(problems=[unsupported]))
    no_gpu = Report(lines=["MXNet: x"], problems=[GpuProblem("no_gpu", "none")])
    assert preflight(1, check_fn=lambda n: no_gpu) == ["MXNet: x"]  # the trainer then warns and uses the CPU
    assert preflight(0, check_fn=lambda n: pytest.fail("checked")) == []
    monkeypatch.setenv("DMLC_ROLE", "server")  # a parameter server of a distributed run: no GPU of its own
    assert preflight(1, check_fn=lambda n: pytest.fail("checked")) == []


def test_main_stops_before_training_on_an_unusable_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture):
    def unusable(num_gpus: int) -> list:
        assert num_gpus == 2
        raise gpu_preflight.unsupported(H100)

    monkeypatch.setattr(main, "preflight", unusable)
    with caplog.at_level(logging.ERROR):
        assert main.main(["num_gpus=2", f"save_dir={tmp_path / 'run'}", f"image_path={tmp_path}"]) == 2
    assert "MXNet 1.9.1 cannot run on this generation" in caplog.text
    assert not (tmp_path / "run").exists()  # nothing started


def test_infer_stops_with_the_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.setattr(infer, "preflight", lambda n: (_ for _ in ()).throw(gpu_preflight.no_driver("gone")))
    assert infer.main(["num_gpus=1", "model_path=/nonexistent"]) == 2
    assert capsys.readouterr().err.strip() == "error: no NVIDIA driver: libcuda.so.1 cannot be loaded (gone); " \
                                              "install the NVIDIA driver, release 520 or newer"


def test_check_gpu_script_prints_the_report_and_one_line_per_problem(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture):
    asked = []

    def fake_check(wanted: int | None) -> Report:
        asked.append(wanted)
        return check(wanted, build=CUDA_BUILD, driver=driver_with(A100, H100), probe=probe_ok)

    monkeypatch.setattr(check_gpu, "check", fake_check)
    assert check_gpu.main([]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("GPU 0 (NVIDIA A100-SXM4-80GB") and out[3].startswith("GPU 1 (NVIDIA H100")
    assert [line for line in out if line.startswith("error:")] == [f"error: {gpu_preflight.unsupported(H100)}"]
    assert check_gpu.main(["num_gpus=1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ok: MXNet can train on this GPU"
    assert asked == [None, 1]
    with pytest.raises(SystemExit):
        check_gpu.main(["num_gpus=0"])


def test_check_gpu_script_here_names_the_cpu_build(capsys: pytest.CaptureFixture):
    assert check_gpu.main([]) == 1  # the test environment: CPU build (and no driver on the CI machine)
    assert "error: the installed MXNet (mxnet 1.9.1) is the CPU build" in capsys.readouterr().out


# ---- the probe's network, for real on the CPU ----

def test_probe_runs_forward_and_backward_on_the_cpu():
    import mxnet as mx

    from model.gpu_probe import probe

    assert probe(mx.cpu()) > 0


def test_probe_process_on_a_gpu_with_the_cpu_build_says_cpu_build():
    results = gpu_preflight.run_probe([0])
    assert classify(results[0].error).kind == "cpu_build"


# ---- the CUDA library loader ----

def test_elf_needed_reads_what_readelf_reads():
    library = cuda_libs.mxnet_library()
    needed = cuda_libs.elf_needed(library)
    assert "libopenblas.so.0" in needed and "libc.so.6" in needed
    assert not cuda_libs.is_cuda_build(library)
    assert cuda_libs.elf_needed(REPO / "README.md") == []
    if shutil.which("readelf"):
        dump = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, check=True).stdout
        assert needed == re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dump)


def test_load_order_puts_dependencies_first_and_skips_the_system():
    available = {name: Path(f"/x/{name}") for name in ("libcublas.so.11", "libcublasLt.so.11", "libcudnn.so.8",
                                                       "libcusolver.so.11", "libnvblas.so.11")}
    needs = {"libcublas.so.11": ["libcublasLt.so.11", "libc.so.6"], "libcusolver.so.11": ["libcublas.so.11",
             "libcublasLt.so.11"], "libcublasLt.so.11": ["libcublas.so.11"]}  # a cycle is visited once
    order = cuda_libs.load_order(["libcusolver.so.11", "libcuda.so.1", "libcudnn.so.8", "libc.so.6"], available,
                                 lambda path: needs.get(path.name, []))
    assert [p.name for p in order] == ["libcublasLt.so.11", "libcublas.so.11", "libcusolver.so.11", "libcudnn.so.8"]


def test_preload_loads_what_libmxnet_needs_dependencies_first(tmp_path: Path):
    """A fake site-packages: mxnet/libmxnet.so is the real (CPU) one, which needs libopenblas.so.0 and
    libgfortran.so.3; nvidia/ holds those two in separate folders plus one library nobody needs.
    OpenBLAS finds gfortran only if gfortran is loaded first (its RPATH is its own folder)."""
    real = cuda_libs.mxnet_library().parent
    (tmp_path / "mxnet").mkdir()
    (tmp_path / "mxnet" / "__init__.py").write_text("")
    (tmp_path / "mxnet" / "libmxnet.so").symlink_to(real / "libmxnet.so")
    for folder, name in (("blas", "libopenblas.so.0"), ("fortran", "libgfortran.so.3"), ("other", "libunused.so.1")):
        (tmp_path / "nvidia" / folder / "lib").mkdir(parents=True)
        shutil.copy(real / ("libgfortran.so.3" if name == "libunused.so.1" else name),
                    tmp_path / "nvidia" / folder / "lib" / name)
    script = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import json\n"
              "from utils.runtime.cuda_libs import preload_cuda_libraries, failed_libraries\n"
              "loaded = [str(p) for p in preload_cuda_libraries()]\n"
              "mapped = {line.split()[-1] for line in open('/proc/self/maps') if '/' in line}\n"
              "print(json.dumps([loaded, failed_libraries(), [p in mapped for p in loaded]]))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    loaded, failed, mapped = json.loads(done.stdout)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in loaded] == [
        "nvidia/fortran/lib/libgfortran.so.3", "nvidia/blas/lib/libopenblas.so.0"]
    assert failed == {} and all(mapped)


def test_preload_without_nvidia_packages_loads_nothing():
    assert cuda_libs.preload_cuda_libraries() == []
    assert cuda_libs.missing_libraries() == {}  # the CPU build's own libraries all resolve


# ---- requirements-gpu.txt ----

def requirement_lines(name: str) -> list[str]:
    lines = (REPO / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_gpu_requirements_are_the_cpu_ones_with_the_cuda_build_and_its_libraries():
    gpu, cpu = requirement_lines("requirements-gpu.txt"), requirement_lines("requirements.txt")
    cuda = [line for line in gpu if line.startswith(("mxnet", "nvidia-"))]
    assert [line for line in gpu if line not in cuda] == [line for line in cpu if not line.startswith("mxnet")]
    assert cuda[0] == "mxnet-cu117==1.9.1" and all("==" in line for line in cuda)
    packages = {line.split("==")[0] for line in cuda}
    assert set(gpu_preflight.PACKAGES.values()) == packages - {"mxnet-cu117"}
