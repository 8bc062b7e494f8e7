"""MXNet, set up once: every module that uses it imports it from here (``from model.backend import mx``).

Two things must be in place before ``libmxnet.so`` loads: OpenMP's thread count (MXNet reads
``OMP_NUM_THREADS`` as it loads; unset, a 2-core CPU trains about 1.8x slower) and, on the CUDA build,
the NVIDIA libraries pip installed, which the wheel does not bundle (``utils.runtime.cuda_libs``).
"""
from utils.runtime.cuda_libs import preload_cuda_libraries
from utils.runtime.threads import default_omp_threads

default_omp_threads()
preload_cuda_libraries()

import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402
from mxnet.base import MXNetError  # noqa: E402
from mxnet.gluon import nn, rnn  # noqa: E402

__all__ = ["MXNetError", "autograd", "gluon", "mx", "nn", "rnn"]
