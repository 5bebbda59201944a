"""Matrix-facing I/O: the homeserver's routes into the appservice, and the registration.

Knows Matrix, knows nothing of marketplaces; never imports ``bridge``.
"""
