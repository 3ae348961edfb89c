"""The embedding-MLP of Bengio et al. (2003), as in the makemore lecture: a plain nn.Module.

A makemore network is any nn.Module built as `Net(vocab_size, block_size, **options)` whose
`forward(idx, targets=None)` takes token ids (b, block_size) and returns (logits, loss): logits
(b, vocab_size) for the next character (or (b, t, vocab_size), one per position), and the mean
cross-entropy when targets are given. The LightningModule, the data and the CLI need nothing else.
"""

from typing import Callable, Optional, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F


@runtime_checkable
class Network(Protocol):
    """What makemore needs of a network: an nn.Module with this forward, built as Net(vocab_size, block_size, ...).

    forward(idx (b, block_size) int64, targets (b,) or None) -> (logits, loss): logits (b, vocab_size) for
    the next character, or (b, t, vocab_size) for every position; loss the mean cross-entropy, or None
    without targets. (Parameters unannotated on purpose: the CLI accepts any class with such a forward.)
    """

    def forward(self, idx, targets=None): ...


# A network class (or a partial of one): called with (vocab_size, block_size), returns the network.
# In YAML: a class_path and its init_args.
NetworkCallable = Callable[[int, int], Network]


def affine(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """x @ weight + bias, in one op (addmm) when there is a bias."""
    return x @ weight if bias is None else torch.addmm(bias, x, weight)


class Affine(nn.Module):
    """An affine layer stored as in the lecture: weight (fan_in, fan_out), so the forward is x @ W + b.

    nn.Linear stores (fan_out, fan_in) and multiplies by the transpose, and its weight gradient then
    comes out transposed and is copied into place; at batch 32 on a CPU that costs about 5% of a
    training step. The initial values are nn.Linear(fan_in, fan_out)'s, transposed.

    Args:
        fan_in: input features.
        fan_out: output features.
        bias: learn an additive bias.
    """

    def __init__(self, fan_in: int, fan_out: int, bias: bool = True) -> None:
        super().__init__()
        linear = nn.Linear(fan_in, fan_out, bias=bias)  # only for its initialisation
        self.weight = nn.Parameter(linear.weight.detach().t().contiguous())
        self.bias = nn.Parameter(linear.bias.detach()) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return affine(x, self.weight, self.bias)


class MLP(nn.Module):
    """Embed each of the `block_size` context characters, concatenate, hidden layer(s), logits.

    With the defaults (one hidden layer, no normalisation, no dropout) this is exactly the lecture's
    model: C = embedding.weight (vocab_size, n_embd), W1/b1 = hidden[0] (block_size * n_embd, n_hidden),
    tanh, W2/b2 = out (n_hidden, vocab_size). Initialised as nn.Embedding and nn.Linear are.

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length in characters.
        n_embd: embedding dimensions per character.
        n_hidden: width of each hidden layer.
        n_layers: number of tanh hidden layers.
        batch_norm: put a BatchNorm1d before each tanh.
        dropout: dropout probability after each tanh (0 disables it).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: int = 10,
        n_hidden: int = 200,
        n_layers: int = 1,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.embedding = nn.Embedding(vocab_size, n_embd)
        widths = [block_size * n_embd] + [n_hidden] * n_layers
        # BatchNorm has its own shift, so the layer before it needs no bias.
        self.hidden = nn.ModuleList(Affine(a, b, bias=not batch_norm) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(n_hidden) for _ in range(n_layers)) if batch_norm else None
        self.out = Affine(widths[-1], vocab_size)

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """idx (b, block_size) int64 -> logits (b, vocab_size), and the mean cross-entropy if targets are given."""
        # Functional calls on the layers' tensors, looked up once: at batch 32 a module call or an
        # attribute lookup costs about what the maths does (see README, Performance).
        x = F.embedding(idx, self.embedding.weight).flatten(1)  # (b, block_size * n_embd)
        norms, dropout = self.norms, self.dropout
        for i, layer in enumerate(self.hidden):
            x = affine(x, layer.weight, layer.bias)  # (b, n_hidden)
            if norms is not None:
                x = norms[i](x)
            x = torch.tanh(x)
            if dropout:
                x = F.dropout(x, dropout, self.training)
        out = self.out
        logits = affine(x, out.weight, out.bias)  # (b, vocab_size)
        return logits, None if targets is None else F.cross_entropy(logits, targets)
