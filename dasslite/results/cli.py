"""Results of finished runs: per-folder summaries (CoOp's ``parse_test_res.py``) and protocol tables.

Where a number comes from
    A run folder counts only when it holds a finished test. ``results.json`` is preferred: train.py writes it
    atomically after a successful test, with ``"complete": true``. Without one (real Dassl, older runs), ``log.txt``
    is parsed the way CoOp's ``parse_test_res.py`` does: the regex ``\\* <keyword>: ([\\.\\deE+-]+)%`` is matched
    only on lines after the end signal (``Finish training`` for training logs, Dassl.ProGrad's ``Finished
    training`` too; ``=> result`` for evaluation logs) and the last match wins. One- and two-decimal numbers both
    parse. A folder with neither, or whose log stops before the end signal or before the number, is *missing*: it is
    listed with the reason and never enters a mean.

Which end signal
    ``signal="train"`` / ``"test"`` force one (``--test-log`` is ``"test"``, as in CoOp). ``"auto"`` (base-to-new
    tables) reads ``eval_only: True`` from the argument dump every train.py prints: evaluation-only logs use
    ``=> result``, everything else must reach ``Finish training``. A training log that printed a validation
    ``=> result`` but never finished therefore stays missing.

Which folders are runs (tables)
    In a table, the runs of a ``<cfg>`` folder are its ``seed<N>`` sub-folders (``seed_<N>`` and ``seed-<N>`` too);
    any other sub-folder (``seed1_old``, ``backup``) is no run: it is listed under the table as ignored and never
    averaged. (``summarize``, CoOp's parser, still reads every sub-folder.) Runs of a trainer that trains must be
    trainings in its training folders (``train_base``, ``fewshot``, xd/dg ``train``): a record or log saying
    ``eval_only: True`` there is missing, and so is an evaluation of no model (empty ``model_dir``) in its evaluation
    folders. Zero-shot trainers (ZeroshotCLIP, ZeroshotCLIP2) and ``<cfg>_zeroshot`` folders (the sweep's
    ``--zero-shot`` on a trainer that trains) hold evaluations only and get tables of their own.

Statistics
    ``mean ± std`` over seeds, ``std`` being ``np.std`` (population, ddof=0) exactly as in CoOp's parser; with
    ``ci95`` the spread is ``1.96 * std / sqrt(n)`` instead.

Base-to-new tables (``output/base2new/{train_base,test_new}/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>``)
    Base is read from ``train_base`` (a training run, or an evaluation-only run for zero-shot trainers), New from
    ``test_new``. Following the CoCoOp/KgCoOp papers, H is the harmonic mean ``2BN/(B+N)`` of the *mean* Base and the
    *mean* New accuracy (not the mean of per-seed H); its ``±`` is the spread of the per-seed H over the seeds that
    have both numbers. The ``Average`` row averages the per-dataset means over the datasets that have both Base and
    New, and its H is again the harmonic mean of the two averages. The ``Seeds`` column gives how many seeds
    entered each mean (``3`` or, if Base and New differ, ``3/2``); missing runs are listed under the table.

Tables and recipes
    One table per (shots, trainer, cfg). A trainer with per-dataset recipes (``dasslite.recipes.RECIPES``: LASP,
    MoCoOp) trains each dataset with its own cfg: without ``--cfg`` the runs made with those default recipes share one
    table ("per-dataset recipes", the recipes listed under it) so that they get an Average; other cfgs keep their own.

Few-shot tables (``output/fewshot/<dataset>/shots_<K>/<Trainer>/<cfg>/seed<S>``)
    A row per dataset, a column per K (mean ± spread of the test after training on all classes), and an ``Average``
    row: the mean of the dataset means of that column (``(k/n)`` when only k of the n datasets have it).
    ``--plot FILE.png`` also draws the curves (the MoCoOp paper's Figure 3): a panel per dataset and an ``Average``
    panel, x = shots on a log2 axis, one line with markers per table (trainer, and cfg when a trainer has two),
    error bars = the spread over seeds. A missing point is left out and the line breaks there (no interpolation);
    the Average of a line is drawn only at the shot counts where it has every dataset of the figure, so its points
    always average the same datasets. Needs matplotlib (the ``plots`` extra).

Cross-dataset / domain-generalisation tables (``output/{xd,dg}/train/<source>/...`` and ``.../test/<target>/...``)
    One table per (source, shots); a row per trainer / cfg trained on the source; columns: the source (the test after
    training), each target (evaluations of that model), and ``Target avg``, the mean of the target means (``(k/n)``
    when some are missing). A target run whose results.json loaded a model trained on another source is missing.

Published numbers (``--paper``; ``dasslite/paper_results.json``)
    ``base2new --paper`` adds "Paper Base / New / H" columns: the matching method of the MoCoOp paper's Table 1
    (ZeroshotCLIP -> CLIP, CoOp, CoCoOp, LASP, KgCoOp, MoCoOp; ZeroshotCLIP2's prompt ensemble is not the paper's
    single-template CLIP, and ``<cfg>_zeroshot`` tables are no trained method's). The Average row shows the printed
    average when our average covers all eleven datasets, else the mean of the paper's rows over our datasets (marked
    †); a printed average flagged unreliable (KgCoOp's) is shown as printed, marked *. ``dg --paper`` adds a
    "<method> (paper)" row from the paper's DG table (Appendix B). The paper has no cross-dataset table, so
    ``xd --paper`` only says so.

CLI
    python -m dasslite.results summarize DIR [--test-log] [--multi-exp] [--ci95] [--keyword accuracy] [--log-only]
    python -m dasslite.results base2new [ROOT] [--dataset D ...] [--trainer T] [--cfg C] [--shots K]
                                          [--seeds S ...] [--paper] [TABLE OPTIONS]
    python -m dasslite.results fewshot [ROOT] [--dataset D ...] [--trainer T] [--cfg C] [--shots K ...]
                                         [--seeds S ...] [--plot FILE.png] [TABLE OPTIONS]
    python -m dasslite.results xd|dg [ROOT] [--source D] [--targets D ...] [--trainer T] [--cfg C] [--shots K]
                                       [--seeds S ...] [--paper] [TABLE OPTIONS]
    python -m dasslite.results compare base2new|fewshot|xd|dg [ROOT] [--trainers T ...] [--baseline T] [--paper]
                                         [--format terminal|markdown|csv|latex] [--plot FILE.png]
                                         (dasslite.results.compare)
    TABLE OPTIONS: [--ci95] [--format github|plain|...] [--csv F] [--markdown F] [--keyword K] [--log-only]
    (``python -m dasslite.results DIR`` is ``summarize DIR``; ``parse_test_res.py`` at the repository root is the
    same ``summarize`` under CoOp's name.)
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from typing import List, Optional, Sequence

from dasslite import osr_metrics
from dasslite.results import compare, osr
from dasslite.results.base2new import collect_base2new, format_base2new, write_csv, write_markdown
from dasslite.results.compare import (CSV, FORMATS, LATEX, MARKDOWN, TERMINAL, EXTRA_ADAPTERS, CompareError,
                                      adapter_for, format_all)
from dasslite.results.fewshot import collect_fewshot
from dasslite.results.grid import format_grids, write_grid_csv, write_grid_markdown
from dasslite.results.osr import DEFAULT_METRICS, METRIC_NAMES, collect_osr, format_osr
from dasslite.results.paper import load_paper
from dasslite.results.plots import PlotUnavailableError, plot_comparison, plot_fewshot, plot_osr
from dasslite.results.runs import NoResultsError
from dasslite.results.summary import format_summary, summarize, summarize_multi
from dasslite.results.transfer import collect_transfer
from dasslite.utils.io import write_text_atomic


TABLE_FORMATS = ("github", "plain", "simple", "grid", "pipe")  # tabulate formats the table commands offer


def _add_summarize_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="folder whose sub-folders are runs (seeds), or experiments with --multi-exp")
    p.add_argument("--test-log", "--test_log", dest="test_log", action="store_true",
                   help="evaluation logs: the end signal is '=> result' instead of 'Finish training'")
    p.add_argument("--multi-exp", "--multi_exp", dest="multi_exp", action="store_true",
                   help="each sub-folder is an experiment holding seed folders")
    p.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    p.add_argument("--keyword", default="accuracy", help="metric in '* <keyword>: X%%' (accuracy, error, macro_f1)")
    p.add_argument("--log-only", action="store_true", help="ignore results.json, parse log.txt only (as CoOp)")


def _add_table_args(p: argparse.ArgumentParser, protocol: str) -> None:
    p.add_argument("root", nargs="?", default=osp.join("output", protocol),
                   help=f"output/{protocol} (or output); default: %(default)s")
    p.add_argument("--trainer", default=None)
    p.add_argument("--cfg", default=None, help="only this recipe (default: all; a trainer's per-dataset default "
                                               "recipes share one table)")
    p.add_argument("--seeds", nargs="+", default=None,
                   help="only these seeds (others are ignored); '1 2' or '1,2'")
    p.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    p.add_argument("--keyword", default="accuracy")
    p.add_argument("--log-only", action="store_true", help="ignore results.json, parse log.txt only")
    p.add_argument("--format", default="github", choices=TABLE_FORMATS,
                   help="tabulate table format (default: github)")
    p.add_argument("--csv", default=None, help="also write the numbers to this CSV file")
    p.add_argument("--markdown", default=None, help="also write the tables to this Markdown file")
    if protocol in ("base2new", "xd", "dg"):
        p.add_argument("--paper", action="store_true",
                       help="put the published numbers beside ours (dasslite/paper_results.json)")
        p.add_argument("--paper-file", default=None, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dasslite.results", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_summarize_args(sub.add_parser("summarize", help="mean ± std over the runs in a folder (parse_test_res)"))
    b = sub.add_parser("base2new", help="Base / New / H table of an output/base2new tree")
    _add_table_args(b, "base2new")
    b.add_argument("--dataset", nargs="+", default=None, help="only these dataset folders")
    b.add_argument("--shots", default=None, help="K, or the folder name shots_K")
    f = sub.add_parser("fewshot", help="few-shot curves (a column per shot count) of an output/fewshot tree")
    _add_table_args(f, "fewshot")
    f.add_argument("--dataset", nargs="+", default=None, help="only these dataset folders")
    f.add_argument("--shots", nargs="+", default=None, help="only these shot counts")
    f.add_argument("--plot", default=None, metavar="FILE.png",
                   help="also draw the few-shot curves (a panel per dataset and an Average panel) into this PNG")
    for name, what in (("xd", "cross-dataset"), ("dg", "domain generalisation")):
        t = sub.add_parser(name, help=f"{what} table (source and targets) of an output/{name} tree")
        _add_table_args(t, name)
        t.add_argument("--source", default=None, help="only this training dataset (default: every one)")
        t.add_argument("--targets", nargs="+", default=None, help="these target columns (default: all found)")
        t.add_argument("--shots", default=None, help="K, or the folder name shots_K")
    sub.add_parser("osr", add_help=False, help="open-set tables and ROC / OSCR curves of an output/osr tree "
                                               "(dasslite.results.osr; python -m dasslite.results osr -h)")
    return parser
TABLE_COMMANDS = ("base2new", "fewshot", "xd", "dg")


def parse_int_list(values: Sequence[str], what: str, minimum: int) -> List[int]:
    """``["1", "2,3"]`` or ``["1 2"]`` -> ``[1, 2, 3]`` (duplicates dropped); ValueError naming ``what`` and the
    bad value otherwise. The sweep parses its --seeds / --shots with it too."""
    numbers: List[int] = []
    for value in values:
        for part in str(value).replace(",", " ").split():
            try:
                numbers.append(int(part))
            except ValueError:
                raise ValueError(f"not a {what}: {part!r}") from None
    if not numbers:
        raise ValueError(f"no {what}s given")
    if any(n < minimum for n in numbers):
        raise ValueError(f"{what}s must be >= {minimum}, got {numbers}")
    return list(dict.fromkeys(numbers))


def parse_seeds(values: Sequence[str]) -> List[int]:
    """The --seeds of the table commands (see ``parse_int_list``)."""
    try:
        return parse_int_list(values, "seed", 0)
    except ValueError as exc:
        raise ValueError(f"--seeds: {exc}") from None


def _table_command(args) -> None:
    paper = load_paper(args.paper_file) if getattr(args, "paper", False) else None
    common = dict(trainer=args.trainer, cfg=args.cfg, seeds=args.seeds, keyword=args.keyword, ci95=args.ci95,
                  log_only=args.log_only)
    if args.command == "base2new":
        tables = collect_base2new(args.root, args.dataset, shots=args.shots, **common)
        print(format_base2new(tables, tablefmt=args.format, paper=paper))
        written = [(args.csv, write_csv, "CSV"), (args.markdown, write_markdown, "Markdown")]
        for path, writer, what in written:
            if path:
                print(f"{what} written to {writer(tables, path, paper=paper)}")
        return
    if args.command == "fewshot":
        tables = collect_fewshot(args.root, args.dataset, shots=args.shots, **common)
    else:
        tables = collect_transfer(args.root, args.command, source=args.source, targets=args.targets,
                                  shots=args.shots, paper=paper, **common)
    print(format_grids(tables, tablefmt=args.format))
    for path, writer, what in ((args.csv, write_grid_csv, "CSV"), (args.markdown, write_grid_markdown, "Markdown")):
        if path:
            print(f"{what} written to {writer(tables, path)}")
    if getattr(args, "plot", None):
        ylabel = "accuracy (%)" if args.keyword == "accuracy" else f"{args.keyword} (%)"
        print(f"Plot written to {plot_fewshot(tables, args.plot, root=args.root, ylabel=ylabel)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":  # methods side by side, paper-ready (dasslite.results.compare)
        return compare_main(argv[1:])
    if argv and argv[0] == "osr":  # open-set tables and curves (dasslite.results.osr)
        return osr_main(argv[1:])
    if argv and argv[0] not in ("summarize", *TABLE_COMMANDS, "-h", "--help"):
        argv = ["summarize"] + argv  # `python -m dasslite.results DIR ...` == parse_test_res.py DIR ...
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "seeds", None) is not None:
        try:
            args.seeds = parse_seeds(args.seeds)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        if args.command == "summarize":
            if args.multi_exp:
                experiments, overall = summarize_multi(args.directory, args.keyword, args.test_log, args.ci95,
                                                       args.log_only)
                for exp in experiments:
                    print(format_summary(exp))
                print(format_summary(overall, header=False))
            else:
                print(format_summary(summarize(args.directory, args.keyword, args.test_log, args.ci95,
                                               args.log_only)))
        else:
            _table_command(args)
    except (NoResultsError, PlotUnavailableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_osr_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dasslite.results osr", description=osr.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default=osp.join("output", "osr"), help="an output/osr folder")
    p.add_argument("--trainer", nargs="+", default=None, help="only these trainers (default: all, side by side)")
    p.add_argument("--cfg", default=None, help="only this recipe")
    p.add_argument("--dataset", nargs="+", default=None, help="only these dataset folders")
    p.add_argument("--shots", default=None, help="K, or the folder name shots_K")
    p.add_argument("--seeds", nargs="+", default=None, help="only these seeds")
    p.add_argument("--score", default="mls", choices=osr_metrics.SCORES, help="knownness score (default: mls)")
    p.add_argument("--balance", default="none", choices=osr_metrics.BALANCE_MODES,
                   help="only runs evaluated with this balance mode (default: none)")
    p.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS),
                   help=f"rows (default: {' '.join(DEFAULT_METRICS)}; 'all' or any of {' '.join(METRIC_NAMES)})")
    p.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    p.add_argument("--format", default="github", choices=TABLE_FORMATS, help="tabulate table format")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="also draw the ROC and OSCR curves into this PNG")
    return p


def osr_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_osr_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    metrics = list(METRIC_NAMES) if args.metrics == ["all"] else args.metrics
    try:
        seeds = parse_seeds(args.seeds) if args.seeds else None
        tables = collect_osr(args.root, args.dataset, trainer=args.trainer, cfg=args.cfg, shots=args.shots,
                             seeds=seeds, balance=args.balance, score=args.score, metrics=metrics, ci95=args.ci95)
    except ValueError as exc:
        parser.error(str(exc))
    except NoResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_osr(tables, tablefmt=args.format))
    if args.plot:
        try:
            print(f"Plot written to {plot_osr(tables, args.plot)}")
        except (PlotUnavailableError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


def build_compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dasslite.results compare", description=compare.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("protocol", help="base2new, fewshot, xd, dg, osr" + "".join(f", {n}" for n in EXTRA_ADAPTERS))
    p.add_argument("root", nargs="?", default=None, help="output/<protocol> (or output); default: output/<protocol>")
    p.add_argument("--trainers", nargs="+", default=None,
                   help="these methods, in this order (trainer names, or 'Trainer (cfg)' / Trainer/cfg)")
    p.add_argument("--baseline", default=None, help="add a Δ column against this method (trainer or method name)")
    p.add_argument("--paper", action="store_true", help="published numbers beside ours (base2new, dg)")
    p.add_argument("--paper-file", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dataset", nargs="+", default=None, help="only these datasets (base2new, fewshot)")
    p.add_argument("--shots", default=None, help="K, or the folder name shots_K (default: every one)")
    p.add_argument("--source", default=None, help="xd/dg: only this training dataset")
    p.add_argument("--targets", nargs="+", default=None, help="xd/dg: these target rows")
    p.add_argument("--seeds", nargs="+", default=None, help="only these seeds; '1 2' or '1,2'")
    p.add_argument("--ci95", action="store_true", help="95%% confidence intervals instead of the std")
    p.add_argument("--format", default=TERMINAL, choices=FORMATS, help="what to print (default: %(default)s)")
    p.add_argument("--markdown", default=None, help="also write Markdown to this file")
    p.add_argument("--csv", default=None, help="also write CSV to this file")
    p.add_argument("--latex", default=None, help="also write LaTeX (booktabs) to this file")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="grouped bars of H (base2new) or accuracy per dataset per method; several comparisons get "
                        "FILE-1.png, FILE-2.png ...")
    return p


def _plot_paths(path: str, n: int) -> List[str]:
    if n == 1:
        return [path]
    stem, dot, ext = path.rpartition(".")
    return [f"{stem}-{i}.{ext}" if dot else f"{path}-{i}" for i in range(1, n + 1)]


def compare_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_compare_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    root = args.root or osp.join("output", args.protocol)
    seeds = None
    if args.seeds is not None:
        try:
            seeds = parse_seeds(args.seeds)
        except ValueError as exc:
            parser.error(str(exc))
    try:
        adapter_for(args.protocol)
    except ValueError as exc:
        parser.error(str(exc))
    paper = load_paper(args.paper_file) if args.paper else None
    try:
        comparisons = compare.compare(args.protocol, root, trainers=args.trainers, baseline=args.baseline, paper=paper,
                                      datasets=args.dataset, shots=args.shots, seeds=seeds, ci95=args.ci95,
                                      source=args.source, targets=args.targets)
        print(format_all(comparisons, args.format))
        for path, fmt in ((args.markdown, MARKDOWN), (args.csv, CSV), (args.latex, LATEX)):
            if path:
                text = format_all(comparisons, fmt)
                print(f"{fmt} written to {write_text_atomic(path, text if text.endswith(chr(10)) else text + chr(10))}")
        if args.plot:
            for cmp, path in zip(comparisons, _plot_paths(args.plot, len(comparisons))):
                print(f"Plot written to {plot_comparison(cmp, path)}")
    except (NoResultsError, PlotUnavailableError, CompareError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
