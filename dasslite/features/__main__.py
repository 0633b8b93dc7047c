"""``python -m dasslite.features {list,clear} [--dir DIR] [--verify]``: show or delete the image-feature cache."""
from __future__ import annotations

import argparse
import datetime
import sys
from typing import Optional, Sequence

from .cache import FeatureStore, default_max_gb


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dasslite.features", description=__doc__)
    parser.add_argument("command", choices=("list", "clear"))
    parser.add_argument("--dir", default=None, help="cache folder (default: $DASSLITE_FEATURE_CACHE or "
                                                    "~/.cache/dasslite/features)")
    parser.add_argument("--verify", action="store_true", help="list: check every entry's checksum")
    args = parser.parse_args(argv)
    store = FeatureStore(args.dir)
    if args.command == "clear":
        freed = store.clear()
        print(f"Cleared the feature cache {store.root} ({_size(freed)} freed)")
        return 0
    rows = store.describe(verify=args.verify)
    total = sum(r.size for r in rows)
    print(f"Feature cache {store.root}: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, {_size(total)} "
          f"(limit {default_max_gb():g} GB)")
    for r in rows:
        used = datetime.datetime.fromtimestamp(r.last_used).strftime("%Y-%m-%d %H:%M")
        i = r.info
        what = (f"{i.get('dataset', '?')} {i.get('split', '?')}/{i.get('subsample', '?')} {i.get('images', '?')} "
                f"images, {i.get('backbone', '?')}, {i.get('precision', '?')}, outputs {i.get('outputs', '?')}")
        state = {True: " [ok]", False: " [CORRUPT]", None: ""}[r.ok]
        print(f"  {r.digest[:12]}  {_size(r.size):>9}  last used {used}  {what}{state}")
    return 1 if any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
