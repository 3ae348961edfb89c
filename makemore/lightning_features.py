"""What each of Lightning's callbacks and Trainer options means in makemore, where a batch carries many SGD steps.

One table, read three ways: `refuse_unsupported` stops a fit that uses what cannot work per SGD step (one line,
before training), `batch_readers` names what makes a fit take one SGD step per Lightning batch, and
`markdown()` is the table in docs/performance.md ("What a user gives up"; tests/test_lightning_features.py
checks that the docs, this table and the installed Lightning agree). Beside it, TRAINER_RANGES: the options whose
range Lightning checks only when it first uses them, checked by `check_trainer_options` before any work.

The verdicts:
- per SGD step: it counts SGD steps (Lightning counts each as an optimizer step; batches end on its lengths, or
  makemore does the counting itself: see makemore.steps).
- one step a batch: it acts on every Lightning batch, so a fit with it takes one SGD step per batch: it sees every
  step as its documentation says, and training pays Lightning's per-batch work at every step (slower for the
  small models; see docs/performance.md).
- its hooks decide: a callback of one's own is "one step a batch" when it (or the LightningModule) overrides
  on_train_batch_start or on_train_batch_end, else unchanged; one that counts SGD steps itself says so with an
  `aligned_steps` attribute (see `callback_verdict`).
- unchanged: it acts on evaluation, epochs or the whole run, as documented.
- refused: one line naming it and what to use instead.
"""

import inspect
from typing import Any, Callable, Optional

import lightning as L
from lightning.pytorch import callbacks as lightning_callbacks
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.profilers import PassThroughProfiler
from lightning.pytorch.utilities.model_helpers import is_overridden

from makemore.errors import ConfigError

STEP = "per SGD step"
BATCH = "one step a batch"
HOOKS = "its hooks decide"
SAME = "unchanged"
REFUSED = "refused"

BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")
# Lightning's callbacks that makemore.steps.step_callbacks replaces by its own, which count SGD steps
REPLACED = ("TQDMProgressBar", "LearningRateMonitor")
_EPOCHS = "acts at epoch ends (an epoch is data.val_every_n_steps SGD steps)"

# Lightning's callbacks (lightning.pytorch.callbacks.__all__), by class name; a subclass takes its first listed base's.
CALLBACKS: dict[str, tuple[str, str]] = {
    "BackboneFinetuning": (SAME, _EPOCHS),
    "BaseFinetuning": (SAME, _EPOCHS),
    "BasePredictionWriter": (SAME, "makemore has no predict subcommand (`makemore sample` draws text)"),
    "BatchSizeFinder": (
        REFUSED,
        "it scales a DataLoader's batch size by trial fits; set data.batch_size (`makemore search` can tune it)",
    ),
    "Callback": (HOOKS, "a callback of one's own"),
    "Checkpoint": (HOOKS, "a checkpoint callback of one's own"),
    "DeviceStatsMonitor": (BATCH, "logs device statistics at every batch"),
    "EarlyStopping": (SAME, "acts on validation, whose interval counts SGD steps"),
    "EMAWeightAveraging": (
        STEP,
        "updates the average after every SGD step (makemore calls its batch-end hook after each); validates,"
        " checkpoints and samples the averaged weights",
    ),
    "GradientAccumulationScheduler": (
        REFUSED,
        "it works through automatic optimisation only; set data.accumulate_grad_batches (mini-batches per SGD step)",
    ),
    "LambdaCallback": (HOOKS, "its functions' hooks decide"),
    "LearningRateFinder": (
        SAME,
        "sweeps one SGD step per batch before training; makemore.lr_finder.FindLearningRate adds makemore's"
        " suggestion and plot",
    ),
    "LearningRateMonitor": (
        STEP,
        "replaced by makemore.steps.StepLearningRateMonitor: the same values and names, read every log_every_n_steps"
        " SGD steps and at epoch starts; a subclass of one's own reads them at every batch (its hooks decide)",
    ),
    "ModelCheckpoint": (STEP, "every_n_train_steps counts SGD steps (batches end on its multiples)"),
    "ModelPruning": (SAME, _EPOCHS),
    "ModelSummary": (SAME, "prints the network once"),
    "OnExceptionCheckpoint": (
        BATCH,
        "its checkpoint must fall between batches, which the data loader resumes from exactly",
    ),
    "ProgressBar": (HOOKS, "a progress bar of one's own counts batches"),
    "RichModelSummary": (SAME, "prints the network once"),
    "RichProgressBar": (BATCH, "counts batches; the default bar counts SGD steps at full speed"),
    "SpikeDetection": (BATCH, "reads the loss of every batch"),
    "StochasticWeightAveraging": (
        REFUSED,
        "it averages once per epoch and swaps the schedule at epoch starts; use"
        " makemore.callbacks.SWAWeightAveraging (an equal average after every SGD step) or EMAWeightAveraging",
    ),
    "ThroughputMonitor": (BATCH, "measures every batch"),
    "Timer": (
        STEP,
        "trainer.max_time adds it; makemore stops between two SGD steps when its time is up (under DDP: one step a"
        " batch, where the processes agree on the time)",
    ),
    "TQDMProgressBar": (
        STEP,
        "the default bar is replaced by makemore.steps.StepProgressBar, which counts SGD steps; a subclass of"
        " one's own counts batches (its hooks decide)",
    ),
    "WeightAveraging": (STEP, "as EMAWeightAveraging, with the averaging function given"),
}

