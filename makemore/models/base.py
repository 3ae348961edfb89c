"""What makemore needs of a network, and the loss every sequence model of the ladder shares."""

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Optional, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jsonargparse.typing import PositiveInt as PositiveInt  # re-exported: the networks' sizes
from jsonargparse.typing import restricted_number_type

# Ranges of the networks' options, in their signatures: the CLI refuses a value outside one in one line naming the
# option, and `--model.net.help` shows them. (Plain ints and floats from Python pass unchecked.)
DropoutRate = restricted_number_type("DropoutRate", float, [(">=", 0), ("<", 1)], join="and")


@runtime_checkable
class Network(Protocol):
    """What makemore needs of a network: an nn.Module with this forward, built as Net(vocab_size, block_size, ...).

    forward(idx (b, block_size) int64, targets (b,) or None) -> (logits, loss): logits (b, vocab_size) for
    the next character, or (b, t, vocab_size) for every position; loss the training loss, or None without
    targets. Evaluation does not use that loss: it scores the logits of the last position against the
    targets, the same for every network. (Parameters unannotated on purpose: the CLI accepts any class with
    such a forward.)
    """

    def forward(self, idx, targets=None): ...


# A network class (or a partial of one): called with (vocab_size, block_size), returns the network.
# In YAML: a class_path and its init_args.
NetworkCallable = Callable[[int, int], Network]


