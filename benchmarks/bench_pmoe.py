"""pMoE-style: train and eval step time for 1, 2 and 3 frozen ViT experts at ViT-B/16 size, in one process.

Experts (random weights, never downloaded): CLIP ViT-B/16's visual tower (``harness.random_clip``), and timm
``vit_base_patch16_224.dino`` and ``vit_base_patch16_224.mae`` built with ``pretrained=False``. Every model has
N_p prompts per expert at all 12 blocks and a linear head over C classes (so no text-encoder cost is counted; the
CLIP head adds the same text cost to every case).

Cases, timed round-robin (``--repeats`` rounds, median per case) so a machine whose speed drifts slows them alike:
  - ``single:<expert>``: that expert alone with plain VPT-deep prompts (``DISPATCHER none``), for each expert;
  - ``pmoe:K:<dispatcher>``: the first K experts together with a dispatcher at every prompt layer.
Ratio per K-expert case: step time / the sum of its K experts' single VPT-deep step times (train and eval). The
target is <= 1.15: dispatching may add at most 15 % to running the experts side by side (no quadratic cost).
On CUDA the peak memory of one train step (and one eval step) per case is reported too; the frozen part before the
first prompt layer runs under no_grad and no frozen weight gets a gradient (``dasslite.vision.vpt``).

    python benchmarks/bench_pmoe.py --device cpu --batch 4 --repeats 5
    python benchmarks/bench_pmoe.py --device cuda --batch 32 --dispatchers gate attention topk --out pmoe.json
    python benchmarks/bench_pmoe.py --smoke            # tiny experts, seconds: the script itself works
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Any, Dict, List, Sequence

import torch
import torch.nn as nn

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness as H  # noqa: E402
from dasslite.vision.experts import CLIP_MEAN, CLIP_STD, build_experts  # noqa: E402
from dasslite.vision.model import PMoECLIP, PMoELearner  # noqa: E402

TIMM_EXPERTS = ("vit_base_patch16_224.dino", "vit_base_patch16_224.mae")
TARGET = 1.15
SMOKE_TIMM = dict(img_size=32, patch_size=8, depth=2, embed_dim=64, num_heads=2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=None, help="images per step (default: 32 on CUDA, 4 on CPU)")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--n-prompts", type=int, default=10)
    p.add_argument("--dispatchers", nargs="+", default=["gate"], choices=["gate", "attention", "topk"])
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="round-robin rounds (median per case)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--prec", default=None, choices=["fp32", "amp"], help="default: amp on CUDA, fp32 on CPU")
    p.add_argument("--arch", default="ViT-B/16", choices=["ViT-B/16", "tiny"], help="expert size (tiny: seconds)")
    p.add_argument("--smoke", action="store_true", help="the same as --arch tiny")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p


class Case:
    """One model (a subset of the shared frozen experts), its optimizer and its timings."""

    def __init__(self, name: str, experts: Sequence[nn.Module], clip_model: nn.Module, dispatcher: str,
                 args, device: torch.device, single_of: Sequence[str]) -> None:
        layers = list(range(min(e.depth for e in experts)))
        learner = PMoELearner(experts, args.classes, "linear", args.n_prompts, layers, dispatcher,
                              dict(top_k=min(args.top_k, len(experts) + 1)))
        self.model = PMoECLIP(clip_model, experts, learner, [f"c{i}" for i in range(args.classes)], CLIP_MEAN,
                              CLIP_STD).to(device)
        self.model.requires_grad_(False)
        learner.requires_grad_(True)
        self.params = [p for p in learner.parameters() if p.requires_grad]
        self.optim = torch.optim.SGD(self.params, lr=1e-3, momentum=0.9)
        self.name, self.single_of = name, list(single_of)
        self.train_s: List[float] = []
        self.eval_s: List[float] = []
        self.memory: Dict[str, Any] = {}

    def train_step(self, images, labels, autocast) -> float:
        self.model.train()
        self.optim.zero_grad(set_to_none=True)
        with autocast():
            loss = self.model.forward_train(images, labels)["loss_ce"]
        loss.backward()
        self.optim.step()
        return loss.item()

    def eval_step(self, images, autocast) -> None:
        self.model.eval()
        with torch.no_grad(), autocast():
            self.model(images)


def timed(fn, device) -> float:
    H.sync(device)
    start = time.perf_counter()
    fn()
    H.sync(device)
    return time.perf_counter() - start


def run(args) -> Dict[str, Any]:
    device = torch.device(args.device)
    batch = args.batch or (32 if device.type == "cuda" else 4)
    prec = args.prec or ("amp" if device.type == "cuda" else "fp32")
    arch = "tiny" if args.smoke else args.arch
    clip_model = H.random_clip(arch, device).float()
    timm_kwargs = {name: dict(SMOKE_TIMM) for name in TIMM_EXPERTS} if arch == "tiny" else {}
    torch.manual_seed(0)
    experts = build_experts(clip_model, ["clip", *TIMM_EXPERTS], timm_kwargs=timm_kwargs, allow_random=True)
    names = [e.name for e in experts]
    cases = [Case(f"single:{e.name}", [e], clip_model, "none", args, device, [e.name]) for e in experts]
    for k in (2, 3):
        for dispatcher in args.dispatchers:
            cases.append(Case(f"pmoe:{k}:{dispatcher}", experts[:k], clip_model, dispatcher, args, device, names[:k]))
    resolution = H.ARCHS[arch]["image_resolution"]
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, resolution, resolution, generator=gen).to(device)
    labels = torch.randint(0, args.classes, (batch,), generator=gen).to(device)
    use_amp = prec == "amp" and device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.float16) if use_amp else nullcontext()

    for case in cases:  # warm-up, and the peak memory of one step of each kind
        for _ in range(args.warmup):
            case.train_step(images, labels, autocast)
            case.eval_step(images, autocast)
        H.free_memory(device)
        H.reset_peak_memory(device)
        case.train_step(images, labels, autocast)
        case.memory["train_peak_gib"] = H.peak_memory_gib(device)
        H.reset_peak_memory(device)
        case.eval_step(images, autocast)
        case.memory["eval_peak_gib"] = H.peak_memory_gib(device)
    for _ in range(args.repeats):  # round-robin: drift slows every case alike
        for case in cases:
            case.train_s.append(timed(lambda: case.train_step(images, labels, autocast), device))
            case.eval_s.append(timed(lambda: case.eval_step(images, autocast), device))
    median = {c.name: {"train_ms": 1e3 * statistics.median(c.train_s), "eval_ms": 1e3 * statistics.median(c.eval_s)}
              for c in cases}
    rows = []
    for case in cases:
        row = {"case": case.name, "experts": case.single_of, **median[case.name], **case.memory,
               "trainable_params": sum(p.numel() for p in case.params)}
        if not case.name.startswith("single:"):
            for kind in ("train", "eval"):
                total = sum(median[f"single:{n}"][f"{kind}_ms"] for n in case.single_of)
                row[f"{kind}_ratio_vs_sum_of_singles"] = row[f"{kind}_ms"] / total
            row["pass"] = all(row[f"{k}_ratio_vs_sum_of_singles"] <= TARGET for k in ("train", "eval"))
        rows.append(row)
    return {"meta": {"environment": H.environment(device), "arch": arch, "batch": batch, "prec": prec,
                     "classes": args.classes, "n_prompts": args.n_prompts, "repeats": args.repeats,
                     "target": TARGET, "smoke": arch == "tiny"}, "results": rows}


def render(result: Dict[str, Any]) -> str:
    meta = result["meta"]
    env = meta["environment"]
    where = env["gpu"] or f"CPU ({env['cpu_count']} cores)"
    lines = [f"pMoE-style step times, {meta['arch']} experts, batch {meta['batch']}, {meta['prec']}, "
             f"N_p {meta['n_prompts']} at every block, {where}, torch {env['torch']}, median of {meta['repeats']} "
             "round-robin rounds", "",
             "| case | train ms | eval ms | train / sum of singles | eval / sum of singles | peak train GiB | "
             "peak eval GiB | target |", "|---|---:|---:|---:|---:|---:|---:|---|"]

    def num(x, fmt):
        return "-" if x is None else format(x, fmt)

    for r in result["results"]:
        target = "" if "pass" not in r else ("PASS" if r["pass"] else "FAIL") + f" (≤ {meta['target']})"
        lines.append(f"| {r['case']} | {r['train_ms']:.1f} | {r['eval_ms']:.1f} | "
                     f"{num(r.get('train_ratio_vs_sum_of_singles'), '.3f')} | "
                     f"{num(r.get('eval_ratio_vs_sum_of_singles'), '.3f')} | {num(r.get('train_peak_gib'), '.2f')} | "
                     f"{num(r.get('eval_peak_gib'), '.2f')} | {target} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but no GPU is visible", file=sys.stderr)
        return 2
    result = run(args)
    print(render(result))
    if args.out:
        from dasslite.utils.io import write_json_atomic

        write_json_atomic(args.out, result)
        print(f"written: {args.out}")
    return 0 if all(r.get("pass", True) for r in result["results"]) or result["meta"]["smoke"] else 1


if __name__ == "__main__":
    sys.exit(main())
