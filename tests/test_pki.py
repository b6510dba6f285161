"""natsdemo.tls.pki without a server: what the certificates contain, the idempotent `certs` command,
key hygiene (0600, never in git), and the plain-words error explanations."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from natsdemo import tls
from natsdemo.workbook.tls_servers import TlsServer
from tests.conftest import ROOT, assert_one_line_error, run_cli

# a PEM private key header, spelled so that this file does not match itself
PEM_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE" + rb" KEY-----")
STANDARD = {
    "ca.pem", "ca-key.pem", "server.pem", "server-key.pem",
    "client-alice.pem", "client-alice-key.pem", "client-bob.pem", "client-bob-key.pem",
}


@pytest.fixture(scope="module")
def ca() -> tls.Issued:
    return tls.make_ca()


def _ext(cert: x509.Certificate, cls: type) -> object:
    return cert.extensions.get_extension_for_class(cls).value


def test_ca_is_a_self_signed_ecdsa_p256_ca(ca):
    cert = ca.cert
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    assert _ext(cert, x509.BasicConstraints).ca is True
    usage = _ext(cert, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp256r1"
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=tls.CA_DAYS, minutes=1)
    leaf = tls.make_server_cert(ca).cert
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(days=tls.DEFAULT_DAYS, minutes=1)


def test_server_cert_has_sans_and_both_ekus(ca):
    srv = tls.make_server_cert(ca, ["nats-1", "10.0.0.7"])
    srv.cert.verify_directly_issued_by(ca.cert)
    assert tls.sans(srv.cert)["hosts"] == ["localhost", "nats-1", "127.0.0.1", "::1", "10.0.0.7"]
    eku = list(_ext(srv.cert, x509.ExtendedKeyUsage))
    assert eku == [tls.SERVER_AUTH, tls.CLIENT_AUTH]
    assert _ext(srv.cert, x509.BasicConstraints).ca is False


def test_client_cert_has_email_san_and_client_auth_only(ca):
    alice = tls.make_client_cert(ca, "alice")
    assert tls.sans(alice.cert) == {"hosts": [], "emails": ["alice@natsdemo.test"]}
    assert list(_ext(alice.cert, x509.ExtendedKeyUsage)) == [tls.CLIENT_AUTH]


def test_bad_certificates_are_bad_in_the_intended_way(ca):
    bad = tls.bad_certs(ca)
    t = tls.now()
    assert bad["expired"].cert.not_valid_after_utc < t
    assert bad["not_yet_valid"].cert.not_valid_before_utc > t
    assert "127.0.0.1" not in tls.sans(bad["wrong_san"].cert)["hosts"]
    assert tls.sans(bad["cn_only"].cert) == {"hosts": [], "emails": []}
    assert bad["other_ca_root"].cert.subject != ca.cert.subject
    bad["other_ca"].cert.verify_directly_issued_by(bad["other_ca_root"].cert)
    with pytest.raises(Exception):  # noqa: B017 - any verification failure will do
        bad["other_ca"].cert.verify_directly_issued_by(ca.cert)
    assert list(_ext(bad["wrong_eku_client"].cert, x509.ExtendedKeyUsage)) == [tls.SERVER_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        _ext(bad["no_eku_client"].cert, x509.ExtendedKeyUsage)
    assert bad["expired_client"].cert.not_valid_after_utc < t


def test_describe_and_table(ca, tmp_path):
    srv = tls.make_server_cert(ca)
    path, _ = srv.write(tmp_path, "server")
    row = tls.describe(path)
    assert row["EKU"] == "serverAuth, clientAuth"
    assert row["SANs"] == "localhost, 127.0.0.1, ::1"
    assert row["CA"] == "no" and row["state"].startswith("valid")
    assert tls.describe(tls.bad_certs(ca)["expired"])["state"] == "expired"
    table = tls.CertTable({"ca": ca, "server": path})
    html = table._repr_html_()
    assert "<table>" in html and "natsdemo CA" in html and "serverAuth" in html
    assert "server" in repr(table)


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


def test_ensure_certs_is_idempotent_and_keys_are_0600(tmp_path):
    out = tmp_path / "certs"
    first = tls.ensure_certs(out)
    assert set(first.values()) == {"created"}
    assert {p.name for p in out.iterdir()} == STANDARD
    modes = _modes(out)
    assert all(modes[n] == 0o600 for n in STANDARD if n.endswith("-key.pem")), modes
    serials = {n: tls.load_cert(out / n).serial_number for n in STANDARD if not n.endswith("-key.pem")}

    again = tls.ensure_certs(out)
    assert set(again.values()) == {"kept"}
    assert serials == {n: tls.load_cert(out / n).serial_number for n in serials}

    # a missing key and an expired certificate are regenerated, the rest is kept
    (out / "client-bob-key.pem").unlink()
    ca = tls.load(out, "ca")
    tls.bad_certs(ca)["expired"].write(out, "server")
    third = tls.ensure_certs(out)
    assert third == {"ca": "kept", "server": "created", "client-alice": "kept", "client-bob": "created"}
    assert tls.load_cert(out / "server.pem").not_valid_after_utc > tls.now()

    # a host the server certificate lacks means a new server certificate
    assert tls.ensure_certs(out, hosts=["n1"])["server"] == "created"
    assert "n1" in tls.sans(tls.load_cert(out / "server.pem"))["hosts"]

    forced = tls.ensure_certs(out, force=True)
    assert set(forced.values()) == {"created"}
    assert all(tls.load_cert(out / n).serial_number != s for n, s in serials.items())
    assert all(_modes(out)[n] == 0o600 for n in STANDARD if n.endswith("-key.pem"))


def test_a_new_ca_reissues_everything(tmp_path):
    tls.ensure_certs(tmp_path)
    (tmp_path / "ca-key.pem").unlink()
    assert set(tls.ensure_certs(tmp_path).values()) == {"created"}
    ca = tls.load_cert(tmp_path / "ca.pem")
    tls.load_cert(tmp_path / "client-alice.pem").verify_directly_issued_by(ca)


def test_cli_writes_the_standard_set_then_keeps_it(tmp_path):
    out = tmp_path / "c"
    proc = run_cli("certs", "--out", str(out), "--days", "7", "--host", "nats")
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == STANDARD
    assert proc.stdout.count("created") == 4
    assert "nats" in tls.sans(tls.load_cert(out / "server.pem"))["hosts"]
    left = tls.load_cert(out / "server.pem").not_valid_after_utc - tls.now()
    assert dt.timedelta(days=6) < left <= dt.timedelta(days=7)
    ca_left = tls.load_cert(out / "ca.pem").not_valid_after_utc - tls.now()
    assert ca_left > dt.timedelta(days=tls.CA_DAYS - 1)
    again = run_cli("certs", "--out", str(out))
    assert again.returncode == 0 and again.stdout.count("kept") == 4, again.stdout
    forced = run_cli("certs", "--out", str(out), "--force")
    assert forced.stdout.count("created") == 4


def test_cli_default_out_is_certs_in_the_cwd(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "natsdemo", "certs"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (tmp_path / "certs").iterdir()} == STANDARD


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--days", "0"], "--days must be more than 1"),
        (["--host", "a b"], "--host takes a bare host name"),
        (["--user", "../x"], "user names may hold"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, args, fragment):
    proc = run_cli("certs", "--out", str(tmp_path / "c"), *args)
    assert_one_line_error(proc, "natsdemo certs: error:", fragment)
    assert proc.returncode == 2
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_cli_out_must_be_a_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(run_cli("certs", "--out", str(f)), "is not a folder")


def test_no_private_key_in_git():
    """Nothing git tracks, or would add with `git add -A`, holds a private key; certs/ is ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, timeout=30, check=True,
    ).stdout.decode().split("\0")
    files = [ROOT / f for f in listed if f]
    assert any(f.name == "pki.py" for f in files)  # the listing itself worked
    leaked = []
    for f in files:
        try:
            if f.is_file() and f.stat().st_size < 5_000_000 and PEM_KEY.search(f.read_bytes()):
                leaked.append(str(f.relative_to(ROOT)))
        except OSError:
            continue
    assert not leaked, f"private keys would be committed: {leaked}"
    ignored = subprocess.run(
        ["git", "check-ignore", "certs/ca-key.pem", "certs/server.pem", "somewhere/x-key.pem"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    ).stdout.split()
    assert ignored == ["certs/ca-key.pem", "certs/server.pem", "somewhere/x-key.pem"]


def test_key_files_are_never_world_readable_even_briefly(tmp_path):
    old = os.umask(0)
    try:
        tls.make_ca().write(tmp_path, "ca")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate",
         "does not trust the CA"),
        ("certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.1'.", "SANs"),
        ("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required", "requires a client certificate"),
        ("nats: 'Authorization Violation'", "no user in the server's list"),
    ],
)
def test_explain_in_plain_words(raw, words):
    out = tls.explain(RuntimeError(raw))
    assert not out.ok and words in out.reason and out.fix
    assert words in str(out)


