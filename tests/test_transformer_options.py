"""The Transformer's options from the speedrun's network (issue 38): rotary positions, QK-norm, ReLU², zero-initialised
projections and head. Each off by default (makemore.py's network, the same draw); each does what its --help says.
The cached decoder with each option: tests/test_decoding.py."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import cli_error, small_run_args

from makemore.checkpoint import read_checkpoint
from makemore.models import Transformer
from makemore.models.transformer import Rotary

VOCAB_SIZE, BLOCK_SIZE = 27, 16
EVERY_OPTION = {
    "position": "rope",
    "qk_norm": True,
    "activation": "relu2",
    "zero_init_proj": True,
    "zero_init_head": True,
}

# main(args) inside pytest: Lightning warns that sys.argv holds pytest's own arguments.
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter:UserWarning")


def built(seed: int = 0, **options) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(VOCAB_SIZE, BLOCK_SIZE, n_layer=2, n_head=4, n_embd=32, **options)


def windows(n: int = 6) -> torch.Tensor:
    """n windows of whole made-up words (a run of `.` and then letters), (n, BLOCK_SIZE)."""
    rng = torch.Generator().manual_seed(1)
    idx = torch.randint(1, VOCAB_SIZE, (n, BLOCK_SIZE), generator=rng)
    for row, pad in enumerate(torch.randint(1, BLOCK_SIZE, (n,), generator=rng).tolist()):
        idx[row, :pad] = 0
    return idx


def test_every_option_is_off_by_default_and_keeps_the_networks_parameters():
    default, plain = built(), built(position="learned", activation="gelu")
    assert list(default.state_dict()) == list(plain.state_dict())  # the checkpoints' keys of makemore.py's network
    assert "position.weight" in default.state_dict() and not any("norm" in k for k in default.state_dict())
    for options, added, removed in [
        ({"position": "rope"}, set(), {"position.weight"}),
        ({"qk_norm": True}, {f"blocks.{i}.{n}_norm.weight" for i in range(2) for n in "qk"}, set()),
        ({"activation": "relu2"}, set(), set()),
        ({"zero_init_proj": True, "zero_init_head": True}, set(), set()),
    ]:
        keys = set(built(**options).state_dict())
        assert (keys - set(default.state_dict()), set(default.state_dict()) - keys) == (added, removed), options


def test_rotary_positions_make_attention_depend_on_distance_only():
    rotary = Rotary(head_size=8, block_size=32, base=10000.0)
    q, k = torch.randn(2, 1, 1, 1, 8, generator=torch.Generator().manual_seed(0))  # each (b, nh, t, hs)

    def score(query_position: int, key_position: int) -> float:
        return (rotary(q, query_position) * rotary(k, key_position)).sum().item()

    for shift in (1, 5, 20):
        assert score(7, 3) == pytest.approx(score(7 + shift, 3 + shift), abs=1e-5)  # float32's angles
    assert score(7, 3) != pytest.approx(score(7, 4), abs=1e-3)  # but on the distance it does
    assert torch.allclose(rotary(q, 0), q)  # position 0 is not turned
    assert rotary(q, 9).norm().item() == pytest.approx(q.norm().item(), abs=1e-5)  # turned, not scaled


def test_rope_networks_know_the_order_of_the_characters_without_a_position_table():
    net = built(position="rope").eval()
    assert net.position is None
    ab, ba = torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 1]])  # `.ab`, `.ba`: the same characters
    with torch.no_grad():
        assert not torch.allclose(net(ab)[0][:, -1], net(ba)[0][:, -1], atol=1e-4)


@pytest.mark.parametrize("qk_norm", [True, False])
def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys(qk_norm):
    net = built(qk_norm=qk_norm).eval()
    idx = windows()
    with torch.no_grad():
        before = net(idx)[0]
        for block in net.blocks:  # queries and keys 30 times larger: their rows of the qkv map
            n_embd = block.proj.in_features
            block.qkv.weight[: 2 * n_embd] *= 30
            block.qkv.bias[: 2 * n_embd] *= 30
        after = net(idx)[0]
    assert torch.allclose(before, after, atol=1e-4) == qk_norm  # without the norm, attention turns one-hot


@pytest.mark.parametrize("activation, expected", [("gelu", F.gelu), ("relu2", lambda x: F.relu(x) ** 2)])
def test_the_mlps_activation_is_the_one_named(activation, expected):
    net = built(activation=activation)
    x = torch.linspace(-3, 3, 61)
    for block in net.blocks:
        torch.testing.assert_close(block.mlp[1](x), expected(x))


def test_zero_initialised_blocks_start_as_the_identity_and_the_head_as_the_uniform_guess():
    default, zero = built(), built(zero_init_proj=True, zero_init_head=True)
    x = torch.randn(3, 5, 32)
    for block in zero.blocks:
        assert torch.equal(block(x), x)
        assert not block.proj.weight.any() and not block.proj.bias.any() and not block.mlp[2].weight.any()
    # drawn as the default network, then zeroed: every other weight is the default's
    for name, value in default.state_dict().items():
        if not (name.endswith(("proj.weight", "proj.bias", "mlp.2.weight", "mlp.2.bias")) or name == "head.weight"):
            assert torch.equal(zero.state_dict()[name], value), name
    idx = windows()
    _, loss = zero(idx, idx[:, -1])
    assert loss.item() == pytest.approx(math.log(VOCAB_SIZE), abs=1e-6)
    # only the head zeroed: the blocks still compute, the first loss is still the uniform guess
    _, loss = built(zero_init_head=True)(idx, idx[:, -1])
    assert loss.item() == pytest.approx(math.log(VOCAB_SIZE), abs=1e-6)


def test_a_network_with_every_option_fits_tests_and_samples_through_the_cli(words_path, tmp_path, run_cli, capsys):
    options = [arg for key, value in EVERY_OPTION.items() for arg in (f"--model.net.{key}", str(value).lower())]
    args = [
        *small_run_args(words_path, tmp_path, max_steps=100),
        "--model.net",
        "makemore.models.Transformer",
        "--model.net.n_layer",
        "2",
        "--model.net.n_embd",
        "32",
        "--data.train_on",
        "words",
        "--data.block_size",
        "16",
        *options,
    ]
    fit = run_cli("fit", *args)
    assert fit.trainer.callback_metrics["val_loss"].item() < math.log(len(fit.datamodule.vocabulary)) - 0.3
    last = Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt"
    saved = read_checkpoint(last)["hyper_parameters"]["net"]["init_args"]
    assert {key: saved[key] for key in EVERY_OPTION} == EVERY_OPTION
    capsys.readouterr()
    run_cli("sample", "--ckpt_path", str(last), "--num_samples", "5", "--seed", "0")  # rebuilt from the checkpoint
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 5 and all(set(name) <= set(fit.datamodule.vocab[1:]) for name in names)


def test_the_networks_help_explains_every_option(run_cli, capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", "--model.net.help", "makemore.models.Transformer")
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    for phrase in [
        "--model.net.position {learned,rope}",
        "rotary position embeddings",
        "--model.net.qk_norm",
        "--model.net.activation {gelu,relu2}",
        "relu(x)²",
        "--model.net.zero_init_proj",
        "--model.net.zero_init_head",
        "ln(vocab_size)",
    ]:
        assert phrase in text, phrase


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.net.activation", "swish"], r"model.net.activation: .*swish"),
        (["--model.net.position", "sinusoidal"], r"model.net.position: .*sinusoidal"),
        (["--model.net.rope_base", "0"], r"model.net.rope_base: not of type PositiveFloat"),
        (
            ["--model.net.position", "rope", "--model.net.n_head", "64"],
            r"model.net.init_args.n_head=64: Transformer: position rope turns pairs of a head's dimensions, but "
            r"n_embd / n_head \(64 / 64\) is odd",
        ),
    ],
)
def test_a_value_an_option_cannot_take_is_one_line(args, message, words_path, tmp_path):
    error = cli_error(
        ["fit", *small_run_args(words_path, tmp_path), "--model.net", "makemore.models.Transformer", *args], message
    )
    assert "\n" not in error
    assert not list(tmp_path.glob("lightning_logs/version_*")), "a failed start leaves no run folder"
