"""Owns load and capacity: the load test of the predict API (``make loadtest``) and the sizing advisor."""
