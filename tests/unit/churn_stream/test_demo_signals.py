"""``churn demo`` stops its worker on SIGTERM as on Ctrl-C (``sigterm_as_interrupt``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from churn_stream.demo import sigterm_as_interrupt


def test_sigterm_inside_the_block_raises_keyboard_interrupt_and_finally_runs():
    cleaned = []
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # interrupted by the handler long before this ends
            finally:
                cleaned.append("worker stopped")
    assert cleaned == ["worker stopped"]
    assert signal.getsignal(signal.SIGTERM) is before  # restored on the way out


def test_a_terminated_process_runs_its_cleanup():
    """In a child process: SIGTERM while waiting inside the block still runs the cleanup."""
    code = (
        "import sys, time\n"
        "from churn_stream.demo import sigterm_as_interrupt\n"
        "try:\n"
        "    with sigterm_as_interrupt():\n"
        "        try:\n"
        "            print('ready', flush=True); time.sleep(30)\n"
        "        finally:\n"
        "            print('cleanup ran', flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(3)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert "cleanup ran" in out
    assert proc.returncode == 3
