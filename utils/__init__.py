"""Plain-Python helpers: GRID text, splits, metrics, decoding, video and storage (no MXNet)."""
