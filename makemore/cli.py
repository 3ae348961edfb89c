"""The command line: Lightning's CLI (fit, validate, test, lr_find) plus `sample`, which needs only a checkpoint."""

import sys
from pathlib import Path
from typing import Optional

import lightning as L
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from makemore.callbacks import EmbeddingVisualizer, LastCheckpoint, report_lr_find
from makemore.checkpoint import load_network, read_checkpoint
from makemore.data import CharDataModule
from makemore.errors import CheckpointError, ConfigError, MakemoreError
from makemore.module import RESUMABLE_CHANGES, MakemoreModule, differences
from makemore.sampling import sample_words
from makemore.text import Vocabulary


class Trainer(L.Trainer):
    """Lightning's Trainer with an `lr_find` subcommand."""

    def lr_find(
        self,
        model: L.LightningModule,
        datamodule: Optional[L.LightningDataModule] = None,
        min_lr: float = 1e-3,
        max_lr: float = 1.0,
        num_training: int = 1000,
    ) -> Optional[float]:
        """Sweep the learning rate exponentially, print the suggestion, save the loss-vs-rate plot.

        Args:
            model: the module to sweep (its weights are restored afterwards).
            datamodule: the data.
            min_lr: lowest learning rate of the sweep.
            max_lr: highest learning rate of the sweep.
            num_training: SGD steps in the sweep.
        """
        finder = Tuner(self).lr_find(
            model, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr, num_training=num_training, update_attr=False
        )
        return report_lr_find(self, finder)


def runs_with_checkpoints(root: Path) -> list[Path]:
    """The run folders root/lightning_logs/version_N that hold a last.ckpt, oldest (lowest N) first."""
    logs = root / "lightning_logs"
    runs = [path for path in logs.glob("version_*") if (path / "checkpoints" / "last.ckpt").is_file()]
    return sorted(runs, key=lambda path: int(path.name.rpartition("_")[2]) if path.name[8:].isdigit() else -1)


def named_checkpoint(name: str, root: Path) -> Path:
    """`last` or `best`: that checkpoint of the newest run under root/lightning_logs (the highest version_N)."""
    runs = runs_with_checkpoints(root)
    if not runs:
        raise CheckpointError(
            f"{root.resolve() / 'lightning_logs'}: no run with a last.ckpt there (--ckpt_path {name} looks only in"
            " the trainer.default_root_dir's own lightning_logs)"
        )
    last = runs[-1] / "checkpoints" / "last.ckpt"
    if name == "last":
        return last
    states = read_checkpoint(str(last)).get("callbacks") or {}
    best = [state.get("best_model_path") for state in states.values() if state.get("monitor") == "val_loss"]
    for path in filter(None, best):
        for candidate in (Path(path), last.parent / Path(path).name):  # the run folder may have moved
            if candidate.is_file():
                return candidate
    raise CheckpointError(
        f"{runs[-1]}: the newest run has no best checkpoint (it never validated); use --ckpt_path last"
    )


def claim_run_folder(root: Path) -> int:
    """Create root/lightning_logs/version_N with the next free N, atomically: concurrent runs get their own."""
    logs = root / "lightning_logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        taken = [int(p.name[8:]) for p in logs.iterdir() if p.name.startswith("version_") and p.name[8:].isdigit()]
        version = max(taken, default=-1) + 1
        while True:
            try:
                (logs / f"version_{version}").mkdir()
                return version
            except FileExistsError:  # another run took it a moment ago
                version += 1
    except OSError as err:
        raise ConfigError(f"{logs}: cannot create the run folder there: {err.strerror or err}") from None


