"""Fault injection: the bridge killed, its database cut, Synapse restarted, the receiver failing,
transitions racing. Short in `make test`, long with `make chaos`; see docs/reliability.md."""
