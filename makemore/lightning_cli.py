"""Lightning's CLI for fit, validate, test and lr_find: links, defaults, run folders, checks of checkpoints.

Imported only for those subcommands (makemore.cli dispatches): `sample` and `--help` never pay Lightning's import.
"""

import argparse
import difflib
import logging
import os
import shlex
import sys
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import lightning as L
import torch
from jsonargparse import Namespace
from jsonargparse.typing import PositiveFloat, PositiveInt
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from makemore import _compat, distillation, lr_finder
from makemore._wording import NOISE, SILENCED, cli_parse_error
from makemore.callbacks import LOG_EVERY_N_STEPS, LastCheckpoint, fit_callbacks, tensorboard
from makemore.checkpoint import (
    check_fits,
    class_paths,
    flatten,
    import_class,
    load_network,
    named_checkpoint,
    named_classes,
    read_checkpoint,
    version_number,
)
from makemore.checkpoint_io import NO_SPACE, no_space_left, with_atomic_checkpoints, write_error
from makemore.data import CharDataModule
from makemore.errors import CheckpointError, ConfigError, MakemoreError
from makemore.lightning_features import check_device_settings, check_trainer_options
from makemore.lr_finder import check_sweep
from makemore.models import MLP
from makemore.module import MakemoreModule
from makemore.optimizers import check_optimization, schedule_beyond
from makemore.runlog import RunLogger


def lecture_defaults() -> dict:
    """The lecture's run ("Building makemore Part 2: MLP") as parser defaults: configs/mlp.yaml, shipped with the
    package as makemore.configs, is what `fit` trains with no --config (its one source)."""
    import yaml

    config = yaml.safe_load((resources.files("makemore.configs") / "mlp.yaml").read_text(encoding="utf-8"))
    sections = {key: value for key, value in config.items() if isinstance(value, dict)}
    defaults = {key: value for key, value in config.items() if key not in sections}
    defaults.update({f"{name}.{key}": value for name, section in sections.items() for key, value in section.items()})
    return defaults


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE)


_QUIET = _Quiet()


def silence_noise() -> None:
    """Silence the NOISE lines of Lightning's loggers and the SILENCED warnings (for the CLI and makemore.api; importing
    makemore changes no warning or logging setting)."""
    for message in SILENCED:
        warnings.filterwarnings("ignore", message=message)
    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(_QUIET)


# The Trainer options a subcommand's short --help shows (those a newcomer sets first); --help full shows all.
SHORT_HELP_TRAINER = ("max_steps", "max_time", "accelerator", "devices", "precision", "default_root_dir")
# The order of --help's sections, by the key of their options: the subcommand's own options (--ckpt_path ...) come
# right after the general ones (its group has no key here), then the model, the data and Lightning's Trainer.
HELP_ORDER = ("model", "data", "trainer")


