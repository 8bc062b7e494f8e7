"""Reading with a trained network on any backend: the Network interface, the ONNX network, and the sentence and
word readers of raw videos. No MXNet.
"""
