"""``python -m dasslite.results``: see :mod:`dasslite.results.cli`."""
import sys

from dasslite.results.cli import main

sys.exit(main())
