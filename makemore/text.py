"""Words or a text in, (context, next character) examples out: reading, the vocabulary, the split, the examples.

A word list is a UTF-8 text file with one word per line. Each word of length n gives n + 1 examples:
the `block_size` characters before each position (left-padded with the start/end token `.`) and the
character at that position, the last one being `.` again. A text is a UTF-8 file read as one stream of
characters (newlines included); its splits are contiguous, and each character of a split is an example, with the
characters before it in the split as its context (left-padded with the text's start token at the split's start).

A split is held once, as a compact integer tensor of its token ids (`Examples`); contexts are gathered when a
batch is drawn, so memory grows with the characters, not with characters x block_size. No Lightning here:
sampling and checkpoint reading use this module without paying Lightning's import.
"""

import codecs
import hashlib
import random
import re
from importlib import resources
from pathlib import Path
from typing import Optional, Union

import torch

from makemore.errors import DataError

# The start/end token of a word list: index 0, so it may not appear inside a word.
TOKEN = "."
# The start token of a text: index 0, before a split's first character. A text holds every character but NUL (a
# file with NUL bytes is refused as binary), so this one never appears in it, and no model predicts it.
TEXT_START = "\x00"
# How a split's token ids are stored: the smallest integer type that holds the vocabulary (data.storage).
STORAGE = {"uint8": torch.uint8, "int16": torch.int16, "int32": torch.int32}

# Unicode's control characters (category Cc: U+0000..U+001F and U+007F..U+009F), refused inside a word: NUL bytes
# come from a file in another encoding, and a tab or newline would break the tab-separated columns `sample` prints.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# Byte order marks of the encodings that are not UTF-8 (UTF-32LE's starts with UTF-16LE's: it comes first).
WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
NUL_HINT = "; a word list is UTF-8 text: NUL bytes come from another encoding (UTF-16, UTF-32) or a binary file"


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


# The data shipped with the package (makemore/assets/README.md: sources, licences, hashes), by data.format.
SHIPPED = {"words": "names.txt", "text": "tinyshakespeare.txt"}


def default_path(data_format: str = "words") -> Path:
    """The copy shipped with the package of names.txt (a word list) or tiny shakespeare (a text)."""
    return Path(str(resources.files("makemore") / "assets" / SHIPPED[data_format]))


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


class Vocabulary:
    """Characters <-> integers: the start token is 0, the other characters follow in sorted order.

    The start token is `.` for a word list (it also ends each word) and NUL (TEXT_START) for a text.

    Args:
        chars: every character of the vocabulary, the start token first (as `str(vocabulary)` gives).
    """

    def __init__(self, chars: str) -> None:
        if chars[:1] not in (TOKEN, TEXT_START) or len(set(chars)) != len(chars):
            raise ValueError(f"a vocabulary is {TOKEN!r} (or NUL) followed by distinct characters, got {chars!r}")
        self.itos = list(chars)
        self.stoi = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_words(cls, words: list[str]) -> "Vocabulary":
        return cls(TOKEN + "".join(sorted(set("".join(words)))))

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        return cls(TEXT_START + "".join(sorted(set(text))))

    @property
    def is_text(self) -> bool:
        """Whether this is a text's vocabulary (sampled as a passage) rather than a word list's (sampled as words)."""
        return self.itos[0] == TEXT_START

    def __len__(self) -> int:
        return len(self.itos)

    def __str__(self) -> str:
        return "".join(self.itos)

    def encode(self, word: str) -> list[int]:
        return [self.stoi[ch] for ch in word]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids)

    def labels(self) -> list[str]:
        """A printable label per id, for figures and TensorBoard's projector: `<s>` for a text's start token,
        escapes for whitespace (`\\n`, `' '`)."""
        special = {TEXT_START: "<s>", "\n": "\\n", "\t": "\\t", " ": "' '"}
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
    compact integer type) and where each of its segments (a word, or the whole text) starts; the contexts are
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
    def from_words(
        cls, words: list[str], vocabulary: Vocabulary, block_size: int, dtype: torch.dtype = torch.uint8
    ) -> "Examples":
        """Every character of `words` and each word's end `.`, each an example."""
        lengths = torch.tensor([len(word) + 1 for word in words], dtype=torch.int64)
        ids = vocabulary.ids("".join(word + TOKEN for word in words), dtype)
        return cls(ids, torch.cumsum(lengths, 0) - lengths, block_size)

    @classmethod
    def from_text(
        cls, text: str, vocabulary: Vocabulary, block_size: int, dtype: torch.dtype = torch.uint8
    ) -> "Examples":
        """Every character of `text`, each an example, with the characters before it as its context."""
        return cls(vocabulary.ids(text, dtype), torch.zeros(1, dtype=torch.int64), block_size)

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


def build_examples(words: list[str], vocabulary: Vocabulary, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All (context, next character) pairs of `words`, as tensors: X (N, block_size) and Y (N,), int64, with
    N = sum(len(w) + 1) and the rows in word order: row j of word w holds the block_size characters before position
    j. (The lecture's build_dataset; the DataModule holds `Examples` instead.)"""
    return Examples.from_words(words, vocabulary, block_size, torch.int64).tensors()


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


def split_text(text: str, train_fraction: float, val_fraction: float) -> tuple[str, str, str]:
    """A text's contiguous split, as the GPT lecture and nanoGPT cut it: the first int(f*n) characters train, the next
    up to int((f+v)*n) validate, the rest (possibly nothing) is the test split."""
    n1 = int(train_fraction * len(text))
    n2 = int((train_fraction + val_fraction) * len(text))
    return text[:n1], text[n1:n2], text[n2:]


def split_fingerprint(splits: tuple, unit: str = "words") -> dict[str, Union[int, str]]:
    """Sizes and a hash of each split, independent of the file's path (kept in checkpoints): word counts and a hash
    of the words of a word list's splits (lists of words), character counts and a hash of a text's (strings)."""
    fingerprint: dict[str, Union[int, str]] = {}
    for name, split in zip(("train", "val", "test"), splits):
        joined = split if isinstance(split, str) else "\n".join(split)
        fingerprint[f"{name}_{unit}"] = len(split)
        fingerprint[f"{name}_sha256"] = hashlib.sha256(joined.encode()).hexdigest()[:16]
    return fingerprint
