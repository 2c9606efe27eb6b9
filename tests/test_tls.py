"""TLS: real handshakes from redis-py and redis-cli --tls against trustme certificates."""
from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest
import redis
from servers import ROOT, free_port

trustme = pytest.importorskip("trustme")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    base = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("localhost", "127.0.0.1")
    client_cert = ca.issue_cert("client@predis")
    paths = {"ca": base / "ca.pem", "cert": base / "server.pem", "key": base / "server.key",
             "client": base / "client.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server_cert.private_key_pem.write_to_path(str(paths["key"]))
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    paths["ca2_obj"] = trustme.CA()
    return {k: (str(v) if not isinstance(v, trustme.CA) else v) for k, v in paths.items()}


@contextlib.contextmanager
def tls_server(pki, *extra):
    tls_port = free_port()
    log = open(f"/tmp/predis-tls-{tls_port}.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "predis_server", "--port", "0", "--tls-port", str(tls_port),
         "--tls-cert-file", pki["cert"], "--tls-key-file", pki["key"], "--tls-ca-cert-file", pki["ca"],
         *extra], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            assert proc.poll() is None, open(log.name).read()
            try:
                socket.create_connection(("127.0.0.1", tls_port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield tls_port
    finally:
        proc.terminate()
        proc.wait(10)


def client(port, pki, cert=True, **kwargs):
    return redis.Redis(port=port, ssl=True, ssl_ca_certs=pki["ca"],
                       ssl_certfile=pki["client"] if cert else None,
                       ssl_keyfile=pki["client"] if cert else None, retry=None, **kwargs)


def test_redis_py_with_client_certificate(pki):
    with tls_server(pki) as port:
        conn = client(port, pki)
        assert conn.set("k", "v") and conn.get("k") == b"v"
        conn.close()


def test_every_prompt_handshake_completes(pki):
    """A client whose ClientHello arrives before the server starts its handshake (the common
    case on loopback) must not be stalled: uvloop hands those bytes to the acceptor first."""
    with tls_server(pki) as port:
        ctx = ssl.create_default_context(cafile=pki["ca"])
        ctx.load_cert_chain(pki["client"])
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                with ctx.wrap_socket(sock, server_hostname="localhost") as tls:  # 5 s, not the 10 s stall
                    tls.sendall(b"PING\r\n")
                    assert tls.recv(16) == b"+PONG\r\n"


def test_plain_tcp_is_off_with_port_zero(pki):
    with tls_server(pki) as port:
        raw = socket.create_connection(("127.0.0.1", port), timeout=15)
        raw.sendall(b"PING\r\n" * 50)  # plaintext on the TLS port: a failed handshake, no PONG
        assert raw.recv(100) == b""
        raw.close()


def test_client_without_certificate_is_rejected(pki):
    with tls_server(pki) as port:
        with pytest.raises(redis.ConnectionError):
            client(port, pki, cert=False, single_connection_client=True).ping()
        optional = None
    with tls_server(pki, "--tls-auth-clients", "optional") as port:
        optional = client(port, pki, cert=False)
        assert optional.ping()  # control: the same client passes when certificates are optional
        optional.close()


def _tls11_context(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca"])
    ctx.load_cert_chain(pki["client"])
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


def test_tls11_client_is_rejected(pki):
    with tls_server(pki) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                _tls11_context(pki).wrap_socket(sock, server_hostname="localhost")
    with tls_server(pki, "--tls-protocols", "TLSv1.1 TLSv1.2") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            try:
                tls = _tls11_context(pki).wrap_socket(sock, server_hostname="localhost")
            except (ssl.SSLError, OSError) as exc:
                pytest.skip(f"this OpenSSL build cannot speak TLS 1.1 at all: {exc}")
            assert tls.version() == "TLSv1.1"  # control: allowed when configured


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli missing")
def test_redis_cli_tls(pki):
    with tls_server(pki) as port:
        base = ["redis-cli", "-p", str(port), "--tls", "--cacert", pki["ca"]]
        ok = subprocess.run([*base, "--cert", pki["client"], "--key", pki["client"], "PING"],
                            capture_output=True, text=True, timeout=60)
        assert ok.stdout.strip() == "PONG", ok.stderr
        refused = subprocess.run([*base, "PING"], capture_output=True, text=True, timeout=60)
        assert "PONG" not in refused.stdout


def test_certificates_reload_with_config_set(pki, tmp_path):
    """Rotate the files in place, then CONFIG SET makes the running server use them."""
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki["cert"], cert_path)
    shutil.copy(pki["key"], key_path)
    paths = dict(pki, cert=str(cert_path), key=str(key_path))
    other_ca = pki["ca2_obj"]
    with tls_server(paths) as port:
        conn = client(port, pki)
        assert conn.ping()
        rotated = other_ca.issue_cert("localhost", "127.0.0.1")
        rotated.cert_chain_pems[0].write_to_path(str(cert_path))
        rotated.private_key_pem.write_to_path(str(key_path))
        assert conn.ping()  # nothing changes before the reload
        conn.config_set("tls-cert-file", str(cert_path))
        conn.close()
        with pytest.raises(redis.ConnectionError):  # the new cert is not signed by the old CA
            client(port, pki, single_connection_client=True).ping()
        other_ca_file = tmp_path / "ca2.pem"
        other_ca.cert_pem.write_to_path(str(other_ca_file))
        fresh = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(other_ca_file), ssl_certfile=pki["client"],
                            ssl_keyfile=pki["client"])
        assert fresh.ping()
        fresh.close()
