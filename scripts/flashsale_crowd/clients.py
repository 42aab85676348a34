"""The chaos suite's RESP client with the crowd's own default timeout: its Redis calls wait up to
`REDIS_TIMEOUT_SECONDS` (5 s; chaos's clients default to 3 s). Every other client (requests, free port,
bounded waits, `pairs`, `b64url`) is chaos's as it is: import it from `flashsale_chaos.clients`."""

from flashsale_chaos import clients as chaos

from . import REDIS_TIMEOUT_SECONDS


class Redis(chaos.Redis):
    """chaos's minimal RESP2 client (one connection, blocking), with the crowd's default timeout."""

    def __init__(self, port, timeout=REDIS_TIMEOUT_SECONDS):
        super().__init__(port, timeout)


def redis_call(port, *args, timeout=REDIS_TIMEOUT_SECONDS):
    return chaos.redis_call(port, *args, timeout=timeout)
