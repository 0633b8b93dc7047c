"""``python -m dasslite.sweep``: see :mod:`dasslite.sweep.cli`."""
import sys

from dasslite.sweep.cli import main
from dasslite.sweep.signals import terminate_on_signals

terminate_on_signals()  # SIGTERM/SIGHUP stop the sweep like Ctrl-C: its train.py children too
sys.exit(main())
