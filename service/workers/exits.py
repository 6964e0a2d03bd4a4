"""How a worker process ended, read when its socket closes: whether the image it was reading
is to blame, and the words for the log and the 503s."""

from __future__ import annotations

import signal
import subprocess

# The socket closes as the process dies, a moment before the kernel has its status: waited
# for on the event loop, at most this long (measured 0.05-1.2 ms from the socket's close to
# the status, for a process of 1 MB and of 1 GB: docs/performance.md). Not known by then,
# the image is not blamed at once: it is sent again, and blamed if a worker dies under it again.
REAP_WAIT_S = 0.05
# Signals a process raises on itself when it breaks (a decoder's bad read, an abort in a
# library): the image it was reading is to blame. Others (SIGKILL) came from outside: an
# operator, or the OOM killer.
CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL, signal.SIGSYS}
)


def exit_status(process: subprocess.Popen[bytes]) -> int | None:
    """Popen's return code (minus the signal's number when a signal ended it), or None when
    the process has not been reaped within REAP_WAIT_S."""
    try:
        return process.wait(timeout=REAP_WAIT_S)
    except subprocess.TimeoutExpired:
        return None


def crashed(status: int | None) -> bool:
    """Whether the process broke by itself (a crash signal, an exit of its own): the image it
    was reading is to blame. Killed from outside, or its status not known yet: not at once."""
    return status is not None and (status >= 0 or -status in CRASH_SIGNALS)


def describe(status: int | None) -> str:
    """'killed by SIGKILL', 'exit status 1', for a log line or a message."""
    if status is None:
        return "exit status not known yet"
    if status >= 0:
        return f"exit status {status}"
    try:
        return f"killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"killed by signal {-status}"
