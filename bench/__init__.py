"""Benchmarks of aigw-middleware against plain frameworks and the peer libraries.

Run them with ``scripts/bench`` (or ``python bench/run.py --help``); see the README's
Performance section.
"""
