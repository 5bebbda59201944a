"""Retention: rooms removed when their deal's time is up, after their transcript is stored;
old webhooks pruned (docs/retention.md).

    worker.py   the purge steps (export, announce, remove, prune) and webhook pruning
    records.py  the purges table as the worker steps it; the bridge's rows of a room deleted
    plan.py     what a dry run lists: the rooms due by a time, and what holds each
"""
