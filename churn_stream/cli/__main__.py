"""``python -m churn_stream.cli``: the ``churn`` command (the demo starts its services this way)."""

from churn_stream.cli import main

main()
