"""data.format text_files: a folder of UTF-8 text files, each file its own stream of characters (plays, books,
source files). Every file is split by position as a text is (its first share trains, the next validates, the rest
tests), so each split holds a part of every file; a context never reaches back into another file, and evaluation
tiles each file's part with its own windows. A folder holding one file gives that file's numbers as data.format text.
Sampled as a passage."""

import hashlib
from pathlib import Path
from typing import Optional, Union

import torch

from makemore.errors import DataError
from makemore.formats.text import (
    SPLITS,
    EvalWindows,
    check_split_sizes,
    read_text,
    refuse_whole_words,
    split_text,
    vocabulary_of_text,
)
from makemore.text import Examples, check_fractions

# The files of the folder that are read: by suffix, in the folder and its subfolders (hidden ones left out).
SUFFIX = ".txt"


def text_files(folder: Path) -> list[Path]:
    """The folder's text files (SUFFIX, any case), its subfolders' included, hidden files and folders left out, in
    order of their paths; DataError naming the folder when it is not one or holds none."""
    if not folder.exists():
        raise DataError(f"{folder}: no such folder; data.format text_files reads a folder of {SUFFIX} files")
    if not folder.is_dir():
        raise DataError(
            f"{folder}: not a folder; data.format text_files reads a folder of {SUFFIX} files (data.format text"
            " reads one file)"
        )
    found = [
        path
        for path in folder.rglob("*")
        if path.suffix.lower() == SUFFIX
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    ]
    if not found:
        raise DataError(f"{folder}: no {SUFFIX} files in the folder or its subfolders")
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


class TextFiles:
    """A folder of text files, each a stream of characters split by position (see the module's docstring); sampled
    as a passage. See makemore.formats.DataFormat.

    Args:
        path: the folder (required: makemore ships no folder).
        block_size: the context length: each split needs at least block_size + 1 characters over all files.
        train_fraction: the first share of each file's characters, which trains.
        val_fraction: the next share of each file, which validates; train_fraction + val_fraction may be 1 (no test
            split).
        seed: unused: the split is by position.
        whole_words: refused (a text has no words to train on whole).
    """

    passage = True
    shipped = None  # makemore ships no folder

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
        refuse_whole_words(whole_words, "text_files")
        if not path:
            raise DataError(f"data.path: data.format text_files reads a folder of {SUFFIX} files; give its path")
        self.path = Path(path)
        self.files = text_files(self.path)
        texts = [read_text(file) for file in self.files]
        self.vocabulary = vocabulary_of_text("".join(texts))
        # each split: one part per file (possibly empty), in the files' order
        parts = [split_text(text, train_fraction, val_fraction) for text in texts]
        self.splits = tuple(list(split) for split in zip(*parts))
        sizes = [sum(map(len, split)) for split in self.splits]
        what = f"its {len(self.files)} files' {sum(map(len, texts)):,} characters"
        check_split_sizes(self.path, what, sizes, block_size)
        # characters and a hash of each split's parts, in the files' order (the files' names do not count)
        self.fingerprint: dict[str, Union[int, str]] = {}
        for name, split, size in zip(SPLITS, self.splits, sizes):
            self.fingerprint[f"{name}_chars"] = size
            self.fingerprint[f"{name}_sha256"] = hashlib.sha256("\0".join(split).encode()).hexdigest()[:16]

    def examples(self, split: str, block_size: int, dtype: torch.dtype) -> Optional[Examples]:
        segments = [part for part in self.splits[SPLITS.index(split)] if part]
        return Examples.from_segments(segments, self.vocabulary, block_size, dtype) if segments else None

    def eval_batches(self, examples: Examples, batch_size: int, rank: int, world_size: int) -> EvalWindows:
        return EvalWindows(examples, batch_size, rank, world_size)
