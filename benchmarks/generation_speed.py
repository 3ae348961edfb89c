"""Issue #38, generation: characters a second of `makemore sample`, with and without the decoder, against the plain
generation loop of nanoGPT (text) and of makemore.py (names) over networks of the same size.

In one process, same threads, the sides alternating round by round (A B C A B C ...), each drawing the same amount:

  text (a gpt_cpu-sized checkpoint: 4 blocks of 4 heads, 128 wide, block 64, tiny shakespeare's 66 ids)
    cached     makemore.sampling.generate_text, what `makemore sample --prompt P --max_new_chars N` streams (its
               printing left out), with the Transformer's key/value cache
    window     the same with cache=False: the window read again for every character (the sampler before the cache)
    stream     with a checkpoint that streams (position rope): `--stream true`, the whole passage so far
    nanoGPT    nanoGPT's own GPT.generate (model.py imported from the --nanogpt tree, not copied) on a GPT of the
               checkpoint's sizes, untrained (speed does not depend on the weights):
               crop the window, run the network, draw one. Without --nanogpt, that loop over makemore's network.
  names (a transformer.yaml-sized checkpoint: 4 blocks of 4 heads, 64 wide, block 16)
    cached / window  makemore.sampling.generate, what `makemore sample --num_samples K` draws, K names at once
    makemore.py      makemore.py's own generate (imported from --makemore_py) on its Transformer of the same sizes,
                     K names of block_size - 1 steps, as its print_samples draws them

Without --text_ckpt / --names_ckpt, each checkpoint is trained here for a few steps first (`python -m makemore fit
--config configs/shakespeare/gpt_cpu.yaml` and `configs/transformer.yaml`, shortened).

    python -m benchmarks.generation_speed --nanogpt /tmp/nanogpt --makemore_py /tmp/makemore.py --out /tmp/gen.json
    python -m benchmarks.generation_speed --chars 100 --names 20 --rounds 1      # smoke
    python -m benchmarks.generation_speed --split --text_ckpt ROPE_CKPT  # where a streamed character's time goes,
                                     # with StreamCache and with its reference decoder (ConcatenatedStream)

(nanoGPT: `git --git-dir=<mirror> archive HEAD | tar -x -C /tmp/nanogpt`; makemore.py: `git --git-dir=<mirror> show
HEAD:makemore.py > /tmp/makemore.py`)
"""

import argparse
import importlib.util
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from benchmarks.common import ROOT, machine_facts
from makemore.checkpoint import named_checkpoint, network_of, read_checkpoint
from makemore.models.base import eval_mode, reads_streams
from makemore.models.transformer import ConcatenatedStream
from makemore.sampling import draw, generate, generate_passages, generate_text
from makemore.text import Vocabulary

PROMPT = "ROMEO:"
# A side of the comparison: what it draws, and how many characters (or names) one draw is.
Side = tuple[Callable[[], object], int]


