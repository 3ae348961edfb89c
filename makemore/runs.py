"""Runs of `python -m makemore` from a script, and their run folders read back: what scripts/experiments.py and
scripts/leaderboard.py share, and the ladder's list of configs (the leaderboard's, the benchmarks' and the tests').

    runner = Runner(cwd=Path("."))
    result = runner.fit_and_test(config_path("mlp"), root=Path("lightning_logs/experiments"))
    result["train"], result["val"], result["test"], result["best_checkpoint"]

Every number is read back from what the commands left: the TensorBoard events (`makemore.api.scalars`), the best
checkpoint (`makemore.checkpoint.named_checkpoint`) and the data module its checkpoint was trained on. A command or
run that went wrong raises RunError, naming the run and the log to read.
"""

import hashlib
import inspect
import math
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from makemore.api import scalars, timed_scalars
from makemore.checkpoint import named_checkpoint, read_checkpoint
from makemore.data import CharDataModule
from makemore.errors import MakemoreError
from makemore.models import batches_nll

PACKAGE = Path(__file__).resolve().parent
CONFIGS = PACKAGE / "configs"

# The names ladder, in its order: config name -> (anchor val loss or None, its source). The bigram's anchor is
# computed (CLOSED_FORM).
LADDER = {
    "bigram": (None, "the counting bigram with +1 smoothing on the same train split, in closed form"),
    "mlp": (2.17, "lecture part 2, val"),
    "mlp_batchnorm": (2.105, "lecture part 3, final log, val"),
    "wavenet": (1.993, "lecture part 5, val"),
    "rnn": (None, "none published"),
    "gru": (None, "none published"),
    "lstm": (None, "none published"),
    "bow": (None, "none published"),
    "transformer": (1.92, "makemore.py's README: test loss on its own 1,000-word test set, from 10 batches"),
    "transformer_long": (1.92, "as transformer; this config needs a GPU for the 20-minute budget"),
    "transformer_ensemble": (1.90, "the ladder's goal for its best model, below every names.txt number we know of"),
    "transformer_distilled": (1.90, "the goal for one network (one set of weights, one forward pass per prediction)"),
}
# Models that learn from a trained model's predictions (model.teacher, makemore.distillation): name -> its teacher,
# a model of the ladder.
TEACHERS = {"transformer_distilled": "transformer_ensemble"}
# The text ladder, tiny shakespeare (data.format text): config name -> (anchor val loss or None, its source). The
# bigram's anchor is computed, the GPTs' are nanoGPT's numbers for the same recipes.
TEXT = {
    "shakespeare/bigram": (
        None,
        "the counting bigram with +1 smoothing on the same train split, in closed form, scored by the same metric",
    ),
    "shakespeare/lstm": (None, "none published (char-rnn's model and defaults)"),
    "shakespeare/gpt_cpu": (
        1.7357,
        "nanoGPT's README CPU recipe through its own train.py here, val 1.8857, less the 0.15 margin asked for at"
        " equal time (docs/text.md, benchmarks/vs_nanogpt.py)",
    ),
    "shakespeare/gpt": (1.4697, "nanoGPT's README, GPU"),
}
CLOSED_FORM = ("bigram", "shakespeare/bigram")  # anchors computed in closed form: val within 0.01 of them
RELATIVE_TOLERANCE, ABSOLUTE_TOLERANCE = 1e-4, 1e-5  # a val loss recomputed here against the one the run logged
LOG_TAIL_LINES = 30  # of a failed command's log, in its RunError


class RunError(MakemoreError):
    """A command of a run failed, or its run folder is not what the command should have left."""


def load_yaml(path: Union[str, Path]) -> dict:
    """A config file's settings ({} for an empty file)."""
    import yaml  # a dependency of jsonargparse

    return yaml.safe_load(Path(path).read_text()) or {}


def config_path(name: str, configs: Path = CONFIGS) -> Path:
    """A config by name (configs/NAME.yaml, NAME may hold a subfolder: shakespeare/gpt_cpu) or by path.

    Args:
        name: the config's name under `configs`, without .yaml, or the path of a YAML file.
        configs: the folder of named configs (the package's own by default; the checkout's link configs/ alike).
    """
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path.absolute()
    path = configs / f"{name}.yaml"
    if not path.exists():
        raise RunError(f"no config {name!r} (looked for {path})")
    return path


