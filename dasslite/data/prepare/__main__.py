"""Command line: ``python -m dasslite.data.prepare DATASET [DATASET ...] --root DATA`` (``all`` = every dataset),
``--list`` for each dataset's state and size."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .prepare import PrepareOptions, dataset_state, prepare_many
from .recipes import RECIPES, get_recipe


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def list_states(names: List[str], root: str) -> str:
    """One line per dataset: name, folder, state (missing / partial / ready), size on disk, verified counts."""
    lines = [f"{'dataset':<16} {'folder':<22} {'state':<8} {'on disk':>10}  counts"]
    for name in names:
        recipe = get_recipe(name)
        info = dataset_state(recipe, root)
        counts = ", ".join(f"{k} {v:,}" for k, v in info["counts"].items())
        note = " (manual download)" if recipe.manual and info["state"] != "ready" else ""
        lines.append(f"{recipe.name:<16} {recipe.dataset_dir:<22} {info['state']:<8} {_human(info['bytes']):>10}  "
                     f"{counts}{note}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dasslite.data.prepare", description=__doc__)
    parser.add_argument("datasets", nargs="*", help=f"'all' or any of: {', '.join(RECIPES)}")
    parser.add_argument("--root", required=True, help="the DATA folder (train.py --root); nothing outside is touched")
    parser.add_argument("--list", action="store_true", help="show each dataset's state and size, change nothing")
    parser.add_argument("--mirror", default="", help="fetch every non-Drive archive from MIRROR/<file name>")
    parser.add_argument("--drive-url", default=None,
                        help="Drive download URL template with {id} (default: $DASSLITE_DRIVE_URL or Google's)")
    parser.add_argument("--keep-archives", action="store_true", help="keep archives after extraction")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    names = list(RECIPES) if not args.datasets or "all" in args.datasets else args.datasets
    try:
        recipes = [get_recipe(n) for n in names]
    except ValueError as exc:
        parser.error(str(exc))
    if args.list:
        print(list_states([r.name for r in recipes], args.root))
        return 0
    if not args.datasets:
        parser.error("name the datasets to prepare (or 'all'); --list shows their state")
    options = PrepareOptions(mirror=args.mirror, drive_url=args.drive_url, keep_archives=args.keep_archives,
                             progress=not args.no_progress)
    outcome = prepare_many(recipes, args.root, options)
    failed = {k: v for k, v in outcome.items() if v}
    print(f"\n{len(outcome) - len(failed)} of {len(outcome)} dataset(s) ready under {args.root}")
    for name, error in failed.items():
        print(f"  {name}: {error}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