# Lightning's Trainer options (the arguments of lightning.Trainer).
TRAINER_OPTIONS: dict[str, tuple[str, str]] = {
    "accelerator": (SAME, ""),
    "strategy": (SAME, "with DDP each process draws its own mini-batch for every SGD step"),
    "devices": (SAME, ""),
    "num_nodes": (SAME, ""),
    "precision": (SAME, "mixed precision goes through Lightning's manual_backward and optimizer step"),
    "logger": (SAME, "the x-axis of every logged value is the SGD step"),
    "callbacks": (SAME, "see the callbacks above"),
    "fast_dev_run": (STEP, "n SGD steps"),
    "max_epochs": (STEP, "epochs of data.val_every_n_steps SGD steps"),
    "min_epochs": (STEP, "epochs of data.val_every_n_steps SGD steps"),
    "max_steps": (STEP, "SGD steps (batches end on it)"),
    "min_steps": (STEP, "SGD steps"),
    "max_time": (STEP, "adds Timer; checked between two SGD steps"),
    "limit_train_batches": (
        REFUSED,
        "it counts Lightning batches, which here hold many SGD steps; set trainer.max_steps or data.val_every_n_steps",
    ),
    "limit_val_batches": (
        SAME,
        "evaluation batches of data.eval_batch_size examples; fit validates the whole split or none (0), validate a"
        " share",
    ),
    "limit_test_batches": (SAME, "evaluation batches of data.eval_batch_size examples"),
    "limit_predict_batches": (SAME, "makemore has no predict subcommand"),
    "overfit_batches": (STEP, "an int counts mini-batches of data.batch_size, trained on at every step"),
    "val_check_interval": (
        REFUSED,
        "it counts Lightning batches, which here hold many SGD steps; set data.val_every_n_steps (SGD steps between"
        " validations)",
    ),
    "check_val_every_n_epoch": (SAME, "epochs of data.val_every_n_steps SGD steps"),
    "num_sanity_val_steps": (SAME, "evaluation batches"),
    "log_every_n_steps": (
        STEP,
        "SGD steps between makemore's train_loss logs (the mean of the steps since the last); a Lightning callback"
        " that logs at every step counts batches",
    ),
    "enable_checkpointing": (SAME, ""),
    "enable_progress_bar": (SAME, ""),
    "enable_model_summary": (SAME, ""),
    "accumulate_grad_batches": (
        REFUSED,
        "Lightning applies it in automatic optimisation only; set data.accumulate_grad_batches (mini-batches per SGD"
        " step)",
    ),
    "gradient_clip_val": (
        REFUSED,
        "Lightning applies it in automatic optimisation only; set model.gradient_clip_val (clips every SGD step)",
    ),
    "gradient_clip_algorithm": (REFUSED, "set model.gradient_clip_algorithm, with model.gradient_clip_val"),
    "deterministic": (SAME, ""),
    "benchmark": (SAME, ""),
    "inference_mode": (SAME, ""),
    "use_distributed_sampler": (SAME, "makemore's loaders give each process its share themselves"),
    "profiler": (BATCH, "it times Lightning's batch hooks"),
    "detect_anomaly": (SAME, "checks every backward"),
    "barebones": (SAME, ""),
    "plugins": (SAME, ""),
    "sync_batchnorm": (SAME, ""),
    "reload_dataloaders_every_n_epochs": (
        REFUSED,
        "each SGD step's mini-batch is drawn from the step number, and a reloaded loader would draw the first"
        " epoch's again; there is nothing to reload",
    ),
    "default_root_dir": (SAME, ""),
    "enable_autolog_hparams": (SAME, ""),
    "model_registry": (SAME, ""),
}


