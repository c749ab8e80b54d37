"""Owns the day-one CloudWatch alarms on the endpoint, the Lambda and the API."""
