"""The text core alone: what each of its exact shortcuts saves, measured in one process.

CoOp-style prompts (SOS + a learnable context shared by every class + a class name whose BPE lengths follow
ImageNet's, ``harness.class_names``) for C classes, forward and backward to the context, run four ways:

- ``reference``: all 77 positions through CLIP's own blocks (CoOp's TextEncoder);
- ``truncated``: cut after the batch's last EOT, one padded batch (``length_buckets = 1``), nothing shared;
- ``prefix``: the same, with SOS + context encoded once for all classes (``encode_prefixed``);
- ``buckets``: the default path, ``prefix`` plus length buckets (``--buckets`` sets how many at most; several
  values calibrate ``BUCKET_OVERHEAD_TOKENS`` for a device).

The ways are timed round-robin (``--repeats`` rounds, median per way), so a machine whose speed drifts slows every
way alike, and every way's features are checked against the reference.

    python benchmarks/bench_text.py --device cpu --classes 100 --repeats 3
    python benchmarks/bench_text.py --device cuda --classes 100 1000 --buckets 1 2 3 4 --out text.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness as H  # noqa: E402
from dasslite.clip import TextEncoder, embed_tokens, eot_positions, tokenize  # noqa: E402

WAYS = ("reference", "truncated", "prefix", "buckets")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="ViT-B/16", type=H.arch_arg, help="an ARCHS name or open_clip:ARCH")
    p.add_argument("--classes", nargs="+", type=int, default=[100, 1000])
    p.add_argument("--n-ctx", type=int, default=4, help="learnable context tokens (default 4, 'a photo of a')")
    p.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    p.add_argument("--buckets", nargs="+", type=int, default=[4], help="most buckets for the 'buckets' way")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (after one untimed round)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--prec", choices=["fp16", "fp32"], help="weights (default: fp16 on cuda, as OpenAI's; fp32 on cpu)")
    p.add_argument("--out", help="write the results as JSON here")
    return p


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prompt_case(encoder: TextEncoder, n_cls: int, n_ctx: int) -> Dict[str, Any]:
    """Tokens, frozen embeddings and a learnable context for ``n_cls`` CoOp prompts ``X X X X <name>.``."""
    device = encoder.token_embedding.weight.device
    tokens = tokenize([" ".join(["X"] * n_ctx) + " " + name + "." for name in H.class_names(n_cls)]).to(device)
    with torch.no_grad():
        base = embed_tokens(encoder, tokens)
    return {"tokens": tokens, "eot": eot_positions(tokens), "sos": base[0, :1], "suffix": base[:, 1 + n_ctx:],
            "ctx": torch.nn.Parameter(base[0, 1:1 + n_ctx].float().clone()), "n_cls": n_cls}


def way_fn(encoder: TextEncoder, case: Dict[str, Any], way: str, buckets: int) -> Callable[[], torch.Tensor]:
    """A closure running one way's forward: class features [C, E]."""
    sos, ctx, suffix, tokens, eot = case["sos"], case["ctx"], case["suffix"], case["tokens"], case["eot"]

    def full() -> torch.Tensor:
        return torch.cat([sos.expand(case["n_cls"], -1, -1), ctx.to(sos.dtype).expand(case["n_cls"], -1, -1),
                          suffix], dim=1)

    def run() -> torch.Tensor:
        encoder.length_buckets = buckets if way == "buckets" else 1
        if way == "reference":
            return encoder(full(), tokens, reference=True)
        if way == "truncated":
            return encoder(full(), tokens)
        return encoder.encode_prefixed(torch.cat([sos, ctx.to(sos.dtype)]), suffix, eot)

    return run


def time_step(fn: Callable[[], torch.Tensor], ctx: torch.nn.Parameter, device: torch.device) -> float:
    """Milliseconds of one forward + backward to the context."""
    ctx.grad = None
    _sync(device)
    start = time.perf_counter()
    fn().float().pow(2).sum().backward()
    _sync(device)
    return 1e3 * (time.perf_counter() - start)