def callback_verdict(callback: L.Callback) -> tuple[str, str]:
    """(verdict, why) for a callback: that of its first Lightning class listed. makemore's own, and any callback with
    an `aligned_steps` attribute (the SGD-step interval it acts at, which batches then end on; 0 for none), count SGD
    steps themselves, unless they are a Lightning callback that acts on every batch."""
    verdict, why = HOOKS, "a callback of one's own"
    for klass in type(callback).__mro__:
        if getattr(lightning_callbacks, klass.__name__, None) is not klass or klass.__name__ not in CALLBACKS:
            continue
        # only the stock bar and learning-rate monitor are replaced by makemore's: a subclass is decided by its hooks
        if CALLBACKS[klass.__name__][0] != HOOKS and (klass.__name__ not in REPLACED or type(callback) is klass):
            verdict, why = CALLBACKS[klass.__name__]
        break
    own = type(callback).__module__.split(".")[0] == "makemore" or hasattr(callback, "aligned_steps")
    if own and verdict not in (BATCH, REFUSED):
        return STEP, "makemore's own, or one that says with `aligned_steps` that it counts SGD steps"
    return verdict, why


def refuse_unsupported(trainer: L.Trainer) -> None:
    """Stop a fit, before training, that uses a callback or Trainer option that cannot work per SGD step."""
    for callback in trainer.callbacks:
        verdict, why = callback_verdict(callback)
        if verdict == REFUSED:
            raise ConfigError(f"{type(callback).__name__} cannot work per SGD step in makemore: {why}")
    refuse_trainer_options(
        {
            "reload_dataloaders_every_n_epochs": trainer.reload_dataloaders_every_n_epochs,
            "val_check_interval": trainer.val_check_interval,
            # overfit_batches sets limit_train_batches itself (to its own value)
            "limit_train_batches": 1.0 if trainer.overfit_batches else trainer.limit_train_batches,
            "accumulate_grad_batches": trainer.accumulate_grad_batches,
            "gradient_clip_val": trainer.gradient_clip_val,
            "gradient_clip_algorithm": trainer.gradient_clip_algorithm,
        }
    )


# A refused Trainer option's value that changes nothing (Lightning's default, or what means "none").
NEUTRAL = {
    "reload_dataloaders_every_n_epochs": (0,),
    "val_check_interval": (None, 1.0),
    "limit_train_batches": (None, 1.0),
    "accumulate_grad_batches": (1,),
    "gradient_clip_val": (None, 0, 0.0),
    "gradient_clip_algorithm": (None, "norm"),
}


def refuse_trainer_options(options: dict[str, Any]) -> None:
    """Refuse, in one line naming what to set instead, a refused Trainer option (TRAINER_OPTIONS) given a value
    other than its neutral one: `options` are a command's trainer settings, or a trainer's values."""
    for name, neutral in NEUTRAL.items():
        value = options.get(name, neutral[0])
        if value not in neutral and not (isinstance(value, str) and value.lower() in neutral):
            raise ConfigError(
                f"trainer.{name} {value} cannot work per SGD step in makemore: {TRAINER_OPTIONS[name][1]}"
            )


def _steps(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


# Trainer options whose range Lightning does not check when the trainer is built (a value outside it fails at the
# first step or validation): (does a number fit, what fits). Only numbers are checked: null and a wall-clock
# val_check_interval pass.
TRAINER_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "log_every_n_steps": (_steps, "an integer of at least 1 (SGD steps)"),
    "check_val_every_n_epoch": (_steps, "an integer of at least 1, or null"),
}


def check_trainer_options(options: dict[str, Any]) -> None:
    """Refuse a Trainer option outside its range (TRAINER_RANGES), or one makemore refuses (`refuse_trainer_options`),
    before the trainer is built: `options` are the trainer settings of a command (its `trainer` section)."""
    refuse_trainer_options(options)
    for name, (fits, kind) in TRAINER_RANGES.items():
        value = options.get(name)
        if isinstance(value, (int, float)) and not fits(value):
            raise ConfigError(f"trainer.{name} must be {kind}, got {value}")