class MakemoreCLI(LightningCLI):
    """Links what the data decides (vocabulary, block size) into the model; adds the lr_find subcommand."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "lr_find": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.block_size", "model.block_size")
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")
        parser.link_arguments("data.split", "model.split", apply_on="instantiate")
        parser.add_argument(
            "--allow_other_split",
            type=bool,
            default=False,
            help="validate, test: evaluate a checkpoint on a split other than the one it was trained on (its"
            " scores may then count words it trained on).",
        )
        parser.add_argument(
            "--weights_from",
            type=Optional[str],
            default=None,
            help="fit, lr_find: start a new run from this checkpoint's network weights, with this run's settings"
            " (fine-tuning; --ckpt_path instead resumes the same run).",
        )
        parser.add_argument(
            "--num_threads",
            type=Optional[int],
            default=1,
            help="torch's intra-op CPU threads (null: torch's default). The model is too small to gain from more,"
            " and several threads slow to a crawl when other processes share the cores.",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("num_threads") is not None:
            torch.set_num_threads(config.num_threads)
        if self._given_model is not None:
            # Lightning has replaced the model settings with the checkpoint's: a resumed run continues the
            # same run, so settings the user gave that differ are refused rather than silently dropped.
            found = differences(
                config.model.as_dict(), self._given_model.as_dict(), "model", RESUMABLE_CHANGES | {"vocab", "split"}
            )
            if found:
                raise CheckpointError(
                    f"{config.ckpt_path}: resuming continues the same run, but these settings differ from the"
                    f" checkpoint's: {', '.join(found)}. Resume with the run's own config (its config.yaml), or start"
                    " a new run from the checkpoint's weights with --weights_from instead of --ckpt_path"
                )

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        self._given_model = None
        if not subcommand:
            return
        config = self.config[subcommand]
        # A shared checkpoint must not run code when loaded: weights_only=True unless asked otherwise.
        if "weights_only" in config and config.weights_only is None:
            config.weights_only = True
        # Lightning reads a --ckpt_path file straight after parsing: check it first, so that a missing,
        # corrupt, foreign or unsafe file gives one clear error (CheckpointError) instead of a traceback.
        root = Path(config.trainer.default_root_dir or ".")
        ckpt_path = str(config.get("ckpt_path") or "")
        if subcommand in ("validate", "test") and not ckpt_path:
            raise ConfigError(
                f"{subcommand} evaluates a trained model: give --ckpt_path FILE, best or last (the newest run's), or"
                " untrained to evaluate freshly initialised weights"
            )
        if ckpt_path == "untrained":
            config.ckpt_path = None
        elif ckpt_path in ("last", "best"):
            config.ckpt_path = str(named_checkpoint(ckpt_path, root))
            print(f"makemore: --ckpt_path {ckpt_path}: {config.ckpt_path}", file=sys.stderr)
        elif ckpt_path and not (ckpt_path == "hpc" or ckpt_path.startswith("registry") or "://" in ckpt_path):
            read_checkpoint(ckpt_path)  # a local file (Lightning resolves the other special names itself)
        # Lightning next replaces the model settings with a checkpoint's; keep what was asked for, to compare.
        self._given_model = config.model.clone() if subcommand == "fit" and config.get("ckpt_path") else None
        if config.get("weights_from"):
            if config.get("ckpt_path"):
                raise ConfigError(
                    "give --weights_from (a new run from a checkpoint's weights) or --ckpt_path (resume"
                    " the same run), not both"
                )
            read_checkpoint(config.weights_from)

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        # Lightning's default logger picks version_N by listing folders: runs started together collide.
        # Claim the folder first (rank 0 only: other DDP processes log nothing), with no hp_metric placeholder.
        logger = self.config_init[self.subcommand].trainer.get("logger") if self.subcommand else None
        if logger in (None, True) and "logger" not in kwargs and rank_zero_only.rank == 0:
            root = Path(self.config_init[self.subcommand].trainer.default_root_dir or ".")
            kwargs["logger"] = TensorBoardLogger(root, version=claim_run_folder(root), default_hp_metric=False)
        return super().instantiate_trainer(**kwargs)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        self.model.allow_other_split = bool(config.get("allow_other_split"))
        if config.get("weights_from"):
            net, hparams = load_network(config.weights_from)
            source = f"{config.weights_from}: "
            if hparams["vocab"] != self.model.hparams.vocab or hparams["block_size"] != self.model.hparams.block_size:
                raise CheckpointError(f"{source}its vocabulary or block_size differs from this run's data")
            try:
                self.model.net.load_state_dict(net.state_dict())
            except RuntimeError:
                raise CheckpointError(f"{source}its network's weights do not fit this run's model.net") from None


def sample(ckpt_path: str, num_samples: int = 20, seed: int = 42, device: str = "cpu") -> list[str]:
    """Print names drawn from a trained model, one per line; needs only the checkpoint.

    Args:
        ckpt_path: a checkpoint written by `fit` (for example lightning_logs/version_0/checkpoints/last.ckpt).
        num_samples: how many names to draw.
        seed: seed of the sampling generator; the same seed gives the same names.
        device: where to run the model (cpu or cuda).
    """
    if num_samples < 1:
        raise ConfigError(f"--num_samples must be at least 1, got {num_samples}")
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if kind != "cpu" and not getattr(torch, kind).is_available():
        raise ConfigError(f"--device {device}: torch sees no {kind} device on this machine")
    net, hparams = load_network(ckpt_path, map_location=device)
    vocabulary = Vocabulary(hparams["vocab"])
    generator = torch.Generator(device).manual_seed(seed)
    names = sample_words(net, vocabulary, hparams["block_size"], num_samples, hparams["max_sample_length"], generator)
    for name in names:
        print(name)
    return names


def main(args: Optional[list[str]] = None) -> Optional[MakemoreCLI]:
    """Run the command line; `args` defaults to sys.argv[1:] (tests pass their own)."""
    argv = sys.argv[1:] if args is None else list(args)
    try:
        if argv[:1] == ["sample"]:
            parser = ArgumentParser(prog="makemore sample", description=sample.__doc__.splitlines()[0])
            parser.add_function_arguments(sample)
            sample(**parser.parse_args(argv[1:]).as_dict())
            return None
        cli = MakemoreCLI(
            MakemoreModule,
            CharDataModule,
            trainer_class=Trainer,
            trainer_defaults={
                # Counted in SGD steps (makemore.steps): train_loss, the mean of 1,000 steps.
                # It also caps the steps one Lightning batch carries, so a small value costs speed.
                "log_every_n_steps": 1000,
                "callbacks": [
                    ModelCheckpoint(monitor="val_loss", mode="min", filename="{epoch}-{step}-{val_loss:.4f}"),
                    LastCheckpoint(),
                    EmbeddingVisualizer(),
                ],
            },
            args=args,
        )
    except MakemoreError as err:
        sys.exit(f"makemore: error: {err}")
    except SIGTERMException:  # Lightning's is a SystemExit with status 0, as if the run had finished
        sys.exit("makemore: stopped by SIGTERM before the run finished; resume it with --ckpt_path last")
    return cli
