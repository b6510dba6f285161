"""Hostile input on the command line: every malformed flag value gives one readable line and a
non-zero exit within seconds, never a traceback or a hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

UNREACHABLE = "nats://127.0.0.1:1"  # nothing listens on port 1
BAD_TOKENS = [".", "a.b", "*", ">", "a b", "ü", "x" * 65, ""]
BAD_NUMBERS = ["0", "-1", "nan", "inf", "-inf", "1e999", "x", ""]

CASES: list[tuple[str, ...]] = []
for tok in BAD_TOKENS:
    CASES += [("tick", "--cron", "* * * * * *", "--name", tok), ("drain", "--name", tok),
              ("reservations", "--name", tok)]
for cron in ["", "* * *", "61 * * * * *", "@never", "😀 * * * * *", "0 0 0 30 2 *", "* " * 40]:
    CASES.append(("tick", "--cron", cron, "--name", "ok"))
for tz in ["Mars/Olympus", "", " UTC", "../../etc/passwd", "UTC/../UTC"]:
    CASES.append(("tick", "--cron", "@daily", "--name", "ok", "--tz", tz))
for n in BAD_NUMBERS:
    CASES += [
        ("tick", "--cron", "@daily", "--name", "ok", "--replicas", n),
        ("drain", "--batch", n), ("drain", "--ack-wait", n), ("drain", "--max-deliver", n),
        ("drain", "--max-ack-pending", n), ("drain", "--enqueue", n if n != "0" else "-5"),
        ("reservations", "--timeout", n),
        ("certs", "--days", n),
        ("server", "--port", n if n != "-1" else "-2"), ("cluster", "--nodes", n), ("bench", "server", "--runs", n),
        ("supercluster", "--clusters", n), ("supercluster", "--nodes", n),
    ]
for n in ["-1", "nan", "inf", "1e999"]:
    CASES += [("drain", "--nak-delay", n), ("drain", "--work-ms", n), ("drain", "--fail-rate", n)]
CASES += [
    ("drain", "--fail-rate", "2"),
    ("drain", "--tick-durable", "a.b"), ("drain", "--worker", "a b"),
    ("drain", "--processed-log", "/proc/nope/log"),
    ("certs", "--out", "/proc/nope"), ("certs", "--host", "a b"), ("certs", "--host", ""), ("certs", "--user", "a.b"),
    ("server", "--store", "/proc/nope"), ("server", "--config", "no-such.conf"), ("server", "--port", "65536"),
    ("cluster", "--nodes", "1"), ("cluster", "--nodes", "10"), ("cluster", "--certs", "/proc/nope"),
    ("supercluster", "--clusters", "1"), ("supercluster", "--certs", "/proc/nope"),
    ("bench", "no-such-benchmark"),
    ("tick", "--cron", "@daily", "--name", "ok", "--server", "not a url"),
    ("tick", "--cron", "@daily", "--name", "ok", "--connect-timeout", "0"),
    ("drain", "--connect-timeout", "nan"),
    ("tick", "--cron", "@daily", "--name", "ok", "--ca", "/no/such/ca.pem"),
    ("reservations", "--cert", "/no/such/cert.pem"),
    ("tick", "--cron", "@daily", "--name", "ok", "-v", "--quiet"),
    ("no-such-command",),
]


def _needs_server(args: tuple[str, ...]) -> bool:
    return args[0] in {"tick", "drain", "reservations"} and "--server" not in args


def _run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``natsdemo.cli.main(argv)`` as the console script runs it (signal handlers restored after)."""
    from natsdemo.cli import main

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args", CASES, ids=[" ".join(a)[:60] for a in CASES])
def test_malformed_input_is_one_line_and_a_nonzero_exit(args: tuple[str, ...], capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `certs` and friends write relative to the working directory
    full = [*args, "--server", UNREACHABLE] if _needs_server(args) else list(args)
    started = time.monotonic()
    code, err = _run_in_process(full, capsys)
    took = time.monotonic() - started
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code != 0, err[-500:]
    assert "Traceback" not in err and len(lines) == 1, err[-1500:]
    assert lines[0].startswith("natsdemo"), lines[0]
    assert took < 12, f"took {took:.1f} s"


# the same promise seen from outside, for one case of each kind
OUTSIDE = [
    ("tick", "--cron", "0 61 * * * *", "--name", "ok"),
    ("drain", "--batch", "nan"),
    ("reservations", "--timeout", "-1"),
    ("certs", "--out", "/proc/nope"),
    ("cluster", "--nodes", "1"),
    ("tick", "--cron", "@daily", "--name", "ok", "--server", UNREACHABLE, "--connect-timeout", "2"),
]


@pytest.mark.parametrize("args", OUTSIDE, ids=[" ".join(a)[:60] for a in OUTSIDE])
def test_malformed_input_from_outside(args: tuple[str, ...], tmp_path):
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "natsdemo", *args], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode != 0 and "Traceback" not in out.stderr and len(lines) == 1, out.stderr[-1500:]
    assert time.monotonic() - started < 15


def test_a_path_error_is_not_reported_as_an_unreachable_server(tmp_path):
    out = subprocess.run([sys.executable, "-m", "natsdemo", "certs", "--out", "/proc/nope"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0 and "cannot reach NATS" not in out.stderr and "/proc/nope" in out.stderr, out.stderr
