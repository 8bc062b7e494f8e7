"""Other projects' weight files read without their frameworks: PyTorch's ``torch.save`` files as NumPy arrays,
through an unpickler that runs none of the file's code. No MXNet, no torch.
"""
