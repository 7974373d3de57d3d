"""Batch side: ELT, data-quality gate, training, evaluation, promotion, the scheduler service."""
