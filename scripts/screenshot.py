#!/usr/bin/env python
"""Screenshots of TensorBoard on a real run: the Time Series view it opens on, the Scalars tab, the images.

    python scripts/screenshot.py                                        # the mlp run of scripts/experiments.py
    python scripts/screenshot.py --logdir lightning_logs/experiments/mlp_embd2 --docs docs
    python scripts/screenshot.py --logdir runs/init --shot diagnostics_saturated.png \
        '?forceSVG=true#timeseries&tagFilter=activations/saturated'     # other views, by URL fragment

Starts `tensorboard --logdir DIR --port PORT --host 127.0.0.1` on a free port, waits until it answers
and has read the run's val_loss and embedding figure, takes headless screenshots with Debian's Chromium
(/usr/bin/chromium; `apt-get update && apt-get install -y chromium` if it is missing), then stops
TensorBoard. Writes DOCS/tensorboard_timeseries.png, tensorboard_scalars.png and tensorboard_images.png.
"""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# What each screenshot shows, with TensorBoard's default settings (no tag filter, default smoothing): the
# Time Series view TensorBoard opens on (its line charts drawn as SVG, TensorBoard's own forceSVG switch:
# headless Chromium does not draw their WebGL), the Scalars tab, and the images dashboard with the figures a
# fit logs (the character embeddings).
SHOTS = {
    "tensorboard_timeseries.png": "?forceSVG=true#timeseries",
    "tensorboard_scalars.png": "#scalars",
    "tensorboard_images.png": "#images",
}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--logdir",
        type=Path,
        default=REPO / "lightning_logs" / "experiments" / "mlp",
        help="a run's folder (TensorBoard's --logdir); default: %(default)s",
    )
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="where the PNGs go; default: %(default)s")
    parser.add_argument("--port", type=int, default=0, help="TensorBoard's port; default: a free one")
    parser.add_argument(
        "--budget_ms",
        type=int,
        default=15000,
        help="Chromium's --virtual-time-budget: page time allowed to render; default: %(default)s",
    )
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds to wait for TensorBoard and each screenshot"
    )
    parser.add_argument(
        "--shot",
        nargs=2,
        action="append",
        metavar=("FILE", "FRAGMENT"),
        help="a screenshot FILE of TensorBoard's page at FRAGMENT (repeatable); default: the three views above",
    )
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read().decode())


def wait_for_data(base: str, server: subprocess.Popen, timeout: float, log: str) -> None:
    """Until TensorBoard answers and has loaded a val_loss scalar and the embedding figure."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(
                f"screenshot.py: tensorboard exited with code {server.returncode}:\n{Path(log).read_text()[-2000:]}"
            )
        try:
            scalars = get_json(f"{base}/data/plugin/scalars/tags")
            images = get_json(f"{base}/data/plugin/images/tags")
            has_val = any("val_loss" in tags for tags in scalars.values())
            has_figure = any("plots/embeddings" in tags for tags in images.values())
            if has_val and has_figure:
                return
            last = f"runs {sorted(scalars)}; val_loss {has_val}, embeddings figure {has_figure}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as err:
            last = str(err)
        time.sleep(1)
    sys.exit(f"screenshot.py: TensorBoard at {base} did not show the run's data within {timeout:.0f} s ({last})")


def screenshot(url: str, path: Path, budget_ms: int, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--window-size=1400,1300",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={path}",
            url,
        ]
        path.unlink(missing_ok=True)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not path.exists():
        sys.exit(f"screenshot.py: chromium failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    print(f"{path}  <-  {url}")


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        sys.exit(f"screenshot.py: no {CHROMIUM}; install it with: apt-get update && apt-get install -y chromium")
    logdir = args.logdir.resolve()
    if not any(logdir.rglob("events.out.tfevents.*")):
        sys.exit(f"screenshot.py: no TensorBoard events under {logdir}; run scripts/experiments.py first")
    tensorboard = shutil.which("tensorboard", path=str(Path(sys.executable).parent)) or shutil.which("tensorboard")
    if tensorboard is None:
        sys.exit("screenshot.py: no tensorboard command (pip install tensorboard)")
    args.docs.mkdir(parents=True, exist_ok=True)
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w+", prefix="tensorboard-", suffix=".log")  # a pipe could fill and block it
    # A relative --logdir, as a user types it: no path of this machine in the page.
    server = subprocess.Popen(
        [tensorboard, "--logdir", logdir.name, "--port", str(port), "--host", "127.0.0.1"],
        cwd=logdir.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    print(f"(cd {logdir.parent} && tensorboard --logdir {logdir.name} --port {port} --host 127.0.0.1)")
    try:
        wait_for_data(base, server, args.timeout, log.name)
        for name, fragment in args.shot or SHOTS.items():
            screenshot(f"{base}/{fragment}", args.docs.resolve() / name, args.budget_ms, args.timeout)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


if __name__ == "__main__":
    main()
