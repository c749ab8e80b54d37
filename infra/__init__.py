"""Owns the cloud path: the CDK app, its constructs, the predict Lambda and the local stand-in of the chain."""
