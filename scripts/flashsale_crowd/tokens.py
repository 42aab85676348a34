"""The crowd's HS256 tokens, signed with the crowd's own secret (`flashsale_crowd.JWT_SECRET`, which the
topology gives its instances): chaos's `token()` signs with the chaos suite's secret and would be refused.
Customers are named `cust-00000`, `cust-00001`, ..."""

import hashlib
import hmac
import json
import time

from flashsale_chaos.clients import b64url

from . import JWT_SECRET

JWT_HEADER = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())


def customer_name(index):
    return "cust-%05d" % index


def token(subject, admin=False, ttl=3600):
    now = int(time.time())
    claims = {"sub": subject, "exp": now + ttl, "iat": now}
    if admin:
        claims["scope"] = "admin"
    payload = b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signing = (JWT_HEADER + "." + payload).encode()
    return JWT_HEADER + "." + payload + "." + b64url(hmac.new(JWT_SECRET.encode(), signing, hashlib.sha256).digest())


def sign_customers(first, count, ttl=3600):
    """Tokens for customers first .. first+count-1, as token() signs them but without a json.dumps per token."""
    now = int(time.time())
    key = JWT_SECRET.encode()
    out = []
    for index in range(first, first + count):
        payload = b64url(b'{"exp":%d,"iat":%d,"sub":"%s"}' % (now + ttl, now, customer_name(index).encode()))
        signing = JWT_HEADER + "." + payload
        out.append(signing + "." + b64url(hmac.new(key, signing.encode(), hashlib.sha256).digest()))
    return out
