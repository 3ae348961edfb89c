"""The DataModule: train/val/test examples from any data format (makemore.formats: a word list, a text, ...), split
as the format splits them, and their batches."""

import math
from typing import Any, Iterable, Literal, Optional

import lightning as L
import torch

from makemore.errors import DataError
from makemore.formats import DataFormat, FormatName, format_class
from makemore.steps import TrainBatches, steps_per_batch
from makemore.text import Examples, storage_dtype

SPLITS = ("train", "val", "test")


class CharDataModule(L.LightningDataModule):
    """Train/val/test (context, next character) examples of the data, read and split by its format (data.format).

    The formats are makemore.formats' (a word list and a text split as the lectures split them, ...).

    Args:
        path: the data file (UTF-8), or the folder of a format that reads one; null: the copy shipped with makemore
            of names.txt (format words) or of tiny shakespeare (format text).
        format: what the data is, one of the formats registered in makemore.formats (docs/data-and-errors.md).
            "words": one word per line, each word an example sequence starting after the start token `.` and ending
            with `.` (the makemore lectures). "text": one stream of characters, newlines included (the GPT lecture's
            tiny shakespeare, any corpus): splits are contiguous, each character's context is the characters before
            it, and validation and test score consecutive windows of block_size characters (docs/text.md).
        block_size: how many previous characters the model sees (the context length).
        batch_size: examples per SGD step.
        train_fraction: share used for training: of the (shuffled) words, or the first share of a text's characters.
        val_fraction: share used for validation (the words after the training ones; a text's next characters); the
            rest is the test split, which a text may leave empty (train_fraction + val_fraction = 1).
        seed: seed of `random.shuffle` for a word list's split and of the mini-batch draws.
        max_steps_per_batch: the most SGD steps one Lightning batch carries, for speed. A batch holds
            max_steps_per_batch x accumulate_grad_batches x batch_size x (block_size + 1) int64 ids (1 MB for the
            lecture's settings; with batch_size 32,768 over 1 GB, and a few times that while it is drawn: lower this
            for large batches and long contexts, which need fewer steps per batch to be fast anyway). A fit makes
            batches as large as this allows while trainer.log_every_n_steps, max_steps and a ModelCheckpoint's
            every_n_train_steps still end on a batch boundary; global_step, the progress bar, checkpoint names and
            logged steps all count SGD steps (see makemore.steps). A callback that acts on every batch makes the
            fit take one SGD step per batch.
        accumulate_grad_batches: mini-batches of batch_size per SGD step: each step takes the gradient of their
            mean loss, holding one mini-batch's activations at a time (an SGD step of accumulate_grad_batches x
            batch_size examples in the memory of one mini-batch).
        val_every_n_steps: SGD steps between validations: makemore's epoch, at whose end validation runs (and
            with it the best checkpoint and last.ckpt). Default: one pass over the training examples in
            expectation, ceil(train examples / (batch_size * processes * accumulate_grad_batches)).
        eval_batch_size: examples (characters) per forward pass in validation and test (speed and memory, not
            results); passes of a few thousand keep the activations in the CPU's cache.
        train_on: what a training example is. "characters": one (context, next character) pair per character (and
            word end), as in the lectures; a sequence model trains on every position of its context window, as
            nanoGPT trains. "words" (word lists only): one window per word, holding the whole word (block_size must
            exceed the longest training word), for sequence models (makemore.models.Recurrent, Transformer) that
            predict at every position, as makemore.py trains them. Validation and test always score every
            character once, so the numbers compare.
        batch_seed: seed of the mini-batch draws; null uses data.seed. Change it (not data.seed, which decides
            the split) to repeat a run with other mini-batches on the same split.
        storage: the integer type each split's token ids are held in (one per character): uint8, int16 or int32;
            null: the smallest that holds the vocabulary (uint8 up to 256 characters).
    """

    def __init__(
        self,
        path: Optional[str] = None,
        format: FormatName = "words",
        block_size: int = 3,
        batch_size: int = 32,
        train_fraction: float = 0.8,
        val_fraction: float = 0.1,
        seed: int = 42,
        max_steps_per_batch: int = 1000,
        accumulate_grad_batches: int = 1,
        val_every_n_steps: Optional[int] = None,
        eval_batch_size: int = 4096,
        train_on: Literal["characters", "words"] = "characters",
        batch_seed: Optional[int] = None,
        storage: Optional[Literal["uint8", "int16", "int32"]] = None,
    ) -> None:
        super().__init__()
        for name, value in [
            ("block_size", block_size),
            ("batch_size", batch_size),
            ("max_steps_per_batch", max_steps_per_batch),
            ("accumulate_grad_batches", accumulate_grad_batches),
            ("eval_batch_size", eval_batch_size),
            ("val_every_n_steps", val_every_n_steps or 1),
        ]:
            if value < 1:
                raise DataError(f"data.{name} must be at least 1, got {value}")
        self.save_hyperparameters(ignore=["_instantiator"])  # the CLI's, not a setting
        # Read now: the vocabulary decides the model's shape (linked to the model by the CLI).
        whole_words = train_on == "words"
        self.format: DataFormat = format_class(format)(
            path, block_size, train_fraction, val_fraction, seed, whole_words
        )
        self.path, self.splits, self.vocabulary = self.format.path, self.format.splits, self.format.vocabulary
        try:
            self.dtype = storage_dtype(len(self.vocabulary), storage)
        except ValueError as err:
            raise DataError(f"{self.path}: {err}") from None
        self.examples: dict[str, Examples] = {}
        self._pool: Optional[tuple[int, Examples]] = None
        self._trained_steps_per_batch: Optional[int] = None  # a resumed run's, from its checkpoint
        self._steps_per_batch: Optional[int] = None  # this fit's

    @property
    def accumulate_grad_batches(self) -> int:
        """Mini-batches per SGD step."""
        return self.hparams.accumulate_grad_batches

    @property
    def split_fingerprint(self) -> dict[str, Any]:
        """The split's fingerprint, independent of the file's path: the words (or characters) of each split and a
        hash of them.

        Kept in checkpoints (linked to the model by the CLI): a checkpoint evaluated on another split, which
        could hold its training data, is refused.
        """
        return self.format.fingerprint

    @property
    def vocab(self) -> str:
        """The vocabulary as one string, the start token first: what the model is linked to and checkpoints keep."""
        return str(self.vocabulary)

    def setup(self, stage: str) -> None:
        if self.examples:  # setup runs once per stage; the examples do not change
            return
        for name in SPLITS:
            examples = self.format.examples(name, self.hparams.block_size, self.dtype)
            if examples is not None:
                self.examples[name] = examples

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_pool(self) -> Examples:
        """The training examples the mini-batches are drawn from (after setup): one per character, or per word
        with train_on words; with Lightning's overfit_batches, that many batches' worth."""
        overfit = self.trainer.overfit_batches if self.trainer is not None else 0
        if self._pool is not None and self._pool[0] == overfit:
            return self._pool[1]
        pool = self.examples["train"]
        if self.hparams.train_on == "words":  # the window ending at each word's end holds the whole word
            pool = pool.word_ends()
        if overfit:  # Lightning's overfit_batches: a fixed pool of that many mini-batches, no shuffling
            n = overfit * self.hparams.batch_size if isinstance(overfit, int) else max(1, int(overfit * len(pool)))
            pool = pool.subset(torch.arange(min(n, len(pool))))
        self._pool = (overfit, pool)
        return pool

    def epoch_steps(self) -> int:
        """SGD steps per epoch: data.val_every_n_steps, or one pass over this process's share in expectation (an SGD
        step takes accumulate_grad_batches mini-batches)."""
        if self.hparams.val_every_n_steps:
            return self.hparams.val_every_n_steps
        self.setup("fit")
        examples_per_step = self.hparams.batch_size * self._rank()[1] * self.hparams.accumulate_grad_batches
        return math.ceil(len(self.train_pool()) / examples_per_step)

    def train_dataloader(self) -> TrainBatches:
        if self.trainer is None:
            steps = self.hparams.max_steps_per_batch
        else:  # once per fit, from the trainer's settings (a resumed run keeps its checkpoint's)
            steps = steps_per_batch(self.trainer, self.hparams.max_steps_per_batch, self._trained_steps_per_batch)
            self._trained_steps_per_batch = None
        self._steps_per_batch = steps
        seed = self.hparams.seed if self.hparams.batch_seed is None else self.hparams.batch_seed
        return TrainBatches(
            self.train_pool(),
            self.hparams.batch_size,
            steps,
            self.epoch_steps(),
            seed,
            self._rank()[0],
            self.hparams.accumulate_grad_batches,
        )

    def state_dict(self) -> dict[str, Any]:
        # SGD steps per batch: a resumed run keeps them (Lightning's loop counts batches: its position in the epoch)
        return {"steps_per_batch": self._steps_per_batch} if self._steps_per_batch else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._trained_steps_per_batch = state_dict.get("steps_per_batch")

    def _eval_batches(self, split: str, rank: int, world_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """A split's evaluation batches, the share of process `rank` of `world_size`, as the format makes them."""
        if split not in self.examples:
            raise DataError(
                f"{self.path}: the text has no {split} split: data.train_fraction + data.val_fraction is 1; lower"
                " them to leave one"
            )
        return self.format.eval_batches(self.examples[split], self.hparams.eval_batch_size, rank, world_size)

    def whole_split(self, split: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """The evaluation batches of a whole split, on any process (after setup)."""
        return self._eval_batches(split, 0, 1)

    def val_dataloader(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self._eval_batches("val", *self._rank())

    def test_dataloader(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self._eval_batches("test", *self._rank())
