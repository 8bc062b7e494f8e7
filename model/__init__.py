"""Everything MXNet: the networks (``lipnet``, ``word_net``), their checkpoints and ONNX export, reading
with them (``mxnet_network``, ``word_classifier``, ``loading``), devices, and training (``training/``).
MXNet itself is imported through ``model.backend``, which sets it up first; importing this package
imports nothing, so ``model.loading`` can hand an ONNX file to onnxruntime without MXNet."""
