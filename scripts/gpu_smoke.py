#!/usr/bin/env python
"""The one check to run the moment a GPU is lent: makemore on CUDA (or MPS), each feature briefly, one line each.

    python scripts/gpu_smoke.py                  # under 5 minutes on one GPU
    python scripts/gpu_smoke.py --cpu            # the CPU checks only, as on a machine without a GPU

Every check runs the real CLI (in this process, or `python -m makemore` where a process is killed or several start)
on a slice of the data for a few SGD steps, and reads what ran where from the tensors themselves: `DeviceProbe`
records the device of every module's weights, inputs and outputs at every forward of training and validation, and
of every gradient the optimizer steps with (torch's forward and optimizer-step hooks), not the strategy's setting.
In order:

  mlp fit            configs/mlp.yaml in 32-bit: every tensor on the device; SGD steps per second (first batch left out)
  mlp fit on cpu     the same fit on the CPU, for its steps per second (on a GPU only)
  sample             `makemore sample --device DEVICE` from that run: names drawn, every forward on the device
  diagnostics        the Diagnostics callback: its scalars logged and finite, its probe batch on the device
  distillation       configs/transformer_distilled.yaml taught by a briefly trained teacher: the teacher's rows and
                     every tensor on the device
  calibration        configs/mlp_batchnorm.yaml with CalibrateBatchNorm: the statistics equal a CPU calibration of the
                     same weights
  kill and resume    a subprocess fit (dropout) killed with SIGKILL, resumed: weights equal an uninterrupted run's,
                     bit for bit (with --trainer.deterministic true on CUDA)
  clip bf16-mixed    configs/mlp.yaml with --model.gradient_clip_val: the gradient norm at the optimizer never above
  clip 16-mixed      the clip value, the clip acted, outputs in the low precision (on a CPU: Lightning's MixedPrecision
                     plugin with a CPU GradScaler)
  gpt                configs/shakespeare/gpt.yaml shrunk by flags (16-mixed on a GPU without bfloat16); its sample
  ddp on 2 gpus      two processes under DDP, each on its own GPU (where there are two)

It prints one line per check (name, ok / FAILED / skipped, a number where it has one) and stops with exit status 1
at the first that fails, with that check's output and traceback on stderr. Without a GPU it says so, runs the checks
that make sense on a CPU and exits 0. Runs go to a new temporary folder (or --root); nothing of yours is touched.
"""

import argparse
import contextlib
import copy
import io
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import lightning as L
import torch

from makemore.api import scalars
from makemore.batchnorm import calibrate
from makemore.checkpoint import named_checkpoint, read_checkpoint
from makemore.cli import main, run_cli
from makemore.formats import default_path
from makemore.formats.text import read_text

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
NAMES_SLICE = 4000  # names of names.txt the word-list checks train on: a split of 3,200 / 400 / 400
TEXT_SLICE = 100_000  # characters of tiny shakespeare the GPT check trains on
CLIP = 1.0  # the gradient norm the clip checks ask for (configs/shakespeare/gpt.yaml's own)
POLL_SECONDS = 0.01  # how often the kill check looks for the first checkpoint
KILL_LENGTH = 20  # the killed run is this many short fits long, so that it is killed well before its end
SAMPLES = 5  # names the sample check draws
DIAGNOSTICS_MEASUREMENTS = 4  # Diagnostics' measurements in its fit (after the one at step 0)
PASSAGE = 100  # characters the GPT's sample draws
ROUNDING = 1e-4  # relative slack on a clipped norm: clip_grad_norm_ scales by clip / (norm + 1e-6), in float32
CALIBRATION_TOLERANCE = {"rtol": 1e-4, "atol": 1e-6}  # float64 sums on two devices, stored in float32
GPT_SHRUNK = {  # configs/shakespeare/gpt.yaml at a size that trains a few hundred steps in seconds
    "model.net.n_layer": "2",
    "model.net.n_head": "4",
    "model.net.n_embd": "128",
    "data.block_size": "64",
    "data.batch_size": "32",
    "model.passage_length": str(PASSAGE),
}
TRANSFORMER_SHRUNK = {"model.net.n_layer": "1", "model.net.n_head": "2", "model.net.n_embd": "16"}
QUIET = {"trainer.enable_progress_bar": "false", "trainer.enable_model_summary": "false"}


