"""Can the installed MXNet train on this machine's GPUs? And if not, one clear message saying why.

``check()`` lists each visible GPU (from the NVIDIA driver through ``ctypes``: no MXNet needed), says
whether MXNet's CUDA build has machine code for it, runs ``model/gpu_probe.py`` on it in a separate
process, and turns every failure into a ``GpuProblem`` whose message names the cause and the fix.
``utils/check_gpu.py`` prints the whole report; ``main.py`` and ``infer.py`` call ``preflight()``
before they load MXNet, so a GPU that cannot work stops a run at once, not inside its first epoch.

The support decision is table work: ``mxnet-cu117==1.9.1``'s ``libmxnet.so`` holds machine code
(SASS) for sm_50, sm_60, sm_70, sm_80 and sm_86 and no PTX (``bench/gpu_install.sh`` lists its fat
binary). Machine code for sm_XY runs only on GPUs of the same major version X with minor version
at least Y, so Maxwell to Ada run and Hopper (9.0) and Blackwell (10.x, 12.x) fail on the first
kernel with "no kernel image is available for execution on the device".
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from utils.runtime import cuda_libs
from utils.runtime.paths import REPO_ROOT

BUILD_ARCHS = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))  # the SASS in libmxnet.so of mxnet-cu117 1.9.1
# MXNet fuses pointwise operators at run time: NVRTC 11.8 compiles them to PTX that the driver
# translates, and a driver older than CUDA 11.8 (release 520) refuses PTX that new.
MIN_DRIVER_CUDA = 11080
ONNX_HINT = ("to lipread on it, export the model to ONNX (python utils/export_onnx.py) and run "
             "infer.py model_path=MODEL.onnx")
# which requirements-gpu.txt package holds each CUDA library MXNet links
PACKAGES = {"libcudart": "nvidia-cuda-runtime-cu11", "libcublas": "nvidia-cublas-cu11",
            "libcudnn": "nvidia-cudnn-cu11", "libcufft": "nvidia-cufft-cu11", "libcurand": "nvidia-curand-cu11",
            "libcusolver": "nvidia-cusolver-cu11", "libcusparse": "nvidia-cusparse-cu11",
            "libnvrtc": "nvidia-cuda-nvrtc-cu11", "libnvToolsExt": "nvidia-nvtx-cu11", "libnccl": "nvidia-nccl-cu11"}
DRIVER_LIBRARY = "libcuda.so.1"


class GpuProblem(Exception):
    """A reason the GPUs cannot be used; ``kind`` is one of: cpu_build, no_driver, library_missing,
    driver_too_old, no_gpu, too_few, unsupported, out_of_memory, probe_failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]
    memory: int  # bytes

    def describe(self) -> str:
        major, minor = self.capability
        return (f"GPU {self.index} ({self.name}, compute capability {major}.{minor}, {generation(*self.capability)}, "
                f"{self.memory / 2**30:.1f} GiB)")


@dataclass(frozen=True)
class Build:
    """The installed MXNet: its distribution, whether it is the CUDA build, and the libraries it needs
    that cannot be loaded (soname -> the loader's error)."""

    name: str
    cuda: bool
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    seconds: float | None = None
    error: str = ""
    free: int | None = None  # bytes of GPU memory free after the probe


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    problems: list[GpuProblem] = field(default_factory=list)
    gpus: list[Gpu] = field(default_factory=list)  # the GPUs checked


def generation(major: int, minor: int) -> str:
    """NVIDIA's name for the GPU generation of a compute capability."""
    if major < 5:
        return "Kepler or older"
    if major == 7:
        return "Turing" if minor >= 5 else "Volta"
    if major == 8:
        return "Ada" if minor >= 9 else "Ampere"
    return {5: "Maxwell", 6: "Pascal", 9: "Hopper"}.get(major, "Blackwell" if major <= 12 else "newer than Blackwell")


