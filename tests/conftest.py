"""Session fixtures: a real local stack (SeaweedFS, Tansu, MLflow) on free ports.

The stack is started once per test session in its own data directory and stopped at
the end, so tests can run while a demo stack is up on the default ports.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TELCO_CSV = REPO / "data" / "telco_customer_churn.csv"


@pytest.fixture(scope="session")
def telco_csv() -> Path:
    """The shipped IBM Telco customer churn file."""
    return TELCO_CSV


@pytest.fixture(scope="session")
def local_stack():
    """A running LocalStack on free ports; topics in memory (ephemeral) for speed."""
    from churn_stream.stack import LocalStack

    data_dir = Path(tempfile.mkdtemp(prefix="churn-test-stack-"))
    stack = LocalStack.for_tests(data_dir)
    try:
        stack.up(ephemeral=True)
        yield stack
    finally:
        stack.down()
        if os.environ.get("CHURN_KEEP_TEST_DATA") != "1":
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_settings(local_stack):
    """Settings pointing at the session's stack."""
    from churn_stream.stack import LocalStack

    port = LocalStack.free_ports(1)[0]
    return local_stack.settings().with_overrides(worker_web_port=port)
