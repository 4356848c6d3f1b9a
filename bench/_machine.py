"""What machine a benchmark ran on (the same figures `flotilla bench` and `flotilla chaos`
report)."""

from flotilla_cli.machine import machine

__all__ = ["machine"]