def run_name(config: Path, configs: Path = CONFIGS) -> str:
    """A run's name: its config's path under `configs` without .yaml (mlp, shakespeare/bigram), so that configs of the
    same file name in different folders get different run folders; a config elsewhere: its file name."""
    config = Path(config).resolve()
    if config.is_relative_to(configs.resolve()):  # configs/ may be a link to makemore/configs
        return config.relative_to(configs.resolve()).with_suffix("").as_posix()
    return config.stem


def shown(path: Union[str, Path], root: Path) -> str:
    """A path for a results file: relative to `root` (a checkout: the file is committed) when inside it, else
    absolute; links are kept (configs/, a link to makemore/configs, stays configs/)."""
    path = Path(path).absolute()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def minutes(seconds: float) -> str:
    """A wall time as m:ss."""
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def package_version() -> dict:
    """The makemore code a run uses: its checkout's commit (None outside one) and a hash of makemore/*.py as they are
    now (installed editable, an edit between runs changes what the next run executes)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(str(path.relative_to(PACKAGE.parent)).encode() + b"\0" + path.read_bytes())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PACKAGE, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"commit": commit, "makemore_sha256": digest.hexdigest()[:16]}


def versions(root: Path) -> set[Path]:
    """The run folders root/lightning_logs/version_N there are now."""
    return set((root / "lightning_logs").glob("version_*"))


def new_version(root: Path, before: set[Path]) -> Path:
    """The version_N folder the last command created under root (runs never reuse one)."""
    created = versions(root) - before
    if len(created) != 1:
        raise RunError(f"expected one new version folder under {root / 'lightning_logs'}, found {sorted(created)}")
    return created.pop()


def shortened(config: dict, max_steps: int) -> list[str]:
    """CLI overrides for a smoke run of `config` (its settings): max_steps, and validation at the config's rate."""
    full = config.get("trainer", {}).get("max_steps") or max_steps
    per_epoch = config.get("data", {}).get("val_every_n_steps") or full
    every = max(1, round(per_epoch * max_steps / full))
    return ["--trainer.max_steps", str(max_steps), "--data.val_every_n_steps", str(every)]


