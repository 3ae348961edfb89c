"""Recurrent networks (makemore.py's RNN and GRU, and the LSTM it lacks), trained on every position."""

from typing import Literal, Optional

import torch
import torch.nn as nn

from makemore.models.base import DropoutRate, PositiveInt, sequence_loss, window_positions, word_start_aligned

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class Recurrent(nn.Module):
    """Embed each character, run a recurrent network over the context, predict the next character everywhere.

    Returns logits for every position, (b, t, vocab_size); with targets, the loss of every real prediction
    of the window (makemore.models.base.sequence_loss). Train it on whole words (data.train_on: words);
    evaluation scores the last position, as for every model. torch's fused nn.RNN / nn.GRU / nn.LSTM, with
    a zero initial state: the `.` tokens before a word play the part of makemore.py's learned start.

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length (positions seen); recurrent networks take any length.
        cell: "rnn" (tanh, makemore.py's RNN), "gru" (makemore.py's GRU) or "lstm".
        n_embd: embedding dimensions per character.
        n_hidden: width of the recurrent state.
        n_layers: stacked recurrent layers.
        dropout: dropout between stacked layers (torch's; needs n_layers > 1).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        cell: Literal["rnn", "gru", "lstm"] = "gru",
        n_embd: PositiveInt = 64,
        n_hidden: PositiveInt = 64,
        n_layers: PositiveInt = 1,
        dropout: DropoutRate = 0.0,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"Recurrent: cell must be one of {', '.join(CELLS)}, got {cell!r}")
        if dropout and n_layers < 2:
            raise ValueError("Recurrent: dropout acts between stacked layers; set n_layers to 2 or more, or dropout 0")
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.rnn = CELLS[cell](n_embd, n_hidden, num_layers=n_layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(n_hidden, vocab_size)

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        aligned, shift = word_start_aligned(idx)  # each window from its word's start token
        states, _ = self.rnn(self.embedding(aligned))  # (b, width, n_hidden): width <= t
        logits = window_positions(self.head(states), shift, idx.shape[1])  # (b, t, vocab_size)
        return logits, None if targets is None else sequence_loss(logits, idx, targets)
