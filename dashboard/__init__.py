"""The Dash dashboard: live scores and alerts, models, data quality, and a score-a-customer form.

Read-only: it reads Kafka (one background consumer, no consumer group), the MLflow
tracking server and registry, and posts customers to the prediction API; it never
writes to Kafka, S3 or MLflow. Start it with ``churn dashboard``.
"""

from dashboard.app import create_app, run_dashboard

__all__ = ["create_app", "run_dashboard"]