def cosine_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a / a.norm(dim=-1, keepdim=True) - b / b.norm(dim=-1, keepdim=True)).abs().max())


def run_classes(encoder: TextEncoder, n_cls: int, args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    case = prompt_case(encoder, n_cls, args.n_ctx)
    labels = [(w, b) for w in args.ways for b in (args.buckets if w == "buckets" else [1])]
    fns = {label: way_fn(encoder, case, *label) for label in labels}
    with torch.no_grad():
        outputs = {label: fn() for label, fn in fns.items()}
    anchor_label = ("reference", 1) if ("reference", 1) in outputs else labels[0]
    anchor = outputs[anchor_label]
    times: Dict[Any, List[float]] = {label: [] for label in labels}
    for round_ in range(args.repeats + 1):  # round 0 warms up and is not kept
        for label, fn in fns.items():
            ms = time_step(fn, case["ctx"], device)
            if round_:
                times[label].append(ms)
    encoder.length_buckets = 1
    rows = []
    for label in labels:
        way, buckets = label
        rows.append({"way": way, "buckets": buckets if way == "buckets" else None,
                     "median_ms": statistics.median(times[label]), "all_ms": times[label],
                     "max_cos_diff": cosine_gap(outputs[label], anchor)})
    eot = case["eot"].tolist()
    return {"classes": n_cls, "longest_prompt": max(eot) + 1, "mean_prompt": sum(eot) / len(eot) + 1,
            "compared_with": anchor_label[0], "rows": rows}


def render(result: Dict[str, Any]) -> str:
    env = result["environment"]
    device = env.get("gpu") or f"CPU ({env.get('cpu_count')} cores)"
    lines = [f"Text core, {result['arch']}, {result['prec']} weights, forward + backward to a {result['n_ctx']}-token "
             f"context, median of {result['repeats']} interleaved rounds, on **{device}** (torch {env['torch']}).", "",
             "| C | way | max buckets | ms | × vs reference | × vs truncated | max Δcos (vs) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for case in result["cases"]:
        by_way = {r["way"]: r["median_ms"] for r in case["rows"] if r["way"] != "buckets"}
        for r in case["rows"]:
            ms = r["median_ms"]
            speedups = [f"{base / ms:.2f}×" if base else "–" for base in (by_way.get("reference"),
                                                                         by_way.get("truncated"))]
            lines.append(f"| {case['classes']} | {r['way']} | {r['buckets'] or '–'} | {ms:.1f} | {speedups[0]} | "
                         f"{speedups[1]} | {r['max_cos_diff']:.1e} ({case['compared_with']}) |")
    lines.append("")
    lines.append("Prompt lengths (SOS to EOT): " + "; ".join(
        f"C = {c['classes']}: longest {c['longest_prompt']}, mean {c['mean_prompt']:.1f}" for c in result["cases"]))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    prec = args.prec or ("fp16" if device.type == "cuda" else "fp32")
    model = H.random_clip(args.arch, device)
    model = (model.float() if prec == "fp32" else model).to(device)
    encoder = TextEncoder(model)
    cases = [run_classes(encoder, n, args, device) for n in args.classes]
    result = {"arch": args.arch, "prec": prec, "n_ctx": args.n_ctx, "repeats": args.repeats,
              "environment": H.environment(device), "cases": cases}
    print(render(result))
    if args.out:
        from dasslite.utils.io import write_json_atomic
        write_json_atomic(args.out, result)
        print(f"Results written to {args.out}")
    tolerance = H.TOLERANCE[prec]
    bad = [(c["classes"], r["way"]) for c in cases for r in c["rows"] if not r["max_cos_diff"] <= tolerance]
    for n_cls, way in bad:
        print(f"FAILED C={n_cls} {way}: features differ from the reference by more than {tolerance}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
