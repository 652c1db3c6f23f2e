"""The log-probs of the target tokens: the masked forward's chunked log-softmax vs a whole one.

Both take the output head's logits at the target tokens (bf16 where the machine multiplies it
natively, as under the trainer's autocast; fp32 elsewhere) and return log softmax[target] and
the entropy, then backpropagate a weighted sum of the log-probs to the logits:
- ours: `recipe.training.logprobs.logprobs_and_entropy`, `CHUNK_ROWS` rows of float32 at a time,
  the softmax recomputed in backward from the kept logits;
- plain: `log_softmax(logits.float())`, gather, the entropy from the whole log-softmax, and
  autograd's own backward (what the trainer did before).
The runs alternate so that machine noise hits both; the report is the median of `--repeats`.
Beside the time it prints the bytes per vocabulary entry and target alive at the backward's
peak, which set the logits row of the memory plan (`recipe.training.memory_plan`): at Qwen2.5's 152k
entries and 8192 targets the difference is gigabytes per GPU.

    python -m benchmarks.target_logprobs [--targets 1536] [--vocab 49152] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from recipe.precision import autocast_enabled
from recipe.training.logprobs import CHUNK_ROWS, logprobs_and_entropy


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", type=int, default=1536, help="target tokens in the pass")
    p.add_argument("--vocab", type=int, default=49152, help="SmolLM2's vocabulary")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def whole_log_softmax(logits: torch.Tensor, targets: torch.Tensor):
    logp = torch.log_softmax(logits.float(), dim=-1)
    values = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        entropy = -(logp.exp() * logp).sum(dim=-1)
    return values, entropy


def timed_pass(fn, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> float:
    leaf = logits.detach().requires_grad_()
    started = time.perf_counter()
    values, _ = fn(leaf, targets)
    (values * weights).sum().backward()
    return time.perf_counter() - started


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if autocast_enabled("auto", "cpu") else torch.float32
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(args.targets, args.vocab, generator=g)).to(dtype)
    targets = torch.randint(0, args.vocab, (args.targets,), generator=g)
    weights = torch.randn(args.targets, generator=g)
    runs = {"ours": logprobs_and_entropy, "plain": whole_log_softmax}
    for fn in runs.values():  # first touches of the allocator's pages
        timed_pass(fn, logits, targets, weights)
    seconds = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            seconds[name].append(timed_pass(fn, logits, targets, weights))
    element = logits.element_size()
    # plain: the fp32 log-softmax autograd kept, its gradient and the fp32 logits' gradient;
    # ours: the logits and their gradient (plus one chunk's float32 buffers).
    peak = {"ours": 2 * element, "plain": 12}
    print(f"{args.targets} targets x {args.vocab} vocabulary, {dtype}, chunks of {CHUNK_ROWS} rows")
    for name in runs:
        median = statistics.median(seconds[name])
        listed = ", ".join(f"{s:.3f}" for s in seconds[name])
        print(
            f"{name:5s}: {median:.3f} s forward + backward (median of {args.repeats}: {listed}); "
            f"{peak[name]} B a vocabulary entry and target at the backward's peak"
        )
    ratio = statistics.median(seconds["plain"]) / statistics.median(seconds["ours"])
    print(f"speed-up ours / plain: {ratio:.2f}")


if __name__ == "__main__":
    main()