def kernels_for(capability: tuple[int, int]) -> str | None:
    """The machine code of the build that runs on a GPU of this compute capability (``"sm_86"``), or None.

    SASS for sm_XY runs on compute capability X.Z with Z >= Y only (same major version): 7.5 runs
    sm_70's, 8.9 runs sm_86's, and 9.0 runs none of them.
    """
    major, minor = capability
    best = max((arch for arch in BUILD_ARCHS if arch[0] == major and arch[1] <= minor), default=None)
    return f"sm_{best[0]}{best[1]}" if best else None


def supported_generations() -> str:
    """The generations with a compute capability the build has kernels for, oldest first."""
    names = [generation(major, minor) for major in range(13) for minor in range(10) if kernels_for((major, minor))]
    return ", ".join(dict.fromkeys(names))


def library_missing(missing: dict[str, str]) -> GpuProblem:
    """A missing CUDA library names the library and the package that holds it."""
    named = []
    for soname in missing:
        package = next((p for stem, p in PACKAGES.items() if soname.startswith(stem)), "")
        named.append(f"{soname} (from {package})" if package else soname)
    many = len(named) > 1
    return GpuProblem("library_missing", f"CUDA {'libraries' if many else 'library'} missing: {', '.join(named)}, "
                                         f"which MXNet's CUDA build links: pip install -r requirements-gpu.txt")


def no_driver(reason: str) -> GpuProblem:
    reason = reason.removeprefix(f"{DRIVER_LIBRARY}: ")
    return GpuProblem("no_driver", f"no NVIDIA driver: {DRIVER_LIBRARY} cannot be loaded ({reason}); install the "
                                   "NVIDIA driver, release 520 or newer")


def unsupported(gpu: Gpu) -> GpuProblem:
    return GpuProblem("unsupported", f"{gpu.describe()}: MXNet 1.9.1 cannot run on this generation (its CUDA "
                                     "build has machine code for compute capability 5.0-8.9 only, no PTX: "
                                     f"{supported_generations()}). Train on one of those GPUs, or on the CPU "
                                     f"(num_gpus=0); {ONNX_HINT}")


def classify(error: str, gpu: Gpu | None = None) -> GpuProblem:
    """The problem an MXNet or loader error text shows: a missing library, no driver, a GPU this build
    has no kernels for, too little memory, or (otherwise) a failed check quoting the error."""
    where = gpu.describe() if gpu else "the GPU"
    library = re.search(r"(lib[\w+-]+\.so[\w.]*): cannot open shared object file", error)
    if library:
        name = library.group(1)
        return no_driver(f"{name}: cannot open shared object file") if name.startswith("libcuda.") \
            else library_missing({name: error})
    if re.search(r"no kernel image is available|NoKernelImageForDevice|invalid device function", error):
        return unsupported(gpu) if gpu else GpuProblem("unsupported", f"the GPU is unsupported: {error}")
    if re.search(r"out of memory|MemoryAllocation|ALLOC_FAILED", error, re.IGNORECASE):
        return GpuProblem("out_of_memory", f"{where} ran out of memory running the check: other processes hold "
                                           "its memory (nvidia-smi lists them); free it, or pick other GPUs "
                                           "with CUDA_VISIBLE_DEVICES")
    if re.search(r"driver version is insufficient|InsufficientDriver|UNSUPPORTED_PTX_VERSION|"
                 r"unsupported toolchain", error):
        return GpuProblem("driver_too_old", f"the NVIDIA driver is too old for {where}: the CUDA 11.8 libraries "
                                            "of requirements-gpu.txt need driver release 520 or newer")
    if "GPU is not enabled" in error:
        return GpuProblem("cpu_build", "the installed MXNet is the CPU build: for GPUs, pip install -r "
                                       "requirements-gpu.txt (in place of requirements.txt)")
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    return GpuProblem("probe_failed", f"{where} failed the check: {lines[-1] if lines else 'no error text'}")


