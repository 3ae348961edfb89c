"""The DataModule: train/val/test examples from a word list or a text, split as the lectures split them, and their
batches."""

import math
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import lightning as L
import torch

from makemore.errors import DataError
from makemore.steps import TrainBatches, steps_per_batch
from makemore.text import (
    Examples,
    Vocabulary,
    default_path,
    read_text,
    read_words,
    split_fingerprint,
    split_text,
    split_words,
    storage_dtype,
)

SPLITS = ("train", "val", "test")


def line_of(path: Path, word: str) -> int:
    """The line number of `word`'s first occurrence in the file (for error messages)."""
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if line.strip() == word:
            return number
    return 0


class EvalBatches:
    """A whole split in a few large batches of examples, this process's share only (every rank-th example; no
    padding, so exact): X (n, block_size), Y (n,), gathered when a batch is taken."""

    def __init__(self, examples: Examples, batch_size: int, rank: int, world_size: int) -> None:
        self.examples, self.batch_size, self.rank, self.world_size = examples, batch_size, rank, world_size
        self.count = len(range(rank, len(examples), world_size))

    def __len__(self) -> int:
        return math.ceil(self.count / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, self.count, self.batch_size):
            share = torch.arange(i, min(i + self.batch_size, self.count)) * self.world_size + self.rank
            yield self.examples[share]