def test_validity_plot_marks_now_rotation_and_the_replaced_certificate(ca):
    import matplotlib

    matplotlib.use("Agg")
    from natsdemo.workbook.labs.tls_validity import ValidityPlot

    plot = ValidityPlot()
    plot.show({"CA": ca, "server": tls.make_server_cert(ca), "old": tls.bad_certs(ca)["expired"]}, current="server")
    name = plot.rotated(tls.make_server_cert(ca, days=45))
    assert name == "server #2" and plot.retired == {"server"} and len(plot.rotations) == 1
    colors = [tuple(round(c, 2) for c in bar.get_facecolor()[:3]) for bar in plot.plot.ax.patches]
    assert len(colors) == 4 and len(set(colors)) == 3  # valid green, expired red, replaced grey
    assert [t.get_text() for t in plot.plot.ax.get_legend().get_texts()] == ["now", "rotation"]
    plot.plot.close()


def test_lifetimes_are_as_documented(tmp_path):
    """README: leaves live --days, the CA at least a year, and no leaf outlives its CA."""
    tls.ensure_certs(tmp_path, days=30)
    ca = tls.load_cert(tmp_path / "ca.pem")
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= dt.timedelta(days=365)
    for name in ("server", "client-alice", "client-bob"):
        leaf = tls.load_cert(tmp_path / f"{name}.pem")
        life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        assert dt.timedelta(days=29) < life <= dt.timedelta(days=30, minutes=10), (name, life)
        assert leaf.not_valid_after_utc <= ca.not_valid_after_utc