def query_driver(library: str = DRIVER_LIBRARY) -> tuple[int, list[Gpu]]:
    """The CUDA version the driver supports (e.g. 12020) and the GPUs it shows this process (after
    ``CUDA_VISIBLE_DEVICES``, numbered as MXNet numbers them). Raises GpuProblem('no_driver')."""
    try:
        cuda = ctypes.CDLL(library)
    except OSError as err:
        raise no_driver(str(err)) from None

    def call(function: str, *args: object) -> int:
        try:
            return getattr(cuda, function)(*args)
        except AttributeError:
            raise no_driver(f"it has no {function}: not an NVIDIA driver's library") from None

    status = call("cuInit", 0)
    version = ctypes.c_int(0)
    call("cuDriverGetVersion", ctypes.byref(version))
    if status == 100:  # CUDA_ERROR_NO_DEVICE
        return version.value, []
    if status != 0:
        text = ctypes.c_char_p()
        call("cuGetErrorName", status, ctypes.byref(text))
        name = (text.value or b"").decode() or f"error {status}"
        raise GpuProblem("no_driver", f"the NVIDIA driver did not start (cuInit: {name}); nvidia-smi shows "
                                      "whether the driver and the GPU are working")
    count = ctypes.c_int(0)
    call("cuDeviceGetCount", ctypes.byref(count))
    gpus = []
    for index in range(count.value):
        device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        name = ctypes.create_string_buffer(256)
        memory = ctypes.c_size_t()
        call("cuDeviceGet", ctypes.byref(device), index)
        call("cuDeviceGetName", name, 256, device)
        call("cuDeviceGetAttribute", ctypes.byref(major), 75, device)  # COMPUTE_CAPABILITY_MAJOR
        call("cuDeviceGetAttribute", ctypes.byref(minor), 76, device)  # COMPUTE_CAPABILITY_MINOR
        call("cuDeviceTotalMem_v2", ctypes.byref(memory), device)
        gpus.append(Gpu(index, name.value.decode(errors="replace"), (major.value, minor.value), memory.value))
    return version.value, gpus


def installed_build() -> Build:
    """The installed MXNet, with the pip-installed CUDA libraries loaded as MXNet would need them."""
    library = cuda_libs.mxnet_library()
    if library is None:
        return Build("none (MXNet is not installed)", False)
    import importlib.metadata  # only the check needs it, not a CPU run's start-up

    cuda = cuda_libs.is_cuda_build(library)
    dist = next((d for d in importlib.metadata.distributions()
                 if (d.metadata["Name"] or "").lower().replace("_", "-").startswith("mxnet")), None)
    name = f"{dist.metadata['Name']} {dist.version}" if dist else "mxnet"
    if not cuda:
        return Build(name, False)
    cuda_libs.preload_cuda_libraries()
    return Build(name, True, cuda_libs.missing_libraries(library))


def run_probe(indices: Sequence[int], timeout: float = 600) -> dict[int, ProbeResult]:
    """``model/gpu_probe.py`` on these GPUs, in one separate process; a GPU it did not report on (the
    process died or hung) gets the process's last words as its error."""
    command = [sys.executable, "-m", "model.gpu_probe", *map(str, indices)]
    # without a distributed run's roles: MXNet's import turns a process with DMLC_ROLE=server into a server
    env = {key: value for key, value in os.environ.items() if not key.startswith("DMLC_")}
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        stdout, stderr, ending = done.stdout, done.stderr, f"exit status {done.returncode}"
    except subprocess.TimeoutExpired as err:
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or ""
        stderr = err.stderr.decode() if isinstance(err.stderr, bytes) else err.stderr or ""
        ending = f"no answer within {timeout:.0f} s"
    results = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            results[int(record["device"])] = ProbeResult(record["ok"], record.get("seconds"), record.get("error", ""),
                                                         record.get("free_bytes"))
    for index in indices:
        if index not in results:
            results[index] = ProbeResult(False, error=f"the check's process ended ({ending}) before finishing "
                                                      f"GPU {index}: {stderr.strip()[-2000:]}")
    return results


