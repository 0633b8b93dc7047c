"""Run-folder layouts of the lineage's own scripts, for sweeps that must write where those scripts wrote.

The sweep's layout is CoOp's base-to-new one (``<output>/<protocol>/<phase>/<ds>/shots_<K>/<T>/<cfg>/seed<S>``).
CoOp's ``main.sh`` and CoCoOp's ``xd_*.sh`` wrote elsewhere; ``--layout PHASE=TEMPLATE`` gives a phase its own
folder template, e.g. CoOp's few-shot runs::

    --layout 'fewshot={output}/{dataset}/{trainer}/{cfg}_{shots}shots/nctx16_cscFalse_ctpend/seed{seed}'

Placeholders: ``{output} {protocol} {phase} {dataset} {shots} {trainer} {cfg} {seed}``. A template must name
``{seed}`` (and ``{dataset}`` for the evaluation phase of xd/dg, which has one folder per target).
"""
from __future__ import annotations

import string
from typing import Dict, Iterable

PLACEHOLDERS = ("output", "protocol", "phase", "dataset", "shots", "trainer", "cfg", "seed")
# The phases of each protocol (the ``phase`` of its jobs), for --layout and --phase.
PHASES = {"base2new": ("train_base", "test_new"), "fewshot": ("fewshot",), "xd": ("train", "test"),
          "dg": ("train", "test")}


class LayoutError(ValueError):
    """A --layout or --phase value that cannot be used (the message says why and what is valid)."""


def _fields(template: str) -> set:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise LayoutError(f"--layout template {template!r} is not a valid format string: {exc}") from None


def parse_layouts(values: Iterable[str], protocol: str) -> Dict[str, str]:
    """``["PHASE=TEMPLATE", ...]`` -> ``{phase: template}``, checked against the protocol's phases."""
    layouts: Dict[str, str] = {}
    for value in values or ():
        phase, sep, template = value.partition("=")
        if not sep or phase not in PHASES[protocol]:
            raise LayoutError(f"--layout {value!r}: expected PHASE=TEMPLATE with PHASE one of "
                              f"{', '.join(PHASES[protocol])} for {protocol}")
        names = _fields(template)
        unknown = sorted(names - set(PLACEHOLDERS))
        if unknown:
            raise LayoutError(f"--layout {value!r}: unknown placeholder(s) {', '.join(unknown)}; valid: "
                              + " ".join("{" + p + "}" for p in PLACEHOLDERS))
        needed = {"seed"} | ({"dataset"} if phase == "test" else set())
        if not needed <= names:
            raise LayoutError(f"--layout {value!r} must contain " + " and ".join("{" + n + "}" for n in sorted(needed))
                              + " (one folder per run)")
        layouts[phase] = template
    return layouts


def parse_phases(values: Iterable[str], protocol: str) -> list:
    """The phases to run (default: all of the protocol's)."""
    phases = list(dict.fromkeys(values or ()))
    bad = [p for p in phases if p not in PHASES[protocol]]
    if bad:
        raise LayoutError(f"--phase {' '.join(bad)}: {protocol} has the phases {', '.join(PHASES[protocol])}")
    return phases


def format_run_dir(template: str, **fields) -> str:
    """The run folder of one job from its layout template."""
    return template.format(**{k: ("" if v is None else v) for k, v in fields.items()})