class HelpAction(argparse.Action):
    """-h, --help [full]: makemore's options and the Trainer's most used; `full`: every option."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: Optional[str] = None) -> None:
        super().__init__(
            option_strings, dest, nargs="?", choices=("full",), default=argparse.SUPPRESS, metavar="full", help=help
        )

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None) -> None:
        print(parser.format_help(full=values == "full"), end="")
        parser.exit()


class Parser(LightningArgumentParser):
    """Lightning's parser with one-line errors (and the closest option for a typo) instead of a usage dump, and a
    --help that shows makemore's options first and Lightning's Trainer in short (`--help full`: all of it)."""

    def __init__(self, *args, **kwargs) -> None:
        # jsonargparse makes a parser of this class for `--model.net.help CLASS`, named after sys.argv[0] unless told
        kwargs.setdefault("prog", "makemore")
        add_help = kwargs.pop("add_help", True)
        super().__init__(*args, add_help=False, **kwargs)
        if add_help:
            self.add_argument(
                "-h", "--help", action=HelpAction, help="show makemore's options and exit; --help full: every option"
            )

    def format_help(self, formatter: Optional[argparse.HelpFormatter] = None, full: bool = True) -> str:
        """The help text: sections in HELP_ORDER; `full` False: of Lightning's Trainer only SHORT_HELP_TRAINER."""
        keys = {id(group): key for key, group in self.groups.items()}
        rank = {key: HELP_ORDER.index(key) + 1 if key in HELP_ORDER else 0 for key in self.groups}
        # argparse's own sections first (options), then the subcommand's, makemore's model and data, the Trainer, the
        # links last (jsonargparse's section that is no group of options).
        _compat.help_sections(self).sort(
            key=lambda group: (group.title != "options", rank.get(keys.get(id(group)), len(HELP_ORDER) + 1))
        )
        trainer = self.groups.get("trainer")
        if full or trainer is None:
            return super().format_help(formatter) if formatter is not None else super().format_help()
        shown = {f"trainer.{name}" for name in SHORT_HELP_TRAINER}
        hidden = [
            action
            for action in _compat.section_options(trainer)
            if action.dest not in shown and action.help != argparse.SUPPRESS
        ]
        saved = [action.help for action in hidden]
        description = trainer.description
        trainer.description = "the options used most; every one with --help full"
        for action in hidden:
            action.help = argparse.SUPPRESS
        try:
            return super().format_help(formatter) if formatter is not None else super().format_help()
        finally:
            trainer.description = description
            for action, text in zip(hidden, saved):
                action.help = text

    def error(self, message: str, ex: Optional[Exception] = None) -> None:
        message, typo = cli_parse_error(message)
        if typo:
            try:  # every option, and those of the configured classes (the network's, the optimizer's), by its key
                keys = [key.replace(".init_args.", ".") for key in flatten(self.get_defaults().as_dict(), "")]
            except Exception:  # defaults that cannot be built: no suggestion
                keys = []
            parts = [key.removesuffix(".class_path").split(".") for key in keys]
            options = {"--" + ".".join(part[:n]) for part in parts for n in range(1, len(part) + 1)}
            close = difflib.get_close_matches(typo, sorted(options), n=1, cutoff=0.7)
            message += f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(message)


def shown(path: Union[str, Path]) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    here, path = Path.cwd().resolve(), Path(path).resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def evaluated_run(ckpt_path: Optional[str], root: Path) -> Optional[int]:
    """N when the checkpoint lies in root/lightning_logs/version_N/checkpoints, else None."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None
    checkpoints = Path(ckpt_path).resolve().parent
    run = checkpoints.parent
    if checkpoints.name == "checkpoints" and run.parent == (root / "lightning_logs").resolve():
        return version_number(run)
    return None


def claim_run_folder(root: Path) -> int:
    """Create root/lightning_logs/version_N with the next free N, atomically: concurrent runs get their own."""
    logs = root / "lightning_logs"
    try:
        logs.mkdir(parents=True, exist_ok=True)
        taken = [number for path in logs.iterdir() if (number := version_number(path)) is not None]
        version = max(taken, default=-1) + 1
        while True:
            try:
                (logs / f"version_{version}").mkdir()
                return version
            except FileExistsError:  # another run took it a moment ago
                version += 1
    except OSError as err:
        raise ConfigError(f"{logs}: cannot create the run folder there: {err.strerror or err}") from None


def lightning_reinterprets(ckpt_path: str) -> bool:
    """Whether Lightning reads this --ckpt_path as something other than a local file: `hpc`, a name of its model
    registry (`registry`, `registry:...`, in any case), or a URL (`s3://...`). Refused as a whole family rather than
    by Lightning's exact rules, which a new release may widen."""
    return ckpt_path.lower() == "hpc" or ckpt_path.lower().startswith("registry") or "://" in ckpt_path


def plain_config(value: Any) -> Any:
    """A jsonargparse Namespace (a class's {class_path, init_args}) as nested dicts; anything else as it is."""
    return value.as_dict() if isinstance(value, Namespace) else value