def check(wanted: int | None = None, build: Build | None = None,
          driver: Callable[[], tuple[int, list[Gpu]]] = query_driver,
          probe: Callable[[Sequence[int]], dict[int, ProbeResult]] = run_probe) -> Report:
    """The report on the first ``wanted`` GPUs (all with None). With ``wanted``, no GPU is probed once a
    problem is known, and a GPU without kernels is not probed at all (the run stops at once); with
    None every GPU is probed, those with kernels first."""
    report = Report()
    build = build or installed_build()
    report.lines.append(f"MXNet: {build.name}, {'CUDA' if build.cuda else 'CPU'} build")
    if not build.cuda:
        report.problems.append(GpuProblem("cpu_build", f"the installed MXNet ({build.name}) is the CPU build: for "
                                                       "GPUs, pip install -r requirements-gpu.txt (in place of "
                                                       "requirements.txt)"))
    missing = {k: v for k, v in build.missing.items() if not k.startswith("libcuda.")}
    if missing:
        report.problems.append(library_missing(missing))
    try:
        version, gpus = driver()
    except GpuProblem as problem:
        if build.cuda and problem.kind == "no_driver":  # then nothing MXNet does can work, not even the CPU
            problem = GpuProblem("no_driver", f"{problem}. MXNet's CUDA build links {DRIVER_LIBRARY}, so "
                                              "until then even `import mxnet` fails; on a machine without an "
                                              "NVIDIA GPU install requirements.txt (the CPU build) instead")
        report.problems.append(problem)
        return report
    report.lines.append(f"NVIDIA driver: supports CUDA {version // 1000}.{version % 1000 // 10}; "
                        f"{len(gpus)} GPU(s) visible")
    if version < MIN_DRIVER_CUDA:
        report.problems.append(GpuProblem("driver_too_old", f"the NVIDIA driver supports CUDA {version // 1000}."
                                                            f"{version % 1000 // 10} only: the CUDA 11.8 libraries "
                                                            "of requirements-gpu.txt need driver release 520 or "
                                                            "newer"))
    if not gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        report.problems.append(GpuProblem("no_gpu", "the NVIDIA driver shows no GPU" + (
            f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else "")))
        return report
    if wanted is not None and wanted > len(gpus):
        report.problems.append(GpuProblem("too_few", f"num_gpus={wanted} but only {len(gpus)} GPU(s) are visible"))
        return report
    targets = report.gpus = gpus[:wanted] if wanted is not None else gpus
    kernels = {gpu.index: kernels_for(gpu.capability) for gpu in targets}
    for gpu in targets:
        if kernels[gpu.index] is None:
            report.problems.append(unsupported(gpu))
    if not build.cuda or missing or (wanted is not None and report.problems):
        report.lines += [f"{gpu.describe()}: {_kernel_words(kernels[gpu.index])}; not checked" for gpu in targets]
        return report
    order = sorted(targets, key=lambda gpu: kernels[gpu.index] is None)
    results = probe([gpu.index for gpu in order])
    for gpu in targets:
        result = results[gpu.index]
        if result.ok:
            free = f", {result.free / 2**30:.1f} GiB free" if result.free is not None else ""
            outcome = f"forward and backward ran in {result.seconds:.1f} s{free}"
        else:
            outcome = f"check failed: {classify(result.error, gpu).kind}"
            if kernels[gpu.index] is not None:  # a GPU without kernels already has its problem
                report.problems.append(classify(result.error, gpu))
        report.lines.append(f"{gpu.describe()}: {_kernel_words(kernels[gpu.index])}; {outcome}")
    return report


def _kernel_words(arch: str | None) -> str:
    return f"MXNet has kernels for it ({arch})" if arch else "MXNet has no kernels for it"


def preflight(num_gpus: int, check_fn: Callable[[int], Report] = check) -> list[str]:
    """What ``main.py`` and ``infer.py`` run before loading MXNet when asked for GPUs: the report's lines
    when the GPUs work; raises the first GpuProblem when they cannot.

    As before this check, a machine where MXNet sees no GPU (the CPU build, or a driver showing none)
    runs on the CPU, with the trainer's warning; the CPU build is recognised from ``libmxnet.so``'s
    headers alone, so that path costs no import and no subprocess. The parameter servers and the
    scheduler of a distributed run (``utils/launch.py``) use no GPU and are not checked.
    """
    if num_gpus <= 0 or os.environ.get("DMLC_ROLE") in ("server", "scheduler") or not cuda_libs.is_cuda_build():
        return []
    report = check_fn(num_gpus)
    problems = [p for p in report.problems if p.kind != "no_gpu"]
    if problems:
        raise problems[0]
    return report.lines
