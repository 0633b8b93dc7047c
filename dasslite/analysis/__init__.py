"""Post-hoc analyses of trained prompt learners (expert usage of mixture-of-prompt trainers).

Names are resolved lazily (PEP 562) so that ``python -m dasslite.analysis.expert_usage`` does not import the module
twice, and importing the package needs neither matplotlib nor torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ExpertUsage": "expert_usage",
    "DatasetUsage": "expert_usage",
    "NoUsageError": "expert_usage",
    "UsageFileError": "expert_usage",
    "find_usage_files": "expert_usage",
    "load_usage": "expert_usage",
    "summarize_runs": "expert_usage",
    "format_dataset_table": "expert_usage",
    "write_dataset_summary": "expert_usage",
    "ExpertUsageRecording": "usage_recording",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
