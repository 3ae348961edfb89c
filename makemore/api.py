"""makemore from Python (a notebook, a script): what `makemore fit` and `lr_find` set up, as three calls.

    data = CharDataModule()                     # names.txt, the lecture's split
    model = module_for(data)                    # the lecture's MLP, linked to the data as the CLI links it
    make_trainer(max_steps=200_000).fit(model, data)

The trainer is Lightning's own, so everything else is Lightning's: `trainer.log_dir`,
`trainer.checkpoint_callback.best_model_path` (the best val_loss), `trainer.test(model, data, ckpt_path=...)`.
Then `model.sample(20)`, or `load_checkpoint(path).sample(20)` for a saved run. Nothing here changes matplotlib's backend: figures are
matplotlib.figure.Figure objects, which a notebook shows inline.
"""

import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import lightning as L
from lightning.pytorch.tuner import Tuner
from matplotlib.figure import Figure

from makemore.checkpoint_io import with_atomic_checkpoints
from makemore.data import CharDataModule
from makemore.lightning_cli import claim_run_folder, silence_noise, trainer_defaults
from makemore.lr_finder import lr_find_figure, run_lr_sweep, smooth
from makemore.lr_finder import suggest_learning_rate as suggest
from makemore.module import MakemoreModule
from makemore.runlog import RunLogger


def module_for(data: CharDataModule, **kwargs: Any) -> MakemoreModule:
    """A MakemoreModule for `data`: its vocabulary, block_size, format and split filled in, as the CLI links them.

    kwargs are MakemoreModule's other arguments: `net` (a network class, or a functools.partial of one with
    its options), `learning_rate`, `optimizer`, `lr_scheduler` (a partial of a torch scheduler), ...
    """
    return MakemoreModule(
        vocab=data.vocab,
        block_size=data.hparams.block_size,
        data_format=data.hparams.format,
        split_fingerprint=data.split_fingerprint,
        **kwargs,
    )


def make_trainer(max_steps: int = 200_000, root: Union[str, Path] = ".", **kwargs: Any) -> L.Trainer:
    """Lightning's Trainer with what `makemore fit` adds: a run folder and its checkpoints.

    The run gets a new `root/lightning_logs/version_N` (claimed atomically, as the CLI does) with the
    TensorBoard logs, the best-val_loss checkpoint and `last.ckpt`, and the embedding figure at the end of
    the fit. train_loss is logged every 1,000 SGD steps unless `log_every_n_steps` says otherwise;
    `sync_batchnorm=True` works on CPU processes too, as in the CLI. Other
    kwargs go to L.Trainer (`accelerator`, `max_time`, `enable_progress_bar`, ...); `callbacks`
    given there are added to these.
    """
    silence_noise()
    kwargs = {**trainer_defaults(kwargs.pop("callbacks", [])), **kwargs}  # as the CLI's
    if kwargs.get("sync_batchnorm"):  # torch's SyncBatchNorm runs on GPUs only (docs/diagnostics.md)
        from makemore.batchnorm import cpu_sync_plugins

        kwargs["plugins"] = cpu_sync_plugins(kwargs.get("plugins"), kwargs.get("accelerator"))
    kwargs["plugins"] = with_atomic_checkpoints(kwargs.get("plugins"))  # a failed write keeps the checkpoint there
    if "logger" not in kwargs:
        kwargs["logger"] = RunLogger(str(root), version=claim_run_folder(Path(root)), fresh=True)
    return L.Trainer(max_steps=max_steps, default_root_dir=str(root), **kwargs)


def lr_find(
    model: MakemoreModule,
    data: CharDataModule,
    min_lr: float = 1e-3,
    max_lr: float = 1.0,
    num_training: int = 1000,
    **trainer_kwargs: Any,
) -> tuple[Optional[float], Optional[Figure]]:
    """Sweep the learning rate as `makemore lr_find` does; (suggested rate, the loss-vs-rate figure).

    The rate grows exponentially from min_lr to max_lr over num_training SGD steps; the suggestion is where the
    smoothed loss falls fastest (see makemore.lr_finder.suggest_learning_rate), None (and no figure) when the
    sweep is too short to tell. The model's weights are put back afterwards and its learning_rate is left as
    it is. trainer_kwargs go to the sweep's L.Trainer (`accelerator`, ...); it writes no run folder.
    """
    silence_noise()
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        # The module logs `step` for its logger; the sweep has none. The sweep's length is num_training steps.
        warnings.filterwarnings("ignore", message=r"You called `self.log\('step'.* but have no logger configured")
        quiet = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False, "max_epochs": -1}
        # default_root_dir: Lightning's finder keeps its temporary checkpoint there
        trainer = L.Trainer(default_root_dir=scratch, **{**quiet, **trainer_kwargs})
        finder, raw = run_lr_sweep(
            trainer,
            model,
            lambda: Tuner(trainer).lr_find(
                model, datamodule=data, min_lr=min_lr, max_lr=max_lr, num_training=num_training, update_attr=False
            ),
        )
    lrs, smoothed = finder.results["lr"][: len(raw)], smooth(raw)
    suggestion = suggest(lrs, smoothed)
    return suggestion, None if suggestion is None else lr_find_figure(lrs, raw, smoothed, suggestion)


def scalars(run_dir: Union[str, Path], tag: str) -> list[tuple[int, float]]:
    """(SGD step, value) of one logged scalar of a run folder (`trainer.log_dir`), as TensorBoard reads it.

    Tags: train_loss, val_loss, lr, ... (test_loss once the run's checkpoint was tested). KeyError, naming the
    tags there are, for one the run did not log.
    """
    return [(step, value) for step, value, _ in timed_scalars(run_dir, tag)]


def timed_scalars(run_dir: Union[str, Path], tag: str) -> list[tuple[int, float, float]]:
    """(SGD step, value, wall time) of one logged scalar of a run folder, as `scalars`; the wall time is the Unix
    time (seconds) at which the run logged the value (TensorBoard's event wall_time): for val_loss, the end of that
    validation."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    tags = events.Tags()["scalars"]
    if tag not in tags:
        raise KeyError(f"{run_dir} has no scalar {tag!r}; it has {', '.join(sorted(tags)) or 'none'}")
    return [(event.step, event.value, event.wall_time) for event in events.Scalars(tag)]