def train_briefly(config: str, steps: int, root: Path, options: Sequence[str] = ()) -> str:
    """A checkpoint of `config`'s network (with fit's `options`) after `steps` SGD steps (its last.ckpt)."""
    command = [sys.executable, "-m", "makemore", "fit", "--config", config, *options, "--trainer.max_steps", str(steps)]
    command += ["--data.val_every_n_steps", str(steps), "--trainer.default_root_dir", str(root)]
    command += ["--trainer.enable_progress_bar", "false"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return str(named_checkpoint("last", root=str(root)))


def loaded(path: str) -> tuple[torch.nn.Module, Vocabulary, int, dict]:
    """The network as `makemore sample` loads it, its vocabulary, block_size and options."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    net = network_of(checkpoint, path)
    return net, Vocabulary(hparams["vocab"]), hparams["block_size"], hparams["net"]["init_args"]


def plain_loop(net: torch.nn.Module, idx: torch.Tensor, steps: int, block_size: int) -> torch.Tensor:
    """nanoGPT's and makemore.py's generate: crop the window, run the network, draw one from the last position."""
    for _ in range(steps):
        logits, _ = net(idx[:, -block_size:])
        probs = F.softmax(logits[:, -1], dim=-1)
        idx = torch.cat([idx, torch.multinomial(probs, 1)], 1)
    return idx


def network_ops_alone(net: torch.nn.Module, tokens: int) -> float:
    """Seconds a token of the Transformer's own operations, called back to back on one streamed token's shapes, their
    arguments made beforehand: the embedding; in each block two LayerNorms, four matrix products, the rotation of
    queries and keys (two products, a flip, a sum), attention over block_size keys, the activation and two residual
    sums; the final LayerNorm and the head. The network's arithmetic, each operation with its least fixed cost in
    eager PyTorch; what a step costs beyond it is Python and views."""
    generator = torch.Generator().manual_seed(0)
    c, n_head, window = net.embedding.embedding_dim, net.blocks[0].n_head, net.block_size
    x, hidden = torch.randn(1, c, generator=generator), torch.randn(1, 4 * c, generator=generator)
    q, k = torch.randn(1, n_head, 1, c // n_head, generator=generator), torch.randn(1, n_head, window, c // n_head)
    qk, table = torch.randn(1, 1, 2, n_head, 2, c // n_head // 2), torch.randn(1, 1, 1, 2, c // n_head // 2)
    calls = [(F.embedding, (torch.ones(1, 1, dtype=torch.long), net.embedding.weight))]
    for block in net.blocks:
        fc, activation, fc2 = block.mlp
        calls += [
            (torch.layer_norm, (x, (c,), block.ln_1.weight, block.ln_1.bias)),
            (torch.addmm, (block.qkv.bias, x, block.qkv.weight.t())),
            (torch.mul, (qk, table)),
            (torch.flip, (qk, (-2,))),
            (torch.mul, (qk, table)),
            (torch.add, (qk, qk)),
            (F.scaled_dot_product_attention, (q, k, k)),
            (torch.addmm, (block.proj.bias, x, block.proj.weight.t())),
            (torch.add, (x, x)),
            (torch.layer_norm, (x, (c,), block.ln_2.weight, block.ln_2.bias)),
            (torch.addmm, (fc.bias, x, fc.weight.t())),
            (activation.forward, (hidden,)),
            (torch.addmm, (fc2.bias, hidden, fc2.weight.t())),
            (torch.add, (x, x)),
        ]
    calls += [(torch.layer_norm, (x, (c,), net.ln_f.weight, net.ln_f.bias)), (torch.mm, (x, net.head.weight.t()))]
    with torch.inference_mode():
        start = time.perf_counter()
        for _ in range(tokens):
            for operation, arguments in calls:
                operation(*arguments)
        return (time.perf_counter() - start) / tokens


def token_split(net: torch.nn.Module, vocabulary: Vocabulary, chars: int, reference: bool) -> dict[str, float]:
    """Seconds a character of a streamed passage, split as `makemore sample --stream true` spends them: the network's
    step (context.feed), the draw (makemore.sampling.draw and the start token's -inf), the text (ids to characters)
    and the print (`sample`'s print(..., flush=True), here to os.devnull). The loop is generate_passages' own, timed
    part by part; `reference`: with StreamCache's reference decoder, ConcatenatedStream (Transformer.decode on the
    keys and values concatenated and cut every step), instead of the network's stream decoder."""
    generator, seconds = torch.Generator().manual_seed(0), dict.fromkeys(("network", "draw", "text", "print"), 0.0)
    clock = time.perf_counter
    with eval_mode(net), open(os.devnull, "w") as sink, torch.inference_mode():
        context = ConcatenatedStream(net) if reference else net.stream_decoder()
        logits = context.feed(torch.tensor([vocabulary.encode(PROMPT)]))
        for _ in range(chars):
            start = clock()
            logits.select(1, 0).fill_(float("-inf"))
            ix = draw(logits, generator, 1.0, None)
            drawn = clock()
            text = [vocabulary.itos[i] for i in ix.squeeze(1).tolist()]
            decoded = clock()
            print(text[0], end="", flush=True, file=sink)
            printed = clock()
            logits = context.feed(ix)
            for part, seconds_spent in zip(
                seconds, (clock() - printed, drawn - start, decoded - drawn, printed - decoded)
            ):
                seconds[part] += seconds_spent
    return {part: spent / chars for part, spent in seconds.items()}


def splits(path: str, chars: int, count: int) -> dict[str, dict[str, float]]:
    """`token_split` with ConcatenatedStream and with StreamCache, and `network_ops_alone`, alternating, `count`
    rounds: the median of each part, in microseconds a character."""
    net, vocabulary, _, _ = loaded(path)
    rounds_of = {"ConcatenatedStream": [], "StreamCache": [], "network ops alone": []}
    token_split(net, vocabulary, chars, False)  # warm-up
    for _ in range(count):
        rounds_of["ConcatenatedStream"].append(token_split(net, vocabulary, chars, True))
        rounds_of["StreamCache"].append(token_split(net, vocabulary, chars, False))
        rounds_of["network ops alone"].append({"network": network_ops_alone(net, chars)})
    return {
        side: {part: 1e6 * statistics.median(r[part] for r in runs) for part in runs[0]}
        for side, runs in rounds_of.items()
    }


def module_from(path: Path, name: str) -> ModuleType:
    """The Python file at `path` imported as module `name` (not on sys.path: nanoGPT's `model`, makemore.py, which
    is not `makemore`, this package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)  # as importlib's recipe: dataclasses look it up
    spec.loader.exec_module(module)
    return module


def timed(draw: Callable[[], object]) -> float:
    start = time.perf_counter()
    draw()
    return time.perf_counter() - start


def text_sides(path: str, chars: int, nanogpt: Optional[Path], passages: int) -> dict[str, Side]:
    net, vocabulary, block_size, sizes = loaded(path)
    prompt = torch.tensor([vocabulary.encode(PROMPT)])

    def passage(cache: bool, stream: bool = False) -> Callable[[], str]:
        generator = torch.Generator().manual_seed(0)
        return lambda: "".join(
            generate_text(net, vocabulary, block_size, PROMPT, chars, generator, cache=cache, stream=stream)
        )

    sides = {"makemore cached": (passage(True), chars), "makemore window": (passage(False), chars)}
    if reads_streams(net):  # --stream: the whole passage so far, one token a step
        sides = {"makemore stream": (passage(True, stream=True), chars), **sides}
    if passages > 1:  # `makemore sample --num_samples N`: N passages as one batch, the characters of all counted

        def batch() -> None:
            generator = torch.Generator().manual_seed(0)
            columns = generate_passages(
                net, vocabulary, block_size, PROMPT, chars, passages, generator, stream=reads_streams(net)
            )
            for _ in columns:
                pass

        sides = {f"makemore {passages} at once": (batch, passages * chars), **sides}
    if nanogpt is None:
        sides["plain loop"] = (lambda: torch.no_grad()(plain_loop)(net, prompt, chars, block_size), chars)
        return sides
    model = module_from(nanogpt / "model.py", "nanogpt_model")
    config = model.GPTConfig(
        block_size=block_size, vocab_size=len(vocabulary) - 1, dropout=0.0, bias=True, **sizes_of(sizes)
    )
    gpt = model.GPT(config).eval()
    sides["nanoGPT"] = (lambda: torch.no_grad()(gpt.generate)(prompt - 1, chars), chars)  # its ids: no start token
    return sides


def sizes_of(init_args: dict) -> dict:
    return {name: init_args[name] for name in ("n_layer", "n_head", "n_embd")}


def names_sides(path: str, names: int, makemore_py: Optional[Path]) -> dict[str, Side]:
    net, vocabulary, block_size, sizes = loaded(path)

    def words(cache: bool) -> Callable[[], torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        return lambda: generate(net, block_size, names, block_size, generator, cache=cache)

    sides = {"makemore cached": (words(True), names), "makemore window": (words(False), names)}
    start = torch.zeros(names, 1, dtype=torch.long)
    if makemore_py is None:
        sides["plain loop"] = (lambda: torch.no_grad()(plain_loop)(net, start, block_size - 1, block_size), names)
        return sides
    module = module_from(makemore_py, "makemore_py")
    config = module.ModelConfig(
        block_size=block_size, vocab_size=len(vocabulary), n_embd2=sizes["n_embd"], **sizes_of(sizes)
    )
    model = module.Transformer(config).eval()
    sides["makemore.py"] = (
        lambda: torch.no_grad()(module.generate)(model, start, block_size - 1, do_sample=True),
        names,
    )
    return sides


def rounds(sides: dict[str, Side], count: int) -> dict[str, dict]:
    """Each side once a round, in turn; per side the median rate (its amount a second), every round's seconds, and
    its rate over the last side's (the peer's) round by round, with their median: on a machine shared with other
    work, the two sides of one round ran under the same load, the medians of each side perhaps not."""
    seconds = {name: [] for name in sides}
    for side, _ in sides.values():  # warm-up, not timed
        side()
    for _ in range(count):
        for name, (side, _) in sides.items():
            seconds[name].append(timed(side))
    peer = list(sides)[-1]
    results = {}
    for name, times in seconds.items():
        ratios = [sides[name][1] / time / (sides[peer][1] / theirs) for time, theirs in zip(times, seconds[peer])]
        results[name] = {
            "per_second": sides[name][1] / statistics.median(times),
            "seconds": times,
            "over_peer_by_round": ratios,
            "over_peer_median": statistics.median(ratios),
        }
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text_ckpt", help="a gpt_cpu-sized text checkpoint (default: trained here briefly)")
    parser.add_argument("--names_ckpt", help="a transformer.yaml-sized names checkpoint (default: trained here)")
    parser.add_argument("--nanogpt", type=Path, help="a nanoGPT tree (model.py); without it, the plain loop")
    parser.add_argument("--makemore_py", type=Path, help="makemore.py; without it, the plain loop")
    parser.add_argument("--chars", type=int, default=500, help="characters a passage (makemore sample's default)")
    parser.add_argument("--names", type=int, default=100, help="names drawn at once")
    parser.add_argument(
        "--passages",
        type=int,
        default=1,
        help="also time `makemore sample --num_samples N`'s N passages drawn as one batch (characters of all of them"
        " a second; nanoGPT's sample.py draws its num_samples one after another, at its one-passage rate)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds, every side once each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--train_steps", type=int, default=20, help="SGD steps of a checkpoint trained here")
    parser.add_argument(
        "--text_options",
        default="",
        help="fit options of the text checkpoint trained here, as one string: --text_options='--model.net.position"
        " rope' (a network that streams: its --stream side is timed too, and the rates are given against it)",
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="instead: where a streamed character's time goes (network, draw, text, print), with StreamCache and"
        " with its reference decoder ConcatenatedStream, and the network's operations alone (--text_ckpt of a"
        " Transformer with position rope)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.split:
        if not args.text_ckpt:
            parser.error("--split needs --text_ckpt, a checkpoint of a Transformer with position rope")
        results = {"machine": machine_facts(args.threads), "split": splits(args.text_ckpt, args.chars, args.rounds)}
        print(results["machine"])
        for side, parts in results["split"].items():
            print(f"  {side:18s} " + "  ".join(f"{part} {us:6.1f}" for part, us in parts.items()) + " (us a character)")
        if args.out:
            args.out.write_text(json.dumps(results, indent=1) + "\n")
        return 0
    with tempfile.TemporaryDirectory(prefix="generation-speed-") as tmp:
        text_ckpt = args.text_ckpt or train_briefly(
            "configs/shakespeare/gpt_cpu.yaml", args.train_steps, Path(tmp, "t"), shlex.split(args.text_options)
        )
        names_ckpt = args.names_ckpt or train_briefly("configs/transformer.yaml", args.train_steps, Path(tmp, "n"))
        results = {
            "machine": machine_facts(args.threads),
            "text": rounds(text_sides(text_ckpt, args.chars, args.nanogpt, args.passages), args.rounds),
            "names": rounds(names_sides(names_ckpt, args.names, args.makemore_py), args.rounds),
        }
    print(results["machine"])
    for kind, unit in (("text", "characters"), ("names", "names")):
        sides = results[kind]
        cached = sides[next(iter(sides))]["per_second"]  # the fastest of makemore's: the stream where there is one
        print(f"{kind} ({unit} a second, median of {args.rounds} rounds):")
        first, peer = next(iter(sides)), list(sides)[-1]  # peer: nanoGPT's or makemore.py's loop (or the plain one)
        for name, side in sides.items():
            rate, ratios = side["per_second"], side["over_peer_by_round"]
            print(
                f"  {name:20s} {rate:9.0f}   {first} / this: {cached / rate:.2f}x   this / {peer}, round by round:"
                f" median {side['over_peer_median']:.2f}x ({min(ratios):.2f} to {max(ratios):.2f})"
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