def next_char_logits(net: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """The network's logits for the character after each context window, (b, vocab_size), whatever its output shape.

    What evaluation scores for every network: a sequence model's last position is its prediction after the
    whole window.
    """
    logits, _ = net(idx)
    return logits[:, -1] if logits.dim() == 3 else logits


class Decoder(Protocol):
    """The next-character logits of texts that grow a token at a time, as the samplers draw them.

    A decoder holds, for each of b rows, the tokens fed so far after the start token. feed(idx (b, t)) appends t
    tokens to each row (t may be 0 on the first call) and returns the logits (b, vocab_size) that
    `next_char_logits` gives for the last block_size tokens of [0] * block_size + everything fed: what the samplers'
    context windows hold. A network offers a faster one with `decoder(block_size) -> Decoder` (the Transformer's
    key/value cache, the recurrent networks' states); `WindowDecoder` is every network's.
    """

    def feed(self, idx: torch.Tensor) -> torch.Tensor: ...


class WindowDecoder:
    """Every network's decoder: the last block_size tokens as a context window, one forward pass over it per feed.

    Args:
        net: the network.
        block_size: the context it reads.
    """

    def __init__(self, net: torch.nn.Module, block_size: int) -> None:
        self.net, self.block_size = net, block_size
        self.context: Optional[torch.Tensor] = None  # (b, block_size)

    def feed(self, idx: torch.Tensor) -> torch.Tensor:
        if self.context is None:
            self.context = idx.new_zeros(len(idx), self.block_size)
        self.context = torch.cat([self.context, idx], 1)[:, -self.block_size :]
        return next_char_logits(self.net, self.context)


class StreamDecoder:
    """Stream sampling's reference: the network over every token fed so far, from the start token, one forward pass
    over all of it per feed (a network that reads a text of any length: `reads_streams`).

    Args:
        net: the network.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net
        self.tokens: Optional[torch.Tensor] = None  # (b, 1 + tokens fed)

    def feed(self, idx: torch.Tensor) -> torch.Tensor:
        if self.tokens is None:
            self.tokens = idx.new_zeros(len(idx), 1)
        self.tokens = torch.cat([self.tokens, idx], 1)
        return next_char_logits(self.net, self.tokens)


def reads_streams(net: torch.nn.Module) -> bool:
    """Whether the network reads a text of any length, each position from what it has read before (a recurrent
    network; a Transformer with rotary positions, whose every block attends to the block_size positions before):
    its `reads_streams` is true, and its `stream_decoder()` is the decoder of stream sampling."""
    return bool(getattr(net, "reads_streams", False))


def decoder(net: torch.nn.Module, block_size: int, cache: bool = True, stream: bool = False) -> Decoder:
    """The network's own decoder (`net.decoder(block_size)`) when it has one and `cache`, else a `WindowDecoder`:
    the same logits either way (to float rounding: see docs/text.md).

    `stream`: the decoder of a network that reads the whole text so far instead of its last block_size tokens
    (`reads_streams`; ValueError for another): its own `stream_decoder()` with `cache`, else a `StreamDecoder`.
    """
    if stream:
        if not reads_streams(net):
            raise ValueError(
                f"stream: {type(net).__name__} reads a window of block_size characters, not a text of any length"
                " (a recurrent network does; a Transformer with position rope)"
            )
        return net.stream_decoder() if cache else StreamDecoder(net)
    own = getattr(net, "decoder", None)
    return own(block_size) if cache and callable(own) else WindowDecoder(net, block_size)


def is_sequence_model(net: torch.nn.Module, block_size: int) -> bool:
    """Whether the network predicts at every position of its window, (b, t, vocab_size) logits, as a sequence model
    does; else it predicts the next character only, from a fixed context of block_size characters."""
    device = next(net.parameters()).device
    with eval_mode(net):
        logits, _ = net(torch.zeros(1, block_size, dtype=torch.long, device=device))
    return logits.dim() == 3


def window_logits(net: torch.nn.Module, X: torch.Tensor, block_size: int, sequence: bool) -> torch.Tensor:
    """The logits (n, L, vocab_size) of each target of text windows, as makemore.formats.text.EvalWindows gives
    them: X (n, block_size + L - 1) holds the block_size characters before each window's first target, then its
    inputs.

    A sequence model (`is_sequence_model`) reads each window's L inputs once, and each target is predicted from the
    characters before it in its window, as nanoGPT's windows are. A network of fixed context reads the block_size
    characters before each target (its whole context), one prediction per forward row.
    """
    n, width = X.shape
    length = width - block_size + 1
    if sequence:
        logits, _ = net(X[:, block_size - 1 :])
        return logits
    contexts = X.unfold(1, block_size, 1)  # (n, L, block_size): the block_size characters before each target
    return next_char_logits(net, contexts.reshape(n * length, block_size)).view(n, length, -1)


def scored(
    net: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, block_size: int, sequence: Optional[bool] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (n, vocab_size), targets (n,)) of an evaluation batch, what validation and test score: a word list's
    examples (Y (n,)), or a text's windows (makemore.formats.text.EvalWindows, Y (n, L)) scored by
    `window_logits`. `sequence`: whether the network is a sequence model, when known (else asked of it)."""
    if Y.dim() == 1:
        return next_char_logits(net, X), Y
    if sequence is None:
        sequence = is_sequence_model(net, block_size)
    return window_logits(net, X, block_size, sequence).flatten(0, 1), Y.flatten()


def scored_batches(
    net: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], block_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(logits (n, vocab_size), targets (n,)) of each evaluation batch (a whole split's, from
    CharDataModule.whole_split, in the split's order), scored as validation scores them (`scored`), outside a fit:
    in eval mode, without gradients, on the network's device."""
    device = next(net.parameters()).device
    sequence = is_sequence_model(net, block_size)
    with eval_mode(net):
        for X, Y in batches:
            yield scored(net, X.to(device), Y.to(device), block_size, sequence)


def batches_nll(net: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], block_size: int) -> float:
    """The mean negative log-likelihood, in nats, of every target of evaluation batches (a whole split's, from
    CharDataModule.whole_split): the metric validation logs, computed outside a fit."""
    total, count = 0.0, 0
    for logits, targets in scored_batches(net, batches, block_size):
        total += F.cross_entropy(logits, targets, reduction="sum").item()
        count += len(targets)
    return total / count


@contextmanager
def eval_mode(net: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The network in eval mode (BatchNorm's running statistics, no dropout) and without gradients; its mode after."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            yield net
    finally:
        net.train(was_training)


def sequence_loss(logits: torch.Tensor, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of every real prediction in a batch of context windows (teacher forcing).

    Position t of a window predicts the token after it: idx[:, t + 1], and the target at the last position.
    Windows start with `.` (index 0) before the word begins, and `.` appears nowhere else in a context, so a
    position whose next token is still `.` predicts padding, not a character of the word: it is skipped.
    On a window that holds a whole word (data.train_on words) that is exactly the word's characters and its
    end, each once, as makemore.py trains its sequence models.

    logits (b, t, vocab_size), idx (b, t), targets (b,).
    """
    following = torch.cat([idx[:, 1:], targets.unsqueeze(1)], 1)  # (b, t)
    return F.cross_entropy(
        logits.flatten(0, 1), following.masked_fill(predicts_padding(idx), -1).flatten(), ignore_index=-1
    )


def predicts_padding(idx: torch.Tensor) -> torch.Tensor:
    """(b, t) bool: the positions of windows idx (b, t) whose next token is still the padding `.` before the word
    (or text) begins; the last position predicts the target, never padding. What `sequence_loss` skips."""
    return torch.cat([idx[:, 1:] == 0, torch.zeros_like(idx[:, :1], dtype=torch.bool)], 1)


def word_start_aligned(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each context window left so that it starts at its word's start token: (aligned idx, shift (b,)).

    A window holds a word's last characters after a run of `.` (index 0) whose length depends on where in the
    word the window ends: `..emm` and `....e` both start at the `.` before `e` once aligned, so a causal
    sequence model computes the same thing for the same prefix whatever the window, and its positions count
    from the word's start, as in makemore.py. A window without a leading `.` (a word longer than the context)
    is left as it is. Undo with `window_positions`.

    On the CPU the aligned windows keep only the columns some window still needs, t - min(shift) of them:
    the rest hold rotated-in padding in every window, and a causal model's outputs at the needed columns do
    not depend on them. A batch of whole short words then costs a short sequence (a third fewer positions
    for names.txt at batch 32). On an accelerator all t are kept: finding the width would wait for the device.
    """
    b, t = idx.shape
    leading = torch.where((idx == 0).all(1), t, (idx != 0).int().argmax(1))  # `.`s before the word
    shift = (leading - 1).clamp(min=0)  # keep one `.`: the start token
    width = t - int(shift.min()) if idx.device.type == "cpu" and b else t
    columns = (torch.arange(width, device=idx.device) + shift.unsqueeze(1)) % t
    return idx.gather(1, columns), shift


def embed_from_word_start(
    idx: torch.Tensor, embedding: torch.nn.Embedding, position: torch.nn.Embedding
) -> tuple[torch.Tensor, torch.Tensor]:
    """How a sequence model's forward starts: token plus learned position embeddings of its windows, each aligned to
    its word's start (`word_start_aligned`), so positions count from the word's start token.

    Returns x (b, width, n_embd), width <= t, and the shift that `window_positions` undoes. ValueError for windows
    longer than `position` has rows (the network's block_size).
    """
    t, rows = idx.shape[1], position.num_embeddings
    if t > rows:
        raise ValueError(f"a context of {t} positions, but the network's block_size is {rows}")
    aligned, shift = word_start_aligned(idx)
    return embedding(aligned) + position(torch.arange(aligned.shape[1], device=idx.device)), shift


def window_positions(x: torch.Tensor, shift: torch.Tensor, t: int) -> torch.Tensor:
    """Rotate per-position outputs x (b, width, c) of `word_start_aligned` windows back to the windows' t positions.

    Position t - 1 then holds the prediction after the whole window. Positions of the leading `.`s but the
    last hold outputs of no use (sequence_loss skips them: they predict padding), zeros where the aligned
    windows were narrower than t.
    """
    b, width, c = x.shape
    if width < t:
        x = F.pad(x, (0, 0, 0, t - width))
    columns = (torch.arange(t, device=x.device) - shift.unsqueeze(1)) % t
    return x.gather(1, columns.unsqueeze(2).expand(b, t, c))
