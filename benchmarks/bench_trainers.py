"""Train/eval speed and memory of every prompt-learning trainer, next to a straightforward reference path.

For each trainer, backbone and class count: a random-weight CLIP at the real size (random weights have the real
speed), synthetic images, labels and class names, and the trainer built and run by its own code (see
``benchmarks/harness.py``). The same case then runs on the reference path (77-token text encoding through CLIP's
own blocks, no class-feature cache, a per-image loop for instance-conditioned trainers, every expert encoded for
MoCoOp, fp16 weights), in the same process, so every speed-up is a ratio measured on one machine; the two paths'
logits are compared. Ratios between trainers of one run (eval vs zero-shot CLIP, training step vs CoOp) and the
issues' targets are printed at the end.

    bash benchmarks/gpu_run.sh                             # the GPU run: every trainer at ViT-B/16, README updated
    python benchmarks/bench_trainers.py --arch ViT-B/16 --out benchmarks/results/vit_b16.json --markdown
    python benchmarks/bench_trainers.py --smoke            # CPU, tiny CLIP: runs every registered trainer, checks
                                                           # that fast and reference outputs agree (not speed)
    python benchmarks/bench_trainers.py --report a.json b.json [--update-readme benchmarks/README.md]
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as a script: make the repository root importable (trainers/, benchmarks/)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from benchmarks import harness as H  # noqa: E402
from benchmarks import report  # noqa: E402

# The baselines of the ratios first, CoCoOp and FSMoE (the slowest reference paths) last: a run cut short keeps the
# most.
DEFAULT_TRAINERS = ["ZeroshotCLIP", "CoOp", "MoCoOp", "LASP", "KgCoOp", "CoCoOp", "FSMoE"]
ZEROSHOT = "ZeroshotCLIP"
COOP = "CoOp"
LASP = "LASP"
COCOOP = "CoCoOp"  # FSMoE's step ratio baseline
SMOKE = dict(arch=["tiny"], classes=[6], batch=4, steps=1, warmup=1, eval_batch=8, eval_batches=2, device="cpu",
             prec="fp32", ref_prec="fp32", trainers=["all"], max_case_s=10.0)
FULL = dict(arch=["ViT-B/16", "ViT-L/14"], classes=[100, 1000], batch=32, steps=10, warmup=3, eval_batch=100,
            eval_batches=10, device=None, prec=None, ref_prec=None, trainers=DEFAULT_TRAINERS, max_case_s=30.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", nargs="+", type=H.arch_arg, help="backbones: " + ", ".join(H.ARCHS) + ", or "
                   "open_clip:ARCH (random weights) / open_clip:ARCH/PRETRAINED (default: ViT-B/16 ViT-L/14)")
    p.add_argument("--classes", nargs="+", type=int, help="class counts C (default: 100 1000)")
    p.add_argument("--trainers", nargs="+", help=f"trainer names, or 'all' registered prompt trainers (default: "
                                                 f"{' '.join(DEFAULT_TRAINERS)}; unregistered ones are skipped)")
    p.add_argument("--batch", type=int, help="training batch size (default: 32)")
    p.add_argument("--steps", type=int, help="timed training steps per case (default: 10)")
    p.add_argument("--warmup", type=int, help="untimed training steps first (default: 3)")
    p.add_argument("--eval-batch", type=int, help="test batch size (default: 100, the recipes' TEST.BATCH_SIZE)")
    p.add_argument("--eval-batches", type=int, help="timed test batches per case (default: 10)")
    p.add_argument("--max-case-s", type=float, help="stop timing a phase after this many seconds, keeping the steps "
                                                    "done (default: 30)")
    p.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available")
    p.add_argument("--prec", choices=["fp16", "fp32", "amp", "bf16"],
                   help="fast path precision (default: each trainer's recipe on CUDA, fp32 on CPU)")
    p.add_argument("--ref-prec", choices=["fp16", "fp32", "amp", "bf16"],
                   help="reference path precision (default: fp16 on CUDA, fp32 on CPU)")
    p.add_argument("--config", action="append", default=[], metavar="TRAINER=YAML",
                   help="recipe for a trainer (default: its configs/trainers/<T>/vit_b16*ctxv1.yaml or shortest)")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY VALUE", help="config overrides for every trainer")
    p.add_argument("--mocoop-routing", choices=["spread", "router"], default="spread",
                   help="MoCoOp's routing in the benchmark: spread (default) sends image b to experts (b*k+j) mod "
                        "E, so a batch uses min(E, B*k) experts as a trained router spreading it would; router keeps "
                        "the random-weight router's choice (every synthetic image picks the same k experts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="CPU, tiny CLIP, few classes, 1 step: does it run, do the "
                                                        "paths agree (CI)")
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--markdown", action="store_true", help="print the markdown table at the end")
    p.add_argument("--report", nargs="+", metavar="JSON", help="only render result files (no run)")
    p.add_argument("--update-readme", metavar="README", help="with --report (or a run): put the markdown between the "
                                                              "results markers of this file")
    p.add_argument("--verbose", action="store_true", help="show the trainers' own build/test output")
    return p


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset options from the smoke or full defaults."""
    defaults = SMOKE if args.smoke else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.prec is None and args.device == "cpu":
        args.prec = "fp32"
    if args.ref_prec is None:
        args.ref_prec = "fp16" if args.device == "cuda" else "fp32"
    return args


