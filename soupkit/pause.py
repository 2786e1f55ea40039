"""A test-only pause point, so crash tests can kill -9 a process at a known moment.

With SOUPKIT_TEST_PAUSE_AT=<phase>[:<n>] the n-th time (default the first) the process reaches
`pause_for_test(<phase>)` it creates the file named by SOUPKIT_TEST_PAUSE_FILE and sleeps until it
is killed or sent SIGUSR1 (which resumes it). Phases: `first_trial` (run folder and study made, base
model scored, no trial started yet), `finetune` (checkpoint half-written under its
temporary name), `probe` (checkpoint written, trial not yet complete), `soup_write` (merged model
half-written under its temporary name). Unset, it does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

_reached: Counter[str] = Counter()


class _Resume(Exception):
    pass


def _resume(signum, frame) -> None:
    raise _Resume


def pause_for_test(phase: str) -> None:
    wanted = os.environ.get("SOUPKIT_TEST_PAUSE_AT")
    if not wanted:
        return
    name, _, nth = wanted.partition(":")
    if name != phase:
        return
    _reached[phase] += 1
    if _reached[phase] != int(nth or 1):
        return
    previous = signal.signal(signal.SIGUSR1, _resume)
    try:
        marker = os.environ.get("SOUPKIT_TEST_PAUSE_FILE")
        if marker:
            Path(marker).write_text(str(os.getpid()))
        time.sleep(3600)
    except _Resume:
        pass
    finally:
        signal.signal(signal.SIGUSR1, previous)
