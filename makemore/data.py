"""The DataModule: train/val/test examples from a word list, split as in the lecture, and their batches."""

import math
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import lightning as L
import torch

from makemore.errors import DataError
from makemore.steps import TrainBatches, batch_steps, step_options
from makemore.text import Vocabulary, build_examples, default_path, read_words, split_fingerprint, split_words


def line_of(path: Path, word: str) -> int:
    """The line number of `word`'s first occurrence in the file (for error messages)."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if line.strip() == word:
            return number
    return 0


class EvalBatches:
    """A whole split in a few large batches, this process's share only (no padding, so exact)."""

    def __init__(self, X: torch.Tensor, Y: torch.Tensor, batch_size: int, rank: int, world_size: int) -> None:
        self.X, self.Y = X[rank::world_size], Y[rank::world_size]
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.Y) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.Y), self.batch_size):
            yield self.X[i : i + self.batch_size], self.Y[i : i + self.batch_size]


class CharDataModule(L.LightningDataModule):
    """Train/val/test (context, next character) examples from a word list, split as in the lecture.

    Args:
        path: UTF-8 text file with one word per line; by default the names.txt shipped with makemore.
        block_size: how many previous characters the model sees (the context length).
        batch_size: examples per SGD step.
        train_fraction: share of the (shuffled) words used for training.
        val_fraction: share used for validation; the rest is the test split.
        seed: seed of `random.shuffle` for the split and of the mini-batch draws.
        max_steps_per_batch: the most SGD steps one Lightning batch carries, for speed. A batch holds
            max_steps_per_batch x batch_size x (block_size + 1) int64 ids (1 MB for the lecture's settings; with
            batch_size 32,768 over 1 GB, and a few times that while it is drawn: lower this for large
            batches, which need fewer steps per batch to be fast anyway). A fit makes batches as
            large as this allows while every interval the trainer counts (log_every_n_steps, an integer
            val_check_interval, limit_train_batches, a ModelCheckpoint's every_n_train_steps) still ends on
            a batch boundary, and those intervals, global_step, max_steps, the progress bar, checkpoint names
            and logged steps all count SGD steps (see makemore.steps). A callback that acts on every batch
            makes the fit take one SGD step per batch.
        val_every_n_steps: SGD steps between validations: makemore's epoch, at whose end validation runs (and
            with it the best checkpoint and last.ckpt). Default: one pass over the training examples in
            expectation, ceil(train examples / (batch_size * processes * trainer.accumulate_grad_batches)).
        eval_batch_size: examples per forward pass in validation and test (speed and memory, not results);
            passes of a few thousand keep the activations in the CPU's cache.
        train_on: what a training example is. "characters": one (context, next character) pair per character and
            word end, as in the lecture. "words": one window per word, holding the whole word (block_size must
            exceed the longest training word), for sequence models (makemore.models.Recurrent, Transformer) that
            predict at every position, as makemore.py trains them. Validation and test always score every
            character once, so the numbers compare.
        batch_seed: seed of the mini-batch draws; null uses data.seed. Change it (not data.seed, which decides
            the split) to repeat a run with other mini-batches on the same split.
    """

    def __init__(
        self,
        path: Optional[str] = None,
        block_size: int = 3,
        batch_size: int = 32,
        train_fraction: float = 0.8,
        val_fraction: float = 0.1,
        seed: int = 42,
        max_steps_per_batch: int = 1000,
        val_every_n_steps: Optional[int] = None,
        eval_batch_size: int = 4096,
        train_on: Literal["characters", "words"] = "characters",
        batch_seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        for name, value in [
            ("block_size", block_size),
            ("batch_size", batch_size),
            ("max_steps_per_batch", max_steps_per_batch),
            ("eval_batch_size", eval_batch_size),
            ("val_every_n_steps", val_every_n_steps or 1),
        ]:
            if value < 1:
                raise DataError(f"data.{name} must be at least 1, got {value}")
        if not (0 < train_fraction and 0 < val_fraction and train_fraction + val_fraction < 1):
            raise DataError(
                f"data.train_fraction ({train_fraction}) and data.val_fraction ({val_fraction}) must be positive"
                " and sum to less than 1, leaving a test split"
            )
        self.save_hyperparameters(ignore=["_instantiator"])  # the CLI's, not a setting
        self.path = Path(path) if path else default_path()
        # Read now: the vocabulary decides the model's shape (linked to the model by the CLI).
        self.words = read_words(self.path)
        self.vocabulary = Vocabulary.from_words(self.words)
        self.splits = split_words(self.words, train_fraction, val_fraction, seed)
        if not all(self.splits):
            sizes = "/".join(str(len(s)) for s in self.splits)
            raise DataError(
                f"{self.path}: {len(self.words)} words give train/val/test splits of {sizes} words;"
                " every split needs at least one word"
            )
        if train_on == "words":
            longest = max(self.splits[0], key=len)
            if len(longest) + 1 > block_size:
                raise DataError(
                    f"{self.path}:{line_of(self.path, longest)}: data.train_on words trains on whole words, and the"
                    f" training word {longest!r} has {len(longest)} characters: data.block_size must be at least"
                    f" {len(longest) + 1} to hold it and the `.` before it (it is {block_size})"
                )
        self.examples: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def max_steps_per_batch(self) -> int:
        """The most SGD steps one training batch may carry (makemore.steps sizes each fit's batches)."""
        return self.hparams.max_steps_per_batch

    @property
    def split_fingerprint(self) -> dict[str, Any]:
        """The split's fingerprint, independent of the file's path: word counts and a hash of each split's words.

        Kept in checkpoints (linked to the model by the CLI): a checkpoint evaluated on another split, which
        could hold its training words, is refused.
        """
        return split_fingerprint(self.splits)

    @property
    def vocab(self) -> str:
        """The vocabulary as one string, `.` first: what the model is linked to and checkpoints keep."""
        return str(self.vocabulary)

    def setup(self, stage: str) -> None:
        if self.examples:  # setup runs once per stage; the examples do not change
            return
        for name, words in zip(("train", "val", "test"), self.splits):
            self.examples[name] = build_examples(words, self.vocabulary, self.hparams.block_size)

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_pool(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training examples the mini-batches are drawn from (after setup): one per character, or per word
        with train_on words; with Lightning's overfit_batches, that many batches' worth."""
        X, Y = self.examples["train"]
        overfit = self.trainer.overfit_batches if self.trainer is not None else 0
        if self.hparams.train_on == "words":  # the window ending at each word's end holds the whole word
            X, Y = X[Y == 0], Y[Y == 0]
        if overfit:  # Lightning's overfit_batches: a fixed pool of that many mini-batches, no shuffling
            n = overfit * self.hparams.batch_size if isinstance(overfit, int) else max(1, int(overfit * len(Y)))
            X, Y = X[:n], Y[:n]
        return X, Y

    def epoch_steps(self) -> int:
        """SGD steps per epoch: data.val_every_n_steps, or one pass over this process's share in expectation (an SGD
        step takes trainer.accumulate_grad_batches mini-batches)."""
        if self.hparams.val_every_n_steps:
            return self.hparams.val_every_n_steps
        self.setup("fit")
        examples_per_step = self.hparams.batch_size * self._rank()[1] * step_options(self.trainer).accumulate
        return math.ceil(len(self.train_pool()[1]) / examples_per_step)

    def train_dataloader(self) -> TrainBatches:
        X, Y = self.train_pool()
        steps = batch_steps(self.trainer, self.hparams.max_steps_per_batch)
        rank = self._rank()[0]
        seed = self.hparams.seed if self.hparams.batch_seed is None else self.hparams.batch_seed
        accumulate = step_options(self.trainer).accumulate
        return TrainBatches(X, Y, self.hparams.batch_size, steps, self.epoch_steps(), seed, rank, accumulate)

    def _eval_batches(self, split: str) -> EvalBatches:
        return EvalBatches(*self.examples[split], self.hparams.eval_batch_size, *self._rank())

    def val_dataloader(self) -> EvalBatches:
        return self._eval_batches("val")

    def test_dataloader(self) -> EvalBatches:
        return self._eval_batches("test")
