"""Test-suite helpers: in-process stand-ins for the outside world (exchanges, clocks)."""