def check_settings(subcommand: Optional[str], config: Namespace) -> None:
    """Check every setting's range before any work (the run folder, the data), beyond what the signatures' types
    (PositiveInt, ...) check while parsing: the Trainer options Lightning checks only when it uses them, the lr_find
    sweep, the optimizer and schedule (built and stepped once on a throwaway parameter); and say once that a
    distill_weight without a teacher does nothing, and what of a fit's schedule lies beyond its end."""
    trainer = config.trainer.as_dict()
    check_trainer_options(trainer)
    check_device_settings(trainer)
    limit = {"validate": "limit_val_batches", "test": "limit_test_batches"}.get(subcommand)
    if limit and trainer.get(limit) == 0:
        raise ConfigError(f"{subcommand} would evaluate nothing: trainer.{limit} is 0")
    if subcommand == "lr_find":
        check_sweep(config.min_lr, config.max_lr, config.num_training)
    if subcommand not in ("fit", "lr_find"):
        return
    share = config.trainer.get("limit_val_batches")
    if subcommand == "fit" and share is not None and share not in (0, 1):  # a share, or a number of batches
        raise ConfigError(
            f"trainer.limit_val_batches {share}: fit validates the whole val split (1.0), or none with 0 (its"
            " val_loss picks the best checkpoint; part of it would be val_loss_partial); validate scores a part"
        )
    model = config.model
    net = plain_config(model.net)
    check_optimization(
        plain_config(model.optimizer),
        plain_config(model.lr_scheduler),
        model.learning_rate,
        net if isinstance(net, dict) else None,
        config.data.get("block_size"),
    )
    if subcommand == "fit":  # (lr_find replaces the schedule with its sweep)
        interval, max_steps, max_epochs = (
            model.lr_scheduler_interval,
            trainer.get("max_steps"),
            trainer.get("max_epochs"),
        )
        unreached = schedule_beyond(plain_config(model.lr_scheduler), interval, max_steps, max_epochs)
        if unreached:
            rank_zero_info(f"makemore: {unreached}")
    note = distillation.unused_weight(model.distill_weight, model.teacher)
    if note:
        rank_zero_info(f"makemore: {note}")


def node_rank() -> int:
    """This machine's rank among the nodes of a multi-node run, before the trainer exists.

    rank_zero_only.rank is read at import from RANK, LOCAL_RANK or SLURM_PROCID: on a node other than 0 started by
    hand (NODE_RANK, Lightning's LightningEnvironment) the first process has none of them and would count as rank 0.
    """
    return int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))


