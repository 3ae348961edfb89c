"""Drawing words, or a text's passages, from any makemore network (no Lightning: `makemore sample` starts fast)."""

import math
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from makemore.formats.words import build_examples
from makemore.models.base import Decoder, decoder, eval_mode, next_char_logits
from makemore.text import Vocabulary


def check_sampling(temperature: float, top_k: Optional[int]) -> None:
    """ValueError, naming the option, for a temperature or top_k that `generate` cannot draw with."""
    if not (math.isfinite(temperature) and temperature > 0):  # nan fails both
        raise ValueError(
            f"temperature must be above 0 and finite, got {temperature} (near 0, however small, picks the most likely"
            " name)"
        )
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")


def check_prefix(vocabulary: Vocabulary, prefix: str, option: str = "prefix") -> None:
    """ValueError naming `option` and the characters of `prefix` outside the vocabulary (the start token included)."""
    unknown = sorted(set(prefix) - set(vocabulary.itos[1:]))
    if unknown:
        shown = repr("".join(vocabulary.itos[1:]))
        raise ValueError(
            f"{option} {prefix!r}: {', '.join(map(repr, unknown))} not in the model's vocabulary ({shown[1:-1]})"
        )


def scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / temperature, shifted so that each row's largest is 0: no nan for any temperature above 0.

    Divided as they are, float32 logits overflow to inf below a temperature of about 1e-38 and softmax gives nan;
    shifted first, the others fall to -inf instead, so a tiny temperature draws the most likely character (the
    limit as the temperature goes to 0; ties share the probability). The nan of 0 / a temperature that underflows to
    0 is 0 (so is a nan logit's: every row with one is uniform), -inf stays: what softmax gives is that of
    where(shifted < 0, shifted / temperature, 0), in two operations fewer (tests/test_bad_values.py).
    """
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    if temperature != 1:  # (x / 1 is x, nan included)
        shifted = shifted / temperature
    return shifted.nan_to_num_(0.0, float("inf"), float("-inf"))


def draw(
    logits: torch.Tensor, generator: Optional[torch.Generator], temperature: float, top_k: Optional[int]
) -> torch.Tensor:
    """One token id per row of logits (b, vocab_size), (b, 1): from softmax(logits / temperature), from the top_k
    most likely only when given (logits already -inf stay impossible).

    Drawn as torch.multinomial(probs, 1, generator=generator) draws one (the exponential race: the argmax of p / q,
    q ~ Exp(1) drawn for every entry), so the same ids for a seed (tests/test_sampling.py), without its check of the
    probabilities, which waits for a result (.item()) at every step: softmax's rows of `scaled` logits always pass.
    """
    if top_k is not None and top_k < logits.shape[1]:
        kth = torch.topk(logits, top_k, dim=1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(scaled(logits, temperature), dim=-1)
    return probs.div_(torch.empty_like(probs).exponential_(generator=generator)).argmax(-1, keepdim=True)


# Names drawn at once, as one batch: memory holds one chunk of names, however many are asked for. The draws of a
# chunk are those of one batch of its size, so up to CHUNK_SIZE names a seed gives the names it gave when all were
# drawn as one batch (`makemore sample`'s default 20 and fit's model.num_samples among them).
CHUNK_SIZE = 1000


@torch.no_grad()
def generate(
    net: nn.Module,
    block_size: int,
    num_samples: int,
    max_length: int,
    generator: Optional[torch.Generator] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    prefix: Sequence[int] = (),
    cache: bool = True,
) -> torch.Tensor:
    """Sample `num_samples` words in parallel, each until it draws `.` (index 0) or reaches max_length.

    The network sees the last `block_size` tokens (`.` before the word starts) and may return logits for
    the last position only, (b, vocab_size), or for every position, (b, t, vocab_size). Each word starts
    with the token ids `prefix`; the next characters are drawn from softmax(logits / temperature), from the
    `top_k` most likely only when given. Returns (num_samples, length) token ids, length the longest word drawn
    and its `.` (at most max_length: columns grow as drawn, none is allocated ahead); positions after a word's `.`
    are 0 too. Every row is drawn at every step until all have ended, so the draws depend on num_samples only.
    With `cache` the network's own decoder reads the context, where it has one (the Transformer's key/value cache,
    the recurrent networks' states: `makemore.models.base.decoder`), else the window is run again at every step.
    """
    check_sampling(temperature, top_k)
    if len(prefix) > max_length:
        raise ValueError(f"the prefix has {len(prefix)} characters, more than max_length {max_length}")
    device = next(net.parameters()).device
    start = torch.tensor(list(prefix), dtype=torch.long, device=device).expand(num_samples, -1)
    context = decoder(net, block_size, cache)
    logits = context.feed(start)  # (num_samples, vocab_size)
    drawn = []  # (num_samples,) token ids, one per step
    alive = torch.ones(num_samples, dtype=torch.bool, device=device)
    for step in range(max_length - len(prefix)):
        ix = draw(logits, generator, temperature, top_k).squeeze(1) * alive
        drawn.append(ix)
        alive &= ix != 0
        if not alive.any() or step == max_length - len(prefix) - 1:
            break
        logits = context.feed(ix.unsqueeze(1))
    return torch.cat([start, *(ix.unsqueeze(1) for ix in drawn)], 1)


def sample_chunks(
    net: nn.Module,
    vocabulary: Vocabulary,
    block_size: int,
    num_samples: int,
    max_length: int,
    generator: Optional[torch.Generator] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    prefix: str = "",
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[list[str]]:
    """Draw `num_samples` words in eval mode, `chunk_size` at a time (see `generate`), yielding each chunk's words
    when drawn: memory holds one chunk, however large num_samples is. The network's training mode is put back when
    the iteration ends. The options are checked when called, before any draw: ValueError naming the option."""
    check_sampling(temperature, top_k)
    check_prefix(vocabulary, prefix)
    if max_length < max(len(prefix), 1):
        raise ValueError(f"max_length {max_length} leaves no room for a name after prefix {prefix!r}")
    return _chunks(
        net, vocabulary, block_size, num_samples, max_length, generator, temperature, top_k, prefix, chunk_size
    )


@torch.no_grad()
def _chunks(
    net: nn.Module,
    vocabulary: Vocabulary,
    block_size: int,
    num_samples: int,
    max_length: int,
    generator: Optional[torch.Generator],
    temperature: float,
    top_k: Optional[int],
    prefix: str,
    chunk_size: int,
) -> Iterator[list[str]]:
    prefix_ids = vocabulary.encode(prefix)
    with eval_mode(net):
        for first in range(0, num_samples, chunk_size):
            count = min(chunk_size, num_samples - first)
            ids = generate(net, block_size, count, max_length, generator, temperature, top_k, prefix_ids)
            # generate() fills everything from a word's `.` on with 0, so the nonzero ids are the word
            yield [vocabulary.decode(row[row != 0].tolist()) for row in ids.cpu()]


def sample_words(
    net: nn.Module,
    vocabulary: Vocabulary,
    block_size: int,
    num_samples: int,
    max_length: int,
    generator: Optional[torch.Generator] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    prefix: str = "",
) -> list[str]:
    """Draw words from the network in eval mode (its training mode is put back afterwards), as a list; see
    `sample_chunks`."""
    chunks = sample_chunks(net, vocabulary, block_size, num_samples, max_length, generator, temperature, top_k, prefix)
    return [word for chunk in chunks for word in chunk]


def generate_text(
    net: nn.Module,
    vocabulary: Vocabulary,
    block_size: int,
    prompt: str,
    max_new_chars: int,
    generator: Optional[torch.Generator] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    cache: bool = True,
    stream: bool = False,
) -> Iterator[str]:
    """Continue `prompt` with max_new_chars characters of a text, yielding each as it is drawn (in eval mode): one
    passage of `generate_passages`."""
    passages = generate_passages(
        net, vocabulary, block_size, prompt, max_new_chars, 1, generator, temperature, top_k, cache, stream
    )
    return (chars[0] for chars in passages)


def generate_passages(
    net: nn.Module,
    vocabulary: Vocabulary,
    block_size: int,
    prompt: str,
    max_new_chars: int,
    count: int = 1,
    generator: Optional[torch.Generator] = None,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    cache: bool = True,
    stream: bool = False,
) -> Iterator[list[str]]:
    """Continue `prompt` in `count` passages at once (one batch), max_new_chars characters each, yielding the
    passages' next characters (a list of `count`) as they are drawn (in eval mode).

    The network sees the last block_size characters (a longer prompt is cropped to them; before the text starts,
    the start token); with `stream`, the whole text so far (a network that reads any length:
    makemore.models.base.reads_streams), at the cost of one character a step. The start token itself is never drawn;
    the rest is drawn as `generate` draws. The options are checked when called, before any draw: ValueError naming
    the option.
    """
    check_sampling(temperature, top_k)
    check_prefix(vocabulary, prompt, "prompt")
    context = decoder(net, block_size, cache, stream)  # ValueError for stream of a network of fixed windows
    ids = vocabulary.encode(prompt)
    ids = ids if stream else ids[-block_size:]
    return _passages(net, vocabulary, ids, max_new_chars, count, generator, temperature, top_k, context)


@torch.inference_mode()  # (no view or version bookkeeping, which no_grad keeps, in a step of small operations)
def _passages(
    net: nn.Module,
    vocabulary: Vocabulary,
    ids: list[int],
    max_new_chars: int,
    count: int,
    generator: Optional[torch.Generator],
    temperature: float,
    top_k: Optional[int],
    context: Decoder,
) -> Iterator[list[str]]:
    prompt_ids = torch.tensor([ids] * count, dtype=torch.long, device=next(net.parameters()).device)
    with eval_mode(net):
        logits = context.feed(prompt_ids)
        for step in range(max_new_chars):
            logits.select(1, 0).fill_(float("-inf"))  # the start token is not a character of the text
            ix = draw(logits, generator, temperature, top_k)  # (count, 1)
            yield [vocabulary.itos[i] for i in ix.squeeze(1).tolist()]
            if step < max_new_chars - 1:
                logits = context.feed(ix)


def word_log_probs(net: nn.Module, vocabulary: Vocabulary, block_size: int, words: list[str]) -> list[float]:
    """Each word's log-probability under the network, in nats: its characters and its end, each given the ones before."""
    device = next(net.parameters()).device
    X, Y = build_examples(words, vocabulary, block_size)
    with eval_mode(net):
        logprobs = F.log_softmax(next_char_logits(net, X.to(device)).float(), dim=-1)
        per_char = logprobs.gather(1, Y.to(device).unsqueeze(1)).squeeze(1).cpu()
    ends = torch.tensor([len(word) + 1 for word in words]).cumsum(0)
    totals = torch.cat([torch.zeros(1), per_char.double().cumsum(0)])
    starts = torch.cat([torch.zeros(1, dtype=torch.long), ends[:-1]])
    return (totals[ends] - totals[starts]).tolist()


NOVELTY = ("train", "val/test", "new")


class Novelty:
    """Classes words against the data's (train, val, test) splits, "train", "val/test" or "new", and counts each
    class over every word it has classed (a summary of names streamed in chunks).

    Args:
        splits: the data's train, val and test words.
    """

    def __init__(self, splits: Sequence[Sequence[str]]) -> None:
        self.train, self.held_out = set(splits[0]), set(splits[1]) | set(splits[2])
        self.counts = dict.fromkeys(NOVELTY, 0)

    def __call__(self, words: list[str]) -> list[str]:
        classes = ["train" if word in self.train else "val/test" if word in self.held_out else "new" for word in words]
        for name in classes:
            self.counts[name] += 1
        return classes


def novelty(words: list[str], splits: Sequence[Sequence[str]]) -> list[str]:
    """Each word's class against the data's (train, val, test) splits: "train", "val/test" or "new"."""
    return Novelty(splits)(words)
