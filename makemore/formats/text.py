"""data.format text: one UTF-8 file read as a stream of characters, newlines included (the GPT lecture's tiny
shakespeare, any corpus). Its splits are contiguous; each character's context is the characters before it; evaluation
scores consecutive windows of block_size characters (EvalWindows, docs/text.md); sampled as a passage."""

import math
from pathlib import Path
from typing import Iterator, Optional, Union

import torch

from makemore.errors import DataError
from makemore.text import (
    Examples,
    Vocabulary,
    asset,
    check_fractions,
    encoding_hint,
    read_utf8,
    split_fingerprint,
)

# The start token of a text: index 0, before a split's (or file's) first character. A text holds every character but
# NUL (a file with NUL bytes is refused as binary), so this one never appears in it, and no model predicts it.
TEXT_START = "\x00"
SPLITS = ("train", "val", "test")


def read_text(path: Union[str, Path]) -> str:
    """Read a text corpus: the whole UTF-8 file as one string, line endings as `\\n` (as Python's text mode reads
    them). DataError naming the file (and line) for what `read_utf8` refuses, a binary file (NUL bytes) or a
    text with nothing but whitespace."""
    text, raw = read_utf8(path, "a UTF-8 text file")
    nul = text.find("\0")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        hint = (
            encoding_hint(raw) or "; a text corpus is UTF-8 text: NUL bytes come from a binary file or another encoding"
        )
        raise DataError(f"{path}:{line}: NUL byte at character {nul:,}{hint}")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DataError(f"{path}: no text (the file is empty or holds only whitespace)")
    return text


def split_text(text: str, train_fraction: float, val_fraction: float) -> tuple[str, str, str]:
    """A text's contiguous split, as the GPT lecture and nanoGPT cut it: the first int(f*n) characters train, the next
    up to int((f+v)*n) validate, the rest (possibly nothing) is the test split."""
    n1 = int(train_fraction * len(text))
    n2 = int((train_fraction + val_fraction) * len(text))
    return text[:n1], text[n1:n2], text[n2:]


def vocabulary_of_text(text: str) -> Vocabulary:
    """NUL (the start token), then every character of the text."""
    return Vocabulary.of(TEXT_START, text)


def refuse_whole_words(whole_words: bool, name: str) -> None:
    """DataError for data.train_on words, which a stream of characters has no words for."""
    if whole_words:
        raise DataError(f"data.train_on words trains on whole words: it needs data.format words, not {name}")


def check_split_sizes(path: Path, what: str, sizes: list[int], block_size: int) -> None:
    """DataError naming `path` unless the train and val splits (and a test split, if any) hold at least
    block_size + 1 characters each; `what` says what was split ("its 4,000 characters")."""
    needed = block_size + 1
    for name, size in zip(SPLITS, sizes):
        if (size or name != "test") and size < needed:
            shown = "/".join(f"{s:,}" for s in sizes)
            raise DataError(
                f"{path}: {what} give train/val/test splits of {shown} characters; the {name} split needs at least"
                f" data.block_size + 1 = {needed:,}"
            )


class EvalWindows:
    """A split of text as consecutive windows of block_size characters, this process's share (every rank-th window):
    the metric of a text, each character scored once from the characters before it in its window.

    Each segment of the split (a text, a file's part) is tiled on its own, from its first character: window k holds
    its targets k*block_size ... k*block_size + L - 1 (L = block_size but in its last window), so no window reaches
    across segments. A batch is (X (n, block_size + L - 1), Y (n, L)): X holds the block_size characters before each
    window's first target (the start token before a segment's start) and the window's inputs, so that a sequence
    network reads its inputs X[:, block_size - 1:] once per window and a network of fixed context reads the
    block_size characters before each target (`window_logits`). A segment's last, shorter window comes alone in a
    batch; batches follow the split's order (distillation reads the training split so).
    """

    def __init__(self, examples: Examples, batch_size: int, rank: int, world_size: int) -> None:
        self.examples, self.block_size = examples, examples.block_size
        B = self.block_size
        self.per_batch = max(1, batch_size // B)  # windows per batch: about batch_size targets
        ends = torch.cat([examples.starts[1:], torch.tensor([len(examples.ids)])])
        # runs of this process's windows of one length, in order: (first targets, length); windows are numbered
        # through the split, segment by segment, and window i is process i % world_size's
        self.runs: list[tuple[torch.Tensor, int]] = []
        index = 0
        for start, end in zip(examples.starts.tolist(), ends.tolist()):
            complete, rest = divmod(end - start, B)
            mine = torch.arange((rank - index) % world_size, complete, world_size)
            if len(mine):
                self.runs.append((start + mine * B, B))
            if rest and (index + complete) % world_size == rank:
                self.runs.append((torch.tensor([start + complete * B]), rest))
            index += complete + int(rest > 0)

    def __len__(self) -> int:
        return sum(math.ceil(len(firsts) / self.per_batch) for firsts, _ in self.runs)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for firsts, length in self.runs:
            for i in range(0, len(firsts), self.per_batch):
                yield self.batch(firsts[i : i + self.per_batch], length)

    def batch(self, first: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The windows starting at targets `first` (n,), `length` targets each: X (n, block_size + length - 1), Y."""
        span = first.unsqueeze(1) + torch.arange(length)  # the targets' positions, (n, L)
        # the block_size ids before each window's first target, then the window's inputs
        history = self.examples.contexts_at(first)  # (n, B)
        X = torch.cat([history, self.examples.ids[span[:, :-1]].long()], 1)
        return X, self.examples.ids[span].long()


class Text:
    """A text: one UTF-8 file, one stream of characters split contiguously (the first share trains, the next
    validates, the rest, possibly nothing, tests); sampled as a passage. See makemore.formats.DataFormat.

    Args:
        path: the text file; None: the copy of tiny shakespeare shipped with makemore.
        block_size: the context length: each split needs at least block_size + 1 characters.
        train_fraction: the first share of the characters, which trains.
        val_fraction: the next share, which validates; train_fraction + val_fraction may be 1 (no test split).
        seed: unused: the split is contiguous.
        whole_words: refused (a text has no words to train on whole).
    """

    passage = True
    shipped = "tinyshakespeare.txt"

    def __init__(
        self,
        path: Optional[Union[str, Path]],
        block_size: int,
        train_fraction: float,
        val_fraction: float,
        seed: int,
        whole_words: bool = False,
    ) -> None:
        check_fractions(train_fraction, val_fraction, test_may_be_empty=True)
        refuse_whole_words(whole_words, "text")
        self.path = Path(path) if path else asset(self.shipped)
        self.text = read_text(self.path)
        self.vocabulary = vocabulary_of_text(self.text)
        self.splits = split_text(self.text, train_fraction, val_fraction)
        check_split_sizes(self.path, f"its {len(self.text):,} characters", [len(s) for s in self.splits], block_size)
        self.fingerprint = split_fingerprint(self.splits, "chars")

    def examples(self, split: str, block_size: int, dtype: torch.dtype) -> Optional[Examples]:
        text = self.splits[SPLITS.index(split)]
        return Examples.from_segments([text], self.vocabulary, block_size, dtype) if text else None

    def eval_batches(self, examples: Examples, batch_size: int, rank: int, world_size: int) -> EvalWindows:
        return EvalWindows(examples, batch_size, rank, world_size)
