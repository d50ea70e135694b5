"""``python -m harness.help``: Locust's ``--help`` with the harness's options, SLO grammar and exit codes.

Locust 2.47 prints ``--help`` before it imports the locustfile, so options that a
locustfile or plugin registers (all of the harness's) never appear in ``locust --help``.
This prints the parser Locust builds once the harness is loaded: the same text, complete.
"""

from __future__ import annotations

import sys

from locust.argument_parser import get_parser

import harness.plugin  # noqa: F401  (registers the harness's options with Locust's parser)


def main() -> None:
    parser = get_parser()
    parser.prog = "locust"
    parser.print_help(sys.stdout)


if __name__ == "__main__":
    main()
