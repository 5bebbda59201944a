"""What every part of the bridge runs on: the clock, wake-ups, the worker loop, backoff, locks
and metrics."""
