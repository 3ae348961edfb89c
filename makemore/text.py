"""Characters in, (context, next character) examples out: what every data format (makemore.formats) shares.

Reading a UTF-8 file with one-line errors, the vocabulary (the format's start token first, then the characters in
sorted order), the split's fingerprint, and `Examples`: a split held once, as a compact integer tensor of its token
ids and where its segments (a word, a text, a file) start; contexts are gathered when a batch is drawn, so memory grows
with the characters, not with characters x block_size. A context never reaches back past its segment's start: it is
left-padded with the start token (id 0) there. No Lightning here: sampling and checkpoint reading use this module
without paying Lightning's import.
"""

import codecs
import hashlib
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import torch

from makemore.errors import DataError

# How a split's token ids are stored: the smallest integer type that holds the vocabulary (data.storage).
STORAGE = {"uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32}

# Byte order marks of the encodings that are not UTF-8 (UTF-32LE's starts with UTF-16LE's: it comes first).
WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def encoding_hint(raw: bytes) -> str:
    """'; <the encoding the bytes look like>' for UTF-16 or UTF-32 text (with or without a byte order mark), else ''."""
    convert = "convert the file to UTF-8 (for example iconv -f {} -t UTF-8)"
    for bom, name in WIDE_BOMS:
        if raw.startswith(bom):
            return f"; it starts with a {name} byte order mark: " + convert.format(name)
    # UTF-16 without a byte order mark: the NUL bytes of ASCII characters fill every other byte, odd or even.
    even, odd = raw[0::2].count(0), raw[1::2].count(0)
    if max(even, odd) >= len(raw) // 4 > 0 and min(even, odd) <= max(even, odd) // 10:
        name = "UTF-16LE" if odd > even else "UTF-16BE"
        return f"; NUL bytes alternate with the characters: it looks like {name} text, " + convert.format(name)
    return ""


def read_utf8(path: Union[str, Path], expected: str) -> tuple[str, bytes]:
    """The text of a UTF-8 file (a UTF-8 byte order mark dropped) and its bytes; DataError naming the file (and
    line) for a missing or unreadable file, a directory, a pipe, or bytes that are not UTF-8. `expected` says what
    the file should be, for those errors."""
    path = Path(path)
    if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO or a device would block or never end
        raise DataError(f"{path}: not a regular file (a pipe or a device); give {expected}")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected {expected}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None
    if raw.startswith(codecs.BOM_UTF8):  # as some Windows editors write; not a character of the first word
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = len((raw[: err.start].decode("utf-8") + "?").splitlines())  # counted as the lines below are
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {raw[err.start]:#04x}){encoding_hint(raw)}") from None
    return text, raw


class Vocabulary:
    """Characters <-> integers: the start token is 0, the other characters follow in sorted order.

    The data format chooses the start token (makemore.formats: `.` for a word list, where it also ends each word;
    NUL for a text); the vocabulary does not know the format.

    Args:
        chars: every character of the vocabulary, the start token first (as `str(vocabulary)` gives).
    """

    def __init__(self, chars: str) -> None:
        if not chars or len(set(chars)) != len(chars):
            raise ValueError(f"a vocabulary is a start token followed by distinct characters, got {chars!r}")
        self.itos = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def of(cls, start: str, text: str) -> "Vocabulary":
        """The start token, then every distinct character of `text` in sorted order."""
        return cls(start + "".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.itos)

    def __str__(self) -> str:
        return "".join(self.itos)

    def encode(self, word: str) -> list[int]:
        return [self.stoi[ch] for ch in word]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids)

    def labels(self) -> list[str]:
        """A printable label per id, for figures and TensorBoard's projector: `<s>` for NUL (a text's start token),
        escapes for whitespace (`\\n`, `' '`)."""
        special = {"\0": "<s>", "\n": "\\n", "\t": "\\t", " ": "' '"}
        return [special.get(ch, ch) for ch in self.itos]

    def ids(self, text: str, dtype: torch.dtype = torch.int64, chunk: int = 1 << 22) -> torch.Tensor:
        """The token ids of every character of `text`, as one tensor of `dtype`, encoded `chunk` characters at a time
        (a 100-million-character text needs no int64 copy of itself)."""
        lookup = torch.zeros(max(map(ord, self.itos)) + 1, dtype=torch.int64)
        lookup[torch.tensor([ord(ch) for ch in self.itos])] = torch.arange(len(self))
        out = torch.empty(len(text), dtype=dtype)
        for start in range(0, len(text), chunk):
            part = text[start : start + chunk].encode("utf-32-le")
            out[start : start + chunk] = lookup[torch.frombuffer(bytearray(part), dtype=torch.int32).long()]
        return out


def storage_dtype(vocab_size: int, storage: Optional[str] = None, source: str = "data.storage") -> torch.dtype:
    """The integer type a split's token ids are held in: `storage` (uint8, int16 or int32), or the smallest that holds
    vocab_size ids. ValueError naming `source` when the vocabulary does not fit the chosen one."""
    if storage is None:
        return next(dtype for dtype in STORAGE.values() if vocab_size - 1 <= torch.iinfo(dtype).max)
    dtype = STORAGE[storage]
    if vocab_size - 1 > torch.iinfo(dtype).max:
        raise ValueError(
            f"{source} {storage} holds ids up to {torch.iinfo(dtype).max}, but the vocabulary has {vocab_size:,}"
            " characters; use int16 or int32, or leave it null (the smallest that fits)"
        )
    return dtype


class Examples:
    """The (context, next character) examples of one split, held once: the split's token ids (the targets, in a
    compact integer type) and where each of its segments (a word, a whole text, a file) starts; the contexts are
    gathered when examples are drawn, never stored.

    The context of target i is the `block_size` ids before it in its segment, left-padded with the start token 0.

    Args:
        ids: the token id of each target, in order (a word's characters then its `.`; a text's characters).
        starts: the index of each segment's first target, ascending, starting at 0.
        block_size: the context length.
        targets: the positions that are examples (None: all of them); see `subset`.
    """

    def __init__(
        self, ids: torch.Tensor, starts: torch.Tensor, block_size: int, targets: Optional[torch.Tensor] = None
    ) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        self.ids, self.starts, self.block_size, self.targets = ids, starts, block_size, targets
        self._back = torch.arange(block_size, 0, -1)  # context column k holds the id block_size - k places back

    @classmethod
    def from_segments(
        cls, segments: list[str], vocabulary: Vocabulary, block_size: int, dtype: torch.dtype = torch.uint8
    ) -> "Examples":
        """Every character of `segments` an example, its context the characters before it in its segment."""
        lengths = torch.tensor([len(segment) for segment in segments], dtype=torch.int64)
        return cls(vocabulary.ids("".join(segments), dtype), torch.cumsum(lengths, 0) - lengths, block_size)

    def __len__(self) -> int:
        return len(self.ids) if self.targets is None else len(self.targets)

    def subset(self, targets: torch.Tensor) -> "Examples":
        """These examples (indices into this object) only, sharing the ids."""
        positions = targets if self.targets is None else self.targets[targets]
        return Examples(self.ids, self.starts, self.block_size, positions)

    def word_ends(self) -> "Examples":
        """The examples whose target is a word's end `.`: their contexts hold whole words (data.train_on words)."""
        if self.targets is None:
            return self.subset(torch.nonzero(self.ids == 0).squeeze(1))
        return self.subset(torch.nonzero(self.ids[self.targets] == 0).squeeze(1))

    def positions(self, index: Union[torch.Tensor, slice]) -> torch.Tensor:
        """The positions in `ids` of examples `index` (int64 indices or a slice)."""
        if isinstance(index, slice):
            index = torch.arange(*index.indices(len(self)))
        return index if self.targets is None else self.targets[index]

    def targets_of(self, index: Union[torch.Tensor, slice]) -> torch.Tensor:
        return self.ids[self.positions(index)].long()

    def __getitem__(self, index: Union[torch.Tensor, slice]) -> tuple[torch.Tensor, torch.Tensor]:
        """Examples `index`: contexts X (..., block_size) and targets Y (...), int64."""
        where = self.positions(index)
        return self.contexts_at(where), self.ids[where].long()

    def contexts_at(self, where: torch.Tensor) -> torch.Tensor:
        """The contexts (..., block_size) of the targets at positions `where` of `ids`, gathered now."""
        segment = torch.searchsorted(self.starts, where, right=True) - 1
        before = where - self.starts[segment]  # ids of its segment before each target
        back = self._back
        index = (where.unsqueeze(-1) - back).clamp(min=0)
        return torch.where(back <= before.unsqueeze(-1), self.ids[index].long(), 0)

    @property
    def contexts(self) -> "Contexts":
        """The contexts alone, as a sequence indexed like a tensor (X[a:b] gathers those rows)."""
        return Contexts(self)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All examples at once: X (N, block_size), Y (N,). For small data (the lecture's notebook); training and
        evaluation gather batches instead."""
        return self[slice(None)]


class Contexts:
    """The contexts of some Examples, gathered when indexed: len(X), X[a:b] -> (b - a, block_size) int64."""

    def __init__(self, examples: Examples) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: Union[torch.Tensor, slice]) -> torch.Tensor:
        return self.examples.contexts_at(self.examples.positions(index))


def check_fractions(train_fraction: float, val_fraction: float, test_may_be_empty: bool) -> None:
    """DataError unless data.train_fraction and data.val_fraction are positive and leave a test split (or, where
    `test_may_be_empty`, sum to at most 1)."""
    leaves_test = train_fraction + val_fraction < 1 or (test_may_be_empty and train_fraction + val_fraction <= 1)
    if not (0 < train_fraction and 0 < val_fraction and leaves_test):
        raise DataError(
            f"data.train_fraction ({train_fraction}) and data.val_fraction ({val_fraction}) must be positive"
            + (" and sum to at most 1" if test_may_be_empty else " and sum to less than 1, leaving a test split")
        )


def asset(name: str) -> Path:
    """A data file shipped with the package (makemore/assets/README.md: sources, licences, hashes)."""
    return Path(str(resources.files("makemore") / "assets" / name))


def split_fingerprint(splits: tuple, unit: str = "words") -> dict[str, Union[int, str]]:
    """Sizes and a hash of each split, independent of the file's path (kept in checkpoints): word counts and a hash
    of the words of a word list's splits (lists of words), character counts and a hash of a text's (strings)."""
    fingerprint: dict[str, Union[int, str]] = {}
    for name, split in zip(("train", "val", "test"), splits):
        joined = split if isinstance(split, str) else "\n".join(split)
        fingerprint[f"{name}_{unit}"] = len(split)
        fingerprint[f"{name}_sha256"] = hashlib.sha256(joined.encode()).hexdigest()[:16]
    return fingerprint
