"""Text: the GRID sentence model, CTC decoders and error rates; plain Python/NumPy, no MXNet."""
