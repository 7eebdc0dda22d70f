"""A layer whose warm-up takes a minute, for tests/test_compile.py: only a spawned compiling
process imports it (cancel_compiling must end that process). Never import it in the test
process: warmup() there would then sleep a minute."""

import time

from mogviewer.render.warm import register

register("slow test layer", lambda: time.sleep(60), lambda: None)
