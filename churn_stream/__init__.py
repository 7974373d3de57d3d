"""Shared plumbing: settings, S3/Kafka/MLflow clients, the local stack launcher and the CLI."""
