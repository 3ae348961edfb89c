"""The scripts end to end: experiments.py on two configs and a tiny word list, the benchmarks on a few steps,
gpu_smoke.py's CPU checks."""

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from makemore.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]


def test_experiments_writes_one_row_per_config(words_path, tmp_path):
    docs, root = tmp_path / "docs", tmp_path / "runs"
    configs = ["mlp_embd2", "mlp"]
    command = [
        sys.executable,
        str(REPO / "scripts" / "experiments.py"),
        "--configs",
        *configs,
        "--max_steps",
        "100",
        "--data_path",
        str(words_path),
        "--root",
        str(root),
        "--docs",
        str(docs),
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((docs / "results.json").read_text())
    runs = results["runs"]
    assert [run["config"] for run in runs] == configs
    for run in runs:
        assert run["steps"] == 100 and run["best_step"] <= 100
        for key in ("train", "val", "test"):
            assert math.isfinite(run[key]) and 0 < run[key] < 5, (run["config"], key, run[key])
        assert run["wall_time_s"] > 0
        assert len(run["val_curve"]) == 20  # validation every 5 steps, as every 10,000 of 200,000
        assert Path(run["best_checkpoint"]).is_relative_to(root) and Path(run["best_checkpoint"]).exists()
    assert [(r["n_embd"], r["n_hidden"]) for r in runs] == [(2, 100), (10, 200)]
    assert runs[0]["params"] < runs[1]["params"]

    table = (docs / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert [row.split("|")[1].strip() for row in rows] == [f"`{c}`" for c in configs]
    for row, run in zip(rows, runs):
        assert f"{run['val']:.4f}" in row and f"{run['test']:.4f}" in row
    assert "--max_steps 100" in table  # the command that produced it

    for png in ("val_loss.png", "embeddings_2d.png", "lr_find.png"):
        assert (docs / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def run_script(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def run_benchmark(name: str, *args: str) -> str:
    """`python -m benchmarks.NAME ARGS` from the checkout's root, as docs/performance.md runs them."""
    return run_script("-m", f"benchmarks.{name}", *args, cwd=REPO)


def test_benchmarks_print_their_tables():
    # a few steps only: this checks that the benchmarks run and report, not how fast anything is
    out = run_benchmark("train_speed", "--steps", "40", "--repeats", "1", "--generated-words", "1000")
    for side in ("plain", "plain+optim", "makemore"):
        assert any(line.startswith(f"| {side} |") for line in out.splitlines()), side
    assert "| 1,000 generated words | 1,000 |" in out
    assert "Same loss from the same initial weights" in out  # 40 steps are too few for the verdict itself
    out = run_benchmark("step_breakdown", "--steps", "40", "--repeats", "1")
    assert "WARNING" not in out  # the makemore variants did the same arithmetic
    assert sum(line.startswith("| makemore") for line in out.splitlines()) == 3


def test_startup_benchmark_prints_its_table():
    out = run_benchmark("startup", "--repeats", "1", "--fit-steps", "200")
    for name in ("import torch", "makemore --help", "makemore sample (20 names)", "plain loop, 200 steps"):
        assert any(line.startswith(f"| {name} |") for line in out.splitlines()), name


def test_leaderboard_builds_its_table_piece_by_piece(tmp_path):
    docs, root, readme = tmp_path / "docs", tmp_path / "runs", tmp_path / "README.md"
    readme.write_text("# title\n\n<!-- leaderboard -->\nold table\n<!-- /leaderboard -->\n\nmore\n")
    script = str(REPO / "scripts" / "leaderboard.py")
    common = ["--max_steps", "100", "--root", str(root), "--docs", str(docs), "--readme", str(readme)]
    run_script(script, "--models", "bigram", "mlp", "--seeds", "0", *common, cwd=tmp_path)
    run_script(script, "--models", "bigram", "--seeds", "1", *common, cwd=tmp_path)  # merged into the table

    board = json.loads((docs / "leaderboard.json").read_text())
    assert sorted(board["runs"]) == ["bigram/0", "bigram/1", "mlp/0"]
    rows = {row["model"]: row for row in board["summary"]}
    assert list(rows) == ["bigram", "mlp"] and rows["bigram"]["seeds"] == [0, 1]
    for run in board["runs"].values():
        assert run["steps"] == 100 and 0 < run["val"] < 5 and math.isfinite(run["test"])
    # the bigram's anchor: the counting bigram with +1 smoothing on the same split, computed, not typed
    assert 2.4 < rows["bigram"]["anchor"] < 2.5
    vals = [board["runs"][f"bigram/{seed}"]["val"] for seed in range(2)]
    assert rows["bigram"]["val_mean"] == pytest.approx(sum(vals) / 2)
    table = (docs / "leaderboard.md").read_text()
    assert "± " in table and "(leaderboard.png)" in table
    assert (docs / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = readme.read_text()
    assert "old table" not in text and "| `bigram` (2 seeds) |" in text and text.endswith("\n\nmore\n")
    # the anchors are goals for a mean over 3 seeds: a row of fewer says on how many its verdict stands
    assert re.search(r"\| `bigram` \(2 seeds\) \|.*: (not )?met on 2 seeds of 3 \|", text)
    assert re.search(r"; val at or below: (not )?met on 1 seed of 3 \|", table)  # the mlp's row

    # a seed that ran other settings (here: its config changed since) is kept in the JSON, left out of the mean
    assert board["runs"]["bigram/0"]["settings"] == board["runs"]["bigram/1"]["settings"]
    board["runs"]["bigram/0"].update(settings="an older config", date="2000-01-01 00:00 UTC")
    (docs / "leaderboard.json").write_text(json.dumps(board))
    run_script(script, "--table", *common, cwd=tmp_path)
    board = json.loads((docs / "leaderboard.json").read_text())
    assert sorted(board["runs"]) == ["bigram/0", "bigram/1", "mlp/0"]
    rows = {row["model"]: row for row in board["summary"]}
    assert rows["bigram"]["seeds"] == [1] and rows["bigram"]["val"] == [vals[1]]
    assert (
        "rerun them with `python scripts/leaderboard.py --models bigram --seeds 0`"
        in (docs / "leaderboard.md").read_text()
    )
    assert "| `bigram` (1 seed) |" in readme.read_text()


def test_leaderboard_trains_a_distilled_models_teacher_once_for_all_its_seeds(words_path, tmp_path):
    """A model with a teacher (makemore.runs.TEACHERS) gets one, trained as its config trains it with seed 0 (a smoke
    run's shortened, on its --data_path, under its own --root), once for every seed; the table's note names it."""
    docs, root = tmp_path / "docs", tmp_path / "runs"
    script = str(REPO / "scripts" / "leaderboard.py")
    common = ["--max_steps", "100", "--root", str(root), "--docs", str(docs), "--readme", "none"]
    common += ["--data_path", str(words_path)]
    out = run_script(script, "--models", "transformer_distilled", "--seeds", "0", "1", *common, cwd=tmp_path)
    assert out.count("transformer_ensemble.yaml --seed_everything 0 --data.batch_seed 0") == 1
    assert out.count(f"--data.path {words_path}") == 5  # the teacher's fit, each seed's fit and test

    board = json.loads((docs / "leaderboard.json").read_text())
    first, second = board["runs"]["transformer_distilled/0"], board["runs"]["transformer_distilled/1"]
    (teacher,) = first["teachers"]
    assert second["teachers"] == [teacher] and first["settings"] == second["settings"]
    assert Path(teacher).is_relative_to(root / "teachers" / "transformer_ensemble")
    assert read_checkpoint(teacher)["global_step"] == 100
    assert out.count(f"--model.teacher '[{teacher}]'") == 4  # each seed's fit and test
    assert "distilled from `transformer_ensemble`" in (docs / "leaderboard.md").read_text()

    # with the teacher's own row, the note gives the teacher's fit time
    board["runs"]["transformer_ensemble/0"] = {**first, "model": "transformer_ensemble", "wall_time_s": 3600.0}
    (docs / "leaderboard.json").write_text(json.dumps(board))
    run_script(script, "--table", *common, cwd=tmp_path)
    assert "distilled from `transformer_ensemble`" in (docs / "leaderboard.md").read_text()
    assert "(60:00 in its row)" in (docs / "leaderboard.md").read_text()


def test_leaderboard_writes_the_text_table(tmp_path):
    # a text model: its own table, scored by the text metric; the lecture's 90/10 split has no test share
    docs, root, readme = tmp_path / "docs", tmp_path / "runs", tmp_path / "README.md"
    readme.write_text(
        "# title\n\n<!-- leaderboard -->\nold table\n<!-- /leaderboard -->\n\n"
        "<!-- leaderboard-text -->\nold text table\n<!-- /leaderboard-text -->\n\nmore\n"
    )
    script = str(REPO / "scripts" / "leaderboard.py")
    # 100 steps: a fit much shorter logs no train_loss, which the script reads the steps from (any model)
    common = ["--max_steps", "100", "--root", str(root), "--docs", str(docs), "--readme", str(readme)]
    out = run_script(script, "--models", "shakespeare/bigram", "--seeds", "0", *common, cwd=tmp_path)

    board = json.loads((docs / "leaderboard.json").read_text())
    run = board["runs"]["shakespeare/bigram/0"]
    assert run["model"] == "shakespeare/bigram" and run["config_path"] == "configs/shakespeare/bigram.yaml"
    assert run["steps"] == 100 and 0 < run["val"] < 5 and 0 < run["train"] < 5
    assert run["test"] is None and run["test_dir"] is None  # no test run: the split has no test share
    assert run["train_examples"] == 1_003_854  # the lecture's train split of tiny shakespeare
    assert Path(run["fit_dir"]).is_relative_to(root / "seed_0" / "shakespeare" / "bigram")  # not the names bigram's
    assert not (root / "seed_0" / "shakespeare" / "bigram" / "test.log").exists()
    assert board["summary"] == []  # the names ladder's rows: none
    (row,) = board["text_summary"]
    assert row["model"] == "shakespeare/bigram" and row["test_bpc"] is None
    assert row["val_bpc"] == pytest.approx(run["val"] / math.log(2))
    # the anchor: the counting bigram with +1 smoothing on the same train split, scored by the text metric
    assert run["anchor"] == row["anchor"] and 2.47 < row["anchor"] < 2.49

    table = (docs / "leaderboard.md").read_text()
    assert "## Text: tiny shakespeare" in table and "the lecture's 90/10 split has no test share" in table
    (line,) = [line for line in table.splitlines() if line.startswith("| [`shakespeare/bigram`]")]
    cells = [cell.strip() for cell in line.split("|")[1:-1]]
    assert cells[1:7] == [
        "4,356",
        "100 × 256",
        f"{run['train']:.4f}",
        f"{run['val']:.4f}",
        "—",
        f"{row['val_bpc']:.3f}",
    ]
    assert f"{row['anchor']:.4f}: the counting bigram" in cells[-1] and "not met on 1 seed of 3" in cells[-1]
    assert "| [`shakespeare/bigram`]" in out  # printed too
    text = readme.read_text()
    assert "old table" not in text and "old text table" not in text and text.endswith("\n\nmore\n")
    assert re.search(r"\| `shakespeare/bigram` \(1 seed\) \| 4,356 \| \d\.\d{4} \| — \| \d\.\d{3} \| 2\.48\d: ", text)
    assert "—: the lecture's 90/10 split has no test share." in text


def test_ladder_speed_benchmark_prints_a_row_per_model():
    out = run_benchmark("ladder_speed", "--models", "bigram", "gru", "--steps", "20", "--repeats", "1")
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert rows == ["model", "bigram", "gru"]


def test_ladder_speed_benchmark_compares_one_step_a_batch():
    out = run_benchmark("ladder_speed", "--models", "bigram", "--steps", "20", "--repeats", "1", "--against", "one")
    header, row = [line.split(" | ") for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    assert header[2] == "one step a batch" and row[0] == "| bigram"


def test_network_options_benchmark_prints_a_row_per_option_set():
    options = ["position=rope", "qk_norm=true,activation=relu2"]
    config = str(REPO / "configs" / "transformer.yaml")
    out = run_benchmark("network_options", "--config", config, "--options", *options, "--steps", "3", "--repeats", "2")
    rows = [line.split("|")[1:4] for line in out.splitlines() if line.startswith("| ") and "µs/step" not in line]
    assert [row[0].strip() for row in rows] == ["(the config)", *options]
    assert rows[0][2].strip() == "1.00" and all(float(row[1]) > 0 for row in rows)


def test_diagnostics_overhead_benchmark_compares_both_sides():
    out = run_benchmark("diagnostics_overhead", "--steps", "200", "--every", "100", "--repeats", "1")
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")]
    assert rows == ["side", "without", "with Diagnostics"]
    assert re.search(r"overhead: \d+\.\d+x .*\ntime inside Diagnostics: \d+\.\d%", out)


def test_gpu_smoke_runs_its_cpu_checks_where_there_is_no_gpu(tmp_path):
    """scripts/gpu_smoke.py, the check to run the moment a GPU is lent, on the CPU (--cpu: as on a machine without
    one): it says so, every check that makes sense on a CPU passes (clipping under both mixed precisions at the
    optimizer, kill and exact resume, Diagnostics, distillation, calibration, sample) and the GPU ones say why not."""
    out = run_script(
        str(REPO / "scripts" / "gpu_smoke.py"),
        "--cpu",
        "--max_steps",
        "200",
        "--short_steps",
        "40",
        "--root",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    lines = out.splitlines()
    assert "no GPU (--cpu): the checks that make sense on a CPU, on the CPU" in lines[0]
    verdicts = {line[:18].strip(): line[18:].split()[0] for line in lines[1:-1]}
    cpu_checks = ["mlp fit", "sample", "diagnostics", "distillation", "calibration", "kill and resume"]
    cpu_checks += ["clip bf16-mixed", "clip 16-mixed"]
    assert verdicts == {
        **dict.fromkeys(cpu_checks, "ok"),
        **dict.fromkeys(["mlp fit on cpu", "gpt", "ddp on 2 gpus"], "skipped"),
    }, out
    assert all(line.endswith("all on cpu") for line in lines[1:-1] if " ok " in line and "kill" not in line), out
    clip = [line for line in lines if line.startswith("clip ")]
    assert all(
        re.search(r"max gradient norm at the optimizer (0\.99\d\d|1\.0000) <= 1\.0 over 40 steps", c) for c in clip
    )
    assert re.search(r"killed at step \d+ of 800, resumed: \d+ tensors equal to an uninterrupted run's", out)
    assert lines[-1] == f"runs: {tmp_path / 'runs'}; all checks passed"


def test_speedrun_times_each_target_and_says_what_was_not_reached(tmp_path):
    """scripts/speedrun.py --smoke: a names fit of a few steps, one target reached at its first validation and one
    never; a record race, a fit distilled from two teachers trained first; a peer that cannot run. The time is the
    first validation's, from the process start (the first teacher's, for the record); the target never reached gets
    its best val and the time spent, never a time; the failed peer is named with its error."""
    out = tmp_path / "speedrun.md"
    out.write_text("# Speedrun\n\nwhat was tried\n<!-- speedrun -->\nan old table\n<!-- /speedrun -->\nwhy\n")
    table = run_script(
        str(REPO / "scripts" / "speedrun.py"),
        "--smoke",
        "--seeds=1",
        "--threads=1",
        f"--makemore_ref={tmp_path / 'nothing'}",
        f"--out={out}",
        cwd=REPO,
    )
    run = next(run for run in json.loads(out.with_suffix(".json").read_text())["runs"] if run["name"] == "names")
    reached, missed = run["targets"]["4.00"], run["targets"]["0.50"]
    first = run["curve"][0]
    assert (reached["reached"], reached["step"], reached["seconds"]) == (True, first[0], first[2])
    assert 0 < reached["seconds"] < run["wall_seconds"]
    assert (missed["reached"], missed["seconds"], missed["best"]) == (False, None, min(p[1] for p in run["curve"]))
    assert f"| names | 4.00 | names | 1 | 1 | {reached['seconds']:.0f} s |" in table
    assert (
        f"| names | 0.50 | names | 1 | 1 | **not reached** in 1 of 1 (best val, time spent: {missed['best']:.4f} in"
        in table
    )
    assert (
        f"| names | 2.00 | makemore.py | 1 | 1 | **failed** in 1 of 1 (seed 1: no makemore.py in {tmp_path / 'nothing'}"
        in table
    )
    record = next(run for run in json.loads(out.with_suffix(".json").read_text())["runs"] if run["name"] == "record")
    first, second = record["teachers"]
    assert (first["seed"], second["seed"], first["threads"], second["threads"]) == (1, 2, 1, 1)
    assert first["seconds"] < second["seconds"]  # one thread: one teacher after the other
    assert f"--model.teacher=[{first['checkpoint']},{second['checkpoint']}]" in record["command"]
    # the teachers' time counts
    assert second["seconds"] < record["targets"]["4.00"]["seconds"] < record["wall_seconds"]
    report = out.read_text()
    assert f"teacher 2 (seed 2, 1 thread(s), val {second['val']:.4f} after {second['seconds']:.0f} s)" in report
    assert "\n".join(line for line in table.splitlines() if line.startswith("|")) in report
    assert report.startswith("# Speedrun\n\nwhat was tried\n<!-- speedrun -->\n") and report.endswith("-->\nwhy\n")
    assert "an old table" not in report  # the generated part replaced, the text around it kept
    assert out.with_suffix(".png").stat().st_size > 0  # the val curves


def test_speedrun_times_a_margin_below_nanogpt_against_nanogpts_whole_time():
    """scripts/speedrun.py's shakespeare_long race (issue #38: at nanoGPT's whole time, 0.30 below its final val):
    the target is nanoGPT's exact final val of the same repeat less 0.30, and the ratio is to nanoGPT's whole
    time (it has no time of its own at that target); a repeat without nanoGPT's val has no target."""
    spec = importlib.util.spec_from_file_location("speedrun", REPO / "scripts" / "speedrun.py")
    speedrun = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speedrun)
    race = next(race for race in speedrun.RACES if race.name == "shakespeare_long")
    below = "nanoGPT's final val - 0.30"
    assert speedrun.resolve(race, 1.9) == {below: pytest.approx(1.6)}
    assert speedrun.resolve(race, None) == {below: None}

    def run(name: str, target: str, value: float, seconds: float) -> dict:
        timed = {target: {"target": value, "reached": True, "seconds": seconds, "step": 1, "best": value}}
        return {
            "name": name,
            "corpus": "tiny shakespeare",
            "seed": 1,
            "threads": 1,
            "labels": [target],
            "targets": timed,
        }

    rows = speedrun.table([run("nanogpt", "nanoGPT's final val", 1.9, 150.0), run(race.name, below, 1.6, 120.0)])
    assert f"| tiny shakespeare | {below} (1.6000) | shakespeare_long | 1 | 1 | 120 s | 0.80 |" in rows


def test_stream_quality_scores_the_val_split_both_ways(tmp_path, run_cli):
    text = tmp_path / "text.txt"
    text.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n" * 20, encoding="utf-8")
    args = ["--data.path", str(text), "--data.format", "text", "--data.block_size", "8", "--data.batch_size", "4"]
    args += ["--model.net", "makemore.models.Transformer", "--model.net.n_layer", "2", "--model.net.n_embd", "16"]
    args += ["--model.net.position", "rope", "--trainer.max_steps", "5", "--trainer.default_root_dir", str(tmp_path)]
    cli = run_cli("fit", *args, "--trainer.enable_progress_bar", "false")
    best = cli.trainer.checkpoint_callback.best_model_path
    scores = []
    for chunk in ("7", "1000"):  # a chunk reads the characters before it that its first position reaches: exact
        out = run_benchmark("stream_quality", "--ckpt_path", best, "--chunk", chunk)
        scores.append([float(line.split()[-1]) for line in out.splitlines()[1:3]])
    assert scores[0] == scores[1]
    window = scores[0][0]
    assert window == pytest.approx(cli.trainer.checkpoint_callback.best_model_score.item(), abs=1e-4)  # val_loss
