"""Owns the predict Lambda's code; this folder is the Lambda asset, deployed as it is."""
