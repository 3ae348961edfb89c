"""The TensorBoard logger of a makemore run: the curves that matter, and the real hyperparameters as HParams."""

import os
import shutil
from argparse import Namespace
from pathlib import Path
from typing import Any, Optional, Union

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from makemore import _compat
from makemore.checkpoint import flatten

# Saved with the run (hparams.yaml) but not hyperparameters to compare runs by in TensorBoard's HParams tab.
NOT_COMPARED = frozenset(
    {
        "vocab",
        "split_fingerprint",
        "path",
        "num_samples",
        "max_sample_length",
        "passage_length",
        "max_steps_per_batch",
        "eval_batch_size",
        "storage",
        "hand_backward",
    }
)
# The metrics of the HParams tab: TensorBoard shows each run's latest value of these scalars.
METRICS = ("val_loss", "test_loss")
SPLITS = ("train", "val", "test")
LAYOUT = {
    "makemore": {
        "loss: train and val (nats per character)": ["Multiline", ["train_loss", "val_loss"]],
        "learning rate": ["Multiline", ["lr"]],
    }
}


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger without the `epoch` scalar Lightning adds to every write (dots at each
    logging step, above the loss curves), with train, val and test loss on one chart (`loss`, in the sub-runs
    train/, val/ and test/ of the run folder; and in the Custom Scalars tab), and with HParams that compare
    runs by val_loss and test_loss.

    Args:
        save_dir: the run root (trainer.default_root_dir).
        version: the run's version number (version_N), or None for the next free one.
        name: the folder of runs under save_dir.
        fresh: the run folder was made for this run: if the run fails before it logs a training step (a bad
            option found at setup), the folder is removed, so that a failed start leaves no empty version_N.
    """

    def __init__(
        self, save_dir: str, version: Optional[int] = None, name: str = "lightning_logs", fresh: bool = False
    ) -> None:
        super().__init__(save_dir, name=name, version=version, default_hp_metric=False)
        self._layout_written = False
        self._split_writers: dict[str, SummaryWriter] = {}
        self._fresh, self._trained = fresh, False

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        if not self._layout_written:  # the Custom Scalars tab: train and val loss on one chart, lr beside
            self.experiment.add_custom_scalars(LAYOUT)
            self._layout_written = True
        self._trained = self._trained or "train_loss" in metrics
        super().log_metrics({key: value for key, value in metrics.items() if key != "epoch"}, step)
        # The same losses as one tag, `loss`, in a sub-run per split: TensorBoard's default view (Time Series)
        # then draws train, val and test loss on one chart, near the top (sections are alphabetical).
        for split in SPLITS:
            if f"{split}_loss" in metrics:
                if split not in self._split_writers:
                    self._split_writers[split] = SummaryWriter(os.path.join(self.log_dir, split))
                value = metrics[f"{split}_loss"]
                self._split_writers[split].add_scalar("loss", float(value), step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        for writer in self._split_writers.values():
            writer.close()
        self._split_writers = {}
        if status == "failed":
            self.remove_if_untrained()

    @rank_zero_only
    def remove_if_untrained(self) -> None:
        """Remove the run folder of a fresh run that has logged no training step and written no checkpoint."""
        folder = Path(self.log_dir)
        if self._fresh and not self._trained and not any(folder.glob("checkpoints/*.ckpt")):
            self.experiment.close()  # its event file's handle (a writer made now is closed at once)
            shutil.rmtree(folder, ignore_errors=True)

    @rank_zero_only
    def log_hyperparams(self, params: Union[dict[str, Any], Namespace], metrics: Any = None, step: Any = None) -> None:
        params = vars(params) if isinstance(params, Namespace) else dict(params)
        self.hparams.update(params)  # all of them in hparams.yaml
        shown = {
            key.replace(".init_args", ""): value if isinstance(value, (int, float, str, bool)) else str(value)
            for key, value in flatten(params, "").items()
            if not NOT_COMPARED & set(key.split("."))
        }
        for summary in hparams_summaries(shown, dict.fromkeys(METRICS, 0.0)):  # metric names only, no values
            _compat.summary_file_writer(self.experiment).add_summary(summary)
