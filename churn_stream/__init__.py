"""Tools above every layer: the ``churn`` CLI, the demo, the local stack launcher, the producer and the benchmarks.

Nothing in the product imports this package.
"""