def logged(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(SGD step, value) of a scalar the run logged; RunError where it logged none."""
    try:
        return scalars(run_dir, tag)
    except KeyError as error:
        raise RunError(error.args[0]) from None


@dataclass(frozen=True)
class TimeToTarget:
    """How long a run took to validate at or below a target loss, read from its run folder (`time_to_target`).

    Attributes:
        target: the loss aimed at (nats per character, the run's exact val_loss).
        reached: whether a validation was at or below it.
        step: the SGD step of the first validation at or below the target; None where none was.
        loss: that validation's val_loss; None where none was.
        seconds: from `start` to the end of that validation; None where none was.
        best: the lowest val_loss the run logged (the target not reached: how close it came).
        last_seconds: from `start` to the end of the run's last validation.
        curve: every validation, (SGD step, val_loss, seconds from `start`), in order.
    """

    target: float
    reached: bool
    step: Optional[int]
    loss: Optional[float]
    seconds: Optional[float]
    best: float
    last_seconds: float
    curve: list[tuple[int, float, float]]


def time_to_target(run_dir: Union[str, Path], target: float, start: float, tag: str = "val_loss") -> TimeToTarget:
    """The first validation of a run at or below `target`, and the seconds from `start` to its end (each value's
    TensorBoard wall_time, logged when the validation ended); the validations' own time counts. RunError where the
    run logged no `tag`.

    Args:
        run_dir: the run folder (lightning_logs/version_N).
        target: the loss to reach.
        start: the Unix time (time.time()) to count from: the run's process start, taken just before spawning it.
        tag: the scalar: val_loss, makemore's exact loss over the whole val split.
    """
    try:
        points = timed_scalars(run_dir, tag)
    except KeyError as error:
        raise RunError(error.args[0]) from None
    curve = [(step, value, wall_time - start) for step, value, wall_time in points]
    first = next(((step, value, seconds) for step, value, seconds in curve if value <= target), None)
    step, loss, seconds = first if first else (None, None, None)
    return TimeToTarget(
        target=target,
        reached=first is not None,
        step=step,
        loss=loss,
        seconds=seconds,
        best=min(value for _, value, _ in curve),
        last_seconds=curve[-1][2],
        curve=curve,
    )


def datamodule_for(checkpoint: dict, cwd: Path = Path(".")) -> CharDataModule:
    """The CharDataModule with the options the checkpoint was trained with, set up.

    Args:
        checkpoint: the checkpoint's contents (`makemore.checkpoint.read_checkpoint`).
        cwd: the folder the run was started in: a relative data.path is read from there.
    """
    options = checkpoint["datamodule_hyper_parameters"]
    accepted = inspect.signature(CharDataModule).parameters
    options = {key: value for key, value in options.items() if key in accepted}  # the CLI adds _instantiator
    if options.get("path") and not Path(options["path"]).is_absolute():
        options["path"] = str(Path(cwd) / options["path"])
    data = CharDataModule(**options)
    data.setup("fit")
    return data


def split_loss(net: nn.Module, data: CharDataModule, split: str) -> float:
    """The mean negative log-likelihood, in nats, of a split as validation computes it, over the evaluation batches
    its data format makes (MakemoreModule._scored): a word list's examples, or a text's windows (EvalWindows), where
    each character is scored once from the characters before it in its window of block_size and a sequence network
    reads each window once (no N x block_size tensor, no forward per character)."""
    return batches_nll(net, data.whole_split(split), data.hparams.block_size)


def evaluate(best: Path, data: Optional[CharDataModule] = None, cwd: Path = Path(".")) -> dict[str, Any]:
    """Parameters, shape and the full-split train (and, as a check, val) loss of a checkpoint.

    Scored as validation scores its data format (split_loss), on the GPU if there is one (as its fit ran:
    accelerator auto).

    Args:
        best: the checkpoint.
        data: its data module (`datamodule_for`), if already built.
        cwd: the folder the run was started in (see `datamodule_for`).
    """
    from makemore.module import load_checkpoint

    checkpoint = read_checkpoint(str(best))
    module = load_checkpoint(str(best)).eval()
    data = datamodule_for(checkpoint, cwd) if data is None else data
    hp = module.hparams
    net = module.net.to("cuda" if torch.cuda.is_available() else "cpu")
    train, val = split_loss(net, data, "train"), split_loss(net, data, "val")
    module.cpu()
    return {
        "module": module,
        "block_size": hp.block_size,
        "n_embd": hp.net["init_args"].get("n_embd"),
        "n_hidden": hp.net["init_args"].get("n_hidden"),
        "params": sum(p.numel() for p in module.parameters()),
        "best_step": checkpoint["global_step"],
        "train": train,
        "val_recomputed": val,
        "train_examples": len(data.examples["train"]),
    }


class Runner:
    """Runs `python -m makemore` in subprocesses from one folder, as a user types it, and records the makemore code
    each command ran (`code_used`: label -> package_version() when it started)."""

    def __init__(self, cwd: Path) -> None:
        """
        Args:
            cwd: the folder the commands run in (a checkout's root: its configs' relative paths are read from there);
                results name paths relative to it.
        """
        self.cwd = Path(cwd).absolute()
        self.code_used: dict[str, dict] = {}

    def makemore(self, args: list[str], log: Path, label: str) -> float:
        """Run `python -m makemore ARGS`, output to `log`; its wall time in seconds. RunError with the end of the log
        where it fails."""
        self.code_used[label] = package_version()
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "makemore", *args]
        print(f"$ {shlex.join(['python', '-m', 'makemore', *args])}  (output: {log})", flush=True)
        start = time.perf_counter()
        with log.open("w") as out:
            out.write(f"$ {shlex.join(command)}\n")
            out.flush()
            code = subprocess.run(command, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - start
        if code != 0:
            tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-LOG_TAIL_LINES:]
            raise RunError(f"the command failed (exit {code}); the end of {log}:\n" + "\n".join(tail))
        return seconds

    def fit_and_test(
        self, config: Path, root: Path, max_steps: Optional[int] = None, extra: Optional[list[str]] = None
    ) -> dict[str, Any]:
        """Fit `config`, test its best checkpoint (when its split has a test share: a text's may not) and read the
        numbers back; test is None where there is no test split. Keys starting with _ hold tensors, not results.

        Args:
            config: the config file.
            root: the runs' folder: this one goes under root/NAME (`run_name`).
            max_steps: shorten the run to this many SGD steps (`shortened`); None: the config's.
            extra: more CLI options for both fit and test.
        """
        extra = extra or []
        name = run_name(config)
        root = (root / name).resolve()
        settings = load_yaml(config)
        overrides = extra + (shortened(settings, max_steps) if max_steps else [])
        expected = max_steps or settings.get("trainer", {}).get("max_steps")
        before = versions(root)
        fit = ["fit", "--config", str(config), "--trainer.default_root_dir", str(root), *overrides]
        wall = self.makemore(fit, root / "fit.log", f"{name} fit")
        fit_dir = new_version(root, before)
        # A fit that stopped early is not scored as the config's run: makemore exits 1 on SIGTERM, and the step count
        # also catches a stop that exits 0 (Lightning's SIGTERMException is a SystemExit without a code).
        steps = logged(fit_dir, "train_loss")[-1][0]  # the SGD step of the last training log: steps trained
        if expected and steps != expected:
            raise RunError(
                f"{name}: the fit stopped at SGD step {steps:,} of {expected:,} with exit status 0"
                f" (was it sent SIGTERM?); see {root / 'fit.log'}"
            )
        best = named_checkpoint("best", root)  # the newest run under root: this fit's
        data = datamodule_for(read_checkpoint(str(best)), self.cwd)  # the run's own data options

        # A text split as the lecture splits it (train_fraction + val_fraction = 1) has no test share: `makemore
        # test` refuses it, and test is None.
        test_dir = None
        if "test" in data.examples:
            before = versions(root)
            test = ["test", "--config", str(config), "--trainer.default_root_dir", str(root), *extra]
            self.makemore([*test, "--ckpt_path", str(best)], root / "test.log", f"{name} test")
            if versions(root) != before:
                raise RunError(f"{name}: test made a new run folder; it should log into the run it evaluates")
            test_dir = fit_dir  # `test` of a run's checkpoint logs into that run's folder
        else:
            print(
                f"{name}: the split has no test share (data.train_fraction + data.val_fraction = 1): no test",
                flush=True,
            )

        result = evaluate(best, data)
        module = result.pop("module")
        val_curve = logged(fit_dir, "val_loss")
        at_best = [value for step, value in val_curve if step == result["best_step"]]
        if not at_best:
            raise RunError(f"no val_loss logged at the best checkpoint's step {result['best_step']} in {fit_dir}")
        val = at_best[-1]
        # The train loss is computed here, the val loss was logged by the run: recomputing the val loss here too must
        # give the logged number, or this process did not rebuild the run's data and model.
        if not math.isclose(val, result["val_recomputed"], rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE):
            raise RunError(f"{name}: logged val_loss {val} but {result['val_recomputed']} recomputed from {best}")
        test = logged(test_dir, "test_loss")[-1][1] if test_dir is not None else None
        print(
            f"{name}: train {result['train']:.4f}  val {val:.4f}  test {'none' if test is None else f'{test:.4f}'}"
            f"  params {result['params']}"
            f"  steps {steps}  fit {wall:.0f} s",
            flush=True,
        )
        return {
            "config": name,
            "config_path": shown(config, self.cwd),
            **result,
            "steps": steps,
            "val": val,
            "test": test,
            "wall_time_s": wall,
            "package": self.code_used[f"{name} fit"],
            "val_curve": val_curve,
            "fit_dir": shown(fit_dir, self.cwd),
            "test_dir": None if test_dir is None else shown(test_dir, self.cwd),
            "best_checkpoint": shown(best, self.cwd),
            "_embedding": module.net.embedding.weight.detach().clone() if hasattr(module.net, "embedding") else None,
            "_vocab": module.hparams.vocab,
        }
