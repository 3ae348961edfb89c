"""makemore.py's bag of words: each position averages the embeddings up to it, then one MLP, then logits."""

from typing import Optional

import torch
import torch.nn as nn

from makemore.models.base import PositiveInt, embed_from_word_start, sequence_loss, window_positions


class BoW(nn.Module):
    """makemore.py's BoW: token and position embeddings, a causal average, a residual tanh MLP, logits.

    At every position t of the word (from its start token), x_t = token embedding + position embedding;
    then x_t + the mean of x_0 .. x_t (its own position included, as makemore.py's causal average), then
    x + mlp(x) with mlp a tanh hidden layer of n_hidden, then a linear layer to the logits. The average
    is a bag: it keeps which characters came before, not their order. Returns logits for every position,
    (b, t, vocab_size); with targets, the loss of every real prediction of the window
    (makemore.models.sequence_loss). Train it on whole words (data.train_on: words); evaluation scores
    the last position, as for every model.

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length: positions with a learned embedding, the longest context it can take.
        n_embd: width of the embeddings and of the averaged features.
        n_hidden: width of the MLP's tanh hidden layer (makemore.py's n_embd2).
    """

    def __init__(self, vocab_size: int, block_size: int, n_embd: PositiveInt = 64, n_hidden: PositiveInt = 64) -> None:
        super().__init__()
        self.block_size = block_size
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.position = nn.Embedding(block_size, n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_embd))
        self.head = nn.Linear(n_embd, vocab_size)

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        t = idx.shape[1]
        x, shift = embed_from_word_start(idx, self.embedding, self.position)  # (b, width, n_embd): width <= t
        width = x.shape[1]
        counts = torch.arange(1, width + 1, device=idx.device, dtype=x.dtype).unsqueeze(1)  # (width, 1)
        x = x + x.cumsum(1) / counts  # (b, width, n_embd): + the mean of positions 0..t at each t
        x = x + self.mlp(x)  # (b, width, n_embd)
        logits = window_positions(self.head(x), shift, t)  # (b, t, vocab_size)
        return logits, None if targets is None else sequence_loss(logits, idx, targets)
