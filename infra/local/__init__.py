"""Owns the local stand-in of the cloud chain: front door -> real handler -> boto3 -> endpoint -> container."""
