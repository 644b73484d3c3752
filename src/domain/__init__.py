"""The pure core of the grid bot: value objects, market rules, grid and risk logic, ports.

Nothing here performs I/O, reads a clock, logs or imports a framework; `returns` is the only
third-party import allowed (enforced by import-linter).
"""
