"""The networks of the lecture series, each a plain nn.Module: Net(vocab_size, block_size, **options) whose
forward(idx, targets=None) returns (logits, loss). Chosen in YAML by `model.net.class_path`; one config each
under configs/ (the ladder: docs/leaderboard.md).

    Bigram       lecture part 1: a table of next-character logits
    MLP          part 2: the embedding-MLP; deep, Kaiming-initialised and with BatchNorm: part 3; its
                 backward by hand (the fused step): part 4
    WaveNet      part 5: neighbours fused level by level
    Recurrent    makemore.py's RNN and GRU, and an LSTM
    Transformer  makemore.py's small GPT
    Ensemble     several of one network, trained side by side, averaging their predictions
"""

from makemore.models.base import Network, NetworkCallable, eval_mode, next_char_logits, sequence_loss, split_nll
from makemore.models.bigram import Bigram
from makemore.models.ensemble import Ensemble
from makemore.models.mlp import MLP, Affine
from makemore.models.recurrent import Recurrent
from makemore.models.transformer import Transformer
from makemore.models.wavenet import WaveNet

__all__ = [
    "Affine",
    "Bigram",
    "Ensemble",
    "MLP",
    "Network",
    "NetworkCallable",
    "Recurrent",
    "Transformer",
    "WaveNet",
    "eval_mode",
    "next_char_logits",
    "sequence_loss",
    "split_nll",
]
