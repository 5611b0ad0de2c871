"""`shared/process.py`: a child started with the parent-death preexec does not outlive its
parent, even when the parent is SIGKILLed and has no chance to stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.process import parent_death_preexec

# A parent that starts a long sleeper (with or without the preexec), prints its pid, waits.
_PARENT = """
import subprocess, sys, time
from shared.process import parent_death_preexec
preexec = parent_death_preexec() if sys.argv[1] == "tied" else None
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         preexec_fn=preexec, process_group=0)
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie has finished: only its exit status waits to be collected)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _orphan_after_sigkill(mode: str) -> tuple[int, bool]:
    """SIGKILL a parent started in `mode`; its child's pid and whether it still runs 2 s on."""
    with subprocess.Popen(
        [sys.executable, "-c", _PARENT, mode], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    return child, _alive(child)


def test_a_tied_child_is_killed_with_its_parent() -> None:
    child, running = _orphan_after_sigkill("tied")
    assert not running, f"pid {child} outlived its SIGKILLed parent"


def test_an_untied_child_outlives_its_parent() -> None:
    # The control: what the dev runner's children did before (so the test above can fail).
    child, running = _orphan_after_sigkill("untied")
    try:
        assert running
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_refused_off_the_main_thread() -> None:
    # The kernel would signal the child when that thread ends, not the process.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            parent_death_preexec()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert "main" in str(errors[0])


_REPORT_PDEATHSIG = """
import ctypes
value = ctypes.c_int()
assert ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0) == 0  # PR_GET_PDEATHSIG
print(value.value)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_signal_asked_for_is_kept_across_exec(sig: signal.Signals) -> None:
    preexec = parent_death_preexec(sig)
    assert preexec is not None  # Linux: CI and production
    done = subprocess.run(
        [sys.executable, "-c", _REPORT_PDEATHSIG],
        preexec_fn=preexec,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(done.stdout) == sig
    # Without it, a child has none.
    plain = subprocess.run(
        [sys.executable, "-c", _REPORT_PDEATHSIG], capture_output=True, text=True, check=True
    )
    assert int(plain.stdout) == 0
