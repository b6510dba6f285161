"""The command line: ``python -m natsdemo COMMAND`` (or the ``natsdemo`` console script).

The single entry point, above every layer. Each command lives in the module that teaches it; that
module defines ``configure_cli(parser)`` and ``run_cli(args) -> int`` (or ``configure_NAME`` and
``run_NAME``). Only the chosen command's module is imported, so the services (``tick``, ``drain``,
``reservations``, ``certs``) run with the library alone (``pip install .``), and the workbook's
commands say which extra they need. Bad input is reported as one readable line on stderr with a
non-zero exit code, never a traceback (set ``NATSDEMO_DEBUG=1`` to see one).

Not taught on its own: every notebook runs its commands (00 lists them).
"""

from __future__ import annotations

import argparse
import importlib
import os
import ssl
import sys
from collections.abc import Sequence
from types import ModuleType

from natsdemo import __version__
from natsdemo.core.errors import UsageError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "server": ("natsdemo.workbook.admin", "run a nats-server in the foreground and print its URL"),
    "certs": ("natsdemo.tls.cli", "make a CA, server and client certificates"),
    "tick": ("natsdemo.ticks.service", "publish cron ticks on schedule.<name>"),
    "drain": ("natsdemo.drain.service", "drain the work queue on every tick"),
    "reservations": ("natsdemo.reservations.cli", "run the reservation timeout service"),
    "coupons": ("natsdemo.coupons.service", "issue, redeem and watch coupons that expire by per-message TTL"),
    "cluster": ("natsdemo.workbook.cluster", "run a local 3-node JetStream cluster with mutual-TLS routes"),
    "supercluster": ("natsdemo.workbook.supercluster", "run local clusters joined by mutual-TLS gateways"),
    "workshop": ("natsdemo.workbook.workshop", "one server for a room: an account per seat, seat files, status"),
    "site": ("natsdemo.workbook.site", "run every notebook and build the static website of the workbook"),
    "bench": ("natsdemo.workbook.bench", "run a benchmark and print its figures"),
    "doctor": ("natsdemo.workbook.admin", "pre-flight check for a workshop machine"),
    "reset": ("natsdemo.workbook.admin", "stop stray workbook servers and clear their state"),
}
# long-running services add -v/--quiet with their connection flags (natsdemo.core.service); every
# other command gets them here: -v logs debug detail, --quiet keeps only results and problems
SERVICES = frozenset({"tick", "drain", "reservations", "coupons"})
WORKBOOK_EXTRA = "pip install 'natsdemo[workbook]' (or: pip install -r requirements.txt)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


class MissingExtra(Exception):
    """A workbook command in an install without the workbook's packages."""


def _module(command: str) -> ModuleType:
    try:
        return importlib.import_module(COMMANDS[command][0])
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "natsdemo":
            raise
        raise MissingExtra(f"`{command}` needs {exc.name}, part of the workbook: {WORKBOOK_EXTRA}") from None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (so one command's import cost stays its own)."""
    parser = _Parser(prog="natsdemo", description="The NATS workbook's services and tools.")
    parser.add_argument("-V", "--version", action="version", version=f"natsdemo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            mod = _module(name)
            configure = getattr(mod, f"configure_{name}", None) or mod.configure_cli
            configure(p)
            if name not in SERVICES:
                _add_noise_flags(p)
    return parser


def _add_noise_flags(parser: argparse.ArgumentParser) -> None:
    noise = parser.add_argument_group("output").add_mutually_exclusive_group()
    noise.add_argument("-v", "--verbose", action="store_true", help="log debug detail as well")
    noise.add_argument("-q", "--quiet", action="store_true",
                       help="print results and problems only (no progress or notes)")
    parser.set_defaults(configure_logging=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command if command in COMMANDS else None)
    except MissingExtra as exc:
        print(f"natsdemo {command}: error: {exc}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    if getattr(args, "configure_logging", False):  # services configure theirs when they start
        from natsdemo.core.service import configure_logging

        configure_logging(args)
    mod = _module(args.command)
    run = getattr(mod, f"run_{args.command}", None) or mod.run_cli
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UsageError as exc:
        print(f"natsdemo {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if os.environ.get("NATSDEMO_DEBUG"):
            raise
        print(f"natsdemo {args.command}: error: {explain(exc, getattr(args, 'server', None))}", file=sys.stderr)
        return 1


def explain(exc: BaseException, server: str | None = None) -> str:
    """A plain-words explanation of a connection or server error, with what to do."""
    import nats.errors

    from natsdemo.core.errors import NatsdemoError

    if isinstance(exc, NatsdemoError):  # its message already says what happened and what to do
        return _one_line(exc)
    server_mod = sys.modules.get("natsdemo.workbook.binary")  # loaded if a workbook server was started
    if server_mod is not None and isinstance(exc, server_mod.ServerStartError):
        return _one_line(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return (
            f"TLS verification failed ({_one_line(exc)}): pass the workbook CA with --ca certs/ca.pem "
            "(or NATS_CA) and connect with a host name that is in the server certificate's SANs"
        )
    if isinstance(exc, OSError) and exc.filename and not isinstance(exc, ConnectionError):
        # a local path (a certificate, an output folder, a store), not the network
        return f"cannot use {exc.filename}: {exc.strerror or _one_line(exc)}"
    if isinstance(exc, nats.errors.NoServersError | ConnectionRefusedError | nats.errors.TimeoutError | OSError):
        url = server or os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
        return (
            f"cannot reach NATS ({_one_line(exc) or type(exc).__name__}); is a server running? "
            f"start one with `python -m natsdemo server` or pass --server (tried {url})"
        )
    return f"{type(exc).__name__}: {_one_line(exc)}"