def select_trainers(wanted: Sequence[str]):
    """(name, class) of each wanted trainer that is registered, and the skipped names with the reason."""
    import trainers  # noqa: F401  (registers every trainer module present)
    from dasslite.compat import TRAINER_REGISTRY

    registered = H.prompt_trainer_names(TRAINER_REGISTRY)
    names = registered if list(wanted) == ["all"] else list(dict.fromkeys(wanted))
    chosen, skipped = [], []
    for name in names:
        if name in registered:
            chosen.append((name, TRAINER_REGISTRY.get(name)))
        else:
            skipped.append({"trainer": name, "reason": "not registered (yet)"})
            print(f"Note: trainer {name} is not registered (yet): skipped")
    return chosen, skipped


def config_files(pairs: Sequence[str]) -> Dict[str, str]:
    files = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not path:
            raise SystemExit(f"--config {pair!r}: expected TRAINER=path/to/recipe.yaml")
        if not os.path.isfile(path):
            raise SystemExit(f"--config {pair!r}: no file {path}")
        files[name] = path
    return files


def synthetic_batch(n: int, n_cls: int, resolution: int, device: torch.device, seed: int):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, resolution, resolution, generator=generator)
    labels = torch.randint(0, n_cls, (n,), generator=generator)
    return images.to(device), labels.to(device)


