"""Ctrl-C and SIGTERM during a run: a flag checked between batches, so a checkpoint is only taken
at a batch boundary; a second signal leaves at once."""
from __future__ import annotations

import logging
import signal
from pathlib import Path

log = logging.getLogger("lipnet")


class Interrupted(Exception):
    """Raised at a batch boundary after a SIGINT/SIGTERM, so that the loop saves a consistent checkpoint."""


class Abandoned(Exception):
    """A second SIGINT/SIGTERM: leave at once, without saving (the model may be mid-update)."""


def abandon(err: Abandoned, save_dir: Path) -> None:
    """Leave after a second SIGINT/SIGTERM (exit 130): the checkpoints saved before are untouched."""
    saved = [str(save_dir / name) for name in ("last", "best") if (save_dir / name).is_dir()]
    log.warning("interrupted twice (%s): stopped without saving; %s", err,
                f"{' and '.join(saved)} hold the checkpoints saved before" if saved else "no checkpoint was saved")
    raise SystemExit(130) from None


class StopFlag:
    """The SIGINT/SIGTERM handler: it only records the signal, and the loops ``check`` it between
    batches, so a checkpoint is never taken between an update and its step count or inside
    ``trainer.step``. A second signal leaves at once without saving."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def __call__(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None:
            raise Abandoned(name)
        self.signal = name
        log.warning("%s: stopping after this batch to save a checkpoint (send it again to stop at once "
                    "without saving)", name)

    def check(self) -> None:
        if self.signal is not None:
            raise Interrupted(self.signal)