class Failed(Exception):
    """A check that found something wrong: the message says what."""


class Skipped(Exception):
    """A check that does not apply here: the message says why."""


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a forward's arguments or output (tensors, tuples, lists, dicts of them)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)


class TensorsSeen:
    """Where the tensors of every module forward were, while it is entered: each module's own weights and buffers, its
    inputs and outputs (torch's global forward hook, `register_module_forward_hook`), and the output dtypes."""

    def __init__(self) -> None:
        self.devices: Counter = Counter()
        self.output_dtypes: Counter = Counter()
        self.first: dict[str, str] = {}  # device -> the first tensor seen there, for a failure's message
        self._handle: Optional[Any] = None

    def add(self, tensor: torch.Tensor, what: str) -> None:
        device = str(tensor.device)
        self.devices[device] += 1
        self.first.setdefault(device, what)

    def _forward(self, module: torch.nn.Module, args: tuple, output: Any) -> None:
        name = type(module).__name__
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            self.add(tensor, f"a weight of {name}")
        for tensor in tensors_in(args):
            self.add(tensor, f"an input of {name}")
        for tensor in tensors_in(output):
            self.add(tensor, f"an output of {name}")
            self.output_dtypes[str(tensor.dtype).removeprefix("torch.")] += 1

    def __enter__(self) -> "TensorsSeen":
        self._handle = torch.nn.modules.module.register_module_forward_hook(self._forward)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._handle.remove()

    def report(self) -> dict:
        return {"devices": dict(self.devices), "first": self.first, "output_dtypes": dict(self.output_dtypes)}


