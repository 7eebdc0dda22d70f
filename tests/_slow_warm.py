"""A layer whose warm-up takes a minute, for tests/test_compile.py: only a spawned compiling
process imports it (cancel_compiling must end that process). Never import it in the test
process: warmup() there would then sleep a minute. With MOGVIEWER_TEST_SLOW_MARKER set, the
warm-up first creates that file (the test then knows the process is in its long task)."""

import os
import time

from mogviewer.render.warm import register


def _slow():
    marker = os.environ.get("MOGVIEWER_TEST_SLOW_MARKER")
    if marker:
        open(marker, "w").close()
    time.sleep(60)


register("slow test layer", _slow, lambda: None)
