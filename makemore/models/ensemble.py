"""A deep ensemble: several copies of one network, trained independently side by side, predicting together."""

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from makemore.models.base import NetworkCallable, PositiveInt


class Ensemble(nn.Module):
    """`members` copies of one network, each with its own initialisation, predicting the average of their
    probabilities: log(mean_i softmax(logits_i)), returned as logits.

    Training deals each batch out: member i trains on its own share of the examples (torch.tensor_split of
    the batch), on its own loss, so each member sees its own stream of mini-batches, as if trained alone on
    batch_size / members examples a step. The loss returned has the value of the members' mean loss and the
    gradient of their sum: every member's parameters get exactly the gradient of its own loss, whatever the
    optimizer. Validation and test score the averaged prediction, like every network's; the members' mean
    training loss is what train_loss shows.

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length, given to each member.
        member: the network each member is: a class_path and init_args, as model.net takes.
        members: how many; data.batch_size is their total (each trains on batch_size / members a step).
    """

    def __init__(self, vocab_size: int, block_size: int, member: NetworkCallable, members: PositiveInt = 3) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"Ensemble: members must be at least 1, got {members}")
        self.nets = nn.ModuleList(member(vocab_size, block_size) for _ in range(members))

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        if targets is None:
            log_probs = torch.stack([F.log_softmax(net(idx)[0], dim=-1) for net in self.nets])
            return torch.logsumexp(log_probs, dim=0) - math.log(len(self.nets)), None
        if len(idx) < len(self.nets):
            raise ValueError(
                f"Ensemble: a batch of {len(idx)} examples cannot be dealt out to {len(self.nets)} members"
            )
        outputs = [
            net(x, y)
            for net, x, y in zip(self.nets, idx.tensor_split(len(self.nets)), targets.tensor_split(len(self.nets)))
        ]
        logits = torch.cat([F.log_softmax(logits, dim=-1) for logits, _ in outputs])  # each example's own member's
        losses = torch.stack([loss for _, loss in outputs])
        total = losses.sum()
        return logits, total - (total - losses.mean()).detach()  # value: the mean; gradient: each member's own
