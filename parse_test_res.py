"""CoOp's result parser, same command line, backed by ``dasslite.results``.

    python parse_test_res.py output/base2new/train_base/eurosat/shots_16/CoOp/vit_b16_ctxv1
    python parse_test_res.py output/base2new/test_new/eurosat/shots_16/CoOp/vit_b16_ctxv1 --test-log
    python parse_test_res.py DIR --multi-exp [--ci95] [--keyword accuracy]

Differences from CoOp's script, all on the safe side: a complete ``results.json`` is read before ``log.txt``
(``--log-only`` restores pure log parsing); Dassl.ProGrad's ``Finished training`` is accepted; stray files in DIR
are ignored; unfinished runs are listed as missing instead of being averaged or crashing the parser; and an empty
folder fails with ``error: no complete runs under DIR`` (exit status 1).
"""
import sys

from dasslite.results import main

if __name__ == "__main__":
    sys.exit(main(["summarize", *sys.argv[1:]]))
