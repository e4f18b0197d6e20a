"""``python -m qcoder_lib.course run|refresh``: see :mod:`qcoder_lib.course.runner`."""

import sys

from qcoder_lib.course.runner import main

sys.exit(main())
