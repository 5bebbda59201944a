"""Benchmarks: the bridge measured against Synapse itself, in the same run (`make bench`)."""