def target_device(accelerator: Any) -> str:
    """The kind of device a fit would run on ("cpu", "cuda", "mps") for trainer.accelerator, as Lightning picks it
    ("auto": a GPU when torch sees one, then Apple's, else the CPU)."""
    import torch

    name = str(accelerator or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    return "cuda" if name == "gpu" else name


def process_count(devices: Any, num_nodes: Any, device: str) -> Optional[int]:
    """How many processes trainer.devices and trainer.num_nodes start on `device`, where it can be told before the
    trainer exists (None: it cannot, e.g. devices "auto" on GPUs)."""
    import torch

    nodes = num_nodes if isinstance(num_nodes, int) else 1
    if isinstance(devices, (list, tuple)):
        return len(devices) * nodes
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    if devices in (None, "auto") and device != "cuda":
        return nodes  # one CPU process (or Apple's one GPU) per node
    if devices in (None, "auto", -1, "-1") and device == "cuda":
        return torch.cuda.device_count() * nodes
    return None


def check_device_settings(options: dict[str, Any]) -> None:
    """Refuse, before any work, a setting that cannot work on the device the fit would run on: float16 mixed
    precision on a CPU (Lightning would train in bfloat16 while the run records 16-mixed), float64 on Apple's GPU
    (MPS has no float64), sync_batchnorm with one process (there is nothing to synchronise)."""
    device = target_device(options.get("accelerator"))
    precision = str(options.get("precision") or "32-true")
    if precision in ("16", "16-mixed", "16-true") and device == "cpu":
        raise ConfigError(
            f"trainer.precision {precision}: float16 needs a GPU, and this fit runs on the CPU; use bf16-mixed"
            " (or 32-true)"
        )
    if precision in ("64", "64-true", "double") and device == "mps":
        raise ConfigError(f"trainer.precision {precision}: Apple's GPU (mps) has no float64; use 32-true")
    if options.get("sync_batchnorm"):
        processes = process_count(options.get("devices"), options.get("num_nodes"), device)
        if processes == 1:
            raise ConfigError(
                "trainer.sync_batchnorm true: this fit runs in one process, with nothing to synchronise; it is for"
                " DDP with several devices (trainer.devices)"
            )


def batch_readers(trainer: L.Trainer, module: L.LightningModule) -> list[str]:
    """What in this fit acts on every Lightning batch (so that the fit must take one SGD step per batch)."""
    found = []
    for callback in trainer.callbacks:
        verdict, _ = callback_verdict(callback)
        if verdict == BATCH or (
            verdict == HOOKS and any(is_overridden(hook, callback, L.Callback) for hook in BATCH_HOOKS)
        ):
            found.append(type(callback).__name__)
    found += [
        f"{type(module).__name__}.{hook}" for hook in BATCH_HOOKS if is_overridden(hook, module, L.LightningModule)
    ]
    if not isinstance(trainer.profiler, PassThroughProfiler):
        found.append("trainer.profiler")
    if trainer.world_size > 1:  # its processes agree on the time at batch ends only (MakemoreModule.on_train_start)
        found += [type(callback).__name__ for callback in trainer.callbacks if isinstance(callback, Timer)]
    return found


def _rows(table: dict[str, tuple[str, str]], name: str) -> list[str]:
    return [f"| {name.format(key)} | {verdict} | {why} |" for key, (verdict, why) in table.items()]


def markdown() -> str:
    """The tables of docs/performance.md: every Lightning callback and Trainer option, and what it means here."""
    return "\n".join(
        [
            "| Lightning callback | here | why |",
            "|---|---|---|",
            *_rows(CALLBACKS, "`{}`"),
            "",
            "| Trainer option | here | note |",
            "|---|---|---|",
            *_rows(TRAINER_OPTIONS, "`trainer.{}`"),
        ]
    )


def unlisted() -> Optional[str]:
    """Lightning callbacks and Trainer options of the installed release that the tables do not list (None: none)."""
    options = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    missing = sorted(set(lightning_callbacks.__all__) - CALLBACKS.keys()) + sorted(options - TRAINER_OPTIONS.keys())
    return ", ".join(missing) or None
