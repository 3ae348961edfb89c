"""The command line: Lightning's CLI (fit, validate, test, lr_find) plus `sample`, which needs only a checkpoint."""

import sys
from pathlib import Path
from typing import Optional

import lightning as L
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.utilities.exceptions import SIGTERMException

from makemore.callbacks import EmbeddingVisualizer, report_lr_find
from makemore.checkpoint import load_network, read_checkpoint
from makemore.data import CharDataModule
from makemore.errors import CheckpointError, MakemoreError
from makemore.module import MakemoreModule
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


def newest_last_checkpoint(root: str) -> Path:
    """The most recently written last.ckpt under `root` (every run's version folder is searched)."""
    found = sorted(Path(root).rglob("last.ckpt"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise CheckpointError(f"{Path(root).resolve()}: no last.ckpt under it to resume from (--ckpt_path last)")
    return found[-1]


class MakemoreCLI(LightningCLI):
    """Links what the data decides (vocabulary, block size) into the model; adds the lr_find subcommand."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "lr_find": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.block_size", "model.block_size")
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")
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

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        # A shared checkpoint must not run code when loaded: weights_only=True unless asked otherwise.
        if subcommand and "weights_only" in self.config[subcommand] and self.config[subcommand].weights_only is None:
            self.config[subcommand].weights_only = True
        # Lightning reads a --ckpt_path file straight after parsing: check it first, so that a missing,
        # corrupt, foreign or unsafe file gives one clear error (CheckpointError) instead of a traceback.
        ckpt_path = str(self.config[subcommand].get("ckpt_path") or "") if subcommand else ""
        if ckpt_path == "last":
            # Lightning looks for "last" in this run's own (new, empty) version folder; resume the newest run instead.
            root = self.config[subcommand].trainer.default_root_dir or "."
            ckpt_path = self.config[subcommand].ckpt_path = str(newest_last_checkpoint(root))
        special = ckpt_path in ("best", "hpc") or ckpt_path.startswith("registry") or "://" in ckpt_path
        if ckpt_path and not special:  # a local file (Lightning resolves the special names and URLs itself)
            read_checkpoint(ckpt_path)


def sample(ckpt_path: str, num_samples: int = 20, seed: int = 42, device: str = "cpu") -> list[str]:
    """Print names drawn from a trained model, one per line; needs only the checkpoint.

    Args:
        ckpt_path: a checkpoint written by `fit` (for example lightning_logs/version_0/checkpoints/last.ckpt).
        num_samples: how many names to draw.
        seed: seed of the sampling generator; the same seed gives the same names.
        device: where to run the model (cpu or cuda).
    """
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
                    # last.ckpt at every epoch end (Lightning's save_last only follows improvements of the monitor)
                    ModelCheckpoint(filename="last", enable_version_counter=False),
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
