"""Pure marketplace policy: states, room plans, content rules, admin commands.

Models and a clock in, decisions out. No I/O libraries and nothing else of this project:
``tests/unit/test_layers.py`` holds that line.
"""
