"""``python -m dasslite.demo [--cache-dir D] [--force] [--field root|clip_checkpoint]``: build (once) and print."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from .world import ensure_demo_world


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dasslite.demo",
                                     description="Build (once) the offline demo world and print where it is.")
    parser.add_argument("--cache-dir", default=None,
                        help="where worlds are cached (default: $DASSLITE_DEMO_DIR or ~/.cache/dasslite/demo)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete world exists")
    parser.add_argument("--verify", action="store_true", help="re-hash the cached files before trusting them")
    parser.add_argument("--field", choices=("root", "clip_checkpoint"), default=None,
                        help="print only this path (for shell scripts)")
    args = parser.parse_args(argv)
    world = ensure_demo_world(args.cache_dir, force=args.force, verify=args.verify)
    if args.field:
        print(getattr(world, args.field))
    else:
        print(f"root: {world.root}")
        print(f"clip_checkpoint: {world.clip_checkpoint}")
        accuracy = world.info.get("zero_shot_test_accuracy")
        if accuracy is not None:
            print(f"zero-shot test accuracy ({world.info.get('zero_shot_template')}): {100 * accuracy:.1f}%",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