def run_path(path: str, cls, arch: str, n_cls: int, args, config_file: Optional[str],
             master: torch.nn.Module, device: torch.device, data) -> Dict[str, Any]:
    """One trainer on one path (fast or reference): build, agreement probe, training, evaluation."""
    (train_x, train_y), (eval_x, eval_y), (probe_x, probe_y) = data
    prec = args.prec if path == "fast" else args.ref_prec
    out: Dict[str, Any] = {"errors": {}, "notes": []}
    cfg, error = H.guarded(H.build_cfg, cls, arch, config_file, prec, args.batch, args.eval_batch, args.opts,
                           n_cls=n_cls)
    if error:
        out["errors"]["build"] = error
        return out
    node = getattr(cls, "CFG_NODE", "")
    out["prec"] = cfg.TRAINER[node].PREC if node else prec
    torch.manual_seed(args.seed)
    trainer, error = H.guarded(H.build_trainer, cls, cfg, master, H.class_names(n_cls), device, args.verbose)
    if error:
        out["errors"]["build"] = error
        return out
    out["instance_conditioned"] = H.is_instance_conditioned(trainer.model)
    out["trainable_params"] = H.trainable_parameters(trainer)
    out["logit_scale"] = H.logit_scale_of(trainer.model)
    experts = getattr(getattr(trainer.model, "prompt_learner", None), "num_experts", None)
    if experts is not None:  # a mixture of prompt experts (MoCoOp): how many, whose, how routed, how many per step
        out["experts"] = int(experts)
        out["template_groups"] = trainer.method_cfg.get("TEMPLATE_GROUPS") or cfg.DATASET.NAME
        out["routing"] = "spread" if args.mocoop_routing == "spread" and H.spread_routing(trainer.model) else "router"
        out["experts_per_step"], error = H.guarded(H.experts_per_step, trainer, train_x)
        if error:
            out["errors"]["build"] = error
            return out
    state = None
    if path == "reference":
        switched, error = H.guarded(H.use_reference_path, trainer, out["instance_conditioned"])
        if error:
            out["errors"]["build"] = error
            return out
        state = switched.pop("_state")
        out["switched"] = switched
        if switched.get("every_expert_in_training"):
            out["notes"].append("every expert encoded in training (the authors' code): the text loss covers all "
                                "experts, the fast path's only the selected ones, so first-step losses differ by it")
        if not switched["text_encoders_switched"]:
            out["notes"].append("no TextEncoder in the model: text encoding not switched to the reference path")
    probe, error = H.guarded(H.probe_logits, trainer, probe_x, probe_y, args.verbose)
    out["probe"] = probe
    if error:
        out["errors"]["probe"] = error
    if out["trainable_params"]:
        out["train"], error = H.guarded(H.measure_train, trainer, train_x, train_y, args.warmup, args.steps,
                                        args.max_case_s, args.seed)
        if error:
            out["errors"]["train"] = error
            trainer.model.zero_grad(set_to_none=True)
            H.free_memory(device)
    else:
        out["notes"].append("no trainable parameters: evaluation only")
    out["eval"], error = H.guarded(H.measure_eval, trainer, eval_x, eval_y, args.eval_batches, args.max_case_s,
                                   args.verbose)
    if error:
        out["errors"]["eval"] = error
    if state is not None and out["instance_conditioned"]:
        out["notes"] += state.notes
        if out.get("train") and not state.train_loops:
            out["notes"].append("per-image loop not applied in training (the trainer does not call "
                                "model.forward_train)")
        if out.get("eval") and not state.eval_loops:
            out["notes"].append("per-image loop not applied in evaluation (the trainer does not call "
                                "model_inference)")
    del trainer
    H.free_memory(device)
    return out


def run_case(name: str, cls, arch: str, n_cls: int, args, config_file: Optional[str], master: torch.nn.Module,
             device: torch.device) -> Dict[str, Any]:
    resolution = H.arch_resolution(arch)
    train = synthetic_batch(args.batch, n_cls, resolution, device, args.seed + 1)
    evaluation = synthetic_batch(args.eval_batch, n_cls, resolution, device, args.seed + 2)
    n_probe = min(8, args.eval_batch)
    probe = (evaluation[0][:n_probe], evaluation[1][:n_probe])
    entry: Dict[str, Any] = {"trainer": name, "arch": arch, "classes": n_cls, "batch": args.batch,
                             "config": os.path.relpath(config_file, H.REPO_ROOT) if config_file else None}
    for path in ("fast", "reference"):
        entry[path] = run_path(path, cls, arch, n_cls, args, config_file, master, device,
                               (train, evaluation, probe))
    fast, ref = entry["fast"], entry["reference"]
    entry["instance_conditioned"] = fast.get("instance_conditioned")
    if fast.get("experts") is not None:
        for key in ("experts", "template_groups", "routing", "experts_per_step"):
            entry[key] = fast.get(key)
    entry["speedup"] = {phase: _ratio(fast, ref, phase) for phase in ("train", "eval")}
    fast_probe, ref_probe = fast.pop("probe", None), ref.pop("probe", None)
    ref.pop("logit_scale", None)
    if fast_probe is not None and ref_probe is not None:
        tolerance = max(H.TOLERANCE.get(fast.get("prec"), 1e-2), H.TOLERANCE.get(ref.get("prec"), 1e-2))
        entry["agreement"] = H.compare_logits(fast_probe, ref_probe, fast.get("logit_scale", 1.0), tolerance)
        if fast.get("train") and ref.get("train"):
            entry["agreement"]["first_loss_diff"] = abs(fast["train"]["first_loss"] - ref["train"]["first_loss"])
            parts = fast["train"].get("first_losses", {}), ref["train"].get("first_losses", {})
            if parts[0] and parts[1]:  # each loss term of a multi-loss trainer
                entry["agreement"]["first_loss_term_diffs"] = {k: abs(parts[0][k] - parts[1][k])
                                                               for k in parts[0] if k in parts[1]}
        entry["outputs_agree"] = entry["agreement"]["agree"]
    else:
        entry["agreement"], entry["outputs_agree"] = None, None
    entry["error"] = "; ".join(f"{path} {phase}: {msg}" for path in ("fast", "reference")
                               for phase, msg in entry[path]["errors"].items()) or None
    return entry


