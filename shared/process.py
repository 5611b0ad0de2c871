"""Child processes that cannot outlive the process that started them (Linux)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# The child's exit status when its parent was gone before it could ask to be signalled.
_ORPHANED_EXIT_CODE = 1


def parent_death_preexec(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess.Popen`: the child gets `sig` as soon as this process
    dies, however it dies (SIGKILL included), through Linux's PR_SET_PDEATHSIG, which the
    child keeps across exec. None (nothing to pass) on other systems.

    The kernel signals when the parent *thread* that forked the child ends, not the process:
    so this refuses to be used off the main thread, which lives as long as the process."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("PR_SET_PDEATHSIG follows the forking thread: fork from the main one")
    # Looked up here, in the parent: the child between fork and exec only makes the call.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    signum = int(sig)

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
        # The parent may have died between fork and prctl: then no signal would ever come,
        # and the child was already handed to another parent.
        if os.getppid() != parent:
            os._exit(_ORPHANED_EXIT_CODE)

    return preexec
