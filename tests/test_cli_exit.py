"""The console script's exit: the command's status, its output and its exit handlers, without the
interpreter's teardown of the modules it loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROBE = textwrap.dedent(
    """
    import atexit, sys, threading, time
    from pathlib import Path

    import typer

    from flows import cli

    out = Path(sys.argv[1])


    class Teardown:  # held by this module until the interpreter tears its modules down
        def __del__(self) -> None:
            (out / "teardown").write_text("ran")


    kept = Teardown()


    @cli.app.command("probe")
    def probe(code: int) -> None:
        atexit.register(lambda: (out / "handler").write_text("ran"))

        def late() -> None:  # a thread the command leaves running: the process waits for it
            time.sleep(0.5)
            (out / "thread").write_text("ran")

        threading.Thread(target=late).start()
        print("no newline, still buffered", end="")
        raise typer.Exit(code)


    sys.argv = ["mixsweep", "probe", sys.argv[2]]
    cli.main()
    """
)


@pytest.mark.parametrize("code", [0, 3])
def test_exit_skips_teardown_only(tmp_path: Path, code: int) -> None:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == "no newline, still buffered"  # flushed before the process ended
    assert (tmp_path / "thread").read_text() == "ran"
    assert (tmp_path / "handler").read_text() == "ran"
    assert not (tmp_path / "teardown").exists()  # the teardown was skipped


def test_uncaught_error_takes_the_normal_exit(tmp_path: Path) -> None:
    """A crash is not a command's exit: its traceback and status are the interpreter's own."""
    script = tmp_path / "crash.py"
    script.write_text(PROBE.replace("raise typer.Exit(code)", 'raise RuntimeError("boom")'))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "0"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stderr
    assert (tmp_path / "teardown").read_text() == "ran"
