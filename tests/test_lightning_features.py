"""Lightning's Trainer options and callbacks mean what Lightning's docs say, per SGD step.

The proof is differential: the mini-batch of each SGD step is a pure function of (seed, rank, step), so a run with
one SGD step per Lightning batch (Lightning's own view) and one with many must end at the same weights and log the
same values at the same steps.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import cli_error, small_run_args
from lightning.pytorch.callbacks import LearningRateMonitor
from torch.utils.data import TensorDataset

from makemore import lightning_features
from makemore.api import scalars
from makemore.checkpoint import read_checkpoint
from makemore.data import CharDataModule
from makemore.steps import TrainBatches

ROOT = Path(__file__).resolve().parents[1]
TAGS = ("train_loss", "val_loss", "lr")

CASES = {
    "sgd": ["--model.hand_backward", "false"],
    "adamw": ["--model.optimizer", "torch.optim.AdamW", "--model.learning_rate", "0.01"],
    "cosine schedule": [
        "--model.lr_scheduler",
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        "--model.lr_scheduler.T_max",
        "100",
    ],
    "clip norm": ["--model.gradient_clip_val", "0.1"],
    "clip value": ["--model.gradient_clip_val", "0.01", "--model.gradient_clip_algorithm", "value"],
    "accumulate": ["--data.accumulate_grad_batches", "3"],
    "ema": ["--trainer.callbacks+=EMAWeightAveraging", "--trainer.callbacks.decay", "0.9"],
    "swa": ["--trainer.callbacks+=makemore.callbacks.SWAWeightAveraging", "--trainer.callbacks.start", "0.5"],
    "batchnorm": ["--model.net.batch_norm", "true"],
    "dropout": ["--model.net.dropout", "0.2", "--model.net.n_layers", "2"],
    "hand-written step": ["--model.hand_backward", "true"],
}


def logged(run_dir) -> dict[str, list[tuple[int, float]]]:
    return {tag: scalars(run_dir, tag) for tag in TAGS}


def assert_same_run(a_params, b_params, a_logs, b_logs) -> None:
    for (name, a), b in zip(a_params, b_params):
        assert torch.equal(a, b), f"{name} differs"
    assert a_logs == b_logs


@pytest.mark.parametrize("case", CASES)
def test_one_step_per_batch_and_many_train_and_log_the_same(case, words_path, tmp_path, run_cli):
    runs = []
    for max_steps_per_batch in ("1", "10"):
        args = small_run_args(
            words_path, tmp_path / max_steps_per_batch, max_steps=100, data__max_steps_per_batch=max_steps_per_batch
        )
        runs.append(run_cli("fit", *args, *CASES[case]))
    one, many = runs
    assert one.trainer.train_dataloader.steps == 1
    assert many.trainer.train_dataloader.steps == 10  # weight averaging included: makemore updates it every step
    assert one.trainer.global_step == many.trainer.global_step == 100
    assert_same_run(
        one.model.named_parameters(), many.model.parameters(), logged(one.trainer.log_dir), logged(many.trainer.log_dir)
    )


def test_max_time_stops_between_sgd_steps_with_many_steps_per_batch(words_path, tmp_path, run_cli):
    # trainer.max_time adds Lightning's Timer, which checks the clock at batch ends: makemore checks it between
    # SGD steps instead, so the fit keeps its large batches
    args = small_run_args(words_path, tmp_path, max_steps=10**9, data__max_steps_per_batch="1000")
    cli = run_cli("fit", *args, "--data.val_every_n_steps", "1000000", "--trainer.max_time", "00:00:00:02")
    assert cli.trainer.train_dataloader.steps == 10  # trainer.log_every_n_steps 10: not one step per batch
    assert 0 < cli.trainer.global_step < 10**9
    assert scalars(cli.trainer.log_dir, "val_loss")[-1][0] == cli.trainer.global_step  # it ends with a validation


@pytest.mark.parametrize("averaging", [[], CASES["ema"]], ids=["dropout", "dropout and ema"])
def test_a_resumed_run_logs_and_ends_as_an_uninterrupted_one(averaging, words_path, tmp_path, run_cli):
    # train_loss every 20 steps; the first part stops at step 50, in the middle of a window (steps 41-60)
    options = {"trainer__log_every_n_steps": "20", "model__net__dropout": "0.2"}
    whole = run_cli(
        "fit",
        *small_run_args(words_path, tmp_path / "whole", max_steps=100, data__max_steps_per_batch="1", **options),
        *averaging,
    )
    first = run_cli("fit", *small_run_args(words_path, tmp_path / "parts", max_steps=50, **options), *averaging)
    last = Path(first.trainer.log_dir, "checkpoints", "last.ckpt")
    rest = run_cli(
        "fit",
        *small_run_args(words_path, tmp_path / "parts", max_steps=100, **options),
        *averaging,
        "--ckpt_path",
        str(last),
    )
    assert first.trainer.train_dataloader.steps == rest.trainer.train_dataloader.steps == 10
    whole_logs = logged(whole.trainer.log_dir)
    parts = {tag: scalars(first.trainer.log_dir, tag) + scalars(rest.trainer.log_dir, tag) for tag in TAGS}
    assert [step for step, _ in parts["train_loss"]] == [20, 40, 50, 60, 80, 100]
    # the first part logs its own end (train_loss of steps 41-50, as every fit logs its last step); the rest logs the
    # window 41-60 whole, at 60, as the uninterrupted run does
    parts = {tag: [(step, value) for step, value in parts[tag] if step != 50 or tag == "val_loss"] for tag in TAGS}
    assert_same_run(whole.model.named_parameters(), rest.model.parameters(), whole_logs, parts)


def test_two_ddp_processes_train_and_log_the_same_with_one_step_per_batch(words_path, tmp_path):
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    folders = []
    for max_steps_per_batch in ("1", "10"):
        args = small_run_args(
            words_path, tmp_path / max_steps_per_batch, max_steps=60, data__max_steps_per_batch=max_steps_per_batch
        )
        args += ["--model.gradient_clip_val", "0.5", "--data.accumulate_grad_batches", "2", *ddp]
        done = subprocess.run(
            [sys.executable, "-m", "makemore", "fit", *args], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        folders.append(tmp_path / max_steps_per_batch / "lightning_logs" / "version_0")
    weights = [read_checkpoint(str(folder / "checkpoints" / "last.ckpt"))["state_dict"] for folder in folders]
    assert weights[0].keys() == weights[1].keys()
    assert_same_run(sorted(weights[0].items()), [v for _, v in sorted(weights[1].items())], *map(logged, folders))


def test_a_resumed_ddp_run_continues_each_processs_dropout_stream(words_path, tmp_path):
    """Each process's random state is saved and restored as its own: rank 1 resumed with rank 0's would draw other
    dropout masks than an uninterrupted run. (Every process is seeded alike; the network draws one more number on
    rank 1 at each step, so that the two streams differ, as they do on GPUs, whose generators each process advances
    alone.)"""
    (tmp_path / "rank_net.py").write_text(
        "import torch, torch.distributed as dist\n"
        "from makemore.models import MLP\n\n\n"
        "class DrawsMoreOnRankOne(MLP):\n"
        "    def forward(self, idx, targets=None):\n"
        "        if self.training and dist.get_rank() == 1:\n"
        "            torch.rand(1)\n"
        "        return super().forward(idx, targets)\n"
    )
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    options = {"model__net": "rank_net.DrawsMoreOnRankOne", "model__net__dropout": "0.2", "model__net__n_layers": "2"}
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def fit(root: Path, max_steps: int, *extra: str) -> Path:
        args = [*small_run_args(words_path, root, max_steps=max_steps, **options), *ddp, *extra]
        command = [sys.executable, "-m", "makemore", "fit", *args]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return max(root.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime)

    whole = read_checkpoint(str(fit(tmp_path / "whole", 60)), allowed="rank_net.DrawsMoreOnRankOne")
    first = fit(tmp_path / "parts", 30)
    resumed = read_checkpoint(
        str(fit(tmp_path / "parts", 60, "--ckpt_path", str(first))), allowed="rank_net.DrawsMoreOnRankOne"
    )
    for name, value in whole["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], value, rtol=0, atol=0, msg=name)
    assert len(resumed["rng_states"]) == 2  # one per process


def test_a_run_resumed_by_more_processes_says_which_start_a_new_random_stream(words_path, tmp_path):
    options = {"model__net__dropout": "0.2"}
    first = subprocess.run(
        [sys.executable, "-m", "makemore", "fit", *small_run_args(words_path, tmp_path, max_steps=30, **options)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    args = [*small_run_args(words_path, tmp_path, max_steps=60, **options), "--ckpt_path", str(last)]
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    resumed = subprocess.run(
        [sys.executable, "-m", "makemore", "fit", *args, *ddp], cwd=ROOT, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = [line for line in (resumed.stdout + resumed.stderr).splitlines() if "holds no random state" in line]
    assert said == [
        "makemore: the checkpoint holds no random state for process 1 (it was saved by 1): from here its dropout"
        " masks (if any) differ from those of an uninterrupted run"
    ]


def test_a_checkpoint_of_more_processes_and_devices_resumes_on_one_cpu(words_path, tmp_path, run_cli, caplog):
    """A run saved by 3 GPU processes, resumed (or evaluated) on a machine with one CPU: rank 0's CPU stream
    continues, the GPU states are not restored, and the fit says once what it could not restore."""
    options = {"model__net__dropout": "0.2"}
    whole = run_cli("fit", *small_run_args(words_path, tmp_path / "whole", max_steps=60, **options))
    first = run_cli("fit", *small_run_args(words_path, tmp_path / "parts", max_steps=30, **options))
    last = Path(first.trainer.log_dir, "checkpoints", "last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    [states] = checkpoint["rng_states"]
    gpu = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state: seed and offset
    checkpoint["rng_states"] = [{**states, "cuda": gpu}] + [{"cpu": torch.get_rng_state(), "cuda": gpu}] * 2
    torch.save(checkpoint, last)
    rest = run_cli(
        "fit", *small_run_args(words_path, tmp_path / "parts", max_steps=60, **options), "--ckpt_path", str(last)
    )
    for (name, value), resumed in zip(whole.model.named_parameters(), rest.model.parameters()):
        torch.testing.assert_close(resumed, value, rtol=0, atol=0, msg=name)
    assert not [r for r in caplog.records if "holds no random state" in r.getMessage()]  # the CPU's: all it needs
    checkpoint["rng_states"] = []
    torch.save(checkpoint, last)
    run_cli("fit", *small_run_args(words_path, tmp_path / "again", max_steps=60, **options), "--ckpt_path", str(last))
    said = [r.getMessage() for r in caplog.records if "holds no random state" in r.getMessage()]
    assert said == [
        "makemore: the checkpoint holds no random state for any process: from here its dropout masks (if any) differ"
        " from those of an uninterrupted run"
    ]


def hand_step(net, X, Y, lr: float, clip_norm: float = 0.0) -> dict[str, torch.Tensor]:
    """One SGD step on the mean loss of the mini-batches X[j], Y[j], written out: the expected weights."""
    net.zero_grad()
    for x, y in zip(X, Y):
        (net(x, y)[1] / len(X)).backward()
    grads = [p.grad for p in net.parameters()]
    scale = 1.0
    if clip_norm:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = min(1.0, clip_norm / (norm.item() + 1e-6))
    return {name: (p - lr * scale * p.grad).detach() for name, p in net.named_parameters()}


@pytest.mark.parametrize("clip_norm", [0.0, 0.05])
def test_accumulation_and_clipping_take_the_clipped_gradient_of_the_mean_of_k_mini_batches(
    clip_norm, words_path, tmp_path
):
    from makemore.api import make_trainer, module_for

    data = CharDataModule(path=str(words_path), batch_size=8, val_every_n_steps=50, seed=3, accumulate_grad_batches=3)
    L.seed_everything(0)
    model = module_for(data, learning_rate=0.1, gradient_clip_val=clip_norm or None)
    net = type(model.net)(len(model.vocabulary), 3)
    net.load_state_dict(model.net.state_dict())  # the initial weights
    trainer = make_trainer(
        max_steps=1,
        root=tmp_path,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, data)
    batches = TrainBatches(data.examples["train"], batch_size=8, steps=1, epoch_steps=50, seed=3, rank=0, accumulate=3)
    Xb, Yb, _ = batches.batch(0)
    assert Xb.shape[:3] == (1, 3, 8)  # (steps, mini-batches per step, batch_size)
    expected = hand_step(net, Xb[0], Yb[0], lr=0.1, clip_norm=clip_norm)
    for name, p in model.net.named_parameters():
        torch.testing.assert_close(p, expected[name], rtol=1e-5, atol=1e-7)


class NormRecordingSGD(torch.optim.SGD):
    """SGD that records the norm of the gradient it steps with: what clipping left of it, once unscaled."""

    norms: list[float] = []

    def step(self, closure=None):
        grads = [p.grad.float() for group in self.param_groups for p in group["params"] if p.grad is not None]
        NormRecordingSGD.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return super().step(closure)


def test_clipping_under_mixed_precision_caps_the_real_gradient(words_path, tmp_path):
    """Lightning's mixed-precision plugin unscales inside optimizer.step(): a clip before it would cap the scaled
    gradient. Proven with Lightning's own plugin and a CPU GradScaler: the optimizer sees the same clipped gradient
    in 16-mixed as in 32-bit, and the fit ends at the same loss."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    from makemore.api import make_trainer, module_for

    ends = {}
    for precision, plugins in [
        ("32", []),
        ("16-mixed", [MixedPrecision("16-mixed", device="cpu", scaler=torch.amp.GradScaler("cpu"))]),
    ]:
        data = CharDataModule(path=str(words_path), max_steps_per_batch=10, val_every_n_steps=50)
        L.seed_everything(0)
        model = module_for(
            data, learning_rate=0.1, optimizer=NormRecordingSGD, hand_backward=False, gradient_clip_val=1.0
        )
        NormRecordingSGD.norms = []
        trainer = make_trainer(
            max_steps=50,
            root=tmp_path / precision,
            accelerator="cpu",
            plugins=plugins,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=10,
        )
        trainer.fit(model, data)
        norms = NormRecordingSGD.norms
        assert len(norms) == 50 and 0.99 < max(norms) <= 1.0 + 1e-4, (precision, max(norms))
        ends[precision] = float(trainer.callback_metrics["train_loss"])
    assert ends["16-mixed"] == pytest.approx(ends["32"], abs=0.01), ends


