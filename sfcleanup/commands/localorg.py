"""`sfcleanup localorg serve`: the local org over HTTPS. Its options are parsed by the server itself."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    localorg = commands.add_parser("localorg", help="the embedded local org")
    sub = localorg.add_subparsers(dest="localorg_command", required=True)
    sub.add_parser("serve", help="serve it over HTTPS on 127.0.0.1 (see `sfcleanup localorg serve --help`)")
