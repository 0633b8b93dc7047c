from .checkpoint import (latest_checkpoint_name, load_checkpoint, load_pretrained_weights, resume_from_checkpoint,
                         save_checkpoint)
from .logger import close_logger, setup_logger
from .registry import Registry
from .tools import check_isfile, collect_env_info, listdir_nohidden, mkdir_if_missing, set_random_seed

__all__ = [
    "Registry", "setup_logger", "close_logger", "set_random_seed", "collect_env_info", "check_isfile",
    "listdir_nohidden", "mkdir_if_missing", "save_checkpoint", "load_checkpoint", "resume_from_checkpoint",
    "load_pretrained_weights", "latest_checkpoint_name",
]
