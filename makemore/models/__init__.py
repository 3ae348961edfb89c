"""The networks of the lecture series, each a plain nn.Module: Net(vocab_size, block_size, **options) whose
forward(idx, targets=None) returns (logits, loss). Chosen in YAML by `model.net.class_path`; one config each
under configs/ (the ladder: docs/leaderboard.md).

    Bigram       lecture part 1: a table of next-character logits
    MLP          part 2: the embedding-MLP; deep, Kaiming-initialised and with BatchNorm: part 3; its
                 backward by hand (model.hand_backward): part 4
    WaveNet      part 5: neighbours fused level by level
    Recurrent    makemore.py's RNN and GRU, and an LSTM
    BoW          makemore.py's bag of words: a causal average of the embeddings, then an MLP
    Transformer  makemore.py's small GPT
    Ensemble     several of one network, trained side by side, averaging their predictions

A sequence model of your own (logits at every position) uses the same public helpers as Recurrent, BoW and
Transformer: word_start_aligned and window_positions (positions counted from the word's start token) and
sequence_loss (the loss of every real prediction of a window); see docs/networks.md.
"""

import importlib

from makemore.models.base import (
    Network,
    NetworkCallable,
    batches_nll,
    embed_from_word_start,
    eval_mode,
    is_sequence_model,
    next_char_logits,
    scored,
    sequence_loss,
    window_logits,
    window_positions,
    word_start_aligned,
)

# Each network is imported when it is first named (`makemore.models.Transformer` in a config): a run reads the code of
# its own network only.
NETWORKS = {
    "Affine": "mlp",
    "Bigram": "bigram",
    "BoW": "bow",
    "Ensemble": "ensemble",
    "MLP": "mlp",
    "Recurrent": "recurrent",
    "Transformer": "transformer",
    "WaveNet": "wavenet",
}

__all__ = [
    "Affine",
    "Bigram",
    "BoW",
    "Ensemble",
    "MLP",
    "Network",
    "NetworkCallable",
    "Recurrent",
    "Transformer",
    "WaveNet",
    "batches_nll",
    "embed_from_word_start",
    "eval_mode",
    "is_sequence_model",
    "next_char_logits",
    "scored",
    "sequence_loss",
    "window_logits",
    "window_positions",
    "word_start_aligned",
]


def __getattr__(name: str) -> type:
    if name in NETWORKS:
        return getattr(importlib.import_module(f"makemore.models.{NETWORKS[name]}"), name)
    raise AttributeError(f"module 'makemore.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *NETWORKS])