class EvalWindows:
    """A text split as consecutive windows of block_size characters, this process's share (every rank-th window):
    the metric of a text, each character scored once from the characters before it in its window.

    Window k holds targets k*block_size ... k*block_size + L - 1 (L = block_size but in the last window). A batch is
    (X (n, block_size + L - 1), Y (n, L)): X holds the block_size characters before each window's first target and
    the window's inputs, so that a sequence network reads its inputs X[:, block_size - 1:] once per window and a
    network of fixed context reads the block_size characters before each target (`window_logits`). The last,
    shorter window comes alone in the last batch.
    """

    def __init__(self, examples: Examples, batch_size: int, rank: int, world_size: int) -> None:
        self.examples, self.block_size = examples, examples.block_size
        self.per_batch = max(1, batch_size // self.block_size)  # windows per batch: about batch_size targets
        complete = len(examples) // self.block_size  # windows of block_size targets; a shorter one may follow
        self.full = range(rank, complete, world_size)  # this process's
        self.last = len(examples) % self.block_size and complete % world_size == rank

    def __len__(self) -> int:
        return math.ceil(len(self.full) / self.per_batch) + int(self.last)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        B = self.block_size
        for i in range(0, len(self.full), self.per_batch):
            windows = self.full[i : i + self.per_batch]
            yield self.batch(torch.arange(windows.start, windows.stop, windows.step) * B, B)
        if self.last:
            first = (len(self.examples) // B) * B
            yield self.batch(torch.tensor([first]), len(self.examples) - first)

    def batch(self, first: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows starting at targets `first` (n,), `length` targets each: X (n, block_size + length - 1), Y."""
        span = first.unsqueeze(1) + torch.arange(length)  # the targets' positions, (n, L)
        # the block_size ids before each window's first target, then the window's inputs
        history = self.examples.contexts_at(first)  # (n, B)
        X = torch.cat([history, self.examples.ids[span[:, :-1]].long()], 1)
        return X, self.examples.ids[span].long()


class CharDataModule(L.LightningDataModule):
    """Train/val/test (context, next character) examples from a word list or a text, split as the lectures do.

    Args:
        path: the data file (UTF-8); by default the copy shipped with makemore of names.txt (format words) or of
            tiny shakespeare (format text).
        format: what the file is. "words": one word per line, each word an example sequence starting after the
            start token `.` and ending with `.` (the makemore lectures). "text": one stream of characters, newlines
            included (the GPT lecture's tiny shakespeare, any corpus): splits are contiguous, each character's
            context is the characters before it, and validation and test score consecutive windows of block_size
            characters (docs/text.md).
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
        format: Literal["words", "text"] = "words",
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
        text = format == "text"
        leaves_test = train_fraction + val_fraction < 1 or (text and train_fraction + val_fraction <= 1)
        if not (0 < train_fraction and 0 < val_fraction and leaves_test):
            raise DataError(
                f"data.train_fraction ({train_fraction}) and data.val_fraction ({val_fraction}) must be positive"
                + (" and sum to at most 1" if text else " and sum to less than 1, leaving a test split")
            )
        if text and train_on == "words":
            raise DataError("data.train_on words trains on whole words: it needs data.format words, not text")
        self.save_hyperparameters(ignore=["_instantiator"])  # the CLI's, not a setting
        self.path = Path(path) if path else default_path(format)
        # Read now: the vocabulary decides the model's shape (linked to the model by the CLI).
        if text:
            self.text = read_text(self.path)
            self.vocabulary = Vocabulary.from_text(self.text)
            self.splits: tuple = split_text(self.text, train_fraction, val_fraction)
            self._check_text_splits()
        else:
            self.words = read_words(self.path)
            self.vocabulary = Vocabulary.from_words(self.words)
            self.splits = split_words(self.words, train_fraction, val_fraction, seed)
            self._check_word_splits()
        try:
            self.dtype = storage_dtype(len(self.vocabulary), storage)
        except ValueError as err:
            raise DataError(f"{self.path}: {err}") from None
        self._fingerprint = split_fingerprint(self.splits, "chars" if text else "words")
        self.examples: dict[str, Examples] = {}
        self._pool: Optional[tuple[int, Examples]] = None
        self._trained_steps_per_batch: Optional[int] = None  # a resumed run's, from its checkpoint
        self._steps_per_batch: Optional[int] = None  # this fit's

    def _check_word_splits(self) -> None:
        if not all(self.splits):
            sizes = "/".join(str(len(s)) for s in self.splits)
            raise DataError(
                f"{self.path}: {len(self.words)} words give train/val/test splits of {sizes} words;"
                " every split needs at least one word"
            )
        if self.hparams.train_on == "words":
            longest = max(self.splits[0], key=len)
            if len(longest) + 1 > self.hparams.block_size:
                raise DataError(
                    f"{self.path}:{line_of(self.path, longest)}: data.train_on words trains on whole words, and the"
                    f" training word {longest!r} has {len(longest)} characters: data.block_size must be at least"
                    f" {len(longest) + 1} to hold it and the `.` before it (it is {self.hparams.block_size})"
                )

    def _check_text_splits(self) -> None:
        needed = self.hparams.block_size + 1
        for name, split in zip(SPLITS, self.splits):
            if (split or name != "test") and len(split) < needed:
                sizes = "/".join(f"{len(s):,}" for s in self.splits)
                raise DataError(
                    f"{self.path}: its {len(self.text):,} characters give train/val/test splits of {sizes}"
                    f" characters; the {name} split needs at least data.block_size + 1 = {needed:,}"
                )

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
        return self._fingerprint

    @property
    def vocab(self) -> str:
        """The vocabulary as one string, the start token first: what the model is linked to and checkpoints keep."""
        return str(self.vocabulary)

    def setup(self, stage: str) -> None:
        if self.examples:  # setup runs once per stage; the examples do not change
            return
        build = Examples.from_text if self.hparams.format == "text" else Examples.from_words
        for name, split in zip(SPLITS, self.splits):
            if split:
                self.examples[name] = build(split, self.vocabulary, self.hparams.block_size, self.dtype)

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

    def _eval_batches(self, split: str, rank: int, world_size: int) -> "EvalBatches | EvalWindows":
        """A split's evaluation batches, the share of process `rank` of `world_size`: examples or a text's windows."""
        if split not in self.examples:
            raise DataError(
                f"{self.path}: the text has no {split} split: data.train_fraction + data.val_fraction is 1; lower"
                " them to leave one"
            )
        batches = EvalWindows if self.hparams.format == "text" else EvalBatches
        return batches(self.examples[split], self.hparams.eval_batch_size, rank, world_size)

    def whole_split(self, split: str) -> "EvalBatches | EvalWindows":
        """The evaluation batches of a whole split, on any process (after setup)."""
        return self._eval_batches(split, 0, 1)

    def val_dataloader(self) -> "EvalBatches | EvalWindows":
        return self._eval_batches("val", *self._rank())

    def test_dataloader(self) -> "EvalBatches | EvalWindows":
        return self._eval_batches("test", *self._rank())
