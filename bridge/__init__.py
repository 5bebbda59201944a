"""The marketplace Matrix bridge: config, storage, the marketplace API and the workers.

``python -m bridge`` is the program; `bridge.app.Bridge` is its composition root.
"""
