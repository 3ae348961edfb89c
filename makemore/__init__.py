"""makemore: character-level language models with PyTorch Lightning, starting with the MLP of Bengio et al. (2003)."""

from makemore.data import CharDataModule
from makemore.model import MLP
from makemore.module import MakemoreModule, load_checkpoint
from makemore.text import Vocabulary, build_examples

__all__ = ["CharDataModule", "MLP", "MakemoreModule", "Vocabulary", "build_examples", "load_checkpoint"]
