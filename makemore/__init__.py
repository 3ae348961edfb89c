"""makemore: character-level language models with PyTorch Lightning, starting with the MLP of Bengio et al. (2003).

The names below are imported on first use, so that `import makemore` (and `makemore sample`) stays light.
"""

import importlib

_EXPORTS = {
    "CharDataModule": "makemore.data",
    "MLP": "makemore.models",
    "MakemoreModule": "makemore.module",
    "Vocabulary": "makemore.text",
    "build_examples": "makemore.formats.words",
    "embedding_figure": "makemore.callbacks",
    "load_checkpoint": "makemore.module",
    "lr_find": "makemore.api",
    "make_trainer": "makemore.api",
    "module_for": "makemore.api",
    "scalars": "makemore.api",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'makemore' has no attribute {name!r}")
