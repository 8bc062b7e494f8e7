"""Runtime set-up shared by every script: command lines, paths, atomic writes, CPU threads, CUDA libraries, the
GPU preflight, a run's recorded settings. No MXNet.
"""
