"""The embedding-MLP of Bengio et al. (2003) (lecture part 2), deep and with BatchNorm (part 3), and its
backward pass written by hand (part 4).
"""

import math
from typing import Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from makemore.models.base import DropoutRate, PositiveInt


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
        init: "torch": as nn.Embedding and nn.Linear initialise (uniform in +-1/sqrt(fan_in)); "kaiming": hidden
            weights normal with std (5/3)/sqrt(fan_in) (the gain for tanh, lecture part 3), the output layer's
            1/sqrt(fan_in), biases zero; "randn": every weight and bias standard normal, the lecture's first
            version (part 3 starts from it: saturated tanh units and a loss near 27 before any step).
        out_scale: multiplies the output layer's initial weights and bias: below 1 the untrained model is less
            confident and starts near the uniform loss ln(vocab_size) (part 3 uses 0.01 to 0.1).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: PositiveInt = 10,
        n_hidden: PositiveInt = 200,
        n_layers: PositiveInt = 1,
        batch_norm: bool = False,
        dropout: DropoutRate = 0.0,
        init: Literal["torch", "kaiming", "randn"] = "torch",
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.dropout = dropout
        self.embedding = nn.Embedding(vocab_size, n_embd)
        widths = [block_size * n_embd] + [n_hidden] * n_layers
        # BatchNorm has its own shift, so the layer before it needs no bias.
        self.hidden = nn.ModuleList(Affine(a, b, bias=not batch_norm) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(n_hidden) for _ in range(n_layers)) if batch_norm else None
        self.out = Affine(widths[-1], vocab_size)
        with torch.no_grad():
            if init == "randn":
                for layer in [*self.hidden, self.out]:
                    for parameter in layer.parameters():
                        parameter.normal_()
            if init == "kaiming":
                for layer, gain in [*((layer, 5 / 3) for layer in self.hidden), (self.out, 1.0)]:
                    layer.weight.normal_(0.0, gain / math.sqrt(layer.weight.shape[0]))
                    if layer.bias is not None:
                        layer.bias.zero_()
            self.out.weight *= out_scale
            self.out.bias *= out_scale

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

    @property
    def hand_backward_is_faster(self) -> bool:
        """Whether `loss_and_grads` beats autograd here: not with BatchNorm, whose autograd kernels are fused."""
        return self.norms is None

    def check_hand_backward(self) -> None:
        """Raise ValueError saying why `loss_and_grads` cannot train this network (it covers no dropout)."""
        if self.dropout:
            raise ValueError(f"the hand-written backward does not cover dropout (this MLP has {self.dropout})")

    @torch.no_grad()
    def loss_and_grads(
        self, idx: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, list[tuple[nn.Parameter, torch.Tensor]]]:
        """A training step's forward and backward written out tensor by tensor, as in lecture part 4; no autograd.

        Same maths as `forward` in training mode (BatchNorm normalises with the batch's statistics and updates
        its running statistics, as nn.BatchNorm1d does). Returns the mean cross-entropy and each parameter
        with its gradient, equal to autograd's up to rounding (tests/test_hand_backward.py).
        """
        self.check_hand_backward()
        b = len(targets)
        C = self.embedding.weight
        emb = C[idx].view(b, -1)  # (b, block_size * n_embd)
        x, inputs, outputs, normalised = emb, [], [], []
        for i, layer in enumerate(self.hidden):
            inputs.append(x)
            h = affine(x, layer.weight, layer.bias)  # (b, n_hidden)
            if self.norms is not None:
                xhat, inv_std = batch_norm_train(self.norms[i], h)
                normalised.append((xhat, inv_std))
                h = torch.addcmul(self.norms[i].bias, xhat, self.norms[i].weight)
            x = torch.tanh(h)
            outputs.append(x)
        out = self.out
        logits = affine(x, out.weight, out.bias)  # (b, vocab_size)
        logprobs = logits.log_softmax(1)
        rows = torch.arange(b, device=idx.device)
        loss = -logprobs[rows, targets].mean()
        # d loss / d logits: (softmax - one_hot) / b
        dlogits = logprobs.exp_()
        dlogits[rows, targets] -= 1.0
        dlogits /= b
        grads = [(out.weight, x.t() @ dlogits), (out.bias, dlogits.sum(0))]
        dx = dlogits @ out.weight.t()  # (b, n_hidden)
        for i in reversed(range(len(self.hidden))):
            layer = self.hidden[i]
            dh = dx * (1.0 - outputs[i] * outputs[i])  # through tanh
            if self.norms is not None:
                norm = self.norms[i]
                xhat, inv_std = normalised[i]
                dgamma, dbeta = (dh * xhat).sum(0), dh.sum(0)
                grads += [(norm.weight, dgamma), (norm.bias, dbeta)]
                # through the batch's normalisation (mean and biased variance depend on every row), part 4's
                # formula with its two sums written as dbeta and dgamma:
                # gamma / std * (dh - mean(dh) - xhat * mean(dh * xhat))
                dh = torch.addcmul(dh - dbeta / b, xhat, dgamma / b, value=-1.0) * (norm.weight * inv_std)
            if layer.bias is not None:
                grads.append((layer.bias, dh.sum(0)))
            grads.append((layer.weight, inputs[i].t() @ dh))
            dx = dh @ layer.weight.t()  # (b, fan_in)
        # the embedding: each row gathers the gradients of every place its character was looked up
        dC = torch.zeros_like(C).index_add_(0, idx.reshape(-1), dx.view(-1, C.shape[1]))
        grads.append((C, dC))
        return loss, grads


def batch_norm_train(norm: nn.BatchNorm1d, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.BatchNorm1d's training forward up to its affine part: (xhat, 1/std), updating the running statistics."""
    b = len(h)
    mean = h.sum(0) / b  # (sums: torch.mean and torch.var_mean are slower on small batches)
    centred = h - mean
    var = (centred * centred).sum(0) / b  # the biased variance, which BatchNorm normalises with
    inv_std = torch.rsqrt(var + norm.eps)
    if norm.track_running_stats:
        norm.num_batches_tracked += 1
        factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
        norm.running_mean.lerp_(mean, factor)
        norm.running_var.lerp_(var * (b / (b - 1)), factor)  # the running variance is unbiased
    return centred * inv_std, inv_std
