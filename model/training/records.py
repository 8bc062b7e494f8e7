"""What a run writes besides its checkpoints: train.log, metrics.csv, curves.png, TensorBoard."""
from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path

from utils.runtime.atomic import write_bytes_atomic, write_text_atomic

log = logging.getLogger("lipnet")


def setup_logging(save_dir: Path) -> None:
    """Log to the console and to ``save_dir/train.log`` (appending, so a resumed run keeps one log)."""
    save_dir.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    for handler in list(log.handlers):
        if isinstance(handler, logging.FileHandler):
            log.removeHandler(handler)
            handler.close()
    handler = logging.FileHandler(save_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)


def write_metrics_csv(path: Path, history: list[dict]) -> None:
    if not history:
        return
    buffer = io.StringIO()
    # Columns of every row, in order of appearance: a run resumed after an update may have gained some.
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in history for k in row)))
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(path, buffer.getvalue())


def plot_curves(path: Path, history: list[dict],
                curves: Sequence[tuple[str, str]] = (("val_cer", "CER"), ("val_wer", "WER"))) -> None:
    """A PNG of the losses and of the validation error rates ``curves`` ((key, label) pairs) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for key, label in curves:
        ax_err.plot(epochs, [h[key] for h in history], label=label)
    ax_err.set(xlabel="epoch", ylabel="error rate", title="validation error rates", ylim=(0, None))
    ax_err.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


class TensorBoard:
    """Scalars to TensorBoard event files via tensorboardX (no TensorFlow needed)."""

    def __init__(self, logdir: Path) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir=str(logdir))

    def scalars(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
