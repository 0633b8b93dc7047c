"""Results of finished runs: CoOp's per-folder summaries and the protocol tables, comparisons and figures.

One module per concept (``python -m dasslite.results -h`` documents the rules every table follows):

* :mod:`~dasslite.results.runs`: one run folder and its number (``results.json``, else ``log.txt``), checked by
  :mod:`~dasslite.results.validation`; :mod:`~dasslite.results.stats`: mean, spread, harmonic mean;
* :mod:`~dasslite.results.summary`: ``summarize`` (CoOp's ``parse_test_res.py``);
* :mod:`~dasslite.results.cells`: the seed runs of one table cell, walked from an output tree;
* a module per protocol table: :mod:`~dasslite.results.base2new`, :mod:`~dasslite.results.fewshot` and
  :mod:`~dasslite.results.transfer` (xd / dg; both on :mod:`~dasslite.results.grid`), :mod:`~dasslite.results.osr`;
* :mod:`~dasslite.results.compare`: methods side by side; :mod:`~dasslite.results.paper`: the published numbers;
* :mod:`~dasslite.results.plots`: every figure; :mod:`~dasslite.results.cli`: ``python -m dasslite.results``.

The names below are re-exported for ``from dasslite import results as R``; inside ``dasslite``, code imports from
the module that defines a name (the import-graph test keeps the package free of cycles).
"""
from dasslite.results.base2new import (HEADERS, PAPER_HEADERS, SUBSET_MARK, UNRELIABLE_MARK, Base2NewTable, Row,
                                       collect_base2new, format_base2new, paper_base2new_rows, table_rows, write_csv,
                                       write_markdown)
from dasslite.results.cells import PER_DATASET, Cell, dataset_sort_key, is_zero_shot, recipe_group, shots_number
from dasslite.results.cli import TABLE_COMMANDS, build_parser, main, parse_int_list, parse_seeds
from dasslite.results.fewshot import collect_fewshot
from dasslite.results.grid import (GridRow, GridTable, format_grids, grid_headers, grid_rows, write_grid_csv,
                                   write_grid_markdown)
from dasslite.results.osr import (DEFAULT_METRICS, METRIC_NAMES, OsrColumn, OsrRun, OsrTable, collect_osr,
                                  format_osr, run_curves)
from dasslite.results.paper import PAPER_FILE, load_paper, paper_method
from dasslite.results.plots import (PlotUnavailableError, comparison_plot_png, fewshot_curves, fewshot_plot_png,
                                    osr_plot_png, plot_comparison, plot_fewshot, plot_osr)
from dasslite.results.runs import (LOG_FILE, RESULTS_FILE, SEED_DIR_RE, NoResultsError, Run, collect_runs, parse_log,
                                   read_complete_record, read_run)
from dasslite.results.stats import harmonic_mean, spread
from dasslite.results.summary import Summary, format_summary, summarize, summarize_multi
from dasslite.results.transfer import TRANSFER_FOLDER, collect_transfer, trained_on, transfer_train_roots

__all__ = [
    "HEADERS", "PAPER_HEADERS", "SUBSET_MARK", "UNRELIABLE_MARK", "Base2NewTable", "Row", "collect_base2new",
    "format_base2new", "paper_base2new_rows", "table_rows", "write_csv", "write_markdown",
    "PER_DATASET", "Cell", "dataset_sort_key", "is_zero_shot", "recipe_group", "shots_number",
    "TABLE_COMMANDS", "build_parser", "main", "parse_int_list", "parse_seeds", "collect_fewshot",
    "GridRow", "GridTable", "format_grids", "grid_headers", "grid_rows", "write_grid_csv", "write_grid_markdown",
    "DEFAULT_METRICS", "METRIC_NAMES", "OsrColumn", "OsrRun", "OsrTable", "collect_osr", "format_osr", "run_curves",
    "PAPER_FILE", "load_paper", "paper_method",
    "PlotUnavailableError", "comparison_plot_png", "fewshot_curves", "fewshot_plot_png", "osr_plot_png",
    "plot_comparison", "plot_fewshot", "plot_osr",
    "LOG_FILE", "RESULTS_FILE", "SEED_DIR_RE", "NoResultsError", "Run", "collect_runs", "parse_log",
    "read_complete_record", "read_run", "harmonic_mean", "spread",
    "Summary", "format_summary", "summarize", "summarize_multi",
    "TRANSFER_FOLDER", "collect_transfer", "trained_on", "transfer_train_roots",
]