def _ratio(fast: Dict[str, Any], ref: Dict[str, Any], phase: str) -> Optional[float]:
    a, b = (fast.get(phase) or {}).get("images_per_s"), (ref.get(phase) or {}).get("images_per_s")
    return a / b if a and b else None


def add_zeroshot_ratios(entries: List[Dict[str, Any]]) -> None:
    """``eval_vs_zeroshot``: a trainer's fast eval images/s over zero-shot CLIP's, same backbone and C."""
    zeroshot = {(e["arch"], e["classes"]): (e["fast"].get("eval") or {}).get("images_per_s")
                for e in entries if e["trainer"] == ZEROSHOT}
    for e in entries:
        ours, base = (e["fast"].get("eval") or {}).get("images_per_s"), zeroshot.get((e["arch"], e["classes"]))
        e["eval_vs_zeroshot"] = ours / base if ours and base else None


def add_step_ratios(entries: List[Dict[str, Any]]) -> None:
    """``train_step_vs_coop`` / ``train_step_vs_lasp``: a trainer's fast training step time over CoOp's / LASP's
    (MoCoOp's base recipe: the same ViT LayerNorm tuning and text loss), same backbone, C and batch."""
    for baseline, key in ((COOP, "train_step_vs_coop"), (LASP, "train_step_vs_lasp"),
                          (COCOOP, "train_step_vs_cocoop")):
        steps = {(e["arch"], e["classes"], e["batch"]): (e["fast"].get("train") or {}).get("step_ms")
                 for e in entries if e["trainer"] == baseline}
        for e in entries:
            ours, base = (e["fast"].get("train") or {}).get("step_ms"), steps.get((e["arch"], e["classes"], e["batch"]))
            e[key] = ours / base if ours and base else None


def summary_line(e: Dict[str, Any]) -> str:
    def num(path: str, phase: str, key: str, fmt: str) -> str:
        return report._cell(e, path, phase, key, fmt)

    agree = e.get("agreement") or {}
    experts = f", {report.experts_text(e)}" if e.get("experts") else ""
    return (f"[{e['trainer']} {e['arch']} C={e['classes']}{experts}] train img/s "
            f"{num('fast', 'train', 'images_per_s', '.1f')} vs ref {num('reference', 'train', 'images_per_s', '.1f')}"
            f", eval img/s {num('fast', 'eval', 'images_per_s', '.1f')} vs ref "
            f"{num('reference', 'eval', 'images_per_s', '.1f')}, peak GiB {num('fast', 'train', 'peak_mem_gib', '.2f')}"
            f" vs {num('reference', 'train', 'peak_mem_gib', '.2f')}"
            f", agree {agree.get('agree')} (max dcos {agree.get('max_cos_diff', float('nan')):.1e})"
            + (f"  ERROR {e['error']}" if e.get("error") else ""))