class DeviceProbe(L.Callback):
    """What a fit computed where, and how fast: writes `probe_rank{R}.json` into trainer.default_root_dir.

    The checks give it to the CLI as `--trainer.callbacks+=gpu_smoke.DeviceProbe`: this file, imported by that name
    from scripts/ (the script's own folder is on sys.path, and with_scripts() puts it on a subprocess's PYTHONPATH).

    From the first SGD step to the last it records, from the tensors themselves, the device of every module's weights,
    inputs and outputs at each forward (training, validation, Diagnostics' probe, calibration), of every parameter and
    gradient the optimizer steps with and of the optimizer's state; the norm of each gradient at the optimizer (after
    a mixed-precision plugin has unscaled it, after clipping); and the SGD steps per second between the end of the
    first batch and the end of the last (the device synchronised at each end), or over the only batch.
    """

    aligned_steps = 0  # it acts at no SGD step of its own: the fit keeps its batches of many SGD steps

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seen = TensorsSeen().__enter__()
        self.norms: list[float] = []
        self.clock: list[tuple[int, float]] = []  # (global_step, seconds) at the start and at each batch's end
        self._hooks = [optimizer.register_step_post_hook(self._after_step) for optimizer in trainer.optimizers]
        self._weights(pl_module, "at the start of training")

    def _weights(self, pl_module: L.LightningModule, when: str) -> None:
        for name, tensor in [*pl_module.named_parameters(), *pl_module.named_buffers()]:
            self.seen.add(tensor, f"{name} {when}")

    def _after_step(self, optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        # After the step: the gradients it used (the optimizer leaves them as they are). Before it, they may not be
        # clipped yet: Lightning hands the optimizer a closure that clips, which the step calls first.
        stepped = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not stepped:  # the hand-written step's once-a-batch step with no gradients (makemore.steps)
            return
        for p in stepped:
            self.seen.add(p, "a parameter at the optimizer")
            self.seen.add(p.grad, "a gradient at the optimizer")
        norms = torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in stepped])
        self.norms.append(float(torch.linalg.vector_norm(norms)))

    def _tick(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if next(pl_module.parameters()).device.type != "cpu":
            torch.accelerator.synchronize()  # the steps queued on the device are done
        self.clock.append((trainer.global_step, time.perf_counter()))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.clock:
            self._tick(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for tensor in tensors_in(batch):
            self.seen.add(tensor, "a training batch")
        for tensor in tensors_in(outputs):
            self.seen.add(tensor, "a training step's output")
        self._tick(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._weights(pl_module, "at the end of training")
        for optimizer in trainer.optimizers:
            for state in optimizer.state.values():
                for tensor in tensors_in(state):
                    if tensor.dim():  # AdamW's `step` is a CPU scalar by design
                        self.seen.add(tensor, "the optimizer's state")
        for hook in self._hooks:
            hook.remove()
        self.seen.__exit__(None, None, None)
        clock = self.clock[1:] if len(self.clock) > 2 else self.clock  # the first batch warms the device up
        (first_step, start), (last_step, end) = clock[0], clock[-1]
        report = {
            **self.seen.report(),
            "norms": self.norms,
            "steps_per_second": (last_step - first_step) / (end - start) if end > start else math.nan,
            "rank": trainer.global_rank,
        }
        path = Path(trainer.default_root_dir) / f"probe_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(report))


def probes(root: Path) -> list[dict]:
    """The DeviceProbe reports of a fit run with default_root_dir `root`, rank 0 first."""
    found = sorted(root.glob("probe_rank*.json"))
    if not found:
        raise Failed(f"{root}: DeviceProbe wrote no report (did the fit train?)")
    return [json.loads(path.read_text()) for path in found]


def all_on(report: dict, device: str) -> int:
    """How many tensors the report saw, all on `device`; Failed naming the first tensor found elsewhere."""
    elsewhere = {where: count for where, count in report["devices"].items() if where != device}
    if elsewhere:
        where, count = next(iter(elsewhere.items()))
        raise Failed(f"{count} tensors on {where}, not {device} (the first: {report['first'][where]})")
    return report["devices"].get(device, 0)


def flags(options: dict[str, str]) -> list[str]:
    return [arg for key, value in options.items() for arg in (f"--{key}", value)]


class Smoke:
    """The checks, on one device, sharing a run folder and the data slices.

    Args:
        device: the accelerator the checks train on: cuda, mps or cpu.
        root: the folder every run of the checks goes into.
        max_steps: SGD steps of the MLP fits whose speed is measured.
        short_steps: SGD steps of every other fit.
    """

    def __init__(self, device: str, root: Path, max_steps: int, short_steps: int) -> None:
        self.device, self.root, self.max_steps, self.short_steps = device, root, max_steps, short_steps
        # where the tensors must be, as torch names the device a tensor is on (`--device cuda` is cuda:0)
        self.on = str(torch.device(device, 0) if device != "cpu" else torch.device("cpu"))
        root.mkdir(parents=True, exist_ok=True)
        self.names = root / "names.txt"
        self.names.write_text("\n".join(default_path().read_text().split()[:NAMES_SLICE]) + "\n")
        self.text = root / "shakespeare.txt"
        self.text.write_text(read_text(default_path("text"))[:TEXT_SLICE], encoding="utf-8")
        self.results: dict[str, Any] = {}  # what later checks use (the MLP's checkpoint)

    def args(self, name: str, config: str, steps: int, device: Optional[str] = None, **options: str) -> list[str]:
        """CLI arguments of a short fit of `config` into its own folder root/name, on this device (or `device`)."""
        common = {
            "config": str(CONFIGS / config),
            "data.path": str(self.text if config.startswith("shakespeare") else self.names),
            "trainer.accelerator": device or self.device,
            "trainer.devices": "1",
            "trainer.max_steps": str(steps),
            "trainer.log_every_n_steps": str(steps),
            "data.val_every_n_steps": str(steps),  # one validation, at the end
            "trainer.default_root_dir": str(self.root / name),
            **QUIET,
            **{key.replace("__", "."): value for key, value in options.items()},
        }
        return [*flags(common), "--trainer.callbacks+=gpu_smoke.DeviceProbe"]

    def fit(self, name: str, config: str, steps: int, *extra: str, **options: str) -> tuple[Any, dict]:
        """A fit through the CLI in this process; (the LightningCLI, rank 0's DeviceProbe report)."""
        cli = run_cli(["fit", *self.args(name, config, steps, **options), *extra])
        return cli, probes(self.root / name)[0]

    # ------------------------------------------------------------------------------------------------- the checks

    def mlp_fit(self) -> str:
        cli, probe = self.fit("mlp", "mlp.yaml", self.max_steps)
        count = all_on(probe, self.on)
        self.results["mlp"] = named_checkpoint("last", self.root / "mlp")
        self.results["speed"] = probe["steps_per_second"]
        hand = "hand-written backward" if cli.model.hand_backward_active else "autograd"
        return f"{probe['steps_per_second']:,.0f} SGD steps/s ({hand}); {count:,} tensors, all on {self.on}"

    def mlp_fit_on_cpu(self) -> str:
        if self.device == "cpu":
            raise Skipped("the mlp fit above ran on the CPU")
        _, probe = self.fit("mlp_cpu", "mlp.yaml", self.max_steps, device="cpu")
        all_on(probe, "cpu")
        speed = probe["steps_per_second"]
        return f"{speed:,.0f} SGD steps/s; {self.device} / cpu = {self.results['speed'] / speed:.2f}"

    def sample(self) -> str:
        command = ["sample", "--ckpt_path", str(self.results["mlp"]), "--device", self.device]
        drawn = io.StringIO()
        with TensorsSeen() as seen, contextlib.redirect_stdout(drawn):
            main([*command, "--num_samples", str(SAMPLES)])
        names = drawn.getvalue().split()
        if len(names) != SAMPLES:
            raise Failed(f"drew {len(names)} names, not {SAMPLES}: {names}")
        count = all_on(seen.report(), self.on)
        return f"{SAMPLES} names ({', '.join(names)}); {count:,} tensors, all on {self.on}"

    def diagnostics(self) -> str:
        every = max(self.short_steps // DIAGNOSTICS_MEASUREMENTS, 1)
        cli, probe = self.fit(
            "diagnostics",
            "mlp.yaml",
            self.short_steps,
            "--trainer.callbacks+=makemore.diagnostics.Diagnostics",
            "--trainer.callbacks.every_n_steps",
            str(every),
        )
        count = all_on(probe, self.on)
        points = scalars(cli.trainer.log_dir, "activations/std/tanh_0") + scalars(
            cli.trainer.log_dir, "update_ratio/hidden.0.weight"
        )
        if not points or not all(math.isfinite(value) for _, value in points):
            raise Failed(f"activations/std/tanh_0 and update_ratio/hidden.0.weight: {points}")
        return f"{len(points)} scalars, finite; {count:,} tensors, all on {self.on}"

    def distillation(self) -> str:
        # the teacher: the same small network trained alone (the config's ensemble takes an hour), then the student
        self.fit("teacher", "transformer_distilled.yaml", self.short_steps, model__teacher="null", **TRANSFORMER_SHRUNK)
        last = named_checkpoint("last", self.root / "teacher")
        cli, probe = self.fit(
            "distilled",
            "transformer_distilled.yaml",
            self.short_steps,
            model__teacher=f"[{last}]",
            **TRANSFORMER_SHRUNK,
        )
        rows = cli.model.teacher_probabilities  # not a parameter: still where the fit computed it
        if str(rows.device) != self.on:
            raise Failed(f"the teacher's rows were computed on {rows.device}, not {self.on}")
        count = all_on(probe, self.on)
        return f"val_loss {float(cli.trainer.callback_metrics['val_loss']):.4f}; {count:,} tensors, all on {self.on}"

    def calibration(self) -> str:
        cli, probe = self.fit(
            "calibration",
            "mlp_batchnorm.yaml",
            self.short_steps,
            "--trainer.callbacks+=makemore.batchnorm.CalibrateBatchNorm",
        )
        count = all_on(probe, self.on)
        net = cli.model.net  # on the CPU again after the fit
        on_cpu = copy.deepcopy(net)
        calibrate(on_cpu, cli.datamodule.train_pool().tensors()[0])
        calibrated = on_cpu.state_dict()
        worst = 0.0
        for name, fitted in net.state_dict().items():
            if "running" in name:
                torch.testing.assert_close(fitted, calibrated[name], **CALIBRATION_TOLERANCE)
                worst = max(worst, float((fitted - calibrated[name]).abs().max()))
        return f"running statistics within {worst:.1e} of a CPU calibration; {count:,} tensors, all on {self.on}"

    def kill_and_resume(self) -> str:
        options = {
            "model.net.dropout": "0.2",
            "model.net.n_layers": "2",
            "data.val_every_n_steps": str(self.short_steps),
        }
        if self.device == "cuda":  # CUDA's atomic adds sum in any order; this makes torch choose kernels that do not
            options["trainer.deterministic"] = "true"
        length = KILL_LENGTH * self.short_steps
        killed = self.args("killed", "mlp.yaml", length, **options)
        last = self.root / "killed" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
        log = self.root / "killed.log"  # a file, not a pipe: a pipe nobody reads until the kill could stall the fit
        with log.open("w") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "makemore", "fit", *killed],
                cwd=REPO,
                env=with_scripts(),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            while not last.exists() and process.poll() is None:
                time.sleep(POLL_SECONDS)
            process.send_signal(signal.SIGKILL)
            process.wait()
        if process.returncode != -signal.SIGKILL:
            raise Failed(
                f"the fit ended (status {process.returncode}) before it was killed:\n{log.read_text()[-2000:]}"
            )
        killed_at = read_checkpoint(str(last))["global_step"]
        for args in (killed + ["--ckpt_path", "last"], self.args("whole", "mlp.yaml", length, **options)):
            fit_process(args)
        resumed, whole = (named_checkpoint("last", self.root / name) for name in ("killed", "whole"))
        if resumed.parent.parent == last.parent.parent:
            raise Failed(f"the resumed fit made no run folder of its own under {self.root / 'killed'}")
        a, b = (read_checkpoint(str(path))["state_dict"] for path in (resumed, whole))
        differ = [name for name in b if not torch.equal(a[name], b[name])]
        if differ:
            raise Failed(
                f"killed at step {killed_at}, resumed: {', '.join(differ)} differ from the uninterrupted run's"
            )
        return f"killed at step {killed_at} of {length}, resumed: {len(b)} tensors equal to an uninterrupted run's"

    def clip(self, precision: str) -> str:
        if (
            self.device == "cuda"
            and precision == "bf16-mixed"
            and not torch.cuda.is_bf16_supported(including_emulation=False)
        ):
            raise Skipped(f"{torch.cuda.get_device_name(0)} has no bfloat16 arithmetic")
        if self.device == "cpu" and precision == "16-mixed":  # Lightning's plugin on the CPU, with a CPU GradScaler
            plugin = {
                "class_path": "lightning.pytorch.plugins.precision.MixedPrecision",
                "init_args": {
                    "precision": "16-mixed",
                    "device": "cpu",
                    "scaler": {"class_path": "torch.amp.GradScaler", "init_args": {"device": "cpu"}},
                },
            }
            setting = ["--trainer.plugins", json.dumps(plugin)]
        else:
            setting = ["--trainer.precision", precision]
        name = f"clip_{precision}"
        _, probe = self.fit(name, "mlp.yaml", self.short_steps, *setting, "--model.gradient_clip_val", str(CLIP))
        count = all_on(probe, self.on)
        return f"{clipped(probe, self.short_steps)}; {low_precision(probe, precision)}; {count:,} tensors, all on {self.on}"

    def gpt(self) -> str:
        if self.device == "cpu":
            raise Skipped("configs/shakespeare/gpt.yaml is a GPU config")
        precision = "16-mixed"
        if self.device != "cuda" or torch.cuda.is_bf16_supported(including_emulation=False):
            precision = "bf16-mixed"
        cli, probe = self.fit(
            "gpt", "shakespeare/gpt.yaml", self.short_steps, "--trainer.precision", precision, **GPT_SHRUNK
        )
        count = all_on(probe, self.on)
        last = named_checkpoint("last", self.root / "gpt")
        drawn = io.StringIO()
        with TensorsSeen() as seen, contextlib.redirect_stdout(drawn):
            main(["sample", "--ckpt_path", str(last), "--device", self.device, "--max_new_chars", str(PASSAGE)])
        all_on(seen.report(), self.on)
        if len(drawn.getvalue().strip()) < PASSAGE // 2:
            raise Failed(f"sample drew {drawn.getvalue()!r}")
        return (
            f"{precision}: val_loss {float(cli.trainer.callback_metrics['val_loss']):.4f}; {clipped(probe, self.short_steps, must_act=False)};"
            f" {low_precision(probe, precision)}; a passage sampled; {count:,} tensors, all on {self.on}"
        )

    def ddp(self) -> str:
        if self.device != "cuda":
            raise Skipped(
                "DDP runs on CUDA devices here (or CPU processes: tests/test_resume.py, tests/test_ddp_exit.py)"
                if self.device == "mps"
                else "no GPUs (DDP on CPU processes: tests/test_resume.py, tests/test_ddp_exit.py)"
            )
        if torch.cuda.device_count() < 2:
            raise Skipped(f"{torch.cuda.device_count()} GPU")
        args = self.args("ddp", "mlp.yaml", self.short_steps, trainer__strategy="ddp", trainer__devices="2")
        fit_process(args)
        reports = probes(self.root / "ddp")
        counts = [all_on(report, f"cuda:{report['rank']}") for report in reports]
        if len(reports) != 2:
            raise Failed(f"{len(reports)} processes reported, not 2")
        return f"rank 0: {counts[0]:,} tensors on cuda:0, rank 1: {counts[1]:,} on cuda:1"


def clipped(probe: dict, steps: int, must_act: bool = True) -> str:
    """The clip held at the optimizer: the largest gradient norm it stepped with, and over how many steps.

    Args:
        probe: a DeviceProbe report.
        steps: the SGD steps of the fit (those the GradScaler skipped never reach the optimizer).
        must_act: fail unless some gradient was clipped (else the check proves nothing).
    """
    norms = probe["norms"]
    if not norms:
        raise Failed("the optimizer took no step with gradients")
    top = max(norms)
    if top > CLIP * (1 + ROUNDING):
        raise Failed(f"a gradient of norm {top:.4f} reached the optimizer, above the clip {CLIP}")
    if must_act and top < CLIP * (1 - ROUNDING):
        raise Failed(f"the largest gradient norm was {top:.4f}: the clip {CLIP} never acted")
    skipped = f", {steps - len(norms)} skipped by the GradScaler" if len(norms) < steps else ""
    return f"max gradient norm at the optimizer {top:.4f} <= {CLIP} over {len(norms)} steps{skipped}"


def low_precision(probe: dict, precision: str) -> str:
    """The forwards ran under autocast: some outputs in the precision's dtype."""
    dtype = "bfloat16" if precision.startswith("bf16") else "float16"
    count = probe["output_dtypes"].get(dtype, 0)
    if not count:
        raise Failed(f"no forward output in {dtype}: {probe['output_dtypes']}")
    return f"{count:,} outputs in {dtype}"


def fit_process(args: list[str]) -> None:
    """`python -m makemore fit ARGS` in its own process, as a user runs it (DeviceProbe importable); Failed with the
    end of its output if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "makemore", "fit", *args], cwd=REPO, env=with_scripts(), capture_output=True, text=True
    )
    if done.returncode:
        raise Failed(f"status {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def with_scripts() -> dict[str, str]:
    """The environment of a `python -m makemore` process that can import this script's DeviceProbe."""
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


@contextlib.contextmanager
def captured(output: io.StringIO) -> Iterator[None]:
    """Everything a check prints into `output`: stdout, stderr and Lightning's log lines (whose handlers hold the
    stream they were made with)."""
    handlers = [
        handler
        for name in ("lightning.pytorch", "lightning.fabric")
        for handler in logging.getLogger(name).handlers
        if isinstance(handler, logging.StreamHandler)
    ]
    streams = [handler.setStream(output) for handler in handlers]
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            yield
    finally:
        for handler, stream in zip(handlers, streams):
            handler.setStream(stream)


def run_checks(checks: list[tuple[str, Callable[[], str]]]) -> int:
    """Run each check with its output captured; one line each; 1 at the first failure (its output on stderr)."""
    for name, check in checks:
        output = io.StringIO()
        try:
            with captured(output):
                detail = check()
        except Skipped as reason:
            print(f"{name:<18} skipped  {reason}", flush=True)
            continue
        except (Exception, SystemExit) as err:  # a makemore error exits with its one line
            reason = str(err).strip().splitlines() or [type(err).__name__]
            print(f"{name:<18} FAILED   {reason[0]}", flush=True)
            print(output.getvalue()[-5000:], traceback.format_exc(), sep="\n", file=sys.stderr)
            return 1
        print(f"{name:<18} ok       {detail}", flush=True)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run the CPU checks only, as on a machine without a GPU")
    parser.add_argument("--max_steps", type=int, default=3000, help="SGD steps of the timed MLP fits (%(default)s)")
    parser.add_argument("--short_steps", type=int, default=200, help="SGD steps of every other fit (%(default)s)")
    parser.add_argument("--root", type=Path, default=None, help="folder of the runs (default: a new temporary one)")
    return parser.parse_args()


def pick_device(cpu: bool) -> tuple[str, str]:
    """(the accelerator to check, a line saying which and why)."""
    if not cpu and torch.cuda.is_available():
        count = torch.cuda.device_count()
        return "cuda", f"device: cuda, {count} x {torch.cuda.get_device_name(0)}"
    if not cpu and torch.backends.mps.is_available():
        return "mps", "device: mps (Apple); skipped there: ddp (one MPS device)"
    why = "--cpu" if cpu else "torch sees no CUDA or MPS device"
    return "cpu", f"no GPU ({why}): the checks that make sense on a CPU, on the CPU"


def main_check() -> int:
    args = parse_args()
    device, line = pick_device(args.cpu)
    print(f"torch {torch.__version__}, lightning {L.__version__}; {line}", flush=True)
    root = args.root or Path(tempfile.mkdtemp(prefix="makemore-smoke-"))
    smoke = Smoke(device, root, args.max_steps, args.short_steps)
    checks = [
        ("mlp fit", smoke.mlp_fit),
        ("mlp fit on cpu", smoke.mlp_fit_on_cpu),
        ("sample", smoke.sample),
        ("diagnostics", smoke.diagnostics),
        ("distillation", smoke.distillation),
        ("calibration", smoke.calibration),
        ("kill and resume", smoke.kill_and_resume),
        ("clip bf16-mixed", lambda: smoke.clip("bf16-mixed")),
        ("clip 16-mixed", lambda: smoke.clip("16-mixed")),
        ("gpt", smoke.gpt),
        ("ddp on 2 gpus", smoke.ddp),
    ]
    status = run_checks(checks)
    print(f"runs: {root}; {'all checks passed' if status == 0 else 'stopped at the first failure'}")
    return status


if __name__ == "__main__":
    sys.exit(main_check())
