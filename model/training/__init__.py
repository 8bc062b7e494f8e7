"""Training with MXNet: the loop (``loop.train``), its tasks, distributed workers, run state,
interruption and run records. ``trainer.py`` is the public entry."""
