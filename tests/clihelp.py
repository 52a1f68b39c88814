"""Running the real `tfx` CLI in a subprocess, as a user's shell would."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def tfx(*args: str, env: dict, stdin: str | bytes | None = None, timeout: float = 120) -> Result:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        [sys.executable, "-m", "tfx", *args],
        input=data if data is not None else b"",
        capture_output=True,
        env=env,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def assert_clean_error(result: Result, code: int = 1, *needles: str) -> None:
    """One-line error on stderr, the expected exit status, no traceback."""
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("tfx: error:"), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def read_pty(master: int, timeout: float = 60) -> list[bytes]:
    """Every chunk written to a pseudo-terminal until its last writer closes it (or nothing comes in time)."""
    import os
    import select

    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return chunks