class MakemoreCLI(LightningCLI):
    """Links what the data decides (vocabulary, block size) into the model; adds the lr_find subcommand."""

    def __init__(self, *args, **kwargs) -> None:
        self._run_folder: Optional[Path] = None  # the folder this command writes, once known
        try:
            super().__init__(*args, **kwargs)  # parses, builds and runs the subcommand
        except OSError as err:
            # A write into the run folder that the disk could not take (its logs, config.yaml; a checkpoint says so
            # itself), or one that failed while a fit stopped on an error of makemore's, which is the one to say.
            cause = err.__context__
            while cause is not None and not isinstance(cause, MakemoreError):
                cause = cause.__context__
            if cause is not None:
                raise cause from None
            if err.errno not in NO_SPACE or self._run_folder is None:
                raise
            raise ConfigError(write_error(self._run_folder, "the run's logs", err)) from None

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # predict is left out: a character model has nothing to predict from a DataModule (see `sample`).
        # weights_only is not an option: makemore reads every checkpoint as plain data (weights_only) first.
        return {
            "fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule", "weights_only"},
            "validate": {"model", "dataloaders", "datamodule", "weights_only"},
            "test": {"model", "dataloaders", "datamodule", "weights_only"},
            "lr_find": {"model", "datamodule"},
        }

    def add_default_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--seed_everything",
            type=Union[bool, int],
            default=self.seed_everything_default,
            help="seed of torch's, numpy's and Python's random generators, set before anything is built (the"
            " network's initial weights, dropout); true: a random seed. The split and the mini-batches have their"
            " own: data.seed, data.batch_seed.",
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        self._parsers = [*getattr(self, "_parsers", []), parser]  # for parse_arguments
        parser.set_defaults(lecture_defaults())
        parser.link_arguments("data.block_size", "model.block_size")
        parser.link_arguments("data.format", "model.data_format")
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")
        parser.link_arguments("data.split_fingerprint", "model.split_fingerprint", apply_on="instantiate")
        parser.add_argument(
            "--weights_from",
            type=Optional[str],
            default=None,
            help="fit, lr_find: start a new run from this checkpoint's network weights, with this run's settings"
            " (fine-tuning; --ckpt_path instead resumes the same run).",
        )
        parser.add_argument(
            "--allow_class",
            type=Union[str, list[str], None],
            default=None,
            help="a class (or a list of them) outside makemore and torch that a checkpoint (--ckpt_path,"
            " --weights_from) may make makemore import, e.g. a network of your own (the classes of this command's"
            " model options are allowed too); a checkpoint naming another is refused before anything is imported.",
        )
        parser.add_argument(
            "--num_threads",
            type=Optional[PositiveInt],
            default=1,
            help="torch's intra-op CPU threads (null: torch's default). The model is too small to gain from more,"
            " and several threads slow to a crawl when other processes share the cores.",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        check_settings(self.subcommand, config)
        if config.get("num_threads") is not None:
            torch.set_num_threads(config.num_threads)
        if self._given_model is not None:
            # Lightning has replaced the model settings with the checkpoint's (but block_size, linked again from this
            # run's data), and builds the network before it loads the weights: a block_size that differs is named
            # before a network that cannot take it (WaveNet's powers of 2) speaks, and a resumed run's settings that
            # differ are refused rather than silently dropped.
            saved = {**config.model.as_dict(), "block_size": self._checkpoint_block_size}
            purpose = "resume" if self.subcommand == "fit" else "evaluate"
            check_fits(saved, self._given_model.as_dict(), purpose, f"{config.ckpt_path}: ")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        argv = list(sys.argv[1:] if args is None else args)
        # --print_config prints and exits while parsing: the first parse goes without it.
        printing = [i for i, arg in enumerate(argv) if arg.split("=")[0] == "--print_config"]
        printing += [
            i + 1 for i in printing if "=" not in argv[i] and argv[i + 1 : i + 2] in (["skip_null"], ["skip_default"])
        ]
        super().parse_arguments(parser, [arg for i, arg in enumerate(argv) if i not in printing] if printing else args)
        subcommand = self.config.get("subcommand")
        self._given_model = None
        if not subcommand:
            return
        net = self.config[subcommand].model.net
        if import_class(net.class_path) is not MLP or printing:
            # When a class_path changes, jsonargparse keeps the values of the options the new class shares with the
            # previous one, the default MLP's included: `--model.net makemore.models.Transformer` would get the
            # MLP's n_embd of 10. Parse again with the chosen class as the default, so that the network's own
            # defaults apply (options given for it, in a config or a flag, still do).
            for subcommand_parser in self._parsers:
                subcommand_parser.set_defaults({"model.net": {"class_path": net.class_path}})
            super().parse_arguments(parser, args)
        self.check_checkpoint_options(subcommand, self.config[subcommand])

    def check_checkpoint_options(self, subcommand: str, config: Namespace) -> None:
        """--ckpt_path and --weights_from, read and checked before Lightning reads them: a missing, corrupt, foreign or
        unsafe file is one clear error (CheckpointError) instead of a traceback; best, last and untrained resolved."""
        root = Path(config.trainer.default_root_dir or ".")
        ckpt_path = str(config.get("ckpt_path") or "")
        if subcommand in ("validate", "test") and not ckpt_path:
            raise ConfigError(
                f"{subcommand} evaluates a trained model: give --ckpt_path FILE, best or last (the newest run's), or"
                " untrained to evaluate freshly initialised weights"
            )
        if not ckpt_path and not config.get("weights_from"):
            return  # a new run from fresh weights: no checkpoint to read
        # Classes a checkpoint may make makemore import: those of this command's model settings and --allow_class.
        self._allowed = allowed = {*class_paths(config.model.as_dict()), *named_classes(config.get("allow_class"))}
        if lightning_reinterprets(ckpt_path):
            # Lightning would read such a name its own way (a URL, its model registry, a SLURM folder), past
            # makemore's guard: every checkpoint Lightning loads must be a file makemore has read first.
            raise ConfigError(
                f"--ckpt_path {ckpt_path}: makemore reads checkpoint files only, and Lightning would read this name"
                " its own way (hpc, registry..., a URL); download the file, or name a local file as ./NAME"
            )
        if ckpt_path == "untrained":
            config.ckpt_path = None
        elif ckpt_path in ("last", "best"):
            config.ckpt_path = str(named_checkpoint(ckpt_path, root, allowed))
            print(f"makemore: --ckpt_path {ckpt_path}: {config.ckpt_path}", file=sys.stderr)
        if config.get("ckpt_path"):  # a local file, `last` and `best` resolved: through the guard before Lightning
            checkpoint = read_checkpoint(config.ckpt_path, allowed=allowed)
            self._checkpoint_block_size = checkpoint["hyper_parameters"].get("block_size", config.data.block_size)
        # Lightning next replaces the model settings with a checkpoint's; keep what was asked for, to compare.
        self._given_model = config.model.clone() if config.get("ckpt_path") else None
        if config.get("weights_from"):
            if config.get("ckpt_path"):
                raise ConfigError(
                    "give --weights_from (a new run from a checkpoint's weights) or --ckpt_path (resume"
                    " the same run), not both"
                )
            read_checkpoint(config.weights_from, allowed=allowed)

    def run_logger(self, root: Path, ckpt_path: Optional[str]) -> Union[RunLogger, bool]:
        """The logger of this command's run folder: a new root/lightning_logs/version_N for fit and lr_find (claimed
        atomically), the evaluated run's own folder for validate and test of a run's checkpoint; False (nothing
        logged, said once) where that folder cannot be written."""
        evaluated = evaluated_run(ckpt_path, root) if self.subcommand in ("validate", "test") else None
        if evaluated is not None:  # scores of a run's checkpoint go to that run's folder (its config.yaml is there)
            run_folder = root / "lightning_logs" / f"version_{evaluated}"
            unwritable = None
            if not os.access(run_folder, os.W_OK | os.X_OK):
                unwritable = "is read-only"
            elif no_space_left(run_folder):
                unwritable = "has no space left on its device"
            self.save_config_callback = None
            if unwritable:  # evaluate and print all the same
                print(
                    f"makemore: {shown(run_folder)} {unwritable}: the scores are printed, not logged", file=sys.stderr
                )
                return False
            self._run_folder = run_folder
            return RunLogger(str(root), version=evaluated, fresh=False)
        if rank_zero_only.rank != 0 or node_rank() != 0:  # other DDP processes log nothing
            return RunLogger(str(root), version=None, fresh=True)
        # Lightning's default logger picks version_N by listing folders: runs started together collide. Claim it first.
        version = claim_run_folder(root)
        self._run_folder = root / "lightning_logs" / f"version_{version}"
        if no_space_left(self._run_folder):
            self._run_folder.rmdir()  # the empty folder just claimed: refused before anything is written
            raise ConfigError(f"{self._run_folder.parent}: cannot write a run there: no space left on its device")
        return RunLogger(str(root), version=version, fresh=True)

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        config = self.config_init[self.subcommand] if self.subcommand else None
        if config is not None and config.trainer.get("logger") in (None, True) and "logger" not in kwargs:
            kwargs["logger"] = self.run_logger(Path(config.trainer.default_root_dir or "."), config.get("ckpt_path"))
        plugins = config.trainer.get("plugins") if config is not None else None
        if config is not None and config.trainer.get("sync_batchnorm"):  # imported for these runs only
            from makemore.batchnorm import cpu_sync_plugins

            plugins = cpu_sync_plugins(plugins, config.trainer.get("accelerator"))
        kwargs["plugins"] = with_atomic_checkpoints(plugins)
        try:
            return super().instantiate_trainer(**kwargs)
        except Exception:  # a setting Lightning refuses as it builds the trainer: the run folder just claimed goes
            if isinstance(kwargs.get("logger"), RunLogger):
                kwargs["logger"].remove_if_untrained()
            raise

    def after_fit(self) -> None:
        """Say where the run is: its folder, best and last checkpoints, and how to watch it."""
        trainer = self.trainer
        log_dir = trainer.log_dir  # on every process: it is broadcast from rank 0
        if not trainer.is_global_zero or log_dir is None:
            return
        lines = [f"makemore: run folder {shown(log_dir)}"]
        best = trainer.checkpoint_callback
        if best is not None and best.best_model_path and best.best_model_score is not None:
            lines.append(f"  best checkpoint (val_loss {best.best_model_score:.4f}): {shown(best.best_model_path)}")
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, LastCheckpoint) and Path(callback.format_checkpoint_name({})).is_file():
                last = callback.format_checkpoint_name({})
                lines.append(f"  last checkpoint (step {trainer.global_step}): {shown(last)}")
        if tensorboard(trainer) is not None:  # another logger (CSVLogger) leaves nothing for TensorBoard
            lines.append(f"  watch it: tensorboard --logdir {shlex.quote(shown(Path(log_dir).parent))}")
        print("\n".join(lines))

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        if config.get("weights_from"):
            try:
                self._load_weights_from(config.weights_from)
            except Exception:
                if isinstance(self.trainer.logger, RunLogger):  # a failed start leaves no empty run folder
                    self.trainer.logger.remove_if_untrained()
                raise

    def _load_weights_from(self, path: str) -> None:
        """--weights_from: the network weights of a checkpoint trained on the same vocabulary and block_size."""
        net, hparams = load_network(path, allowed=self._allowed)
        check_fits(hparams, dict(self.model.hparams), "weights_from", f"{path}: ")
        try:
            self.model.net.load_state_dict(net.state_dict())
        except RuntimeError:
            raise CheckpointError(f"{path}: its network's weights do not fit this run's model.net") from None


