"""Lecture part 3 as tools: the Diagnostics callback (activations, gradients, update-to-data ratios)."""

import math

import pytest
import torch
from conftest import cli_error, small_run_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from makemore.diagnostics import Diagnostics, tanh_outputs
from makemore.models import MLP

DIAGNOSTICS = ["--trainer.callbacks+=makemore.diagnostics.Diagnostics", "--trainer.callbacks.every_n_steps", "20"]


def events_of(log_dir: str) -> EventAccumulator:
    events = EventAccumulator(log_dir, size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    events.Reload()
    return events


def test_diagnostics_log_what_the_lecture_plots(words_path, tmp_path, run_cli):
    args = small_run_args(words_path, tmp_path, max_steps=60)
    cli = run_cli("fit", *args, "--model.net.n_layers", "2", "--model.net.batch_norm", "true", *DIAGNOSTICS)
    events = events_of(cli.trainer.log_dir)
    tags = events.Tags()
    for layer in ("tanh_0", "tanh_1"):  # one per hidden layer, in forward order
        for stat in ("mean", "std", "saturated"):
            points = events.Scalars(f"activations/{stat}/{layer}")
            assert [p.step for p in points] == [0, 20, 40]  # step 0 is the untrained network
        assert f"activations/{layer}" in tags["histograms"]
    saturated = [p.value for p in events.Scalars("activations/saturated/tanh_0")]
    assert all(0.0 <= v <= 1.0 for v in saturated)
    for name, _ in cli.model.net.named_parameters():
        assert [p.step for p in events.Scalars(f"gradients/std/{name}")] == [0, 20, 40]
        assert f"gradients/{name}" in tags["histograms"]
    ratios = [p.value for p in events.Scalars("update_ratio/hidden.0.weight")]
    assert all(-8 < r < 0 for r in ratios)  # log10 of a small positive ratio
    assert "plots/update_ratio" in tags["images"]


def test_the_measurement_is_what_the_lecture_computes():
    torch.manual_seed(0)
    net = MLP(27, 3, n_embd=4, n_hidden=16)
    x, y = torch.randint(0, 27, (32, 3)), torch.randint(0, 27, (32,))
    loss, (t,) = tanh_outputs(net, x, y)
    h = torch.tanh(net.embedding.weight[x].flatten(1) @ net.hidden[0].weight + net.hidden[0].bias)
    torch.testing.assert_close(t, h)  # the recorded tanh is the hidden layer's output

    class Writer:
        scalars: dict = {}

        def add_scalar(self, tag, value, step):
            self.scalars[tag] = float(value)

    class Module:  # what measure reads of a LightningModule
        device = torch.device("cpu")

    module = Module()
    module.net = net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    writer = Writer()
    Diagnostics(histograms=False).measure(writer, module, x, y, 0, optimizer)
    loss.backward()
    w = net.hidden[0].weight
    assert writer.scalars["activations/saturated/tanh_0"] == pytest.approx(float((h.abs() > 0.97).float().mean()))
    expected = math.log10(float((0.1 * w.grad).std() / w.detach().std()))
    assert writer.scalars["update_ratio/hidden.0.weight"] == pytest.approx(expected, rel=1e-5)
    assert writer.scalars["gradients/std/hidden.0.weight"] == pytest.approx(float(w.grad.std()), rel=1e-5)


@pytest.mark.parametrize(
    "options",
    [["--model.net.batch_norm", "true", "--model.net.dropout", "0.2"], []],
    ids=["batchnorm and dropout", "hand-written step"],
)
def test_diagnostics_change_nothing_training_sees(words_path, tmp_path, run_cli, options):
    """Same weights with and without the callback: BatchNorm statistics, dropout masks, gradients, hand-written step."""
    plain = run_cli("fit", *small_run_args(words_path, tmp_path / "plain", max_steps=60), *options)
    watched = run_cli("fit", *small_run_args(words_path, tmp_path / "watched", max_steps=60), *options, *DIAGNOSTICS)
    assert plain.model.hand_backward_active == watched.model.hand_backward_active == (not options)
    for (name, a), b in zip(plain.model.net.state_dict().items(), watched.model.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_a_network_without_tanh_is_one_line(words_path, tmp_path, run_cli):
    args = small_run_args(words_path, tmp_path, max_steps=20)
    bigram = ["--model.net", "makemore.models.Bigram"]
    cli_error(["fit", *args, *bigram, *DIAGNOSTICS], ".*Diagnostics: Bigram applies no tanh.*activations: false")
    assert not list(tmp_path.rglob("*.ckpt"))
    cli = run_cli("fit", *args, *bigram, *DIAGNOSTICS, "--trainer.callbacks.activations", "false")
    assert "gradients/std/logits" in events_of(cli.trainer.log_dir).Tags()["scalars"]


class OneDevice(torch.overrides.TorchFunctionMode):
    """Refuses any operation whose tensors lie on more than one device, as a GPU would (a CPU test cannot mix
    devices otherwise: a meta tensor beside a CPU one passes)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.dim() > 0]
        tensors += [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
        devices = {t.device for t in tensors}
        if len(devices) > 1:
            raise RuntimeError(f"{func.__name__} mixes devices {sorted(map(str, devices))}")
        return func(*args, **kwargs)


def test_diagnostics_set_up_where_the_weights_are_not_where_they_will_be(words_path, tmp_path):
    """At setup Lightning reports the target device as pl_module.device while the weights are still on the CPU (a
    GPU fit); the probe batch must be built beside the weights. The target here is `meta`."""
    import lightning as L
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.strategies import SingleDeviceStrategy

    from makemore.api import module_for
    from makemore.data import CharDataModule

    class MetaAccelerator(CPUAccelerator):
        def setup_device(self, device: torch.device) -> None:  # CPUAccelerator accepts only the CPU
            pass

    class SetUp(Exception):
        pass

    class StopAfterSetup(L.Callback):
        def setup(self, trainer, pl_module, stage):
            raise SetUp(f"{pl_module.device}, weights on {next(pl_module.parameters()).device}")

    data = CharDataModule(path=str(words_path), val_every_n_steps=50)
    trainer = L.Trainer(
        max_steps=20,
        default_root_dir=tmp_path,
        strategy=SingleDeviceStrategy(torch.device("meta"), accelerator=MetaAccelerator()),
        callbacks=[Diagnostics(every_n_steps=10), StopAfterSetup()],
        logger=False,
        enable_progress_bar=False,
    )
    with OneDevice(), pytest.raises(SetUp, match="^meta, weights on cpu$"):  # Diagnostics' setup has passed
        trainer.fit(module_for(data), data)
