"""Recurrent networks (makemore.py's RNN and GRU, and the LSTM it lacks), trained on every position."""

from typing import Literal, Optional, Union

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

    def decoder(self, block_size: int) -> "OpenWindows":
        """Sampling's decoder (makemore.models.base.Decoder): the states of the windows still to be read."""
        return OpenWindows(self, block_size)

    reads_streams = True  # a text of any length: makemore.models.base.reads_streams

    def stream_decoder(self) -> "CarriedState":
        """Stream sampling's decoder: the state carried over the whole text, one recurrent step a token."""
        return CarriedState(self)


class OpenWindows:
    """The recurrent networks' decoder: the state of every window a later step will read, one token a step for all.

    The samplers and the metric read the last block_size tokens from a zero state (from the start token, while the
    text is shorter). A state carried over a longer text is not that: it remembers what fell out of the window. So
    this keeps one state per window still to come: the window a step reads starts block_size - 1 tokens before it,
    and every window opened since then is open too. A step opens a window (a zero state), feeds the new token to all
    open windows as one batch (one recurrent step of at most block_size rows a sample, where the window's forward is
    block_size steps one after another), reads the prediction from the oldest, and closes it once it holds
    block_size tokens. Exact, as the windowed forward is, to float rounding.

    Args:
        net: the Recurrent network (in eval mode: the samplers' `eval_mode`).
        block_size: the context the samplers read.
    """

    def __init__(self, net: Recurrent, block_size: int) -> None:
        self.net, self.block_size = net, block_size
        self.state: Optional[Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = (
            None  # (layers, open * b, hidden)
        )
        self.lengths: list[int] = []  # tokens each open window holds, oldest first
        self.started = False

    def feed(self, idx: torch.Tensor) -> torch.Tensor:
        if not self.started:  # the start token
            idx, self.started = torch.cat([idx.new_zeros(len(idx), 1), idx], 1), True
        idx = idx[:, -self.block_size :]  # no window a later step reads starts before these
        if idx.shape[1] == self.block_size:
            self.state, self.lengths = None, []
        for column in idx.unbind(1):
            logits = self.step(column)
        return logits

    def step(self, ix: torch.Tensor) -> torch.Tensor:
        """Feed ix (b,) to every open window, a new one included; the oldest window's logits (b, vocab_size)."""
        b, net = len(ix), self.net
        zero = net.head.weight.new_zeros(net.rnn.num_layers, b, net.rnn.hidden_size)
        if self.state is None:
            self.state = (zero, zero) if isinstance(net.rnn, nn.LSTM) else zero
        elif isinstance(self.state, tuple):
            self.state = tuple(torch.cat([state, zero], 1) for state in self.state)
        else:
            self.state = torch.cat([self.state, zero], 1)
        self.lengths = [length + 1 for length in self.lengths] + [1]
        x = net.embedding(ix).repeat(len(self.lengths), 1).unsqueeze(1)  # (open * b, 1, n_embd), oldest first
        states, self.state = net.rnn(x, self.state)
        logits = net.head(states[:b, 0])  # (b, vocab_size): the oldest window's
        if self.lengths[0] == self.block_size:  # read for the last time
            self.lengths.pop(0)
            self.state = tuple(s[:, b:] for s in self.state) if isinstance(self.state, tuple) else self.state[:, b:]
        return logits


class CarriedState:
    """The recurrent networks' stream decoder: one state carried over the whole text from the start token, one
    recurrent step a token (char-rnn's sampling). Equal, to float rounding, to the network's forward over everything
    fed so far (makemore.models.base.StreamDecoder).

    Args:
        net: the Recurrent network (in eval mode: the samplers' `eval_mode`).
    """

    def __init__(self, net: Recurrent) -> None:
        self.net = net
        self.state: Optional[Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]] = None

    def feed(self, idx: torch.Tensor) -> torch.Tensor:
        if self.state is None:  # the start token
            idx = torch.cat([idx.new_zeros(len(idx), 1), idx], 1)
        states, self.state = self.net.rnn(self.net.embedding(idx), self.state)
        return self.net.head(states[:, -1])  # (b, vocab_size)
