"""Words in, (context, next character) examples out: reading a word list, the vocabulary, the windows, the split.

A word list is a UTF-8 text file with one word per line. Each word of length n gives n + 1 examples:
the `block_size` characters before each position (left-padded with the start/end token `.`) and the
character at that position, the last one being `.` again. No Lightning here: sampling and checkpoint
reading use this module without paying Lightning's import.
"""

import codecs
import hashlib
import random
import re
from importlib import resources
from pathlib import Path
from typing import Union

import torch

from makemore.errors import DataError

# The start/end token: index 0 in every vocabulary, so it may not appear inside a word.
TOKEN = "."

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


def default_path() -> Path:
    """The copy of names.txt shipped with the package (see makemore/assets/README.md)."""
    return Path(str(resources.files("makemore") / "assets" / "names.txt"))


def read_words(path: Union[str, Path]) -> list[str]:
    """Read one word per line; surrounding whitespace and blank lines are dropped.

    Lines end where str.splitlines ends them (\\n, \\r\\n, \\r, and the rarer breaks it knows); Windows line
    endings and a UTF-8 byte order mark are accepted. Raises DataError naming the file (and line) for a
    missing or unreadable file, bytes that are not UTF-8, a word containing the reserved `.` or a control
    character (Unicode category Cc: NUL, tab, escape, ...), or a file with no words at all.
    """
    path = Path(path)
    if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO or a device would block or never end
        raise DataError(f"{path}: not a regular file (a pipe or a device); give a text file with one word per line")
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
        line = len((raw[: err.start].decode("utf-8") + "?").splitlines())  # counted as the lines below are
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {raw[err.start]:#04x}){encoding_hint(raw)}") from None
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


def split_fingerprint(splits: tuple[list[str], list[str], list[str]]) -> dict[str, Union[int, str]]:
    """Word counts and a hash of each split's words, independent of the file's path (kept in checkpoints)."""
    fingerprint: dict[str, Union[int, str]] = {}
    for name, words in zip(("train", "val", "test"), splits):
        fingerprint[f"{name}_words"] = len(words)
        fingerprint[f"{name}_sha256"] = hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]
    return fingerprint
