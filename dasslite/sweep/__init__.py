"""Protocol sweeps behind ``scripts/``: plan a protocol's train.py runs, run them, print the table.

One module per concept (``python -m dasslite.sweep -h`` documents the protocols, folders and guarantees):

* :mod:`~dasslite.sweep.jobs`: a planned run and what its folder says (done, resume, new, another run's);
* :mod:`~dasslite.sweep.plans`: :class:`SweepSpec` and a planner per protocol (:mod:`~dasslite.sweep.osr` for
  open-set recognition); :mod:`~dasslite.sweep.layout`: the lineage's own folder templates;
* :mod:`~dasslite.sweep.resolve`: the command line resolved into a spec (configs, recipe, data root);
* runners: :mod:`~dasslite.sweep.runners` (sequential, GPU pool), :mod:`~dasslite.sweep.slurm` (job arrays; the
  compute nodes run :mod:`~dasslite.sweep.slurm_task`); :mod:`~dasslite.sweep.signals`: SIGTERM like Ctrl-C;
* :mod:`~dasslite.sweep.run`: one sweep end to end; :mod:`~dasslite.sweep.multi`: several datasets, one pool;
* :mod:`~dasslite.sweep.cli`: ``python -m dasslite.sweep``. The recipes are :mod:`dasslite.recipes`.

The names below are re-exported for ``from dasslite import sweep as S``; inside ``dasslite``, code imports from the
module that defines a name (the import-graph test keeps the package free of cycles).
"""
from dasslite.recipes import (CONFIG_FOLDER_FALLBACK, DEFAULT_CFGS, DEMO_DATASET, DG_TARGETS, FEWSHOT_SHOTS, RECIPES,
                              SOURCE_BOUND_OPTS, TRANSFER_SOURCE, XD_DATASETS, ZERO_SHOT_SUFFIX, ZERO_SHOT_TRAINERS,
                              default_cfg)
from dasslite.sweep.cli import build_parser, main, parse_args
from dasslite.sweep.jobs import CONSOLE_FILE, Job, SweepError, SweepUsageError, layout_tail
from dasslite.sweep.plans import (PLANNERS, REPO_ROOT, SweepSpec, describe_spec, only_phases, plan, plan_base2new,
                                  plan_fewshot, plan_transfer, source_bound_opts)
from dasslite.sweep.resolve import (check_trainer, find_dataset_config, find_trainer_config, known_trainers,
                                    read_dataset_name, resolve_spec)
from dasslite.sweep.run import collect_tables, print_plan, run_sweep
from dasslite.sweep.runners import GpuPoolRunner, SequentialRunner, make_runner, parse_gpus
from dasslite.sweep.slurm import SlurmError, SlurmRunner

__all__ = [
    "CONFIG_FOLDER_FALLBACK", "DEFAULT_CFGS", "DEMO_DATASET", "DG_TARGETS", "FEWSHOT_SHOTS", "RECIPES",
    "SOURCE_BOUND_OPTS", "TRANSFER_SOURCE", "XD_DATASETS", "ZERO_SHOT_SUFFIX", "ZERO_SHOT_TRAINERS", "default_cfg",
    "build_parser", "main", "parse_args", "CONSOLE_FILE", "Job", "SweepError", "SweepUsageError", "layout_tail",
    "PLANNERS", "REPO_ROOT", "SweepSpec", "describe_spec", "only_phases", "plan", "plan_base2new", "plan_fewshot",
    "plan_transfer", "source_bound_opts", "check_trainer", "find_dataset_config", "find_trainer_config",
    "known_trainers", "read_dataset_name", "resolve_spec", "collect_tables", "print_plan", "run_sweep",
    "GpuPoolRunner", "SequentialRunner", "make_runner", "parse_gpus", "SlurmError", "SlurmRunner",
]
