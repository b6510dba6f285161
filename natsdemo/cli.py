"""The command line: ``python -m natsdemo COMMAND`` (or the ``natsdemo`` console script).

Each command lives in the module that teaches it; that module defines ``configure_cli(parser)``
and ``run_cli(args) -> int``. Bad input is reported as one readable line on stderr with a non-zero
exit code, never a traceback (set ``NATSDEMO_DEBUG=1`` to see one).

Defined in notebooks/00_start_here.ipynb
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import ssl
import sys
import threading
from collections.abc import Sequence

from natsdemo.errors import UsageError

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "server": ("natsdemo.admin", "run a nats-server in the foreground and print its URL"),
    "certs": ("natsdemo.pki", "make a CA, server and client certificates"),
    "tick": ("natsdemo.tick_service", "publish cron ticks on schedule.<name>"),
    "drain": ("natsdemo.drain_service", "drain the work queue on every tick"),
    "reservations": ("natsdemo.reservation_service", "run the reservation timeout service"),
    "cluster": ("natsdemo.cluster", "run a local 3-node JetStream cluster with mutual-TLS routes"),
    "bench": ("natsdemo.bench", "run a benchmark and print its figures"),
    "doctor": ("natsdemo.admin", "pre-flight check for a workshop machine"),
    "reset": ("natsdemo.admin", "stop stray workbook servers and clear their state"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def _module(command: str):
    return importlib.import_module(COMMANDS[command][0])


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (so one command's import cost stays its own)."""
    parser = _Parser(prog="natsdemo", description="The NATS workbook's services and tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            mod = _module(name)
            configure = getattr(mod, f"configure_{name}", None) or mod.configure_cli
            configure(p)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
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

    from natsdemo.server import ServerStartError

    if isinstance(exc, ServerStartError):
        return _one_line(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return (
            f"TLS verification failed ({_one_line(exc)}): pass the workbook CA with --ca certs/ca.pem "
            "(or NATS_CA) and connect with a host name that is in the server certificate's SANs"
        )
    if isinstance(exc, nats.errors.NoServersError | ConnectionRefusedError | nats.errors.TimeoutError | OSError):
        url = server or os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
        return (
            f"cannot reach NATS ({_one_line(exc) or type(exc).__name__}); is a server running? "
            f"start one with `python -m natsdemo server` or pass --server (tried {url})"
        )
    return f"{type(exc).__name__}: {_one_line(exc)}"


def stop_event(grace: float = 30.0) -> asyncio.Event:
    """An event set on SIGINT or SIGTERM, for services that shut down gracefully.

    Call it from inside the running loop (``asyncio.run``). The graceful shutdown gets ``grace``
    seconds: if something hangs (a library task that ignores cancellation), the process exits
    anyway, and a second signal exits at once. A service never outlives a stop request.
    """
    event = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if event.is_set():
            print("second stop signal: exiting now", file=sys.stderr, flush=True)
            os._exit(130)
        event.set()
        timer = threading.Timer(grace, _exit_after_grace, args=(grace,))
        timer.daemon = True  # a clean exit does not wait for it
        timer.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    return event


def _exit_after_grace(grace: float) -> None:
    print(f"graceful shutdown took longer than {grace:g} s: exiting", file=sys.stderr, flush=True)
    os._exit(1)
