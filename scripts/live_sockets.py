"""Opens N live-stock WebSockets to one FlashSale instance, checks each gets the stock frame on connect,
then that every socket receives the pushed frame after an order changes the stock, and closes them.

Usage: live_sockets.py BASE_URL SALE_ID TOKEN ADMIN_TOKEN COUNT
Each socket is a different viewer (the server caps sockets per customer), with a token signed here with
FLASHSALE_JWT_SECRET; TOKEN places the order that moves the stock.
Bounded: connecting has 120 s, the push has 30 s; exits non-zero on any failure.
"""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.request

import websockets

BASE, SALE, TOKEN, COUNT = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[5])


def viewer_token(index):
    def part(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    secret = os.environ["FLASHSALE_JWT_SECRET"].encode()
    claims = {"sub": "viewer-%05d" % index, "exp": int(time.time()) + 3600}
    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + part(signature)


async def open_socket(url, token, semaphore):
    async with semaphore:
        # The token travels as a subprotocol beside the live protocol, never in the URL.
        socket = await websockets.connect(url, subprotocols=["flashsale.live.v1", "bearer." + token],
                                          open_timeout=60, max_queue=8, ping_interval=None)
        first = json.loads(await asyncio.wait_for(socket.recv(), 30))
        assert first["type"] == "stock", first
        return socket, first


def place_order():
    request = urllib.request.Request(
        f"{BASE}/sales/{SALE}/orders", method="POST",
        data=json.dumps({"quantity": 1, "delivery": {"name": "Load", "phone": "5550100", "address": "1 Main St"}}).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201, response.status


async def wait_for_change(socket, sold_before):
    while True:
        message = json.loads(await socket.recv())
        if message["type"] == "stock" and message["sold"] > sold_before:
            return message


async def main():
    url = BASE.replace("http://", "ws://") + f"/sales/{SALE}/live"
    semaphore = asyncio.Semaphore(500)
    opened = await asyncio.wait_for(asyncio.gather(*(open_socket(url, viewer_token(index), semaphore) for index in range(COUNT))), 120)
    sockets = [socket for socket, _ in opened]
    sold_before = max(first["sold"] for _, first in opened)
    print(f"live: {len(sockets)} sockets open, each got the stock frame on connect")
    await asyncio.get_running_loop().run_in_executor(None, place_order)
    updates = await asyncio.wait_for(asyncio.gather(*(wait_for_change(socket, sold_before) for socket in sockets)), 30)
    assert all(update["sold"] > sold_before for update in updates)
    print(f"live: all {len(updates)} sockets received the pushed stock change")
    await asyncio.gather(*(socket.close() for socket in sockets))


asyncio.run(main())
