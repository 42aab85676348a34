"""Small clients for the harness: a RESP2 client for Redis, one-shot HTTP(S) requests, HS256 tokens the
instances accept, a free loopback port and a bounded wait. Everything talks to 127.0.0.1 only.

`use_tls(cafile)` switches every request of the run (workload, sweep, probes) to HTTPS, verifying the
server against that CA: instances and haproxy then accept TLS only."""

import base64
import hashlib
import hmac
import http.client as httpclient
import json
import socket
import ssl
import time

from . import JWT_SECRET


class Redis:
    """A minimal RESP2 client (one connection, blocking, with a timeout)."""

    def __init__(self, port, timeout=3.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __call__(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)[:-2]
            return data.decode("utf-8", "replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise RuntimeError("bad RESP line %r" % line)


def redis_call(port, *args, timeout=3.0):
    client = Redis(port, timeout)
    try:
        return client(*args)
    finally:
        client.close()


def pairs(flat):
    flat = flat or []
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(subject, admin=False, ttl=3600):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": subject, "exp": int(time.time()) + ttl, "iat": int(time.time())}
    if admin:
        claims["scope"] = "admin"
    payload = b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing = (header + "." + payload).encode()
    signature = hmac.new(JWT_SECRET.encode(), signing, hashlib.sha256).digest()
    return header + "." + payload + "." + b64url(signature)


_tls_context = None  # set once per run by use_tls(); None: plain HTTP


def use_tls(cafile):
    """Every later request goes over HTTPS and verifies the server's certificate (chain and the address
    127.0.0.1) against `cafile`; None goes back to plain HTTP."""
    global _tls_context
    _tls_context = ssl.create_default_context(cafile=cafile) if cafile else None


def request(port, method, path, body=None, bearer=None, headers=None, timeout=5.0, plain=False, reply_headers=None):
    """One request on a fresh connection: (status, json-or-text), over HTTPS when the run uses TLS (`plain`
    forces HTTP: the probe that TLS-only ports refuse it). Raises on network errors and timeouts; a failed
    handshake or verification is an `ssl.SSLError`, an OSError like the others. A dict as `reply_headers`
    receives the answer's headers (names in lower case)."""
    if _tls_context is None or plain:
        connection = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    else:
        connection = httpclient.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=_tls_context)
    try:
        all_headers = dict(headers or {})
        if bearer:
            all_headers["Authorization"] = "Bearer " + bearer
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        if reply_headers is not None:
            reply_headers.update((name.lower(), value) for name, value in response.getheaders())
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")
    finally:
        connection.close()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails is simply "not yet"
            pass
        time.sleep(interval)
    return False
