"""The quickstart notebook runs top to bottom (small), its kept outputs are there, and makemore leaves plots inline."""

import ast
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
QUICKSTART = NOTEBOOKS / "quickstart.ipynb"
# The parameter cell's names, small: the whole notebook in well under a minute on a CPU.
SMALL = {"MAX_STEPS": "400", "LR_FIND_STEPS": "100", "LADDER_STEPS": "200", "TENSORBOARD": "False"}


def cells_by_id(notebook) -> dict:
    return {cell.id: cell for cell in notebook.cells}


def text_of(cell, stream: str = "stdout") -> str:
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == stream)


def has_png(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.outputs)


def parameter_cell(notebook):
    return next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))


def test_parameter_cell_holds_the_names_the_test_sets():
    notebook = nbformat.read(QUICKSTART, as_version=4)
    tree = ast.parse(parameter_cell(notebook).source)
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets}
    assert assigned == set(SMALL)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The quickstart, executed with the small parameters in a fresh folder by `python notebooks/execute.py`, as its
    kept outputs are made; (the notebook it wrote, folder)."""
    folder = tmp_path_factory.mktemp("quickstart")
    out = folder / QUICKSTART.name
    settings = [arg for name, value in SMALL.items() for arg in ("--set", f"{name}={value}")]
    command = [sys.executable, str(NOTEBOOKS / "execute.py"), str(QUICKSTART), *settings, "--cwd", str(folder)]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return nbformat.read(out, as_version=4), folder


def test_quickstart_runs_top_to_bottom(executed):
    notebook, folder = executed
    cells = cells_by_id(notebook)
    assert "injected-parameters" not in cells  # the override is not kept
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "error"], cell.id
            assert "Traceback" not in text_of(cell, "stderr"), cell.id
    assert "vocabulary: .abcdefghijklmnopqrstuvwxyz (27 characters)" in text_of(cells["data"])
    assert text_of(cells["windows"]).splitlines()[:5] == [
        "... ---> e",
        "..e ---> m",
        ".em ---> m",
        "emm ---> a",
        "mma ---> .",
    ]
    assert "11,897 parameters" in text_of(cells["model"])
    # The learning-rate finder, the loss curves, the embeddings and the ladder are shown inline, as PNG.
    for cell_id in ("lr-find", "curves", "embeddings", "ladder-curves"):
        assert has_png(cells[cell_id]), cell_id
    assert re.search(r"suggested learning rate: [0-9.e-]+", text_of(cells["lr-find"]))
    run = folder / "lightning_logs" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "run folder: " in text_of(cells["train"]) and "400/400" in text_of(cells["train"])


def test_quickstart_samples_and_tests_once(executed):
    notebook, folder = executed
    cells = cells_by_id(notebook)
    lines = text_of(cells["sample"]).splitlines()
    names, best = lines[:20], lines[20]
    assert all(re.fullmatch(r"[a-z]*", name) for name in names) and sum(map(bool, names)) >= 15
    assert re.fullmatch(r"from the best checkpoint: [a-z]*(, [a-z]*){4}", best)
    uniform = math.log(27)  # after 400 steps every model is below uniform guessing
    test_loss = float(re.search(r"test loss: (\d+\.\d+)", text_of(cells["test"])).group(1))
    assert 1.5 < test_loss < uniform - 0.5
    ladder = dict(re.findall(r"(\w+): val loss (\d+\.\d+) after 200 steps", text_of(cells["ladder"])))
    assert set(ladder) == {"bigram", "wavenet"} and all(float(loss) < uniform for loss in ladder.values())
    # three runs (the MLP, the two rungs), the MLP's tested into its own folder
    assert sorted(p.name for p in (folder / "lightning_logs").iterdir()) == ["version_0", "version_1", "version_2"]


def test_kept_outputs_are_in_the_repository():
    notebook = nbformat.read(QUICKSTART, as_version=4)
    nbformat.validate(notebook)
    cells = cells_by_id(notebook)
    for cell_id in ("lr-find", "curves", "embeddings", "ladder-curves"):
        assert has_png(cells[cell_id]), f"{cell_id}: no plot kept; run python notebooks/execute.py {QUICKSTART.name}"
    assert re.search(r"test loss: \d\.\d{4}", text_of(cells["test"]))
    assert not [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert QUICKSTART.stat().st_size < 1_000_000


def after_importing_every_module(before: str, after: str) -> str:
    """What a fresh Python prints running `before`, importing every makemore module, then `after`."""
    code = (
        before + "import importlib, pkgutil, makemore\n"
        "for m in pkgutil.walk_packages(makemore.__path__, 'makemore.'):\n"
        "    if m.name != 'makemore.__main__':\n"
        "        importlib.import_module(m.name)\n" + after
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_makemore_leaves_the_matplotlib_backend_alone():
    """A notebook's inline plots need the backend it chose: no makemore module may switch it."""
    before = "import matplotlib\nmatplotlib.use('svg')\n"
    assert after_importing_every_module(before, "print(matplotlib.get_backend())\n").strip() == "svg"


def test_importing_makemore_changes_no_warning_or_logging_setting():
    """Silencing Lightning's noise is something the CLI and makemore.api do when called, not an import's side effect."""
    before = (
        "import logging, warnings, lightning\n"
        "before = list(warnings.filters)\n"
        "handlers = {h: list(h.filters) for n in ('lightning.pytorch', 'lightning.fabric')"
        " for h in logging.getLogger(n).handlers}\n"
    )
    after = (
        "ours = [f for f in warnings.filters if f not in before and f[1] is not None and 'urllib3' not in repr(f)]\n"
        "print(len(ours), sum(h.filters != f for h, f in handlers.items()))\n"
    )
    assert after_importing_every_module(before, after).split() == ["0", "0"]


def test_public_names_resolve():
    import makemore

    for name in makemore.__all__:
        assert getattr(makemore, name) is not None, name
