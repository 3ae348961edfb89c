"""Words in, (context, next character) examples out: the vocabulary, the window builder, the DataModule.

A word list is a UTF-8 text file with one word per line. Each word of length n gives n + 1 examples:
the `block_size` characters before each position (left-padded with the start/end token `.`) and the
character at that position, the last one being `.` again.
"""

import codecs
import math
import random
from importlib import resources
from pathlib import Path
from typing import Iterator, Optional, Union

import lightning as L
import torch
from lightning.pytorch.tuner.lr_finder import _LRCallback

# The start/end token: index 0 in every vocabulary, so it may not appear inside a word.
TOKEN = "."


class DataError(ValueError):
    """Bad input data or data settings; the message names the file (and line) or setting and what is wrong."""


def default_path() -> Path:
    """The copy of names.txt shipped with the package (see makemore/assets/README.md)."""
    return Path(str(resources.files("makemore") / "assets" / "names.txt"))


def read_words(path: Union[str, Path]) -> list[str]:
    """Read one word per line; surrounding whitespace and blank lines are dropped.

    Windows line endings and a UTF-8 byte order mark are accepted. Raises DataError naming the file
    (and line) for a missing or unreadable file, bytes that are not UTF-8, a word containing the
    reserved `.`, or a file with no words at all.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a text file with one word per line") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None
    if raw.startswith(codecs.BOM_UTF8):  # as some Windows editors write; not a character of the first word
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {raw[err.start]:#04x})") from None
    words = []
    for number, line in enumerate(text.splitlines(), start=1):
        word = line.strip()
        if TOKEN in word:
            raise DataError(
                f"{path}:{number}: the word {word!r} contains {TOKEN!r}, which is reserved as the start/end token"
            )
        if word:
            words.append(word)
    if not words:
        raise DataError(f"{path}: no words (the file is empty or holds only blank lines)")
    return words


class Vocabulary:
    """Characters <-> integers: `.` is 0, the other characters follow in sorted order.

    Args:
        chars: every character of the vocabulary, `.` first (as `str(vocabulary)` gives).
    """

    def __init__(self, chars: str) -> None:
        if not chars.startswith(TOKEN) or len(set(chars)) != len(chars):
            raise ValueError(f"a vocabulary is {TOKEN!r} followed by distinct characters, got {chars!r}")
        self.itos = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_words(cls, words: list[str]) -> "Vocabulary":
        return cls(TOKEN + "".join(sorted(set("".join(words)))))

    def __len__(self) -> int:
        return len(self.itos)

    def __str__(self) -> str:
        return "".join(self.itos)

    def encode(self, word: str) -> list[int]:
        return [self.stoi[ch] for ch in word]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids)


def build_examples(words: list[str], vocabulary: Vocabulary, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All (context, next character) pairs of `words`, vectorised.

    Returns X of shape (N, block_size) and Y of shape (N,), int64, with N = sum(len(w) + 1) and the
    rows in word order: row j of word w holds the block_size characters before position j.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    # Encode every word with one trailing `.`, all in one flat tensor: the targets.
    text = "".join(word + TOKEN for word in words)
    lookup = torch.zeros(max(map(ord, vocabulary.itos)) + 1, dtype=torch.int64)
    lookup[torch.tensor([ord(ch) for ch in vocabulary.itos])] = torch.arange(len(vocabulary))
    codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
    Y = lookup[codes]  # (N,)
    # Position of each target inside its own word (0 for the first character).
    lengths = torch.tensor([len(word) + 1 for word in words])
    starts = torch.cumsum(lengths, 0) - lengths
    position = torch.arange(len(Y)) - torch.repeat_interleave(starts, lengths)
    # Context column k holds the character block_size - k places back, or `.` before the word starts.
    back = torch.arange(block_size, 0, -1)  # (block_size,)
    index = torch.arange(len(Y)).unsqueeze(1) - back  # (N, block_size)
    X = torch.where(back <= position.unsqueeze(1), Y[index.clamp(min=0)], 0)
    return X, Y


def split_words(
    words: list[str], train_fraction: float, val_fraction: float, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """The lecture's split: shuffle with `random.seed(seed)`, cut at int(f*n) and int((f+v)*n)."""
    words = list(words)
    random.seed(seed)
    random.shuffle(words)
    n1 = int(train_fraction * len(words))
    n2 = int((train_fraction + val_fraction) * len(words))
    return words[:n1], words[n1:n2], words[n2:]


def lr_finder_running(trainer: L.Trainer) -> bool:
    """Whether Lightning's learning-rate finder is sweeping (it swaps in its own callback list)."""
    return any(isinstance(callback, _LRCallback) for callback in trainer.callbacks)


def steps_per_batch_for(intervals: list[int], limit: int) -> int:
    """The most SGD steps, at most `limit`, that one batch can carry so every interval ends on a batch boundary.

    That is the largest divisor of the intervals' greatest common divisor not above `limit` (`limit` when
    there are no intervals).
    """
    common = math.gcd(*intervals) if intervals else 0
    if common == 0:
        return limit
    return max(d for d in range(1, min(limit, common) + 1) if common % d == 0)