class MakemoreTrainer(L.Trainer):
    """Lightning's Trainer (its steps, as max_steps and log_every_n_steps, count SGD steps)

    Every subcommand's trainer: fit, validate and test as Lightning's, with makemore's checkpoint options, and lr_find.
    """

    def fit(
        self,
        model: L.LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: Optional[L.LightningDataModule] = None,
        ckpt_path: Optional[str] = None,
        weights_only: bool = True,
    ) -> None:
        """Resuming a run

        Args:
            model: the module to train.
            train_dataloaders: Lightning's; makemore's data gives its own.
            val_dataloaders: Lightning's; makemore's data gives its own.
            datamodule: the data.
            ckpt_path: resume a run from its checkpoint: a file, or last or best (that checkpoint of the newest run
                under trainer.default_root_dir); null: a new run (--weights_from: a new run from a checkpoint's
                weights).
            weights_only: load the checkpoint as plain data (makemore's checkpoints are).
        """
        super().fit(model, train_dataloaders, val_dataloaders, datamodule, ckpt_path, weights_only)

    def validate(
        self,
        model: Optional[L.LightningModule] = None,
        dataloaders: Any = None,
        ckpt_path: Optional[str] = None,
        verbose: bool = True,
        datamodule: Optional[L.LightningDataModule] = None,
        weights_only: bool = True,
        allow_other_split: bool = False,
    ) -> list:
        """The checkpoint to evaluate

        Args:
            model: the module (its settings and weights are the checkpoint's).
            dataloaders: Lightning's; makemore's data gives its own.
            ckpt_path: a checkpoint file, or best or last (that checkpoint of the newest run under
                trainer.default_root_dir), or untrained (freshly initialised weights).
            verbose: print the scores.
            datamodule: the data.
            weights_only: load the checkpoint as plain data (makemore's checkpoints are).
            allow_other_split: evaluate a checkpoint on a split other than the one it was trained on (its scores,
                which may count words it trained on, are named *_other_split).
        """
        return self._scores(
            "validate", model, dataloaders, ckpt_path, verbose, datamodule, weights_only, allow_other_split
        )

    def test(
        self,
        model: Optional[L.LightningModule] = None,
        dataloaders: Any = None,
        ckpt_path: Optional[str] = None,
        verbose: bool = True,
        datamodule: Optional[L.LightningDataModule] = None,
        weights_only: bool = True,
        allow_other_split: bool = False,
    ) -> list:
        return self._scores("test", model, dataloaders, ckpt_path, verbose, datamodule, weights_only, allow_other_split)

    test.__doc__ = validate.__doc__  # the same options (`makemore test --help` reads them)

    def _scores(
        self,
        subcommand: str,
        model: Optional[L.LightningModule],
        dataloaders: Any,
        ckpt_path: Optional[str],
        verbose: bool,
        datamodule: Optional[L.LightningDataModule],
        weights_only: bool,
        allow_other_split: bool,
    ) -> list:
        """Lightning's validate or test (`subcommand`), its scores printed by print_scores."""
        module = model if model is not None else self.lightning_module  # the one Lightning evaluates
        if module is None:
            raise ConfigError("validate and test need a model: give one, or fit one with this trainer first")
        module.allow_other_split = allow_other_split
        results = getattr(L.Trainer, subcommand)(self, model, dataloaders, ckpt_path, False, datamodule, weights_only)
        if verbose:
            self.print_scores(subcommand, results)
        return results

    def print_scores(self, subcommand: str, results: list[dict[str, float]]) -> None:
        """Print the scores of validate or test (`subcommand`), one per line, under the checkpoint and its step."""
        if not self.is_global_zero or not results:
            return
        scores = dict(results[0])
        step = scores.pop("step", None)  # logged as the x-axis: the step the checkpoint was trained to
        trained = f"{shown(self.ckpt_path)} (step {int(step)})" if self.ckpt_path and step is not None else None
        lines = [f"makemore: {subcommand} of " + (trained or "the untrained weights")]
        width = max(map(len, scores), default=0)
        lines += [f"  {name:<{width}}  {value:.4f}" for name, value in scores.items()]
        print("\n".join(lines))

    def lr_find(
        self,
        model: L.LightningModule,
        datamodule: Optional[L.LightningDataModule] = None,
        min_lr: PositiveFloat = 1e-3,
        max_lr: PositiveFloat = 1.0,
        num_training: PositiveInt = 1000,
    ) -> Optional[float]:
        """The sweep

        Args:
            model: the module to sweep (its weights are restored afterwards).
            datamodule: the data.
            min_lr: lowest learning rate of the sweep.
            max_lr: highest learning rate of the sweep.
            num_training: SGD steps in the sweep.
        """
        # Lightning logs a run's hyperparameters once its fit starts training, which a sweep never reaches.
        hparams = {**model.hparams_initial, **(datamodule.hparams_initial if datamodule is not None else {})}
        for logger in self.loggers:
            logger.log_hyperparams({key: value for key, value in hparams.items() if key != "_class_path"})
        return lr_finder.sweep(self, model, datamodule, min_lr, max_lr, num_training)


