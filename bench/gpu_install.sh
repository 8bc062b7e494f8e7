#!/usr/bin/env bash
# Install requirements-gpu.txt into a throwaway venv and show that MXNet's CUDA build finds every
# CUDA library it links through the project's own loader (utils/cuda_libs.py), without
# LD_LIBRARY_PATH. Not part of CI: it downloads about 2.5 GB from PyPI (cached by pip afterwards).
# On a machine without an NVIDIA driver the one library left unresolved is the driver's libcuda.so.1,
# and utils/check_gpu.py says so in one line. Usage: bash bench/gpu_install.sh [--reuse]
set -uo pipefail
cd "$(dirname "$0")/.."
unset LD_LIBRARY_PATH

PYTHON=${PYTHON:-python3.11}
venv=${LIPNET_GPU_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/lipnet-gpu-bench/venv}
if [ "${1:-}" != "--reuse" ] || [ ! -x "$venv/bin/python" ]; then
    echo "== fresh venv $venv; pip install -r requirements-gpu.txt"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location"
    start=$SECONDS
    "$venv/bin/pip" install -q -r requirements-gpu.txt 2>&1 | grep -v "^WARNING: Location"
    [ "${PIPESTATUS[0]}" = 0 ] || exit 1
    echo "installed in $((SECONDS - start)) s"
fi
py="$venv/bin/python"
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
lib="$site/mxnet/libmxnet.so"
"$venv/bin/pip" list 2>/dev/null | grep -iE "^(mxnet|numpy|nvidia)"
du -sh "$site/mxnet" "$site/nvidia" | sed "s|$site/||"

echo "== GPU code in libmxnet.so"
"$py" bench/fatbin_archs.py "$lib"

echo "== ldd libmxnet.so on its own (what the dynamic linker finds without help)"
ldd "$lib" | grep "not found" | sed 's/^\s*/  /'

echo "== the same libraries after utils/cuda_libs.py's preload_cuda_libraries()"
"$py" - "$lib" "$site/" <<'EOF'
import sys
from pathlib import Path

from utils.cuda_libs import elf_needed, missing_libraries, preload_cuda_libraries

library, site = Path(sys.argv[1]), sys.argv[2]
loaded = preload_cuda_libraries()
print(f"preloaded {len(loaded)} libraries from site-packages/nvidia, dependencies first:")
print("  " + " ".join(path.name for path in loaded))
missing = missing_libraries(library)  # tries to load every other one as MXNet's import would
maps = sorted({line.split()[-1] for line in open("/proc/self/maps") if "/" in line})
needed = elf_needed(library)
for soname in needed:
    where = next((m for m in maps if Path(m).name.startswith(soname.split(".so")[0] + ".so")), "")
    if soname in missing:
        where = "NOT FOUND"
    elif (library.parent / soname).exists():
        where = "beside libmxnet.so (its RPATH is $ORIGIN)"
    print(f"  {soname:20} {where.replace(site, 'site-packages/')}")
print(f"{len(needed) - len(missing)} of {len(needed)} resolve; not found: {', '.join(missing) or 'none'}")
EOF

echo "== import mxnet without the loader"
"$py" -c "import mxnet" 2>&1 | tail -n 1
echo "== import mxnet after the loader (as model/, trainer.py and data_loader.py do it)"
"$py" -c "from utils.cuda_libs import preload_cuda_libraries; preload_cuda_libraries(); import mxnet; print('import mxnet: ok', mxnet.__version__)" 2>&1 | tail -n 1

echo "== python utils/check_gpu.py"
"$py" utils/check_gpu.py
echo "(exit status $?)"

# Everything but the driver: a stand-in libcuda.so.1 with the driver functions libmxnet.so imports
# (and the two the check calls), answering as a driver with no GPU does. Needs gcc and nm.
if command -v gcc >/dev/null && command -v nm >/dev/null; then
    stub=$(mktemp -d)
    { echo "int cuInit(int flags) { return 100; }  /* CUDA_ERROR_NO_DEVICE */"
      echo "int cuDriverGetVersion(int *version) { *version = 12040; return 0; }"
      nm -D --undefined-only "$lib" | awk '{print $2}' | sed 's/@.*//' | grep -E "^cu[A-Z]" | sort -u \
          | sed 's/.*/int &(void) { return 100; }/'; } > "$stub/stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub/libcuda.so.1" "$stub/stub.c"
    echo "== with a stand-in libcuda.so.1 ($(grep -c '^int' "$stub/stub.c") functions that answer 'no GPU')"
    LD_LIBRARY_PATH=$stub "$py" -c "
from utils.cuda_libs import preload_cuda_libraries; preload_cuda_libraries()
import mxnet as mx
enabled = [f.name for f in mx.runtime.Features().values() if f.enabled and f.name in ('CUDA', 'CUDNN', 'NCCL', 'CUDA_RTC')]
print('import mxnet: ok', mx.__version__, 'with', ', '.join(enabled), '- GPUs:', mx.context.num_gpus())" 2>&1 | tail -n 1
    LD_LIBRARY_PATH=$stub "$py" utils/check_gpu.py
    echo "(exit status $?)"
    rm -rf "$stub"
fi
