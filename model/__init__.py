"""The LipNet network, its checkpoints, its ONNX export and its reading network (model.mxnet_network): the only MXNet
code besides training (trainer.py, data_loader.py)."""
from utils.runtime.cuda_libs import preload_cuda_libraries
from utils.runtime.threads import default_omp_threads

default_omp_threads()  # must precede the first MXNet import
preload_cuda_libraries()  # the CUDA build's pip-installed CUDA libraries, likewise

from model.checkpoint import LoadedLipNet, load_lipnet, read_meta, save_checkpoint  # noqa: E402
from model.lipnet import VARIANTS, LipNet, LipNetConfig, prepare_for_inference  # noqa: E402

__all__ = ["VARIANTS", "LipNet", "LipNetConfig", "LoadedLipNet", "load_lipnet", "read_meta", "save_checkpoint",
           "prepare_for_inference"]
