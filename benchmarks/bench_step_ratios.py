"""Training-step ratios on a shared machine: several built trainers timed *interleaved* (one step of each per round,
round after round), then the median of each; drift and neighbours' load then hit every trainer alike, which
``bench_trainers.py`` (fast path, then reference, minutes apart) cannot promise on a busy CPU.

Each case is built by ``benchmarks/harness.py`` exactly as ``bench_trainers.py`` builds it (random-weight CLIP of
the real size, the trainer's own ``build_model`` and ``forward_backward``); ``NAME:ref`` is the trainer switched to
its reference path (77-token text through CLIP's own blocks, a per-image loop for instance-conditioned trainers).

    python benchmarks/bench_step_ratios.py --arch ViT-B/16 --classes 100 --batch 8 --rounds 3 \\
        --cases FSMoE FSMoE:ref CoCoOp --out benchmarks/results/cpu_fsmoe_step_ratios.json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks import harness as H  # noqa: E402
from benchmarks.bench_trainers import select_trainers, synthetic_batch  # noqa: E402


def build_case(spec: str, arch: str, n_cls: int, batch: int, prec: str, master, device):
    """(trainer, description) for ``NAME`` or ``NAME:ref``."""
    name, _, path = spec.partition(":")
    chosen, skipped = select_trainers([name])
    if skipped:
        raise SystemExit(f"trainer {name} is not registered")
    cls = chosen[0][1]
    cfg = H.build_cfg(cls, arch, H.default_config_file(name), prec, batch, batch, n_cls=n_cls)
    torch.manual_seed(0)
    trainer = H.build_trainer(cls, cfg, master, H.class_names(n_cls), device)
    if path == "ref":
        H.use_reference_path(trainer, H.is_instance_conditioned(trainer.model)).pop("_state")
    elif path:
        raise SystemExit(f"case {spec!r}: expected NAME or NAME:ref")
    trainer.set_model_mode("train")
    return trainer


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B/16", choices=list(H.ARCHS))
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (one step of every case each)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps of every case first (0 on a slow machine: a "
                                                         "CPU's first step costs little extra)")
    p.add_argument("--prec", default="fp32")
    p.add_argument("--cases", nargs="+", default=["FSMoE", "FSMoE:ref", "CoCoOp"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="write the timings and ratios as JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    master = H.random_clip(args.arch, device)
    images, labels = synthetic_batch(args.batch, args.classes, H.ARCHS[args.arch]["image_resolution"], device, 1)
    batch = {"img": images, "label": labels}
    trainers = {spec: build_case(spec, args.arch, args.classes, args.batch, args.prec, master, device)
                for spec in args.cases}
    for _ in range(args.warmup):  # untimed warm-up steps
        for trainer in trainers.values():
            trainer.forward_backward(batch)
    times: Dict[str, List[float]] = {spec: [] for spec in trainers}
    for r in range(args.rounds):
        for spec, trainer in trainers.items():
            H.sync(device)
            t0 = time.perf_counter()
            trainer.forward_backward(batch)
            H.sync(device)
            times[spec].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{s} {1e3 * t[-1]:.0f} ms" for s, t in times.items()), flush=True)
    median = {spec: statistics.median(t) for spec, t in times.items()}
    ratios = {f"{a} / {b}": median[a] / median[b] for a in median for b in median if a != b}
    for key, value in ratios.items():
        print(f"median step {key}: {value:.2f}x")
    if args.out:
        from dasslite.utils.io import write_json_atomic

        write_json_atomic(args.out, {"args": vars(args), "environment": H.environment(device),
                                     "step_s": times, "median_step_s": median, "ratios": ratios,
                                     "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
