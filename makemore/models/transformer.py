"""A small GPT (makemore.py's Transformer): causal self-attention blocks over the context."""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from makemore.models.base import DropoutRate, PositiveInt, embed_from_word_start, sequence_loss, window_positions


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.ln_1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(x)[0]

    def decode(
        self, x: torch.Tensor, past: Optional[tuple[torch.Tensor, torch.Tensor]] = None, last_only: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The block on x (b, t, c), the positions after those whose keys and values `past` holds (each (b, nh,
        t_past, hs), or None at the window's start); returns (x, (keys, values) of every position so far).
        `last_only`: the output of the last position only, (b, 1, c) (every position's keys and values still)."""
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))  # (b, nh, t, hs)
        mask, causal = None, past is None
        if last_only:  # one query, which sees every key
            q, x, t, causal = q[:, :, -1:], x[:, -1:], 1, False
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)  # (b, nh, t_past + t, hs)
            if t > 1:  # query i is position t_past + i: it sees every key up to its own
                mask = torch.ones(t, k.shape[2], dtype=torch.bool, device=x.device).tril(k.shape[2] - t)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, mask, dropout, is_causal=causal)  # (b, nh, t, hs)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.mlp(self.ln_2(x))), (k, v)


class Transformer(nn.Module):
    """makemore.py's Transformer: token and position embeddings, n_layer causal blocks, a final LayerNorm, logits.

    Returns logits for every position, (b, t, vocab_size); with targets, the loss of every real prediction
    of the window (makemore.models.base.sequence_loss). Train it on whole words (data.train_on: words);
    evaluation scores the last position, as for every model.

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length: positions with a learned embedding, the longest context it can take.
        n_layer: transformer blocks.
        n_head: attention heads per block (n_embd must divide by it).
        n_embd: width of the residual stream.
        dropout: dropout on the embeddings, attention and block outputs (0 disables it).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: PositiveInt = 4,
        n_head: PositiveInt = 4,
        n_embd: PositiveInt = 64,
        dropout: DropoutRate = 0.0,
    ) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"Transformer: n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.block_size = block_size
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.position = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        t = idx.shape[1]
        x, shift = embed_from_word_start(idx, self.embedding, self.position)  # (b, width, n_embd): width <= t
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        logits = window_positions(self.head(self.ln_f(x)), shift, t)  # (b, t, vocab_size)
        return logits, None if targets is None else sequence_loss(logits, idx, targets)

    def decoder(self, block_size: int) -> "KeyValueCache":
        """Sampling's decoder (makemore.models.base.Decoder): the window's keys and values, one position a step."""
        return KeyValueCache(self, block_size)


class KeyValueCache:
    """The Transformer's decoder: each block's keys and values of the window, so that a step runs the new tokens only.

    Exact against the window the samplers and the metric read (the last block_size tokens, positions counted from
    the window's first: `embed_from_word_start`), as long as the window starts at the start token: each new token
    takes the next position and attends to the cached keys. Once the text is longer than the window, the window
    slides by a token a step and every token's position changes, and with it every key and value of every block
    (learned absolute positions enter the first block's input, and each block's output depends on the window's
    first token): no cached value stays right, so each step runs the whole window again, the last block and the head
    on its last position only.

    Args:
        net: the Transformer (in eval mode: the samplers' `eval_mode`).
        block_size: the context the samplers read, at most the network's.
    """

    def __init__(self, net: Transformer, block_size: int) -> None:
        if block_size > net.block_size:
            raise ValueError(f"a context of {block_size} positions, but the network's block_size is {net.block_size}")
        self.net, self.block_size = net, block_size
        self.window: Optional[torch.Tensor] = None  # (b, <= block_size): the tokens the window holds
        self.past: list[tuple[torch.Tensor, torch.Tensor]] = []  # per block: keys, values (b, nh, t, hs) of window

    def feed(self, idx: torch.Tensor) -> torch.Tensor:
        net = self.net
        if self.window is None:  # the start token, position 0
            idx = torch.cat([idx.new_zeros(len(idx), 1), idx], 1)
            self.window = idx.new_zeros(len(idx), 0)
        start = self.window.shape[1]
        window = torch.cat([self.window, idx], 1)
        if window.shape[1] > self.block_size:  # the window slides: every position moves, nothing cached holds
            window, idx, start, self.past = window[:, -self.block_size :], window[:, -self.block_size :], 0, []
        positions = torch.arange(start, window.shape[1], device=idx.device)
        x = net.drop(net.embedding(idx) + net.position(positions))  # (b, t, n_embd)
        past = self.past or [None] * len(net.blocks)
        self.past = []
        for number, (block, kv) in enumerate(zip(net.blocks, past)):
            x, kv = block.decode(x, kv, last_only=number == len(net.blocks) - 1)  # the head reads the last only
            self.past.append(kv)
        self.window = window
        return net.head(net.ln_f(x[:, -1]))  # (b, vocab_size)
