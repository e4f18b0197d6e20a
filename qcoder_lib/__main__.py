"""``python -m qcoder_lib``: the ``qcoder`` command line (:mod:`qcoder_lib.cli`)."""

import sys

from qcoder_lib.cli import main

sys.exit(main())
