"""A Lightning callback timing the training part of `fit`, for benchmarks/train_speed.py.

It lives in its own module so the CLI can add it by class path
(`--trainer.callbacks+=step_timer.StepTimer`, with benchmarks/ on sys.path) and the benchmark can
find the very same instance in `cli.trainer.callbacks` afterwards.
"""

import time

import lightning as L
import torch


class StepTimer(L.Callback):
    """Wall (and CPU) time from the first training batch to on_train_end, and the wall time spent in validation.

    The clock starts at the first batch, not at on_train_start: what runs once before it (the untrained
    model's val loss that makemore logs at step 0, a whole pass over val) is not a cost per step;
    `start_s` holds it apart.
    """

    aligned_steps = 0  # it counts SGD steps itself (global_step): batches may carry many (makemore.lightning_features)

    def __init__(self) -> None:
        self.train_s = float("nan")
        self.train_cpu_s = float("nan")  # process CPU time, all threads (tensorboard's writer thread too)
        self.val_s = 0.0
        self.validations = 0
        self.start_s = float("nan")  # on_train_start to the first batch
        self.steps = 0
        self.threads = 0
        self._start = self._cpu_start = self._val_start = self._train_start = 0.0
        self._started = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.threads = torch.get_num_threads()
        self._train_start = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if not self._started:
            self._started = True
            self._cpu_start = time.process_time()
            self._start = time.perf_counter()
            self.start_s = self._start - self._train_start

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # the sanity check runs before on_train_start
            self.val_s += time.perf_counter() - self._val_start
            self.validations += 1

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_s = time.perf_counter() - self._start
        self.train_cpu_s = time.process_time() - self._cpu_start
        self.steps = trainer.global_step

    @property
    def us_per_step(self) -> float:
        return self.train_s / max(self.steps, 1) * 1e6

    @property
    def cpu_us_per_step(self) -> float:
        return self.train_cpu_s / max(self.steps, 1) * 1e6
