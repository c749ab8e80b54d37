"""API Gateway's account-level CloudWatch role, owned once per account and region."""
