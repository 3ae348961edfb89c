"""The WaveNet-style hierarchical MLP of lecture part 5: consecutive characters fused level by level."""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from makemore.models.base import PositiveInt
from makemore.models.mlp import Affine, affine


class WaveNet(nn.Module):
    """Embed the context, then fuse `group` neighbours at a time until one vector is left, then logits.

    Part 5's model with block_size 8 and group 2: embeddings (b, 8, n_embd) -> (b, 4, 2 n_embd) -> hidden
    (b, 4, n_hidden) -> (b, 2, 2 n_hidden) -> (b, 2, n_hidden) -> (b, 1, 2 n_hidden) -> (b, n_hidden) ->
    logits; each fusing layer is affine (no bias), BatchNorm over the batch and positions, tanh. The
    layers are initialised as part 5's are (Kaiming for tanh; the output layer scaled by out_scale).

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length: a power of `group` (8 = 2^3 fuses in three levels).
        n_embd: embedding dimensions per character.
        n_hidden: width of every fusing layer.
        group: neighbours fused per level.
        out_scale: multiplies the output layer's initial weights (part 5: 0.1, a less confident start).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: PositiveInt = 24,
        n_hidden: PositiveInt = 128,
        group: int = 2,
        out_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if group < 2:
            raise ValueError(f"WaveNet: group must be at least 2, got {group}")
        levels, width = 0, 1
        while width < block_size:
            levels, width = levels + 1, width * group
        if width != block_size:
            raise ValueError(
                f"WaveNet fuses {group} neighbours per level, so data.block_size must be a power of {group}"
                f" ({', '.join(str(group**k) for k in range(1, 5))}, ...), got {block_size}"
            )
        self.group = group
        self.embedding = nn.Embedding(vocab_size, n_embd)
        widths = [n_embd] + [n_hidden] * levels
        self.fuse = nn.ModuleList(Affine(group * a, b, bias=False) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(n_hidden) for _ in range(levels))
        self.out = Affine(widths[-1], vocab_size)
        with torch.no_grad():
            for layer in self.fuse:
                layer.weight.normal_(0.0, (5 / 3) / layer.weight.shape[0] ** 0.5)
            self.out.weight *= out_scale
            self.out.bias *= out_scale

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        b = len(idx)
        x = self.embedding(idx)  # (b, block_size, n_embd)
        for layer, norm in zip(self.fuse, self.norms):
            x = x.reshape(b, x.shape[1] // self.group, -1)  # (b, t / group, group * width): neighbours side by side
            x = affine(x, layer.weight, None)  # (b, t / group, n_hidden)
            # BatchNorm over the batch and every position: nn.BatchNorm1d wants the channels second
            x = torch.tanh(norm(x.transpose(1, 2)).transpose(1, 2))
        logits = affine(x.squeeze(1), self.out.weight, self.out.bias)  # (b, vocab_size)
        return logits, None if targets is None else F.cross_entropy(logits, targets)
