"""Distillation (Hinton et al. 2015): trained networks' predicted distributions as soft targets for a new one.

`model.teacher` names checkpoints trained on the same split; before training, `teacher_probabilities` predicts
every character of the training split with each of them, as the exact metric predicts it (a word's character
from the word's characters before it; a text's from its window), and keeps the mean of their distributions,
one row per training character. Each SGD step then minimises

    (1 - model.distill_weight) x cross-entropy(targets) + model.distill_weight x cross-entropy(teacher's rows)

over the same predictions (`objective`): a sequence model's every real position, a fixed-context model's one.
`train_loss` stays the cross-entropy with the targets, the quantity val_loss measures. Temperature 1, as
distillation of language models commonly uses: the teacher's distribution as it predicts.

Memory: the rows are float32, training characters x vocabulary size x 4 bytes (20 MB for names.txt, 260 MB for
tiny shakespeare), held on the training device.
"""

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from makemore.checkpoint import check_fits, network_of, read_checkpoint
from makemore.errors import CheckpointError, ConfigError
from makemore.models.base import predicts_padding, scored_batches


def teacher_probabilities(
    paths: Sequence[str], data, device: torch.device, allowed: Sequence[str] = ()
) -> torch.Tensor:
    """(n, vocab_size) float32 on `device`: row i is the teachers' mean predicted distribution for the training
    split's character (or word end) i, in the order of its token ids. `data` is a set-up CharDataModule; each
    checkpoint must have been trained on its split, with its vocabulary and block_size (CheckpointError otherwise:
    a teacher that saw the validation split would leak it into training). `allowed`: the classes outside makemore and
    torch a teacher may name (this fit's own), checked before anything of it is imported."""
    ids = data.examples["train"].ids
    total = torch.zeros(len(ids), len(data.vocabulary), device=device)
    for path in paths:
        try:
            checkpoint = read_checkpoint(path, allowed=allowed, trust_hint="name its network in this fit's model.net")
        except CheckpointError as err:
            if not Path(path).is_file():  # most often: the teacher has not been trained yet (or not from this folder)
                raise CheckpointError(
                    f"model.teacher: {err}; train the teacher first (a relative path is read from the working"
                    " directory)"
                ) from None
            raise CheckpointError(f"model.teacher: {err}") from None
        run = {"vocab": data.vocab, "block_size": data.hparams.block_size, "split_fingerprint": data.split_fingerprint}
        saved_data = checkpoint.get("datamodule_hyper_parameters")
        check_fits(checkpoint["hyper_parameters"], run, "teacher", f"model.teacher {path}: ", saved_data)
        net, row = network_of(checkpoint, path, str(device)), 0  # draws no random numbers: resume stays exact
        for logits, _ in scored_batches(net, data.whole_split("train"), data.hparams.block_size):
            total[row : row + len(logits)] += F.softmax(logits.float(), dim=-1)
            row += len(logits)
        if row != len(ids):  # the evaluation batches cover each character once, in order
            raise RuntimeError(f"teacher_probabilities: {row} predictions for {len(ids)} training characters")
    return total / len(paths)


def objective(
    logits: torch.Tensor,
    loss: torch.Tensor,
    idx: torch.Tensor,
    positions: torch.Tensor,
    probabilities: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """The distillation objective of one mini-batch: (1 - weight) x `loss` (the network's cross-entropy with the
    targets) + weight x the cross-entropy of its `logits` with the teacher's rows of the predicted characters.

    logits: (b, vocab_size) of a fixed-context network, or (b, t, vocab_size) of a sequence model over its windows
    `idx` (b, t) whose last position predicts the target at `positions` (b,); column k then predicts position
    `positions - (t - 1 - k)`, and columns that predict the padding before a word or text (`predicts_padding`, as
    `sequence_loss` skips them) are left out.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1)
    if logits.dim() == 2:
        soft = -(probabilities[positions] * log_probs).sum(-1).mean()
    else:
        t = idx.shape[1]
        columns = (positions.unsqueeze(1) - torch.arange(t - 1, -1, -1, device=idx.device)).clamp(min=0)  # (b, t)
        per_position = -(probabilities[columns] * log_probs).sum(-1)  # (b, t)
        # the mean over the real positions as a weighted sum: a boolean-mask index would read the mask's count back
        # to the host, twice per SGD step (forward and backward) on a GPU
        real = (~predicts_padding(idx)).to(per_position.dtype)
        soft = (per_position * real).sum() / real.sum()
    return (1 - weight) * loss + weight * soft


# model.distill_weight's default: an equal share of the targets and the teacher.
DEFAULT_WEIGHT = 0.5


def unused_weight(weight: float, teacher: Optional[Sequence[str]]) -> Optional[str]:
    """What to say when model.distill_weight is set but there is no teacher to distil from (None: nothing)."""
    if teacher or weight == DEFAULT_WEIGHT:
        return None
    return (
        f"model.distill_weight {weight} does nothing without model.teacher: the fit minimises the cross-entropy with"
        " the targets alone"
    )


def check_weight(weight: float, teacher: Optional[Sequence[str]]) -> None:
    """model.distill_weight is a share in [0, 1], and model.teacher, when given, names at least one checkpoint."""
    if not 0 <= weight <= 1:
        raise ConfigError(f"model.distill_weight must be between 0 and 1, got {weight}")
    if teacher is not None and len(teacher) == 0:
        raise ConfigError("model.teacher is an empty list: name one or more checkpoints, or leave it null")
