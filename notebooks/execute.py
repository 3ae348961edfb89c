"""Run a notebook top to bottom, some parameters changed, and keep its outputs (tests/test_notebook.py runs it small).

    python notebooks/execute.py notebooks/quickstart.ipynb                        # the kept outputs, in place
    python notebooks/execute.py notebooks/quickstart.ipynb --set MAX_STEPS=400 --cwd /tmp/run --out /tmp/run/q.ipynb

`--set NAME=VALUE` overrides the cell tagged `parameters` for this run only: the values run in a cell after it,
removed again before the notebook is written. Runs are written under `--cwd` (default: the notebook's folder,
where `lightning_logs/` is git-ignored). Progress bars are kept as a terminal shows them at the end, one line
each rather than every update.
"""

import argparse
import re
from pathlib import Path
from typing import Optional

import nbformat
from nbclient import NotebookClient

INJECTED = "injected-parameters"


def execute(path: Path, parameters: dict[str, str], cwd: Path, timeout: Optional[int] = 600) -> nbformat.NotebookNode:
    """The notebook at `path` executed in `cwd` with `parameters` (name -> Python expression) set after its
    parameter cell; an error in any cell raises nbclient's CellExecutionError. timeout: seconds per cell."""
    notebook = nbformat.read(path, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    if parameters:
        source = "\n".join(f"{name} = {value}" for name, value in parameters.items())
        notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source, id=INJECTED))
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    notebook.cells = [cell for cell in notebook.cells if cell.get("id") != INJECTED]
    return notebook


def as_terminal_shows(text: str) -> str:
    """`text` as a terminal shows it at the end: `\\r` goes back to the line's start, ESC[A up one line."""
    lines, row, col = [""], 0, 0
    for part in re.split(r"(\r|\n|\x1b\[A)", text):
        if part == "\r":
            col = 0
        elif part == "\n":
            row, col = row + 1, 0
            lines += [""] * (row + 1 - len(lines))
        elif part == "\x1b[A":
            row = max(0, row - 1)
        elif part:
            lines[row] = lines[row][:col].ljust(col) + part + lines[row][col + len(part) :]
            col += len(part)
    shown = "\n".join(line.rstrip() for line in lines).strip("\n")
    return shown + "\n" if shown else ""


def tidy_streams(notebook: nbformat.NotebookNode) -> None:
    """Merge each cell's consecutive outputs of one stream and keep them as a terminal shows them."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            previous = outputs[-1] if outputs else None
            if output.output_type == "stream" and previous and previous.get("name") == output.name:
                previous.text += output.text
            else:
                outputs.append(output)
        for output in outputs:
            if output.output_type == "stream":
                output.text = as_terminal_shows(output.text)
        cell.outputs = [output for output in outputs if output.output_type != "stream" or output.text]


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter")
    parser.add_argument("--cwd", type=Path, help="folder the notebook runs in (default: the notebook's)")
    parser.add_argument("--out", type=Path, help="where to write the executed notebook (default: in place)")
    args = parser.parse_args(argv)
    parameters = dict(item.split("=", 1) for item in args.set)
    notebook = execute(args.notebook, parameters, args.cwd or args.notebook.parent, timeout=None)
    tidy_streams(notebook)
    nbformat.write(notebook, args.out or args.notebook)


if __name__ == "__main__":
    main()
