"""The process exit codes of a harness run, in one place (documented in the README and help).

0 and 1 are Locust's own (1: calls failed, ``--exit-code-on-error``); the harness adds
its own above them, one code per reason, so a pipeline can tell them apart.
"""

from __future__ import annotations

__all__ = ["EXIT_CONFIG", "EXIT_COST_CAP", "EXIT_GENERATOR_BOUND", "EXIT_SLO_BREACH"]

# Same code as argparse's usage errors, so every bad-configuration exit looks alike.
EXIT_CONFIG = 2
EXIT_SLO_BREACH = 3
EXIT_GENERATOR_BOUND = 4
EXIT_COST_CAP = 5