def run(args: argparse.Namespace, after_case: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """Every case of ``args``; ``after_case`` gets the results so far (``meta.complete`` False) after each one, so
    a run that is killed (a device slot running out) still leaves what it measured."""
    started = time.time()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train.py
    chosen, skipped = select_trainers(args.trainers)
    files = config_files(args.config)
    entries: List[Dict[str, Any]] = []
    for arch in args.arch:
        t0 = time.perf_counter()
        master = H.random_clip(arch, device, seed=args.seed)
        print(f"Random-weight CLIP {arch}: built in {time.perf_counter() - t0:.1f} s")
        for name, cls in chosen:
            config_file = files.get(name) or H.default_config_file(name)
            for n_cls in args.classes:
                entry = run_case(name, cls, arch, n_cls, args, config_file, master, device)
                entries.append(entry)
                print(summary_line(entry), flush=True)
                if after_case is not None:
                    after_case(_result(args, device, entries, skipped, started, complete=False))
        del master
        H.free_memory(device)
    return _result(args, device, entries, skipped, started, complete=True)


def _result(args: argparse.Namespace, device: torch.device, entries: List[Dict[str, Any]],
            skipped: List[Dict[str, str]], started: float, complete: bool) -> Dict[str, Any]:
    add_zeroshot_ratios(entries)
    add_step_ratios(entries)
    return {"meta": {"command": "python benchmarks/bench_trainers.py " + " ".join(map(shlex.quote, sys.argv[1:])),
                     "smoke": bool(args.smoke), "environment": H.environment(device),
                     "args": {k: v for k, v in vars(args).items() if k not in ("report",)},
                     "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"), "elapsed_s": time.time() - started,
                     "complete": complete},
            "results": entries, "skipped": skipped, "targets": report.check_targets(entries)}


def failures(result: Dict[str, Any], strict: bool) -> List[str]:
    """Cases that went wrong: disagreeing outputs, and errors (in ``strict`` mode also out-of-memory ones)."""
    bad = []
    for e in result["results"]:
        where = f"{e['trainer']} {e['arch']} C={e['classes']}"
        if e.get("outputs_agree") is False:
            bad.append(f"{where}: fast and reference logits disagree ({e['agreement']})")
        if e.get("error") and (strict or "out of memory" not in e["error"]):
            bad.append(f"{where}: {e['error']}")
        if strict and e.get("outputs_agree") is None:
            bad.append(f"{where}: agreement not checked")
    return bad


def _write_json(path: str, data: Dict[str, Any]) -> None:
    from dasslite.utils.io import write_json_atomic

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json_atomic(path, data)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.report:
        runs = []
        for path in args.report:
            with open(path) as f:
                runs.append(json.load(f))
            add_zeroshot_ratios(runs[-1]["results"])  # derived: files from older versions get every ratio
            add_step_ratios(runs[-1]["results"])
        markdown = report.render(runs)
        print(markdown)
        if args.update_readme:
            update_readme(args.update_readme, markdown)
        return 0
    result = run(resolve(args), after_case=(lambda partial: _write_json(args.out, partial)) if args.out else None)
    if args.out:
        _write_json(args.out, result)
        print(f"Results written to {args.out}")
    markdown = report.render([result])
    if args.markdown:
        print(markdown)
    elif result["targets"]:
        print("Targets" + (" (smoke mode: timings mean nothing)" if args.smoke else "") + ":")
        for line in report.target_lines(result["targets"]):
            print("  " + line)
    if args.update_readme:
        update_readme(args.update_readme, markdown)
    bad = failures(result, strict=args.smoke)
    for line in bad:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if bad else 0


def update_readme(path: str, markdown: str) -> None:
    from dasslite.utils.io import write_text_atomic

    with open(path) as f:
        text = f.read()
    write_text_atomic(path, report.replace_results_section(text, markdown))
    print(f"Results section of {path} updated")


if __name__ == "__main__":
    sys.exit(main())
