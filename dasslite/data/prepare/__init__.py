"""``python -m dasslite.data.prepare DATASET [DATASET ...] --root DATA``: download, extract, verify datasets.

Recipes are data (``recipes.py``); the machinery is generic: resumable verified downloads (``fetch.py``), extraction
into a scratch folder then renames (``extract.py``), the verification pass (``verify.py``), per-dataset state and
idempotent reruns (``prepare.py``), and the command line (``__main__.py``).
"""
from .extract import ArchiveError, extract_into
from .fetch import ChecksumError, DiskSpaceError, DownloadError, drive_url, fetch
from .prepare import ManualStepRequired, PrepareOptions, dataset_state, prepare_dataset, prepare_many
from .recipes import RECIPES, Check, Download, Recipe, get_recipe
from .verify import VerificationError, verify_recipe

__all__ = ["RECIPES", "Recipe", "Download", "Check", "get_recipe", "fetch", "drive_url", "extract_into",
           "verify_recipe", "prepare_dataset", "prepare_many", "dataset_state", "PrepareOptions", "DownloadError",
           "ChecksumError", "DiskSpaceError", "ArchiveError", "VerificationError", "ManualStepRequired"]