def test_mini_batches_of_an_accumulated_step_are_the_draws_that_follow_each_other():
    X, Y = torch.arange(1000).view(-1, 1), torch.arange(1000)
    plain = TrainBatches(TensorDataset(X, Y), batch_size=8, steps=12, epoch_steps=12, seed=3, rank=0).batch(0)[1]
    twice = TrainBatches(TensorDataset(X, Y), batch_size=8, steps=6, epoch_steps=6, seed=3, rank=0, accumulate=2).batch(
        0
    )[1]
    assert plain.shape == (12, 1, 8) and twice.shape == (6, 2, 8)  # (steps, mini-batches per step, batch_size)
    assert torch.equal(plain.flatten(0, 1), twice.flatten(0, 1))  # mini-batch j of step s is draw s * 2 + j


class Recorder(L.Callback):
    """A callback of one's own that acts at every batch: it records the step and the weights it sees."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, list[torch.Tensor]]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append((trainer.global_step, [p.detach().clone() for p in pl_module.net.parameters()]))


@pytest.mark.parametrize(
    "averaging",
    [
        ["EMAWeightAveraging", "--trainer.callbacks.decay", "0.9"],
        [
            "makemore.callbacks.SWAWeightAveraging",
            "--trainer.callbacks.start",
            "31",
            "--trainer.callbacks.every_n_steps",
            "3",
        ],
    ],
)
def test_weight_averaging_averages_the_weights_of_every_sgd_step(averaging, words_path, tmp_path, run_cli):
    args = small_run_args(words_path, tmp_path, max_steps=60)
    name, *options = averaging
    cli = run_cli(
        "fit", *args, "--trainer.callbacks+=test_lightning_features.Recorder", f"--trainer.callbacks+={name}", *options
    )
    recorder = next(c for c in cli.trainer.callbacks if isinstance(c, Recorder))
    assert [step for step, _ in recorder.seen] == list(range(1, 61))  # it saw every SGD step
    weights = [w for _, w in recorder.seen]
    if name == "EMAWeightAveraging":  # the first step's weights, then average = 0.9 average + 0.1 weights
        expected = weights[0]
        for w in weights[1:]:
            expected = [0.9 * a + 0.1 * b for a, b in zip(expected, w)]
    else:  # the equal average of steps 31, 34, ..., 58
        chosen = weights[30::3]
        expected = [torch.stack(ws).mean(0) for ws in zip(*chosen)]
    for p, e in zip(cli.model.net.parameters(), expected):  # the fit ends with the averaged weights
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    # the checkpoint holds the averaged weights (what test and sample read) and the trained ones to resume from
    checkpoint = read_checkpoint(str(Path(cli.trainer.log_dir, "checkpoints", "last.ckpt")))
    for key, p in cli.model.state_dict().items():
        if key.startswith("net."):
            assert torch.equal(checkpoint["state_dict"][key], p)
    for key, w in zip([k for k, _ in cli.model.net.named_parameters()], weights[-1]):
        assert torch.equal(checkpoint["current_model_state"]["net." + key], w)


class RateMonitor(LearningRateMonitor):
    """A learning-rate monitor of one's own: Lightning's hooks, which read the rates at every batch."""


def test_a_callback_acting_per_batch_is_said_once(words_path, tmp_path, caplog, run_cli):
    cli = run_cli(
        "fit",
        *small_run_args(words_path, tmp_path, max_steps=20),
        "--trainer.callbacks+=test_lightning_features.RateMonitor",
    )
    said = "makemore: RateMonitor act(s) on every Lightning batch: this fit takes one SGD step per batch"
    assert [record.getMessage() for record in caplog.records].count(
        said + " (slower for small models; see docs/performance.md)"
    ) == 1
    # as Lightning logs it with one optimizer step per batch: every log_every_n_steps (10), at its count of the
    # batches before this one
    assert [step for step, _ in scalars(cli.trainer.log_dir, "lr-SGD")] == [9, 19]


def test_the_learning_rate_monitor_reads_at_sgd_steps_what_lightnings_reads_at_batches(
    words_path, tmp_path, caplog, run_cli
):
    """Lightning's own LearningRateMonitor keeps the fast batches: at every log_every_n_steps SGD steps it logs, under
    the same names, the values Lightning's logs at that step when it reads them at every batch (one step a batch)."""
    options = [
        *CASES["cosine schedule"],
        *CASES["adamw"],
        "--trainer.callbacks.log_momentum",
        "true",
    ]
    per_batch = run_cli(
        "fit",
        *small_run_args(words_path, tmp_path / "per_batch", max_steps=21, trainer__log_every_n_steps="1"),
        "--trainer.callbacks+=test_lightning_features.RateMonitor",
        *options,
    )
    caplog.clear()
    stock = run_cli(
        "fit",
        *small_run_args(words_path, tmp_path / "stock", max_steps=20),
        "--trainer.callbacks+=LearningRateMonitor",
        *options,
    )
    assert not [record for record in caplog.records if "one SGD step per batch" in record.getMessage()]
    for tag in ("lr-AdamW", "lr-AdamW-momentum"):
        every_step = dict(scalars(per_batch.trainer.log_dir, tag))
        assert len(every_step) == 21
        assert scalars(stock.trainer.log_dir, tag) == [(10, every_step[10]), (20, every_step[20])]
    assert scalars(stock.trainer.log_dir, "lr-AdamW") == scalars(stock.trainer.log_dir, "lr")  # makemore's own


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--trainer.callbacks+=StochasticWeightAveraging", "--trainer.callbacks.swa_lrs", "0.01"],
            "StochasticWeightAveraging cannot work per SGD step in makemore: it averages once per epoch.*SWAWeightAveraging",
        ),
        (
            ["--trainer.callbacks+=GradientAccumulationScheduler", "--trainer.callbacks.scheduling", "{0: 2}"],
            "GradientAccumulationScheduler cannot work per SGD step.*data.accumulate_grad_batches",
        ),
        (["--trainer.callbacks+=BatchSizeFinder"], "BatchSizeFinder cannot work per SGD step.*data.batch_size"),
        (
            ["--trainer.reload_dataloaders_every_n_epochs", "1"],
            "trainer.reload_dataloaders_every_n_epochs 1 cannot work per SGD step",
        ),
        (
            ["--model.gradient_clip_val", "-1"],
            r"model.gradient_clip_val must be 0 or more \(0 or null: no clipping\), got -1",
        ),
        (["--data.accumulate_grad_batches", "0"], "data.accumulate_grad_batches must be at least 1, got 0"),
        (
            [
                "--trainer.callbacks+=EMAWeightAveraging",
                "--trainer.callbacks+=makemore.batchnorm.CalibrateBatchNorm",
                "--model.net.batch_norm",
                "true",
            ],
            "CalibrateBatchNorm calibrates the trained weights, which EMAWeightAveraging then replaces",
        ),
        (
            ["--trainer.callbacks+=makemore.callbacks.SWAWeightAveraging", "--trainer.callbacks.start", "0"],
            "SWAWeightAveraging: start is a step",
        ),
    ],
)
def test_what_cannot_work_per_sgd_step_is_one_line_before_training(args, message, words_path, tmp_path):
    cli_error(["fit", *small_run_args(words_path, tmp_path, max_steps=20), *args], message)
    assert not list(tmp_path.glob("lightning_logs/*/checkpoints/*.ckpt"))


def test_the_table_lists_every_lightning_callback_and_trainer_option_and_is_the_docs_table():
    assert lightning_features.unlisted() is None, "decide what these mean per SGD step"
    docs = (ROOT / "docs" / "performance.md").read_text()
    table = lightning_features.markdown()
    assert table in docs, (
        "docs/performance.md's table is stale: paste the output of"
        " python -c 'from makemore.lightning_features import markdown; print(markdown())'"
    )
    verdicts = {
        verdict for verdict, _ in [*lightning_features.CALLBACKS.values(), *lightning_features.TRAINER_OPTIONS.values()]
    }
    assert verdicts <= {
        lightning_features.STEP,
        lightning_features.BATCH,
        lightning_features.HOOKS,
        lightning_features.SAME,
        lightning_features.REFUSED,
    }
    assert re.search(r"\| `EMAWeightAveraging` \| per SGD step \|", docs)
    assert re.search(r"\| `LearningRateMonitor` \| per SGD step \|", docs)
