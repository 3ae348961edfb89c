"""Data formats: what `data.format` names, each a class in its own file behind one small protocol, registered here.

A format reads its file (or folder), splits it and says how its examples are scored and sampled; CharDataModule,
MakemoreModule and `makemore sample` ask it, never its name. No Lightning here (`makemore sample` imports this).
"""

import importlib
from pathlib import Path
from typing import Iterable, Literal, Optional, Protocol, Union

import torch

from makemore.errors import CheckpointError
from makemore.text import Examples, Vocabulary, asset


class DataFormat(Protocol):
    """What the DataModule and the module need of a data format. Built with the data's options, it reads and splits
    the data at once, raising DataError (one line naming the file, and line where there is one, or the option).

    Its constructor takes (path, block_size, train_fraction, val_fraction, seed, whole_words): `path` None is the
    data shipped with makemore (DataError where the format has none); `whole_words` is data.train_on words.
    """

    passage: bool  # samples are a passage continuing a prompt (True) or separate words (False)
    shipped: Optional[str]  # the file of makemore/assets in this format, read when data.path is null; None: none
    path: Path  # what was read: a file, or a folder
    splits: tuple  # train, val, test as the format holds them (a word list's words, a text's characters, ...)
    vocabulary: Vocabulary  # every character of the data, the start token first
    # sizes and a hash of each split, independent of the path: a checkpoint keeps it, and is refused on another split
    fingerprint: dict[str, Union[int, str]]

    def examples(self, split: str, block_size: int, dtype: torch.dtype) -> Optional[Examples]:
        """The (context, next character) examples of split `split` (train, val or test); None for an empty split."""

    def eval_batches(
        self, examples: Examples, batch_size: int, rank: int, world_size: int
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """Process `rank`'s share of a split's evaluation batches (about batch_size targets each), every target of
        the split scored once over all processes: per example, X (n, block_size) and Y (n,), or per window,
        X (n, block_size + L - 1) and Y (n, L) (makemore.models.scored reads both)."""


# data.format's values, the one place a format is registered: its name -> "module:class", imported when first used
# (a fit reads one format: the others' files are never imported).
FORMATS = {
    "words": "makemore.formats.words:Words",
    "text": "makemore.formats.text:Text",
    "text_files": "makemore.formats.text_files:TextFiles",
}
# The type of data.format (and of model.data_format, linked from it): the registered names, listed by --help.
FormatName = Literal[tuple(FORMATS)]  # type: ignore[valid-type]


def format_class(name: str) -> type[DataFormat]:
    """The class registered as data.format `name`; ValueError naming the registered ones for another name."""
    if name not in FORMATS:
        raise ValueError(f"data.format {name!r} is not one of {', '.join(FORMATS)}")
    module, cls = FORMATS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def default_path(name: str = "words") -> Optional[Path]:
    """The data shipped with makemore for data.format `name`: names.txt (words), tiny shakespeare (text); None for a
    format with none."""
    shipped = format_class(name).shipped
    return asset(shipped) if shipped else None


def of_checkpoint(hparams: dict, source: str) -> type[DataFormat]:
    """The data format a checkpoint's model was trained on (its hyperparameters' data_format); CheckpointError
    starting with `source` for one this makemore does not know."""
    name = hparams.get("data_format", "words")
    if name not in FORMATS:
        raise CheckpointError(
            f"{source}: trained on data.format {name!r}, which this makemore does not know ({', '.join(FORMATS)})"
        )
    return format_class(name)
