"""The ``nanorecon`` command line: one sub-command (verb) per pipeline stage.

Each verb lives in its own module ``_<verb>.py`` with ``add_parser(subparsers)`` and ``run(args) -> int``.
Verbs parse flags, read through :mod:`nanorecon.io`, call the pure algorithms and write through
:mod:`nanorecon.io`; errors end with a one-line message on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from nanorecon import __version__

#: verb name → module under nanorecon.cli
VERBS = {
    "simulate": "_simulate",
    "ingest": "_ingest",
    "reconstruct": "_reconstruct",
    "trace": "_trace",
    "lattice": "_lattice",
    "validate": "_validate",
    "summarize": "_summarize",
    "track": "_track",
    "extract": "_extract",
    "refine-particles": "_refine_particles",
    "figures": "_figures",
    "view": "_view",
}

log = logging.getLogger("nanorecon")


class UserError(Exception):
    """An error caused by input or configuration; printed without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanorecon",
        description="Atomic 3D structures of single nanoparticles from electron microscopy data.",
    )
    parser.add_argument("--version", action="version", version=f"nanorecon {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages as well")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for module_name in VERBS.values():
        module = importlib.import_module(f"nanorecon.cli.{module_name}")
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nanorecon`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.run(args) or 0)
    except (UserError, ValueError, OSError) as err:
        # One line for the rule's log; the traceback only with --verbose.
        log.debug("traceback of the error below", exc_info=True)
        print(f"nanorecon {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nanorecon {args.verb}: interrupted", file=sys.stderr)
        return 130
