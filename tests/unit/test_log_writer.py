"""TurnWriter: the lines of one event-loop turn reach the file together, in order, at the
end of the turn; outside a loop, at once; none is lost when the process exits."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading

from shared.logging import TurnWriter


class CountingFile(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_outside_a_loop_each_line_is_written_at_once() -> None:
    file = CountingFile()
    writer = TurnWriter(file)
    writer.write_line("one")
    assert file.getvalue() == "one\n"
    writer.write_line("two")
    assert file.getvalue() == "one\ntwo\n"


async def test_a_turns_lines_are_written_together_at_its_end() -> None:
    file = CountingFile()
    writer = TurnWriter(file)
    for n in range(5):
        writer.write_line(f"line {n}")
    assert file.getvalue() == ""  # still this turn
    await asyncio.sleep(0)
    assert file.getvalue() == "".join(f"line {n}\n" for n in range(5))
    assert file.writes == 1


async def test_a_full_buffer_is_written_without_waiting_for_the_turn() -> None:
    file = CountingFile()
    writer = TurnWriter(file)
    for n in range(TurnWriter.MAX_LINES):
        writer.write_line(str(n))
    assert file.getvalue().splitlines() == [str(n) for n in range(TurnWriter.MAX_LINES)]


def test_lines_still_waiting_are_written_at_exit() -> None:
    # A loop that ends right after logging never runs the end-of-turn write: exit does.
    script = (
        "import asyncio, sys\n"
        "from shared.logging import TurnWriter\n"
        "writer = TurnWriter(sys.stdout)\n"
        "async def main():\n"
        "    writer.write_line('last words')\n"
        "loop = asyncio.new_event_loop()\n"
        "loop.run_until_complete(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, timeout=60
    )
    assert done.stdout.decode().splitlines() == ["last words"]


async def test_lines_from_another_thread_are_neither_lost_nor_written_twice() -> None:
    """A library may log from its own thread (the stdlib handler writes through the same
    writer): outside a loop its lines are written at once, beside the loop's waiting ones."""
    file = io.StringIO()
    writer = TurnWriter(file)

    def from_a_thread() -> None:
        for n in range(3000):
            writer.write_line(f"thread {n}")

    thread = threading.Thread(target=from_a_thread)
    thread.start()
    for n in range(3000):
        writer.write_line(f"loop {n}")
        if n % 20 == 0:
            await asyncio.sleep(0)
    thread.join()
    writer.flush()
    lines = file.getvalue().splitlines()
    expected = [f"thread {n}" for n in range(3000)] + [f"loop {n}" for n in range(3000)]
    assert sorted(lines) == sorted(expected)
    assert [line for line in lines if line.startswith("loop")] == expected[3000:]  # in order
