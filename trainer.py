"""Training across MXNet contexts, with validation, logging and exact resume: LipNet with CTC
(``task=sentences``) or the word classifier with cross-entropy and mixup (``task=words``).

``train(args)`` does a whole run (``main.py`` owns the command line). The work is in ``model/training/``:
the loop (``loop.py``), the two tasks (``sentence_task.py``, ``word_task.py``), distributed workers
(``distributed.py``), run state and resume (``state.py``), interruption (``interruption.py``), the
optimiser (``optimiser.py``) and the run's records (``records.py``).
"""
from model.training.loop import train

__all__ = ["train"]
