"""`metrics-mesh auth hash-password`: a password hash for `[[auth.users]] password_hash`.

The password is read from standard input when it is not a terminal (`echo pw | metrics-mesh
auth hash-password`), else asked for twice without echo. Only the hash is printed.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from mesh_common.auth_settings import SECTION
from mesh_common.options import ENV_HELP
from mesh_common.passwords import hash_password


def declare(parser: argparse.ArgumentParser) -> None:
    """The `auth` subcommand's actions (`hash-password`)."""
    parser.description = "Make the secrets the [auth] table holds."
    parser.epilog = ENV_HELP + "\n" + SECTION.help_text()
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    hashing = actions.add_parser(
        "hash-password",
        help="print an scrypt hash of a password for [[auth.users]] password_hash",
        description="Read a password (stdin, or asked twice on a terminal) and print "
        "its scrypt$N$r$p$SALT$HASH hash.",
    )
    hashing.set_defaults(handler=run_hash_password)


def run_hash_password(args: argparse.Namespace) -> int:
    """Read the password, print its hash; status 2 for an empty or mismatched password."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("auth: the two passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("auth: the password is empty", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0
