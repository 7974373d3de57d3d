"""``churn bench ...``: benchmarks that print each figure beside its reference and the load average."""
