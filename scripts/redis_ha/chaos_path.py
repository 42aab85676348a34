"""The chaos suite's HTTP client (chaos/flashsale_chaos/clients.py), shared instead of kept twice."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "chaos"))

from flashsale_chaos import clients  # noqa: E402  (the path above first)

__all__ = ["clients"]