def subcommand_parser_kwargs() -> dict[str, dict[str, str]]:
    """Each subcommand's parser: a usage line of one line, and its description as `makemore --help` gives it."""
    from makemore.cli import SUBCOMMANDS

    return {
        name: {
            "usage": f"makemore {name} [-h [full]] [-c CONFIG] [--OPTION VALUE ...]",
            "description": SUBCOMMANDS[name][0],
        }
        for name in MakemoreCLI.subcommands()
    }


def trainer_defaults(callbacks: Sequence[L.Callback] = ()) -> dict:
    """What every makemore fit's Trainer has beyond Lightning's defaults, for the CLI and makemore.api alike: the
    checkpoints and the embedding figure (fit_callbacks, then `callbacks`) and train_loss every 1,000 SGD steps."""
    return {"log_every_n_steps": LOG_EVERY_N_STEPS, "callbacks": [*fit_callbacks(), *callbacks]}


def run(argv: Optional[list[str]], callbacks: Sequence[L.Callback] = (), build_only: bool = False) -> MakemoreCLI:
    """fit, validate, test or lr_find, with makemore's defaults (argv None: sys.argv); MakemoreError for errors.

    `callbacks`: Lightning callbacks added to the trainer's, built by the caller (objects a command line cannot
    name, such as `makemore search`'s pruning callback, which holds its Optuna trial).
    `build_only`: argv is a fit's options without the subcommand; they are parsed and the model, data and trainer built,
    nothing run or written (LightningCLI's run=False): how `makemore search` checks its options before any trial.
    """
    silence_noise()
    try:
        return MakemoreCLI(
            MakemoreModule,
            CharDataModule,
            trainer_class=MakemoreTrainer,
            parser_class=Parser,
            parser_kwargs={"prog": "makemore", **subcommand_parser_kwargs()},
            trainer_defaults=trainer_defaults(callbacks),
            # Lightning's top-level --optimizer/--lr_scheduler would replace model.optimizer's and model.lr_scheduler's
            # in training while hparams.yaml and TensorBoard recorded the model's: one way to set each, recorded.
            auto_configure_optimizers=False,
            args=argv,
            run=not build_only,
        )
    except ValueError as err:  # jsonargparse wraps what a class raised while it was built: makemore's own is one line
        cause = err
        while cause is not None and not isinstance(cause, MakemoreError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None
    except MisconfigurationException as err:  # Lightning's settings that contradict each other: one line
        raise ConfigError(str(err).splitlines()[0]) from None
    except SIGTERMException:  # Lightning's is a SystemExit with status 0, as if the run had finished
        raise ConfigError("stopped by SIGTERM before the run finished; resume it with --ckpt_path last") from None
