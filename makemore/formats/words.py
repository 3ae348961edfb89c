"""data.format words: a word list (names.txt), one word per line, each word an example sequence (the makemore
lectures). The split shuffles the words; evaluation scores each character and word end once, example by example."""

import math
import random
import re
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

# The start/end token of a word list: index 0, so it may not appear inside a word.
TOKEN = "."
# Unicode's control characters (category Cc: U+0000..U+001F and U+007F..U+009F), refused inside a word: NUL bytes
# come from a file in another encoding, and a tab or newline would break the tab-separated columns `sample` prints.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
NUL_HINT = "; a word list is UTF-8 text: NUL bytes come from another encoding (UTF-16, UTF-32) or a binary file"
SPLITS = ("train", "val", "test")


def read_words(path: Union[str, Path]) -> list[str]:
    """Read one word per line; surrounding whitespace and blank lines are dropped.

    Lines end where str.splitlines ends them (\\n, \\r\\n, \\r, and the rarer breaks it knows); Windows line
    endings and a UTF-8 byte order mark are accepted. Raises DataError naming the file (and line) for a
    missing or unreadable file, bytes that are not UTF-8, a word containing the reserved `.` or a control
    character (Unicode category Cc: NUL, tab, escape, ...), or a file with no words at all.
    """
    text, raw = read_utf8(path, "a text file with one word per line")
    words = []
    for number, line in enumerate(text.splitlines(), start=1):
        word = line.strip()
        control = CONTROL.search(word)
        if control:
            char = control.group()
            hint = (encoding_hint(raw) or NUL_HINT) if char == "\0" else ""
            raise DataError(
                f"{path}:{number}: the word {word!r} contains the control character {char!r} (U+{ord(char):04X}) at"
                f" column {line.index(char) + 1}; words may not contain control characters{hint}"
            )
        if TOKEN in word:
            raise DataError(
                f"{path}:{number}: the word {word!r} contains {TOKEN!r}, which is reserved as the start/end token"
            )
        if word:
            words.append(word)
    if not words:
        raise DataError(f"{path}: no words (the file is empty or holds only blank lines)")
    return words


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


def vocabulary_of_words(words: list[str]) -> Vocabulary:
    """`.` (the start and end token), then every character of the words."""
    return Vocabulary.of(TOKEN, "".join(words))


def word_examples(
    words: list[str], vocabulary: Vocabulary, block_size: int, dtype: torch.dtype = torch.uint8
) -> Examples:
    """Every character of `words` and each word's end `.`, each an example; a context never reaches into the word
    before."""
    return Examples.from_segments([word + TOKEN for word in words], vocabulary, block_size, dtype)


def build_examples(words: list[str], vocabulary: Vocabulary, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All (context, next character) pairs of `words`, as tensors: X (N, block_size) and Y (N,), int64, with
    N = sum(len(w) + 1) and the rows in word order: row j of word w holds the block_size characters before position
    j. (The lecture's build_dataset; the DataModule holds `Examples` instead.)"""
    return word_examples(words, vocabulary, block_size, torch.int64).tensors()


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


class Words:
    """A word list: one word per line, each word an example sequence starting after the start token `.` and ending
    with `.`; the words shuffled (data.seed) and split; sampled as words. See makemore.formats.DataFormat.

    Args:
        path: the word list (UTF-8); None: the copy of names.txt shipped with makemore.
        block_size: the context length.
        train_fraction: the share of the shuffled words that trains.
        val_fraction: the share after it that validates; the rest (at least one word) tests.
        seed: seed of `random.shuffle` for the split.
        whole_words: data.train_on words: one example per training word, so block_size must hold the longest.
    """

    passage = False
    shipped = "names.txt"

    def __init__(
        self,
        path: Optional[Union[str, Path]],
        block_size: int,
        train_fraction: float,
        val_fraction: float,
        seed: int,
        whole_words: bool = False,
    ) -> None:
        check_fractions(train_fraction, val_fraction, test_may_be_empty=False)
        self.path = Path(path) if path else asset(self.shipped)
        self.words = read_words(self.path)
        self.vocabulary = vocabulary_of_words(self.words)
        self.splits = split_words(self.words, train_fraction, val_fraction, seed)
        if not all(self.splits):
            sizes = "/".join(str(len(s)) for s in self.splits)
            raise DataError(
                f"{self.path}: {len(self.words)} words give train/val/test splits of {sizes} words;"
                " every split needs at least one word"
            )
        self.fingerprint = split_fingerprint(self.splits, "words")
        longest = max(self.splits[0], key=len)
        if whole_words and len(longest) + 1 > block_size:
            raise DataError(
                f"{self.path}:{line_of(self.path, longest)}: data.train_on words trains on whole words, and the"
                f" training word {longest!r} has {len(longest)} characters: data.block_size must be at least"
                f" {len(longest) + 1} to hold it and the `.` before it (it is {block_size})"
            )

    def examples(self, split: str, block_size: int, dtype: torch.dtype) -> Optional[Examples]:
        return word_examples(self.splits[SPLITS.index(split)], self.vocabulary, block_size, dtype)

    def eval_batches(self, examples: Examples, batch_size: int, rank: int, world_size: int) -> EvalBatches:
        return EvalBatches(examples, batch_size, rank, world_size)
