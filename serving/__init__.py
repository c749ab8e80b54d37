"""SageMaker-compatible serving container, and the one predict path shared with training."""
