"""Every private name of Lightning, torch and Optuna that makemore uses (makemore/_compat.py) still exists and works.

An upgrade that removes or renames one fails here, naming the symbol, before it breaks a run.
"""

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.core.optimizer import LightningOptimizer

from makemore import _compat


def test_lr_finder_callback_class():
    """lightning.pytorch.tuner.lr_finder._LRCallback: the sign that the learning-rate finder is sweeping."""
    from lightning.pytorch.tuner import lr_finder

    assert isinstance(getattr(lr_finder, "_LRCallback", None), type), "lightning.pytorch.tuner.lr_finder._LRCallback"
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert not _compat.lr_finder_running(trainer)
    trainer.callbacks = [lr_finder._LRCallback(num_training=10, early_stop_threshold=None)]
    assert _compat.lr_finder_running(trainer)


def test_model_checkpoint_every_n_train_steps():
    """ModelCheckpoint._every_n_train_steps: checkpoint intervals the batches must end on."""
    assert hasattr(ModelCheckpoint(), "_every_n_train_steps"), "ModelCheckpoint._every_n_train_steps"
    assert _compat.every_n_train_steps(ModelCheckpoint(every_n_train_steps=15)) == 15
    assert _compat.every_n_train_steps(ModelCheckpoint()) == 0


def test_progress_bar_leave():
    """TQDMProgressBar._leave: carried over to makemore's step-counting bar."""
    assert hasattr(TQDMProgressBar(), "_leave"), "TQDMProgressBar._leave"
    assert _compat.progress_bar_leave(TQDMProgressBar(leave=True)) is True


def test_learning_rate_monitor_stats(tmp_path):
    """LearningRateMonitor._extract_stats: the values, under Lightning's names, that makemore logs at SGD steps."""
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.demos.boring_classes import BoringModel

    assert callable(getattr(LearningRateMonitor, "_extract_stats", None)), "LearningRateMonitor._extract_stats"

    class Module(BoringModel):
        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=0.25, betas=(0.5, 0.9))

    class Monitor(LearningRateMonitor):
        def on_train_batch_end(self, trainer, *args):
            self.seen = _compat.learning_rates(self, trainer, "step")

    monitor = Monitor(log_momentum=True)
    trainer = L.Trainer(
        callbacks=[monitor],
        max_steps=1,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(Module())
    assert monitor.seen == {"lr-AdamW": 0.25, "lr-AdamW-momentum": 0.5}


def test_lightning_optimizer_step_hooks():
    """LightningOptimizer._on_before_step / _on_after_step: how a manual optimizer step is counted."""
    optimizer = LightningOptimizer(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))
    for name in ("_on_before_step", "_on_after_step"):
        assert callable(getattr(optimizer, name, None)), f"LightningOptimizer.{name}"
    calls = []
    optimizer._on_before_step = lambda: calls.append("before")
    optimizer._on_after_step = lambda: calls.append("after")
    _compat.count_optimizer_step(optimizer, lambda: calls.append("step"))
    assert calls == ["before", "step", "after"]


def test_torch_foreach_default():
    """torch.optim.optimizer._default_to_fused_or_foreach: torch's own for-loop/foreach choice."""
    from torch.optim import optimizer

    assert callable(getattr(optimizer, "_default_to_fused_or_foreach", None)), (
        "torch.optim.optimizer._default_to_fused_or_foreach"
    )
    params = [torch.zeros(2, requires_grad=True)]
    assert _compat.torch_foreach_default(params, False) is False  # for-loop on the CPU


def test_summary_writer_file_writer(tmp_path):
    """SummaryWriter._get_file_writer: HParams summaries, also after the writer was closed (test after fit)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path))
    assert callable(getattr(writer, "_get_file_writer", None)), "SummaryWriter._get_file_writer"
    writer.close()
    assert _compat.summary_file_writer(writer) is not None
    writer.close()


def test_batches_that_stepped_in_a_checkpoint(tmp_path):
    """loops.fit_loop.'epoch_loop.state_dict'._batches_that_stepped: the loggers' batch count a checkpoint keeps."""
    from lightning.pytorch.demos.boring_classes import BoringModel

    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=3, logger=False, enable_progress_bar=False)
    trainer.fit(BoringModel())
    path = tmp_path / "end.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    state = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
    assert state["_batches_that_stepped"] == 3, "fit_loop 'epoch_loop.state_dict' _batches_that_stepped"
    _compat.mark_saved_after_the_batch_counted(checkpoint)
    assert state["_batches_that_stepped"] == 2


def test_tqdm_last_print_n():
    """tqdm's last_print_n: the count its rate is measured from."""
    from tqdm import tqdm

    bar = tqdm(total=100, disable=True)
    _compat.restart_rate(bar, 40)
    assert (bar.n, bar.initial, bar.last_print_n) == (40, 40, 40), "tqdm.last_print_n"


def test_help_sections_and_their_options():
    """argparse.ArgumentParser._action_groups (printed in list order) and _ArgumentGroup._group_actions."""
    import argparse

    parser = argparse.ArgumentParser(prog="x")
    group = parser.add_argument_group("second")
    group.add_argument("--block_size")
    sections = _compat.help_sections(parser)
    assert group in sections, "argparse.ArgumentParser._action_groups"
    assert [action.dest for action in _compat.section_options(group)] == ["block_size"], "_ArgumentGroup._group_actions"
    sections.sort(key=lambda section: section is not group)  # reordered in place: printed first
    assert parser.format_help().index("second:") < parser.format_help().index("options:")
