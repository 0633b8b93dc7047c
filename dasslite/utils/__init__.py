"""Engine utilities. Names are imported on first use (PEP 562), so torch-free tools (``dasslite.utils.io``, the
results tables) do not pay for importing torch through this package."""
from importlib import import_module

_WHERE = {
    "latest_checkpoint_name": "checkpoint", "load_checkpoint": "checkpoint", "load_pretrained_weights": "checkpoint",
    "resume_from_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "close_logger": "logger", "setup_logger": "logger",
    "Registry": "registry",
    "check_isfile": "tools", "collect_env_info": "tools", "listdir_nohidden": "tools", "mkdir_if_missing": "tools",
    "set_random_seed": "tools",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
