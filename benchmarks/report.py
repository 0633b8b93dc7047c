"""Results of ``bench_trainers.py`` as markdown: one table per backbone, then the issues' targets, checked
(issue 4's speed-up and memory targets, then MoCoOp's two ratios: evaluation vs zero-shot CLIP, training step vs
CoOp's)."""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional

# The targets (H100 or similar, ViT-B/16).
EVAL_VS_ZEROSHOT = ("CoOp", "KgCoOp", "LASP")  # eval images/s >= 0.9x zero-shot CLIP's
EVAL_VS_ZEROSHOT_MIN = 0.9
TEXT_BOUND_TRAINING = {"CoOp": (1000,), "CoCoOp": None, "MoCoOp": None}  # None: every C measured
TRAIN_SPEEDUP_MIN = 3.0
COCOOP_MEMORY = {"trainer": "CoCoOp", "batch": 32, "classes": 100, "max_gib": 24.0}
TARGET_ARCH = "ViT-B/16"
# MoCoOp's targets, each a ratio within one run (same GPU, backbone and C): evaluation images/s >= 0.9x zero-shot
# CLIP's, and a training step at batch 32 <= 1.5x a CoOp step.
MOCOOP = "MoCoOp"
MOCOOP_EVAL_VS_ZEROSHOT_MIN = 0.9
MOCOOP_STEP_VS_COOP_MAX = 1.5
MOCOOP_STEP_BATCH = 32
MOCOOP_GROUP = "MoCoOp"

# FSMoE's targets (issue 9), in the general table: fast vs reference training >= 5x, and a training step <= 1.3x a
# CoCoOp step, both at C = 100 and batch 8.
FSMOE = "FSMoE"
FSMOE_TRAIN_SPEEDUP_MIN = 5.0
FSMOE_STEP_VS_COCOOP_MAX = 1.3
FSMOE_CASE = {"classes": 100, "batch": 8}

RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"


def _phase(entry: Dict[str, Any], path: str, phase: str) -> Optional[Dict[str, Any]]:
    return ((entry.get(path) or {}).get(phase)) or None


def _value(entry: Dict[str, Any], path: str, phase: str, key: str) -> Optional[float]:
    data = _phase(entry, path, phase)
    return None if data is None else data.get(key)


def _number(value: float, fmt: str) -> str:
    """``fmt``, or three significant digits for small speeds/times (a slow reference must not read 0.0)."""
    if fmt == "auto":
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"
    return format(value, fmt)


def _cell(entry: Dict[str, Any], path: str, phase: str, key: str, fmt: str) -> str:
    """A number, or why there is none (OOM, error, not run)."""
    value = _value(entry, path, phase, key)
    if value is not None:
        return _number(value, fmt)
    error = ((entry.get(path) or {}).get("errors") or {}).get(phase)
    if error:
        return "OOM" if error.startswith("out of memory") else "error"
    return "–"


def _pair(entry: Dict[str, Any], phase: str, key: str, fmt: str) -> str:
    return f"{_cell(entry, 'fast', phase, key, fmt)} / {_cell(entry, 'reference', phase, key, fmt)}"


def _ratio(value: Optional[float]) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.2f}×"


def _agree(entry: Dict[str, Any]) -> str:
    agreement = entry.get("agreement")
    if not agreement:
        return "–"
    mark = "yes" if agreement.get("agree") else "**NO**"
    return f"{mark} ({agreement['max_cos_diff']:.1e})"


def experts_text(entry: Dict[str, Any]) -> str:
    """``"20 experts, 20 per step"`` for a mixture of prompt experts ("" otherwise); "(router)" when the
    random-weight router chose them (``--mocoop-routing router``)."""
    if not entry.get("experts"):
        return ""
    text = f"{entry['experts']} experts"
    if entry.get("experts_per_step") is not None:
        text += f", {entry['experts_per_step']} per step"
    return text + (" (router)" if entry.get("routing") == "router" else "")


