"""The command line resolved into a :class:`SweepSpec`: trainer and dataset config files (with did-you-mean errors), the
recipe, the data root (the demo world or ``$DATA``), the seeds, layouts and phases."""
from __future__ import annotations

import difflib
import os
import os.path as osp
import sys
from typing import Callable, Dict, List, Optional, Sequence

from dasslite.recipes import (CONFIG_FOLDER_FALLBACK, DEFAULT_CFGS, DEMO_DATASET, DG_TARGETS, XD_DATASETS,
                              ZERO_SHOT_SUFFIX, ZERO_SHOT_TRAINERS, default_cfg)
from dasslite.sweep import layout
from dasslite.sweep import osr as osr_protocol
from dasslite.sweep.jobs import SweepUsageError
from dasslite.sweep.plans import REPO_ROOT, SweepSpec, source_bound_opts


def available_names(folder: str, suffix: str = ".yaml") -> List[str]:
    if not osp.isdir(folder):
        return []
    return sorted(n[: -len(suffix)] for n in os.listdir(folder) if n.endswith(suffix))


def did_you_mean(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def _rel(path: str, cwd: str) -> str:
    """``path`` relative to ``cwd`` when it lies inside it (CoOp-style short paths in logs), else absolute."""
    path = osp.abspath(path)
    try:
        rel = osp.relpath(path, cwd)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def find_dataset_config(repo_root: str, dataset: str) -> str:
    """``configs/datasets/<dataset>.yaml`` (absolute), or SweepUsageError with the close names."""
    folder = osp.join(repo_root, "configs", "datasets")
    path = osp.join(folder, f"{dataset}.yaml")
    if not osp.isfile(path):
        options = available_names(folder)
        raise SweepUsageError(f"no dataset config {path}.{did_you_mean(dataset, options)} "
                              f"Available: {', '.join(options) or '(none)'}")
    return path


def read_dataset_name(path: str) -> Optional[str]:
    """``DATASET.NAME`` of a dataset yaml (what train.py writes as ``dataset`` in results.json), or None.

    A file that cannot be read or parsed, or that is not a YAML mapping, is a SweepUsageError naming it.
    """
    try:
        import yaml
    except ImportError:  # PyYAML comes with yacs; without it the records' dataset is simply not checked
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise SweepUsageError(f"cannot read dataset config {path}: {exc}") from None
    except (yaml.YAMLError, ValueError) as exc:
        raise SweepUsageError(f"cannot parse dataset config {path}: {exc}") from None
    if data is None:
        return None
    if not isinstance(data, dict):
        raise SweepUsageError(f"dataset config {path} is not a YAML mapping (got {type(data).__name__}); expected "
                              f"a DATASET: section with its NAME")
    node = data.get("DATASET")
    name = node.get("NAME") if isinstance(node, dict) else None
    return str(name) if name else None


def known_trainers(repo_root: str) -> List[str]:
    """The trainers the sweep knows: those with a default recipe, a fallback, or a ``configs/trainers/<T>/`` folder."""
    folder = osp.join(repo_root, "configs", "trainers")
    names = set(DEFAULT_CFGS) | set(ZERO_SHOT_TRAINERS) | set(CONFIG_FOLDER_FALLBACK)
    if osp.isdir(folder):
        names |= {n for n in os.listdir(folder) if not n.startswith(".") and osp.isdir(osp.join(folder, n))}
    return sorted(names)


def check_trainer(repo_root: str, trainer: str, config_file: Optional[str] = None) -> None:
    """SweepUsageError with the close names for a trainer the sweep does not know (``mocoop``, ``CoOP``, ``LAPS``).

    With ``--config-file`` a name of one's own is accepted unless it is a near miss of a known trainer.
    """
    known = known_trainers(repo_root)
    if trainer in known:
        return
    by_lower = {k.lower(): k for k in known}
    close = ([by_lower[trainer.lower()]] if trainer.lower() in by_lower else
             [by_lower[c] for c in difflib.get_close_matches(trainer.lower(), list(by_lower), n=3, cutoff=0.75)])
    if config_file and not close:
        return
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise SweepUsageError(f"unknown trainer {trainer!r}.{hint} Known trainers: {', '.join(known)} (trainer names "
                          f"are case-sensitive; a trainer of your own needs configs/trainers/{trainer}/ or "
                          f"--config-file)")


def find_trainer_config(repo_root: str, trainer: str, cfg: str, config_file: Optional[str] = None) -> str:
    """``configs/trainers/<T>/<cfg>.yaml`` (absolute; ``CONFIG_FOLDER_FALLBACK`` applies) or ``config_file``."""
    if config_file:
        path = osp.abspath(config_file)
        if not osp.isfile(path):
            raise SweepUsageError(f"no trainer config {path}")
        return path
    folders = [trainer] + ([CONFIG_FOLDER_FALLBACK[trainer]] if trainer in CONFIG_FOLDER_FALLBACK else [])
    candidates = [osp.join(repo_root, "configs", "trainers", f, f"{cfg}.yaml") for f in folders]
    path = next((c for c in candidates if osp.isfile(c)), None)
    if path is None:
        options = available_names(osp.join(repo_root, "configs", "trainers", folders[-1]))
        raise SweepUsageError(f"no trainer config {candidates[0]}.{did_you_mean(cfg, options)} "
                              f"Available for {folders[-1]}: {', '.join(options) or '(none)'}")
    return path


def resolve_data(is_demo: bool, data: Optional[str], environ: Dict[str, str],
                 demo_world: Optional[Callable[[], object]] = None):
    """``(data root, opts)``: the demo world (its root; its tiny CLIP as ``MODEL.BACKBONE.NAME``) or --data / $DATA."""
    if is_demo:
        if demo_world is None:
            from dasslite.demo import ensure_demo_world as demo_world
        print("Preparing the offline demo world (built once, then cached) ...", flush=True)
        world = demo_world()
        return str(world.root), ["MODEL.BACKBONE.NAME", str(world.clip_checkpoint)]
    data_root = data or environ.get("DATA", "")
    if not data_root:
        raise SweepUsageError("no data root: pass --data DIR or set DATA=/path/to/datasets "
                              "(CoOp's layout; the 'demo' dataset needs none)")
    if not osp.isdir(data_root):
        raise SweepUsageError(f"data root {data_root} does not exist (from {'--data' if data else '$DATA'})")
    return osp.abspath(data_root), []


def _transfer_datasets(args) -> tuple:
    """xd/dg: (source, targets) with the defaults, refusing the demo world and a source among the targets."""
    source = args.source
    if args.targets:
        targets = list(dict.fromkeys(args.targets))
    elif args.protocol == "dg":
        targets = list(DG_TARGETS)
    else:
        targets = [d for d in XD_DATASETS if d != source]
    if DEMO_DATASET in [source] + targets:
        raise SweepUsageError(f"{args.protocol} needs real datasets: the demo world is a single dataset, so there is "
                              f"nothing to transfer to. Run base2new or fewshot on demo instead.")
    if source in targets:
        raise SweepUsageError(f"--targets includes the source {source}: its result comes from the training run "
                              f"(the 'source' column); drop it from --targets")
    return source, targets


def zero_shot_cfg(cfg: str) -> str:
    """The ``<cfg>`` folder of ``--zero-shot`` evaluations of a trainer that trains."""
    return cfg if cfg.endswith(ZERO_SHOT_SUFFIX) else cfg + ZERO_SHOT_SUFFIX


def resolve_spec(args, environ: Optional[Dict[str, str]] = None,
                 demo_world: Optional[Callable[[], object]] = None, cwd: Optional[str] = None) -> SweepSpec:
    """Turn parsed CLI arguments (any protocol) into a spec: config files, data root (demo world or $DATA), defaults."""
    environ = os.environ if environ is None else environ
    cwd = os.getcwd() if cwd is None else cwd
    repo_root = osp.abspath(args.repo_root or REPO_ROOT)
    train_py = osp.abspath(args.train_py or osp.join(repo_root, "train.py"))
    if not osp.isfile(train_py):
        raise SweepUsageError(f"train.py not found at {train_py} (use --train-py or --repo-root)")
    config_file = args.config_file
    check_trainer(repo_root, args.trainer, config_file)
    zero_shot = args.zero_shot or args.trainer in ZERO_SHOT_TRAINERS

    if args.protocol in ("xd", "dg"):
        dataset, targets = _transfer_datasets(args)
    else:
        dataset, targets = args.dataset, []
    shots = list(args.shots) if isinstance(args.shots, list) else [args.shots]

    if args.cfg:
        cfg = args.cfg
    elif config_file:  # the recipe file names the folder, so another recipe never lands in the default's folder
        cfg = osp.splitext(osp.basename(config_file))[0]
    else:
        cfg = default_cfg(args.trainer, dataset)
    if not cfg:
        raise SweepUsageError(f"--cfg is required for trainer {args.trainer} (a recipe name in "
                              f"configs/trainers/{args.trainer}/, or --config-file FILE)")
    ds_paths = {ds: find_dataset_config(repo_root, ds) for ds in [dataset] + targets}
    tr_cfg = find_trainer_config(repo_root, args.trainer, cfg, config_file)
    if args.zero_shot and args.trainer not in ZERO_SHOT_TRAINERS:
        cfg = zero_shot_cfg(cfg)  # never the folders of this trainer's trained runs
    data_root, opts = resolve_data(dataset == DEMO_DATASET, args.data, environ, demo_world)
    if len(args.extra_opts) % 2:
        raise SweepUsageError(f"extra opts must be KEY VALUE pairs, got {args.extra_opts}")
    opts += list(args.extra_opts)
    if getattr(args, "no_feature_cache", False):
        opts += ["FEATURE_CACHE.ENABLED", "False"]
    seeds = list(args.seeds)  # parse_args has de-duplicated and checked them
    try:
        layouts = layout.parse_layouts(getattr(args, "layout", None), args.protocol)
        phases = layout.parse_phases(getattr(args, "phase", None), args.protocol)
    except layout.LayoutError as exc:
        raise SweepUsageError(str(exc)) from None
    spec = SweepSpec(protocol=args.protocol, trainer=args.trainer, cfg=cfg, dataset=dataset, shots=shots,
                     seeds=seeds, data_root=data_root, config_file=_rel(tr_cfg, cwd),
                     dataset_configs={ds: _rel(p, cwd) for ds, p in ds_paths.items()},
                     dataset_names={ds: read_dataset_name(p) for ds, p in ds_paths.items()}, targets=targets,
                     output=args.output, load_epoch=getattr(args, "load_epoch", None), opts=opts,
                     zero_shot=zero_shot, python=args.python or sys.executable, train_py=train_py, cwd=cwd,
                     layouts=layouts, phases=phases)
    for target in targets:
        source_bound_opts(spec, target)  # fails now, not half-way, when the source yaml has no DATASET.NAME
    if args.protocol == "osr":
        try:
            spec.splits = osr_protocol.check_osr_args(dataset, args.splits, args.balance)
        except ValueError as exc:
            raise SweepUsageError(str(exc)) from None
        spec.balance = args.balance
    return spec
