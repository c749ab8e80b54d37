"""Owns what the front door captures on AWS: the Firehose stream, its lifecycle, and who may read captures."""