def _trainer(entry: Dict[str, Any]) -> str:
    experts = experts_text(entry)
    return entry["trainer"] + (f" ({experts})" if experts else "")


def results_table(entries: List[Dict[str, Any]]) -> List[str]:
    lines = ["| trainer | C | prec fast / ref | train step ms fast / ref | train img/s fast / ref | train × "
             "| step ÷ CoOp | train peak GiB fast / ref | eval img/s fast / ref | eval × | eval ÷ ZS "
             "| logits agree (max Δcos) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for e in entries:
        prec = f"{(e.get('fast') or {}).get('prec', '–')} / {(e.get('reference') or {}).get('prec', '–')}"
        lines.append(" | ".join([
            f"| {_trainer(e)}", str(e["classes"]), prec,
            _pair(e, "train", "step_ms", "auto"), _pair(e, "train", "images_per_s", "auto"),
            _ratio((e.get("speedup") or {}).get("train")), _ratio(e.get("train_step_vs_coop")),
            _pair(e, "train", "peak_mem_gib", ".2f"), _pair(e, "eval", "images_per_s", "auto"),
            _ratio((e.get("speedup") or {}).get("eval")), _ratio(e.get("eval_vs_zeroshot")), _agree(e)]) + " |")
    return lines


def _not_measured(entry: Dict[str, Any], phase: str, baseline: str) -> str:
    mine = _cell(entry, "fast", phase, "images_per_s", "auto")
    if mine in ("OOM", "error"):
        return f"not measured (MoCoOp {phase}: {mine})"
    return f"not measured (no {baseline} {phase} result in this run)"


def mocoop_targets(e: Dict[str, Any]) -> List[Dict[str, Any]]:
    """MoCoOp's two ratios for one MoCoOp entry, each against its target (``met`` None: not measured, or the run
    is not the target's setting, e.g. a training batch other than 32)."""
    experts = experts_text(e)
    where = f"{e['trainer']} {e['arch']} C={e['classes']} batch {e['batch']}" + (f", {experts}" if experts else "")
    rows = []
    ratio, ours = e.get("eval_vs_zeroshot"), _value(e, "fast", "eval", "images_per_s")
    if ratio is not None and ours:
        row = {"value": f"{ratio:.2f}x ({_number(ours, 'auto')} vs {_number(ours / ratio, 'auto')} img/s)",
               "met": ratio >= MOCOOP_EVAL_VS_ZEROSHOT_MIN}
    else:
        row = {"value": _not_measured(e, "eval", "zero-shot CLIP"), "met": None}
    rows.append({"target": f"MoCoOp eval images/s >= {MOCOOP_EVAL_VS_ZEROSHOT_MIN}x zero-shot CLIP's",
                 "case": where, "arch": e["arch"], "group": MOCOOP_GROUP, **row})
    ratio, ours = e.get("train_step_vs_coop"), _value(e, "fast", "train", "step_ms")
    if ratio is not None and ours:
        met = ratio <= MOCOOP_STEP_VS_COOP_MAX if e["batch"] == MOCOOP_STEP_BATCH else None
        note = "" if met is not None else f"; the target is for batch {MOCOOP_STEP_BATCH}"
        row = {"value": f"{ratio:.2f}x ({_number(ours, 'auto')} vs {_number(ours / ratio, 'auto')} ms{note})",
               "met": met}
    else:
        row = {"value": _not_measured(e, "train", "CoOp"), "met": None}
    rows.append({"target": f"MoCoOp training step <= {MOCOOP_STEP_VS_COOP_MAX}x a CoOp step (batch "
                           f"{MOCOOP_STEP_BATCH}, same C)", "case": where, "arch": e["arch"], "group": MOCOOP_GROUP,
                 **row})
    ratio = e.get("train_step_vs_lasp")
    if ratio is not None and ours:  # what the mixture costs over the recipe it builds on (no target: context)
        rows.append({"target": "for context: MoCoOp training step vs a LASP step (same ViT LayerNorm tuning and "
                               "text loss, one prompt)", "case": where, "arch": e["arch"], "group": MOCOOP_GROUP,
                     "value": f"{ratio:.2f}x ({_number(ours, 'auto')} vs {_number(ours / ratio, 'auto')} ms)",
                     "met": None, "info": True})
    return rows


def fsmoe_targets(e: Dict[str, Any]) -> List[Dict[str, Any]]:
    """FSMoE's two ratios for one FSMoE entry (``met`` None: not measured, or not the target's C and batch)."""
    where = f"{e['trainer']} {e['arch']} C={e['classes']} batch {e['batch']}"
    setting = e["classes"] == FSMOE_CASE["classes"] and e["batch"] == FSMOE_CASE["batch"]
    note = "" if setting else f" (the target is for C = {FSMOE_CASE['classes']}, batch {FSMOE_CASE['batch']})"
    speedup, ratio = (e.get("speedup") or {}).get("train"), e.get("train_step_vs_cocoop")
    return [{"target": f"FSMoE training images/s >= {FSMOE_TRAIN_SPEEDUP_MIN:g}x its per-image 77-token reference",
             "case": where, "arch": e["arch"],
             "value": "not measured" if speedup is None else f"{speedup:.2f}x{note}",
             "met": None if speedup is None or not setting else speedup >= FSMOE_TRAIN_SPEEDUP_MIN},
            {"target": f"FSMoE training step <= {FSMOE_STEP_VS_COCOOP_MAX:g}x a CoCoOp step (same C and batch)",
             "case": where, "arch": e["arch"],
             "value": "not measured (no CoCoOp step in this run)" if ratio is None else f"{ratio:.2f}x{note}",
             "met": None if ratio is None or not setting else ratio <= FSMOE_STEP_VS_COCOOP_MAX}]


def check_targets(entries: Iterable[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Each of the issues' targets that the results can speak to: the measured value and whether it is met
    (``met`` None: not decidable, e.g. the reference ran out of memory). MoCoOp's two ratios have ``group``
    ``"MoCoOp"``; the others are issue 4's."""
    rows: List[Dict[str, Any]] = []
    for e in entries:
        if e["trainer"] == MOCOOP:
            rows += mocoop_targets(e)
        if e["trainer"] == FSMOE:
            rows += fsmoe_targets(e)
        where = f"{e['trainer']} {e['arch']} C={e['classes']} batch {e['batch']}"
        if e["trainer"] in EVAL_VS_ZEROSHOT and e.get("eval_vs_zeroshot") is not None:
            value = e["eval_vs_zeroshot"]
            rows.append({"target": f"eval images/s >= {EVAL_VS_ZEROSHOT_MIN}x zero-shot CLIP", "case": where,
                         "arch": e["arch"], "value": f"{value:.2f}x", "met": value >= EVAL_VS_ZEROSHOT_MIN})
        classes = TEXT_BOUND_TRAINING.get(e["trainer"], ())
        if classes is None or e["classes"] in (classes or ()):
            speedup = (e.get("speedup") or {}).get("train")
            ref_error = ((e.get("reference") or {}).get("errors") or {}).get("train") or ""
            fast_ok = _value(e, "fast", "train", "images_per_s") is not None
            if speedup is not None:
                row = {"value": f"{speedup:.2f}x", "met": speedup >= TRAIN_SPEEDUP_MIN}
            elif fast_ok and ref_error.startswith("out of memory"):
                row = {"value": "reference out of memory", "met": None}
            else:
                row = {"value": "not measured", "met": None}
            rows.append({"target": f"training images/s >= {TRAIN_SPEEDUP_MIN:g}x the reference path", "case": where,
                         "arch": e["arch"], **row})
        if (e["trainer"] == COCOOP_MEMORY["trainer"] and e["batch"] == COCOOP_MEMORY["batch"]
                and e["classes"] == COCOOP_MEMORY["classes"]):
            peak = _value(e, "fast", "train", "peak_mem_gib")
            ref_peak = _value(e, "reference", "train", "peak_mem_gib")
            ref_text = f"{ref_peak:.1f} GiB" if ref_peak is not None else _cell(e, "reference", "train",
                                                                                 "peak_mem_gib", ".1f")
            rows.append({"target": f"training peak memory <= {COCOOP_MEMORY['max_gib']:g} GiB", "case": where,
                         "arch": e["arch"],
                         "value": ("not measured" if peak is None else f"{peak:.1f} GiB") + f" (reference {ref_text})",
                         "met": None if peak is None else peak <= COCOOP_MEMORY["max_gib"]})
    return rows


def render(runs: List[Dict[str, Any]]) -> str:
    """Markdown for one or more result files (e.g. one per backbone) of the same machine."""
    lines: List[str] = []
    for run in runs:
        meta = run["meta"]
        env = meta["environment"]
        device = env.get("gpu") or f"CPU ({env.get('cpu_count')} cores)"
        smoke = " (smoke mode: timings mean nothing)" if meta["smoke"] else ""
        lines += [f"Measured {meta['finished_at']} on **{device}**, torch {env['torch']} (CUDA {env['cuda']}), "
                  f"cuDNN {env['cudnn']}, Python {env['python']}{smoke}.",
                  f"Command: `{meta['command']}`", ""]
        if meta.get("complete") is False:
            lines += [f"**Incomplete run**: it stopped after {len(run['results'])} cases (killed or interrupted); "
                      "the cases below are all it measured.", ""]
        for arch in dict.fromkeys(e["arch"] for e in run["results"]):
            entries = [e for e in run["results"] if e["arch"] == arch]
            batch = entries[0]["batch"]
            eval_batch = (_phase(entries[0], "fast", "eval") or {}).get("batch", "–")
            lines += [f"### {arch}: train batch {batch}, eval batch {eval_batch}", ""] + results_table(entries) + [""]
        for skipped in run.get("skipped", []):
            lines.append(f"- {skipped['trainer']}: skipped ({skipped['reason']})")
        if run.get("skipped"):
            lines.append("")
    rows = [row for run in runs for row in check_targets(run["results"])]
    general = [row for row in rows if row.get("group") != MOCOOP_GROUP]
    if general:
        lines += ["### Targets (issue 4; they are stated for " + TARGET_ARCH + ")", "",
                  "| target | case | measured | met |", "|---|---|---|---|"]
        for row in general:
            met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
            lines.append(f"| {row['target']} | {row['case']} | {row['value']} | {met} |")
        lines.append("")
    mocoop = [row for row in rows if row.get("group") == MOCOOP_GROUP]
    if mocoop:
        lines += [f"### MoCoOp targets (ratios within one run; stated for {TARGET_ARCH})", "",
                  "| target | case | measured (MoCoOp vs baseline) | result |", "|---|---|---|---|"]
        for row in mocoop:
            lines.append(f"| {row['target']} | {row['case']} | {row['value']} | {_verdict(row)} |")
        lines.append("")
    return "\n".join(lines)


def _verdict(row: Dict[str, Any]) -> str:
    return "info" if row.get("info") else {True: "PASS", False: "**FAIL**", None: "n/a"}[row["met"]]


def target_lines(rows: Iterable[Dict[str, Any]]) -> List[str]:
    """The targets as plain text, one line each (printed at the end of a run): PASS / FAIL / n/a first."""
    return [f"{_verdict(row).strip('*'):4}  {row['target']}: {row['case']}: {row['value']}" for row in rows]


def replace_results_section(readme_text: str, markdown: str) -> str:
    """``readme_text`` with everything between the results markers replaced by ``markdown``."""
    start, end = readme_text.find(RESULTS_START), readme_text.find(RESULTS_END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {RESULTS_START} ... {RESULTS_END} section")
    return readme_text[:start + len(RESULTS_START)] + "\n" + markdown.rstrip() + "\n" + readme_text[end:]