def _openssl_block() -> str:
    """The first ```bash block of notebook 01's openssl section, as a reader copies it."""
    cells = json.loads((ROOT / "notebooks" / "01_tls_self_signed_ca.ipynb").read_text())["cells"]
    text = next("".join(c["source"]) for c in cells if "same certificates with openssl" in "".join(c["source"]))
    return text.split("```bash\n", 1)[1].split("```", 1)[0]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_the_openssl_commands_of_notebook_01_make_the_same_set(tmp_path):
    """What the notebook says of them: the same names, lifetimes, extensions and key modes, and
    servers accept them (a verify_and_map server maps alice and bob)."""
    out = subprocess.run(["bash", "-c", _openssl_block()], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in tls.standard_files():
        assert (tmp_path / name).exists(), name
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == (0o600 if name.endswith("-key.pem") else 0o644), (name, oct(mode))
    ca_cert, server = tls.load_cert(tmp_path / "ca.pem"), tls.load_cert(tmp_path / "server.pem")
    assert ca_cert.not_valid_after_utc - ca_cert.not_valid_before_utc == dt.timedelta(days=tls.CA_DAYS)
    assert server.not_valid_after_utc - server.not_valid_before_utc == dt.timedelta(days=tls.DEFAULT_DAYS)
    ours = tls.load(tmp_path, "client-bob").cert  # the key loads, and matches
    assert (tmp_path / "server-key.pem").read_text().startswith("-----BEGIN EC PRIVATE KEY")  # SEC1, as said
    for cert in (server, ours):
        assert _ext(cert, x509.BasicConstraints).ca is False
        usage = _ext(cert, x509.KeyUsage)
        assert usage.digital_signature and not usage.key_cert_sign
    assert tls.sans(server) == {"hosts": list(tls.DEFAULT_HOSTS), "emails": []}
    assert tls.sans(ours)["emails"] == ["bob@natsdemo.test"]
    async with TlsServer(config="tls-verify-and-map.conf", certs=tmp_path, name="test-openssl") as srv:
        ctx = tls.client_context(tmp_path / "ca.pem", tmp_path / "client-alice.pem", tmp_path / "client-alice-key.pem")
        assert (await tls.probe(srv.url.replace("nats://", "tls://"), ctx, server=srv)).ok


def test_the_workbook_writes_its_certificates_into_the_repositorys_certs_folder():
    """Notebook 01 says `certs/` at the top of the repository: where `natsdemo certs` and compose look."""
    from natsdemo.workbook.labs.tls import workbook_certs_dir

    assert workbook_certs_dir() == ROOT / "certs"


def test_every_key_is_p256_and_a_mismatched_pair_is_replaced(tmp_path):
    """What notebook 01 says of ensure_certs: all keys ECDSA P-256; a pair whose key does not match
    its certificate (a crash between the two renames) is made again."""
    tls.ensure_certs(tmp_path)
    for name in tls.standard_files():
        if name.endswith("-key.pem"):
            key = tls.load(tmp_path, name.removesuffix("-key.pem")).key
            assert key.curve.name == "secp256r1", name
    other = tls.new_key()
    tls.write_private(tmp_path / "server-key.pem", tls.Issued(tls.load(tmp_path, "server").cert, other).key_pem)
    actions = tls.ensure_certs(tmp_path)
    assert actions["server"] == "created" and actions["ca"] == "kept"
    pair = tls.load(tmp_path, "server")
    assert pair.key.public_key().public_numbers() == pair.cert.public_key().public_numbers()