class TrainBatches:
    """Training batches: each one stacks `steps` random mini-batches, one per SGD step.

    Mini-batches are drawn uniformly with replacement, as the lecture's `torch.randint` does. A
    Lightning batch carries many SGD steps because the model is so small that Lightning's per-batch
    work would otherwise cost more than the arithmetic (see README, Performance).

    Batch `i` of epoch `e` on process `rank` depends only on (seed, rank, e, i), so runs are
    reproducible and a resumed run continues with the same data order (`state_dict`).
    """

    def __init__(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        batch_size: int,
        steps: int,
        steps_per_epoch: int,
        seed: int,
        rank: int,
    ) -> None:
        self.X, self.Y = X, Y
        self.batch_size = batch_size
        self.steps = steps
        self.steps_per_epoch = steps_per_epoch
        self.seed, self.rank = seed, rank
        self.epoch = 0
        self.served = 0  # batches of `epoch` handed out so far

    def __len__(self) -> int:
        return math.ceil(self.steps_per_epoch / self.steps)

    def batch(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch i of the current epoch: X (steps, batch_size, block_size), Y (steps, batch_size)."""
        steps = min(self.steps, self.steps_per_epoch - i * self.steps)
        n = len(self.Y)
        if n <= self.batch_size:  # a pool no bigger than a batch (overfit_batches): the whole pool each step
            ix = torch.arange(n).expand(steps, n)
        else:
            generator = torch.Generator().manual_seed(hash((self.seed, self.rank, self.epoch, i)) % 2**63)
            ix = torch.randint(0, n, (steps, self.batch_size), generator=generator)
        return self.X[ix], self.Y[ix]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.served >= len(self):  # the previous epoch was served in full
            self.epoch, self.served = self.epoch + 1, 0
        for i in range(self.served, len(self)):
            # Lightning takes batches one at a time from a loader with a length (no prefetch), so
            # `served` is also the number of batches trained on: what a checkpoint must remember.
            self.served = i + 1
            yield self.batch(i)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "served": self.served, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        steps = state.get("steps", self.steps)
        if steps != self.steps:  # `served` counts batches: with another size they would be other steps
            raise DataError(
                f"the checkpoint was trained with {steps} SGD steps per batch, this run has {self.steps};"
                " resume with the trainer.log_every_n_steps, val_check_interval and data.steps_per_batch it was"
                " trained with (they decide the steps per batch)"
            )
        self.epoch, self.served = state["epoch"], state["served"]


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
        steps_per_batch: the most SGD steps one Lightning batch carries, for speed. A fit makes batches as
            large as this allows while every interval the trainer counts (log_every_n_steps, an integer
            val_check_interval, limit_train_batches, a ModelCheckpoint's every_n_train_steps) still ends on
            a batch boundary, and those intervals, global_step, max_steps, the progress bar, checkpoint names
            and logged steps all count SGD steps (makemore.callbacks.StepIntervals). train_loss is logged as
            the mean over the steps of one batch.
        steps_per_epoch: SGD steps per epoch (validation runs at epoch ends by default); default one pass in
            expectation, ceil(train examples / (batch_size * processes)).
        eval_batch_size: examples per forward pass in validation and test (speed and memory, not results);
            passes of a few thousand keep the activations in the CPU's cache.
    """

    def __init__(
        self,
        path: Optional[str] = None,
        block_size: int = 3,
        batch_size: int = 32,
        train_fraction: float = 0.8,
        val_fraction: float = 0.1,
        seed: int = 42,
        steps_per_batch: int = 1000,
        steps_per_epoch: Optional[int] = None,
        eval_batch_size: int = 4096,
    ) -> None:
        super().__init__()
        for name, value in [("block_size", block_size), ("batch_size", batch_size), ("steps_per_batch", steps_per_batch),
                            ("eval_batch_size", eval_batch_size), ("steps_per_epoch", steps_per_epoch or 1)]:
            if value < 1:
                raise DataError(f"data.{name} must be at least 1, got {value}")
        if not (0 < train_fraction and 0 < val_fraction and train_fraction + val_fraction < 1):
            raise DataError(
                f"data.train_fraction ({train_fraction}) and data.val_fraction ({val_fraction}) must be positive"
                " and sum to less than 1, leaving a test split"
            )
        self.save_hyperparameters()
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
        self.examples: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        # SGD steps per training batch in the current fit, chosen by StepIntervals; None: steps_per_batch.
        self.batch_steps: Optional[int] = None

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

    def _train_pool(self) -> tuple[torch.Tensor, torch.Tensor]:
        X, Y = self.examples["train"]
        overfit = self.trainer.overfit_batches if self.trainer is not None else 0
        if overfit:  # Lightning's overfit_batches: a fixed pool of that many mini-batches, no shuffling
            n = overfit * self.hparams.batch_size if isinstance(overfit, int) else max(1, int(overfit * len(Y)))
            X, Y = X[:n], Y[:n]
        return X, Y

    def epoch_steps(self) -> int:
        """SGD steps per epoch: data.steps_per_epoch, or one pass over this process's share in expectation."""
        if self.hparams.steps_per_epoch:
            return self.hparams.steps_per_epoch
        self.setup("fit")
        return math.ceil(len(self._train_pool()[1]) / (self.hparams.batch_size * self._rank()[1]))

    def train_dataloader(self) -> TrainBatches:
        X, Y = self._train_pool()
        # Lightning's learning-rate finder records one loss per Lightning batch: give it one step each.
        if self.trainer is not None and lr_finder_running(self.trainer):
            steps = 1
        else:
            steps = self.batch_steps or self.hparams.steps_per_batch
        rank = self._rank()[0]
        return TrainBatches(X, Y, self.hparams.batch_size, steps, self.epoch_steps(), self.hparams.seed, rank)

    def _eval_batches(self, split: str) -> EvalBatches:
        return EvalBatches(*self.examples[split], self.hparams.eval_batch_size, *self._rank())

    def val_dataloader(self) -> EvalBatches:
        return self._eval_batches("val")

    def test_dataloader(self) -> EvalBatches:
        return self._eval_batches("test")
