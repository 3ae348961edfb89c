"""Sampling with a network's own decoder (the Transformer's key/value cache, the recurrent networks' states) gives
what the window read again at every step gives: the same logits, the same characters for the same seed."""

import pytest
import torch

from makemore.formats.text import vocabulary_of_text
from makemore.models import Recurrent, Transformer
from makemore.models.base import StreamDecoder, WindowDecoder, decoder
from makemore.models.transformer import ConcatenatedStream
from makemore.sampling import generate, generate_passages, generate_text

BLOCK_SIZE = 8
VOCABULARY = vocabulary_of_text("ROMEO:\nBut soft, what light through yonder window breaks?")


def moved(net: torch.nn.Module) -> torch.nn.Module:
    """The network with every parameter moved off its initial value, as training moves it (zero-initialised
    projections and head would make every logit 0, cached or not)."""
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return net


def transformer(**options) -> Transformer:
    return Transformer(len(VOCABULARY), BLOCK_SIZE, n_layer=2, n_head=2, n_embd=16, **options)


NETWORKS = {
    "transformer": transformer,
    # each of the Transformer's options alone (those that change what a step computes), then all of them
    "transformer-rope": lambda: transformer(position="rope"),
    "transformer-qk-norm": lambda: transformer(qk_norm=True),
    "transformer-relu2": lambda: transformer(activation="relu2"),
    "transformer-every-option": lambda: moved(
        transformer(position="rope", qk_norm=True, activation="relu2", zero_init_proj=True, zero_init_head=True)
    ),
    "gru": lambda: Recurrent(len(VOCABULARY), BLOCK_SIZE, "gru", n_embd=16, n_hidden=16),
    "lstm": lambda: Recurrent(len(VOCABULARY), BLOCK_SIZE, "lstm", n_embd=16, n_hidden=16, n_layers=2),
    "rnn": lambda: Recurrent(len(VOCABULARY), BLOCK_SIZE, "rnn", n_embd=16, n_hidden=16),
}
# Prompts from none to longer than the window; every run below draws past block_size characters.
PROMPTS = ["", "RO", "ROMEO:\n", "ROMEO:\nBut soft"]
# Not bit for bit: the BLAS sums a matrix product over one row in another order than the same row within a product
# of t rows (nn.Linear(128, 384) on row 63 of 64 rows and on that row alone differ by 4.8e-7 in float32), and the
# window's own logits move with its width the same way. The cached steps are a row or a few, the window t rows: the
# logits agree to a few units of float rounding (at most 3 eps measured, in float32 and float64 alike).
ROUNDING = 16


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("network", NETWORKS)
def test_a_decoder_gives_the_windows_logits(network, prompt, dtype):
    torch.manual_seed(0)
    net = NETWORKS[network]().to(dtype).eval()
    assert not isinstance(decoder(net, BLOCK_SIZE), WindowDecoder)  # the network's own
    cached, window = decoder(net, BLOCK_SIZE), WindowDecoder(net, BLOCK_SIZE)
    batch = 3
    idx = torch.tensor([VOCABULARY.encode(prompt)] * batch, dtype=torch.long)
    tokens = torch.randint(1, len(VOCABULARY), (batch, 3 * BLOCK_SIZE), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for step in range(tokens.shape[1] + 1):
            torch.testing.assert_close(
                cached.feed(idx), window.feed(idx), rtol=0, atol=ROUNDING * torch.finfo(dtype).eps, msg=f"step {step}"
            )
            idx = tokens[:, step : step + 1]


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("network", ["transformer", "transformer-every-option", "lstm"])
def test_a_passage_is_the_same_with_and_without_the_cache(network, prompt):
    torch.manual_seed(0)
    net = NETWORKS[network]()
    passages = [
        "".join(
            generate_text(
                net, VOCABULARY, BLOCK_SIZE, prompt, 5 * BLOCK_SIZE, torch.Generator().manual_seed(7), cache=c
            )
        )
        for c in (True, False)
    ]
    assert passages[0] == passages[1]
    assert len(passages[0]) == 5 * BLOCK_SIZE


@pytest.mark.parametrize("network", ["transformer", "transformer-every-option", "gru"])
def test_words_are_the_same_with_and_without_the_cache(network):
    torch.manual_seed(0)
    net = NETWORKS[network]().eval()
    prefix = VOCABULARY.encode("RO")
    words = [
        generate(net, BLOCK_SIZE, 50, 3 * BLOCK_SIZE, torch.Generator().manual_seed(3), 1.5, 10, prefix, cache=c)
        for c in (True, False)
    ]
    assert torch.equal(words[0], words[1])
    assert words[0].shape[1] > BLOCK_SIZE  # some words outgrew the window


# The networks that read a text of any length (makemore.models.base.reads_streams).
STREAMING = ["transformer-rope", "transformer-every-option", "gru", "lstm", "rnn"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("network", STREAMING)
def test_a_stream_decoder_gives_the_whole_texts_logits(network, prompt, dtype):
    """Stream sampling reads everything drawn so far: the network's own stream decoder gives what its forward over the
    whole text gives, also long after the window would have slid (where the window's logits differ)."""
    torch.manual_seed(0)
    net = NETWORKS[network]().to(dtype).eval()
    fast, whole, window = decoder(net, BLOCK_SIZE, stream=True), StreamDecoder(net), WindowDecoder(net, BLOCK_SIZE)
    assert not isinstance(fast, StreamDecoder)  # the network's own
    idx = torch.tensor([VOCABULARY.encode(prompt)] * 2, dtype=torch.long)  # from none to longer than the window
    tokens = torch.randint(1, len(VOCABULARY), (2, 3 * BLOCK_SIZE), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for step in range(tokens.shape[1] + 1):
            expected = whole.feed(idx)
            torch.testing.assert_close(fast.feed(idx), expected, rtol=0, atol=ROUNDING * torch.finfo(dtype).eps)
            windowed = window.feed(idx)
            idx = tokens[:, step : step + 1]
    assert not torch.allclose(windowed, expected)  # the stream remembers what left the window


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("network", STREAMING)
def test_passages_drawn_at_once_are_the_same_with_and_without_the_cache(network, stream):
    torch.manual_seed(0)
    net = NETWORKS[network]()
    drawn = [
        list(
            generate_passages(
                net,
                VOCABULARY,
                BLOCK_SIZE,
                "ROMEO:",
                4 * BLOCK_SIZE,
                3,
                torch.Generator().manual_seed(7),
                cache=c,
                stream=stream,
            )
        )
        for c in (True, False)
    ]
    assert drawn[0] == drawn[1]
    assert len({"".join(passage) for passage in zip(*drawn[0])}) == 3


def test_a_network_of_fixed_windows_does_not_stream():
    net = NETWORKS["transformer"]()
    with pytest.raises(ValueError, match="stream: Transformer reads a window of block_size characters"):
        generate_text(net, VOCABULARY, BLOCK_SIZE, "RO", 10, stream=True)


# Feeds of a stream, each a number of tokens at once: a prompt, then a token a step past several windows and past the
# rotary table, then a few tokens at once (within the rows' room), more steps, more tokens at once than the rows'
# room, and a step.
STREAM_FEEDS = [*[1] * (4 * BLOCK_SIZE - 3), 3, *[1] * BLOCK_SIZE, 2 * BLOCK_SIZE, 1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("prompt", [1, 3, 2 * BLOCK_SIZE + 3])  # one token, a few, longer than the window
@pytest.mark.parametrize("network", ["transformer-rope", "transformer-every-option"])
def test_the_stream_cache_gives_the_logits_of_decode_bit_for_bit(network, prompt, dtype):
    """StreamCache keeps the keys and values in place, but computes what Transformer.decode computes, number for
    number: the same logits to the last bit (so the same draws for a seed), through the moves of its rows."""
    torch.manual_seed(0)
    net = NETWORKS[network]().to(dtype).eval()
    fast, reference = decoder(net, BLOCK_SIZE, stream=True), ConcatenatedStream(net)
    sizes = [prompt, *STREAM_FEEDS]
    tokens = torch.randint(1, len(VOCABULARY), (2, sum(sizes)), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        for step, idx in enumerate(tokens.split(sizes, 1)):
            assert torch.equal(fast.feed(idx), reference.feed(idx)), f"feed {step} of {idx.shape[1]} tokens"


def test_a_stream_drawn_past_the_rotary_table_leaves_a_network_that_trains():
    """Sampling runs in inference mode; the rotary table it grows for a long stream stays a tensor that a training
    step can save for its backward pass."""
    torch.manual_seed(0)
    net = NETWORKS["transformer-rope"]()
    assert len("".join(generate_text(net, VOCABULARY, BLOCK_SIZE, "RO", 4 * BLOCK_SIZE, stream=True))) == 4 * BLOCK_SIZE
    idx = torch.randint(1, len(VOCABULARY), (2, 3 * BLOCK_SIZE), generator=torch.Generator().manual_seed(0))
    _, loss = net(idx, idx[:, -1])
    loss.backward()
    assert all(parameter.grad is not None for parameter in net.parameters())
