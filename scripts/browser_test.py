#!/usr/bin/env python3
"""Real-browser checks of the sale page and the operator console: headless Debian chromium driven by
Selenium against two FlashSale instances sharing one redis-server, every answer cross-checked with the API
and the ledger.

Usage: .venv/bin/python scripts/browser_test.py [--bin .build/debug/flashsale] [--report reports/browser]
           [--pages-dir DIR] [--docs-images DIR] [--only a,b,...]

Everything it starts (redis-server, the instances, chromium) listens on or talks to 127.0.0.1 only and is
stopped at exit, Ctrl-C included; the run is bounded (about 4 minutes at most). Screenshots of every page
state go to the report folder. Exits non-zero when a check fails.
"""

import argparse
import base64
import hashlib
import hmac
import http.client as httpclient
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "chaos"))

from flashsale_chaos import JWT_SECRET  # noqa: E402
from flashsale_chaos.clients import b64url, free_port, pairs, redis_call, request, token, wait_until  # noqa: E402
from flashsale_chaos.processes import Process  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

RUN_LIMIT_SECONDS = 230
SHOP_HOST = "shop.test"  # resolved to 127.0.0.1 inside chromium only: a page origin that is not a secure context

# Counts the page's WebSocket constructions (with the URL, the offered subprotocols and the one the server
# selected), its `stock` and `closed` messages and its order POSTs; injected before any page script runs
# (DevTools scripts are not subject to the page's Content-Security-Policy).
PROBE = r"""
(function () {
  const NativeSocket = window.WebSocket;
  window.__probe = { sockets: 0, closedAt: 0, orderPosts: 0, orderReplies: [], waitlistMessages: 0, stockMessages: 0,
                     socketHosts: [], socketOpens: [], openSockets: [], fakeFailures: [], socketCloses: [] };
  function CountedSocket(url, protocols) {
    window.__probe.sockets += 1;
    window.__probe.socketHosts.push(new URL(url, window.location.href).host);
    const entry = { url: String(url), protocols: protocols === undefined ? [] : [].concat(protocols), selected: null };
    window.__probe.socketOpens.push(entry);
    const socket = protocols === undefined ? new NativeSocket(url) : new NativeSocket(url, protocols);
    window.__probe.openSockets.push(socket);
    socket.addEventListener("open", function () { entry.selected = socket.protocol; });
    socket.addEventListener("close", function (event) { window.__probe.socketCloses.push(event.code); });
    socket.addEventListener("message", function (event) {
      try {
        const type = JSON.parse(event.data).type;
        if (type === "closed") window.__probe.closedAt = Date.now();
        if (type === "waitlist") window.__probe.waitlistMessages += 1;
        if (type === "stock") window.__probe.stockMessages += 1;
      } catch (e) {}
    });
    return socket;
  }
  CountedSocket.prototype = NativeSocket.prototype;
  ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (name) { CountedSocket[name] = NativeSocket[name]; });
  window.WebSocket = CountedSocket;
  window.__probe.cspViolations = [];
  document.addEventListener("securitypolicyviolation", function (event) {
    window.__probe.cspViolations.push(event.violatedDirective + " " + (event.blockedURI || "inline"));
  });
  const nativeFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    const url = typeof input === "string" ? input : input.url;
    if (!(init && init.method === "POST" && /\/orders$/.test(url))) return nativeFetch(input, init);
    window.__probe.orderPosts += 1;
    const entry = { key: (init.headers || {})["Idempotency-Key"], status: null, at: Date.now() };
    window.__probe.orderReplies.push(entry);
    // Failures a check asks for: a 429/503 answer with Retry-After, or a network error, instead of the call.
    const fake = window.__probe.fakeFailures.shift();
    if (fake && fake.network) {
      entry.status = 0;
      return Promise.reject(new TypeError("Failed to fetch"));
    }
    if (fake) {
      entry.status = fake.status;
      const problem = { type: "about:blank", title: "Busy", status: fake.status, detail: "made up by the test", code: fake.code };
      return Promise.resolve(new Response(JSON.stringify(problem), { status: fake.status,
        headers: { "Content-Type": "application/problem+json", "Retry-After": String(fake.retryAfter) } }));
    }
    return nativeFetch(input, init).then(function (response) { entry.status = response.status; return response; });
  };
})();
"""

DELIVERY = {"name": "Ada Lovelace", "phone": "+44 20 7946 0000", "address": "12 St James's Square, London"}


def named_token(subject, name, ttl=3600, admin=False):
    """An HS256 token the instances accept, as clients.token() signs them, with a `name` claim too."""
    now = int(time.time())
    claims = {"sub": subject, "name": name, "exp": now + ttl, "iat": now}
    if admin:
        claims["scope"] = "admin"
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    signature = hmac.new(JWT_SECRET.encode(), (header + "." + payload).encode(), hashlib.sha256).digest()
    return header + "." + payload + "." + b64url(signature)


class CheckFailed(AssertionError):
    pass


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def until(predicate, timeout, what, interval=0.05):
    """Waits for predicate() to be truthy (bounded) and returns its value; fails the check otherwise."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (WebDriverException, ValueError, KeyError, TypeError) as error:
            last_error = error
        time.sleep(interval)
    raise CheckFailed("timed out after %.1f s waiting for %s%s" % (timeout, what,
                                                                   " (last error: %s)" % last_error if last_error else ""))


class Harness:
    """The processes of one run: redis-server, instances browser-a and browser-b, chromium."""

    def __init__(self, args):
        self.args = args
        self.workdir = tempfile.mkdtemp(prefix="flashsale-browser-")
        self.processes = []
        self.driver = None
        self.redis_port = None
        self.ports = {}
        self.admin = token("browser-admin", admin=True)
        self.counter = 0

    # ---- processes -----------------------------------------------------------------------------

    def start(self):
        self.redis_port = free_port()
        self.processes.append(Process("redis", [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no", "--dir", self.workdir], self.workdir))
        expect(wait_until(lambda: redis_call(self.redis_port, "PING") == "PONG", 10), "redis-server did not start")
        self.data_key = base64.b64encode(os.urandom(32)).decode()
        # The origin of a third instance that serves only a copy of the sale page pointed at browser-b
        # (check x): the API instances allow it as a cross-origin caller.
        self.page_port = free_port()
        for instance in ("browser-a", "browser-b"):
            self.start_instance(instance, free_port(), self.args.pages_dir)
        for instance, port in self.ports.items():
            expect(wait_until(lambda: request(port, "GET", "/readyz")[0] == 200, 30), instance + " did not become ready")

        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--hide-scrollbars", "--force-device-scale-factor=1", "--lang=en-GB",
                     "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable",
                     "--host-resolver-rules=MAP %s 127.0.0.1, EXCLUDE localhost" % SHOP_HOST):
            options.add_argument(flag)
        # Its own session, so that a Ctrl-C reaches only this script, which then quits the browser in order.
        service = Service("/usr/bin/chromedriver", log_output=os.path.join(self.workdir, "chromedriver.log"),
                          popen_kw={"start_new_session": True})
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(20)
        self.driver.set_script_timeout(10)
        self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": PROBE})

    def start_instance(self, instance, port, pages_dir):
        env = {
            "FLASHSALE_HOST": "127.0.0.1",
            "FLASHSALE_PORT": str(port),
            "FLASHSALE_REDIS_URL": "redis://127.0.0.1:%d" % self.redis_port,
            "FLASHSALE_JWT_SECRET": JWT_SECRET,
            "FLASHSALE_SHUTDOWN_DELAY_SECONDS": "0",
            "FLASHSALE_INSTANCE_ID": instance,
            "FLASHSALE_DATA_KEY": self.data_key,
            "FLASHSALE_RATE_LIMIT_CUSTOMER": "0",
            "FLASHSALE_CORS_ORIGINS": "http://%s:%d" % (SHOP_HOST, self.page_port),
            "FLASHSALE_LOG_FORMAT": "text",
            "FLASHSALE_LOG_LEVEL": "notice",
        }
        if pages_dir:
            env["FLASHSALE_PAGES_DIR"] = os.path.abspath(pages_dir)
        self.processes.append(Process(instance, [os.path.abspath(self.args.bin), "serve"], self.workdir, env))
        self.ports[instance] = port

    def stop(self):
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:  # noqa: BLE001 - the browser may already be gone
                pass
            self.driver = None
        for process in reversed(self.processes):
            try:
                process.stop(grace=5)
            except Exception:  # noqa: BLE001 - best effort, keep stopping the others
                pass
        self.processes = []
        if self.args.keep_logs:
            print("logs kept in", self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- API calls ------------------------------------------------------------------------------

    def base(self, instance="browser-a"):
        return "http://127.0.0.1:%d" % self.ports[instance]

    def api(self, method, path, body=None, bearer=None, instance="browser-a", headers=None):
        return request(self.ports[instance], method, path, body=body, bearer=bearer, headers=headers)

    def new_id(self, prefix):
        self.counter += 1
        return "%s-%d-%d" % (prefix, int(time.time()), self.counter)

    def create_sale(self, stock, starts_in_seconds=0.0, limit=2, duration=600, name=None):
        sale_id = self.new_id("browser")
        starts = time.time() + starts_in_seconds
        body = {"id": sale_id, "name": name or "Phones " + sale_id, "stock": stock,
                "startsAt": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(starts)) + ".%03dZ" % int((starts % 1) * 1000),
                "durationSeconds": duration, "perCustomerLimit": limit}
        status, reply = self.api("POST", "/admin/sales", body, self.admin)
        expect(status == 201, "creating a sale answered %s %s" % (status, reply))
        return sale_id, reply

    def ledger_orders(self, sale_id, customer=None):
        orders = [json.loads(value) for value in pairs(redis_call(self.redis_port, "HGETALL", "fs:{%s}:orders" % sale_id)).values()]
        return [order for order in orders if customer is None or order.get("c") == customer]

    # ---- browser actions -----------------------------------------------------------------------

    def shot(self, name, scroll_to=None):
        if scroll_to:
            self.js("document.getElementById(arguments[0]).scrollIntoView({block: 'center'})", scroll_to)
        else:
            self.js("window.scrollTo(0, 0)")
        path = os.path.join(self.args.report, name + ".png")
        self.driver.save_screenshot(path)
        return path

    def doc_shot(self, name, height=None):
        """A 1000 px wide copy for the README (scaled by DevTools, no image library needed), of the page's
        top `height` CSS pixels (the viewport by default)."""
        if not self.args.docs_images:
            return
        os.makedirs(self.args.docs_images, exist_ok=True)
        self.js("window.scrollTo(0, 0)")
        width, viewport, page = self.js("return [window.innerWidth, window.innerHeight, document.documentElement.scrollHeight]")
        height = min(height or viewport, page)
        data = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1000.0 / width}})
        with open(os.path.join(self.args.docs_images, name + ".png"), "wb") as out:
            out.write(base64.b64decode(data["data"]))

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def no_policy_violations(self):
        violations = self.js("return window.__probe.cspViolations")
        expect(violations == [], "Content-Security-Policy violations: %s" % violations)

    def text(self, element_id):
        return self.js("const n = document.getElementById(arguments[0]); return n ? n.textContent : null;", element_id)

    def visible(self, element_id):
        return self.js("const n = document.getElementById(arguments[0]); return !!n && !n.hidden && n.offsetParent !== null;", element_id)

    def number(self, element_id):
        text = self.text(element_id) or ""
        digits = re.sub(r"[^0-9]", "", text)
        return int(digits) if digits else None

    def button_enabled(self):
        return self.js("return !document.getElementById('order-button').disabled;")

    def fill_order_form(self, quantity=1):
        for element_id, value in (("quantity", str(quantity)), ("delivery-name", DELIVERY["name"]),
                                  ("delivery-phone", DELIVERY["phone"]), ("delivery-address", DELIVERY["address"])):
            field = self.driver.find_element(By.ID, element_id)
            field.clear()
            field.send_keys(value)

    def dom_orders(self):
        return self.js("""return Array.from(document.querySelectorAll('#orders li')).map(function (li) {
            return {id: li.dataset.orderId, status: li.dataset.status}; });""")

    def open_shopper(self, sale_id, bearer, host=None, port=None, fresh=True):
        """The sale page with `#token=bearer`. `fresh`: in a browser tab where nobody is signed in yet (the
        origin's storage emptied first); otherwise whoever is signed in stays, and the page asks before
        switching to another customer."""
        origin = "http://%s:%d" % (host or "127.0.0.1", port or self.ports["browser-a"])
        if fresh:
            self.driver.get(origin + "/assets/flashsale.css")
            self.js("sessionStorage.clear(); localStorage.clear();")
        # A fresh document each time: from a page whose address differs only in the fragment, the
        # navigation would otherwise stay in the same document.
        self.driver.get("about:blank")
        self.driver.get("%s/?sale=%s#token=%s" % (origin, sale_id, bearer))
        self.wait_page()

    def wait_page(self):
        until(lambda: self.js("return document.getElementById('page').getAttribute('aria-busy') === null"), 10,
              "the sale page to load")

    def stored(self, key, where="sessionStorage"):
        return self.js("return window[arguments[0]].getItem(arguments[1])", where, key)

    def headers(self, path, instance="browser-a", request_headers=None):
        """The status and headers (lower-case names) of a plain GET."""
        connection = httpclient.HTTPConnection("127.0.0.1", self.ports[instance], timeout=5)
        try:
            connection.request("GET", path, headers=request_headers or {})
            response = connection.getresponse()
            response.read()
            return response.status, {name.lower(): value for name, value in response.getheaders()}
        finally:
            connection.close()


# ---- the checks ---------------------------------------------------------------------------------------

def check_a_order_from_page(h, ctx):
    """The fragment token leaves the address bar; countdown and disabled button before opening (on the
    server's clock); enabled after; the order placed from the page is the one and only order in /me."""
    sale_id, sale = h.create_sale(stock=20, starts_in_seconds=6, limit=2, name="Aurora X2 phone")
    starts_at = time.time() + 6
    alice = token("alice")
    ctx.update(sale=sale_id, alice=alice)
    h.open_shopper(sale_id, alice)
    url = h.driver.current_url
    expect("token" not in url and "#" not in url, "the token is still in the address bar: " + url)
    expect(h.js("return sessionStorage.getItem('flashsale.token')") == alice, "the token was not kept in sessionStorage")
    until(lambda: h.visible("countdown"), 5, "the countdown before opening")
    countdown = h.text("countdown-value")
    expect(re.fullmatch(r"\d\d:\d\d", countdown or "") is not None, "countdown shows %r" % countdown)
    seconds = int(countdown[:2]) * 60 + int(countdown[3:])
    expect(1 <= seconds <= 7, "countdown says %d s before an opening ~6 s away" % seconds)
    expect(not h.button_enabled(), "the order button is enabled before opening")
    expect(h.text("sale-name") == "Aurora X2 phone", "sale name shows %r" % h.text("sale-name"))
    h.shot("01-shopper-before-opening")
    # Still disabled one second before opening.
    until(lambda: time.time() >= starts_at - 1.2, 8, "one second before opening")
    expect(not h.button_enabled() and h.visible("countdown"), "the button was enabled more than a second early")
    until(h.button_enabled, 6, "the order button to be enabled after opening")
    opened_late = time.time() - starts_at
    expect(opened_late > -0.6, "the button was enabled %.2f s before the opening" % -opened_late)
    expect(not h.visible("countdown"), "the countdown still shows after opening")
    h.shot("02-shopper-open")
    h.fill_order_form(quantity=1)
    h.driver.find_element(By.ID, "order-button").click()
    orders = until(lambda: [o for o in h.dom_orders() if o["status"] == "confirmed"], 10, "the confirmed order in My orders")
    expect(len(orders) == 1, "My orders shows %s" % orders)
    expect("Order confirmed" in (h.text("result") or ""), "result says %r" % h.text("result"))
    status, me = h.api("GET", "/sales/%s/me" % sale_id, bearer=alice)
    expect(status == 200, "/me answered %s" % status)
    expect(len(me["orders"]) == 1 and me["orders"][0]["orderId"] == orders[0]["id"] and me["orders"][0]["quantity"] == 1
           and me["purchased"] == 1, "/me disagrees with the page: %s vs %s" % (me, orders))
    ledger = h.ledger_orders(sale_id, "alice")
    expect(len(ledger) == 1 and ledger[0]["id"] == orders[0]["id"] and ledger[0].get("k"),
           "the ledger holds %s (one keyed order expected)" % ledger)
    expect("You have bought 1 unit" in (h.text("limit") or ""), "limit line says %r" % h.text("limit"))
    h.no_policy_violations()
    h.shot("03-shopper-ordered")
    h.doc_shot("sale-page")
    ctx["alice_order"] = orders[0]["id"]


def check_b_live_stock(h, ctx):
    """Another customer's order, placed on the OTHER instance, moves the page's stock within a second."""
    sale_id = ctx["sale"]
    before = h.number("stock-available")
    status, _ = h.api("GET", "/sales/%s/stock" % sale_id, bearer=ctx["alice"])
    expect(before is not None, "no stock shown")
    sent = time.monotonic()
    status, order = h.api("POST", "/sales/%s/orders" % sale_id, {"quantity": 2, "delivery": DELIVERY},
                          bearer=token("bob"), instance="browser-b")
    expect(status == 201, "bob's order answered %s %s" % (status, order))
    until(lambda: h.number("stock-available") == before - 2, 3, "the page to show %d available" % (before - 2), 0.02)
    elapsed = time.monotonic() - sent
    expect(elapsed <= 1.0, "the page took %.2f s to show the new stock" % elapsed)
    status, stock = h.api("GET", "/sales/%s/stock" % sale_id, bearer=ctx["alice"])
    expect(stock["available"] == h.number("stock-available") and stock["sold"] == h.number("stock-sold"),
           "page %s/%s vs API %s" % (h.number("stock-available"), h.number("stock-sold"), stock))
    return "moved in %.2f s" % elapsed


def check_c_double_click(h, ctx):
    """Two clicks in quick succession on Order: one POST, one order in /me and in the ledger."""
    sale_id = ctx["sale"]
    carol = token("carol")
    h.open_shopper(sale_id, carol)
    until(h.button_enabled, 5, "the order button")
    h.fill_order_form(quantity=1)
    button = h.driver.find_element(By.ID, "order-button")
    ActionChains(h.driver).click(button).click(button).perform()
    until(lambda: [o for o in h.dom_orders() if o["status"] == "confirmed"], 10, "carol's confirmed order")
    time.sleep(1.0)
    posts = h.js("return window.__probe.orderPosts")
    expect(posts == 1, "the page sent %s order requests for one double click: %s" % (posts, h.js("return window.__probe.orderReplies")))
    status, me = h.api("GET", "/sales/%s/me" % sale_id, bearer=carol)
    expect(status == 200 and len(me["orders"]) == 1 and me["purchased"] == 1, "/me after a double click: %s" % me)
    ledger = h.ledger_orders(sale_id, "carol")
    expect(len(ledger) == 1, "the ledger holds %d orders of carol" % len(ledger))
    expect(len(h.dom_orders()) == 1, "My orders shows %s" % h.dom_orders())
    # Second intent: dispatched twice from script in the same task (no chance to repaint in between).
    until(h.button_enabled, 4, "the button after the first order")
    h.js("const b = document.getElementById('order-button'); b.click(); b.click();")
    until(lambda: len([o for o in h.dom_orders() if o["status"] == "confirmed"]) == 2, 10, "carol's second order")
    time.sleep(0.8)
    posts = h.js("return window.__probe.orderPosts")
    expect(posts == 2, "two intents sent %s order requests" % posts)
    ledger = h.ledger_orders(sale_id, "carol")
    keys = {order.get("k") for order in ledger}
    expect(len(ledger) == 2 and len(keys) == 2, "the ledger holds %s for two intents" % ledger)
    until(lambda: not h.button_enabled() and "most this sale allows" in (h.text("order-reason") or ""), 3,
          "the limit reason (button %s, reason %r)" % ("enabled" if h.button_enabled() else "disabled", h.text("order-reason")))
    time.sleep(2)
    expect(not h.button_enabled(), "the button came back at the limit")


def check_r_retries(h, ctx):
    """503 (Retry-After 1 s) and a network error are retried under the same Idempotency-Key, honouring
    Retry-After; six 429s in a row end in a readable message, and "Try again" reuses the key."""
    sale_id, _ = h.create_sale(stock=10, starts_in_seconds=0, limit=2, name="Busy sale")
    lena = token("lena")
    h.open_shopper(sale_id, lena)
    until(h.button_enabled, 5, "the order button")
    h.fill_order_form(quantity=1)
    h.js("window.__probe.fakeFailures = [{status: 503, code: 'RETRY_LATER', retryAfter: 1}, {network: true}];")
    h.driver.find_element(By.ID, "order-button").click()
    expect(not h.button_enabled(), "the button is enabled while the order is in flight")
    until(lambda: [o for o in h.dom_orders() if o["status"] == "confirmed"], 10, "the order after two retries")
    replies = h.js("return window.__probe.orderReplies")
    expect([r["status"] for r in replies] == [503, 0, 201], "attempts answered %s" % [r["status"] for r in replies])
    expect(len({r["key"] for r in replies}) == 1 and replies[0]["key"], "one intent used keys %s" % [r["key"] for r in replies])
    waited = (replies[1]["at"] - replies[0]["at"]) / 1000.0
    expect(waited >= 0.95, "the retry after a 503 with Retry-After: 1 came after %.2f s" % waited)
    ledger = h.ledger_orders(sale_id, "lena")
    expect(len(ledger) == 1 and ledger[0]["k"] == replies[0]["key"], "the ledger holds %s" % ledger)
    # A second intent: six 429s in a row, then the customer presses "Try again".
    until(h.button_enabled, 4, "the button for a second order")
    h.js("window.__probe.fakeFailures = Array.from({length: 6}, function () { return {status: 429, code: 'RATE_LIMITED', retryAfter: 0}; });")
    h.driver.find_element(By.ID, "order-button").click()
    until(lambda: "not confirmed yet" in (h.text("result") or ""), 15, "the message after six attempts")
    expect("Too many requests" in h.text("result") and "made up by the test" in h.text("result"),
           "the message does not explain the code and show the detail: %r" % h.text("result"))
    expect(h.button_enabled() and h.text("order-button") == "Try again", "button after six 429s: %r" % h.text("order-button"))
    replies = h.js("return window.__probe.orderReplies")[3:]
    expect(len(replies) == 6 and len({r["key"] for r in replies}) == 1 and replies[0]["key"] != ledger[0]["k"],
           "the second intent sent %s" % replies)
    expect(len(h.ledger_orders(sale_id, "lena")) == 1, "an order was made by failed attempts")
    h.driver.find_element(By.ID, "order-button").click()
    until(lambda: len([o for o in h.dom_orders() if o["status"] == "confirmed"]) == 2, 10, "the second order")
    last = h.js("return window.__probe.orderReplies")[-1]
    expect(last["status"] == 201 and last["key"] == replies[0]["key"], "Try again sent %s" % last)
    ledger = h.ledger_orders(sale_id, "lena")
    expect(sorted(o["k"] for o in ledger) == sorted([ledger[0]["k"], ledger[1]["k"]]) and len({o["k"] for o in ledger}) == 2
           and replies[0]["key"] in {o["k"] for o in ledger}, "the ledger holds %s" % ledger)


def check_d_cancel(h, ctx):
    """Cancel from the page (with its confirm step): the order shows cancelled, the stock goes back up."""
    sale_id = ctx["sale"]
    h.open_shopper(sale_id, ctx["alice"])
    until(lambda: h.dom_orders(), 5, "alice's orders")
    before = until(lambda: h.number("stock-available"), 5, "the stock figure")
    order_id = ctx["alice_order"]
    h.driver.find_element(By.CSS_SELECTOR, 'li[data-order-id="%s"] [data-action="cancel"]' % order_id).click()
    confirm = until(lambda: h.driver.find_element(By.CSS_SELECTOR, 'li[data-order-id="%s"] [data-action="confirm-cancel"]' % order_id),
                    3, "the confirm step")
    expect(h.driver.switch_to.active_element == confirm, "the confirm button does not have the focus")
    status, me = h.api("GET", "/sales/%s/me" % sale_id, bearer=ctx["alice"])
    expect(me["orders"][0]["status"] == "confirmed", "the order changed before the confirm step: %s" % me)
    confirm.click()
    until(lambda: [o for o in h.dom_orders() if o["id"] == order_id and o["status"] == "cancelled"], 5, "the order to show cancelled")
    until(lambda: h.number("stock-available") == before + 1, 3, "the stock to go back up from %d" % before)
    status, me = h.api("GET", "/sales/%s/me" % sale_id, bearer=ctx["alice"])
    expect(me["purchased"] == 0 and me["orders"][0]["status"] == "cancelled", "/me after cancel: %s" % me)
    ledger = h.ledger_orders(sale_id, "alice")
    expect([o["s"] for o in ledger] == ["cancelled"], "the ledger after cancel: %s" % ledger)
    expect(h.button_enabled(), "after cancelling, alice can order again but the button is disabled")


class Skipped(Exception):
    pass


def check_w_waitlist(h, ctx):
    """Waitlisted from the page (202: no free unit while another instance's lease holds one), then served
    when that lease is drained: the page shows the position, then the confirmed order, and the socket
    carried the waitlist message."""
    sale_id, _ = h.create_sale(stock=12, starts_in_seconds=0, limit=2, name="Waitlist drill")
    wendy = token("wendy")
    h.open_shopper(sale_id, wendy)
    until(h.button_enabled, 5, "the order button")
    h.fill_order_form(quantity=1)
    # Two units sold through browser-b (which then leases the next one), one through browser-a from the pool.
    for index in range(2):
        status, reply = h.api("POST", "/sales/%s/orders" % sale_id, {"quantity": 1, "delivery": DELIVERY},
                              bearer=token("xena-%d" % index), instance="browser-b")
        expect(status == 201, "an order through browser-b answered %s %s" % (status, reply))
    # Then browser-a sells what is left in the pool while browser-b's lease holds a unit.
    deadline = time.monotonic() + 4
    buyers = 0
    while True:
        status, shards = h.api("GET", "/admin/sales/%s/shards" % sale_id, bearer=h.admin)
        held = sum(lease["remaining"] for lease in shards["leases"] if lease["owner"] == "browser-b")
        if (shards["pool"] == 0 and held >= 1) or time.monotonic() > deadline:
            break
        if shards["pool"] > 0 and held >= 1:
            buyers += 1
            status, reply = h.api("POST", "/sales/%s/orders" % sale_id, {"quantity": 1, "delivery": DELIVERY},
                                  bearer=token("yuri-%d" % buyers))
            expect(status in (201, 202), "an order through browser-a answered %s %s" % (status, reply))
        else:
            time.sleep(0.05)
    if shards["pool"] != 0 or held < 1:
        raise Skipped("no unit held by browser-b alone (pool %d, held %d)" % (shards["pool"], held))
    h.driver.find_element(By.ID, "order-button").click()
    replies = until(lambda: [r for r in h.js("return window.__probe.orderReplies") if r["status"]], 5, "the order reply")
    if replies[0]["status"] == 201:
        raise Skipped("the lease came back before the order")
    expect(replies[0]["status"] == 202, "the order answered %s" % replies[0])
    # browser-b may give its lease back by itself at any moment, serving wendy: the waitlisted state is
    # checked only while the ledger still says she waits.
    seen = until(lambda: (h.visible("waitlist") and h.text("waitlist-position") == "1" and "waiting")
                 or ("served from the waiting list" in (h.text("result") or "") and "served"), 3, "the waitlist position")
    status, me = h.api("GET", "/sales/%s/me" % sale_id, bearer=wendy)
    if seen == "waiting" and me["waitlist"] is not None:
        expect(not h.button_enabled(), "the button is enabled while waitlisted")
        until(lambda: h.number("stock-waitlist") == 1 or h.text("result").startswith("Good news"), 2,
              "the Waiting figure to count the waitlisted customer")
        h.shot("04-shopper-waitlisted")
    note = "waitlisted at position 1, then served" if seen == "waiting" else "served before the waitlisted state could be read"
    if me["waitlist"] is not None:
        # Still waiting (browser-b's lease may also have come back by itself already): drain it now.
        expect(me["waitlist"] == {"position": 1} and me["orders"] == [], "/me while waitlisted: %s" % me)
        status, drained = h.api("POST", "/admin/sales/%s/rebalance" % sale_id, {"mode": "drain", "instance": "browser-b"},
                                bearer=h.admin)
        expect(status == 202, "drain answered %s %s" % (status, drained))
    until(lambda: "served from the waiting list" in (h.text("result") or ""), 6, "the served message")
    orders = until(lambda: [o for o in h.dom_orders() if o["status"] == "confirmed"], 4, "the served order in My orders")
    expect(not h.visible("waitlist"), "the waitlist box still shows after being served")
    status, me = h.api("GET", "/sales/%s/me" % sale_id, bearer=wendy)
    expect(me["waitlist"] is None and [o["orderId"] for o in me["orders"]] == [orders[0]["id"]] and me["purchased"] == 1,
           "/me after being served: %s" % me)
    h.shot("04b-shopper-served")
    expect(wait_until(lambda: h.js("return window.__probe.waitlistMessages") > 0, 3),
           "no waitlist message on the page's socket within 3 s of being served (%s; %s sockets opened, closes %s)"
           % (note, h.js("return window.__probe.sockets"), h.js("return window.__probe.socketCloses")))
    return note


def check_e_sold_out(h, ctx):
    """A sale that sells out while the page is open: sold out shown, button disabled for good, and no new
    WebSocket attempt after the closed message; a fresh load of the closed sale opens exactly one socket."""
    sale_id, _ = h.create_sale(stock=3, starts_in_seconds=0, limit=2, name="Last-chance headphones")
    dave = token("dave")
    h.open_shopper(sale_id, dave)
    until(h.button_enabled, 5, "the order button")
    until(lambda: "Live" == h.text("connection"), 5, "the live socket")
    h.fill_order_form(quantity=1)
    h.driver.find_element(By.ID, "order-button").click()
    until(lambda: h.dom_orders(), 10, "dave's order")
    # Other customers buy the rest, one unit each, on both instances; a waitlisted one (units still held by
    # a lease) is served when the lease comes back.
    buyers = 0

    def sold_out():
        nonlocal buyers
        status, stock = h.api("GET", "/sales/%s/stock" % sale_id, bearer=dave)
        if stock["status"] == "closed":
            return True
        buyers += 1
        status, reply = h.api("POST", "/sales/%s/orders" % sale_id, {"quantity": 1, "delivery": DELIVERY},
                              bearer=token("erin-%d" % buyers), instance=("browser-a", "browser-b")[buyers % 2])
        expect(status in (201, 202) or (reply or {}).get("code") == "SOLD_OUT", "a buyer's order answered %s %s" % (status, reply))
        return False

    until(sold_out, 12, "the sale to sell out", 0.3)
    until(lambda: h.js("return window.__probe.closedAt") > 0, 5, "the closed message")
    until(lambda: h.text("sale-state") == "Sold out", 2, "the Sold out badge")
    expect(h.visible("closed-banner") and "Sold out" in h.text("closed-banner"), "banner: %r" % h.text("closed-banner"))
    expect(not h.button_enabled(), "the button is enabled after sold out")
    expect(h.number("stock-available") == 0, "available shows %r" % h.text("stock-available"))
    expect(not h.driver.find_elements(By.CSS_SELECTOR, '[data-action="cancel"]'), "a Cancel button after close")
    attempts = h.js("return window.__probe.sockets")
    h.no_policy_violations()
    h.shot("05-shopper-sold-out")
    h.doc_shot("sale-sold-out")
    time.sleep(6)
    expect(h.js("return window.__probe.sockets") == attempts, "the page reconnected after the closed message (%d -> %d)"
           % (attempts, h.js("return window.__probe.sockets")))
    expect(not h.button_enabled(), "the button came back after sold out")
    # A fresh page of the closed sale: one socket (stock + closed), then none.
    h.open_shopper(sale_id, token("frank"))
    until(lambda: h.text("sale-state") == "Sold out", 5, "Sold out on a fresh page")
    time.sleep(6)
    sockets = h.js("return window.__probe.sockets")
    expect(sockets <= 1, "a fresh page of a sold-out sale opened %d sockets in 6 s" % sockets)
    expect(not h.button_enabled(), "the button is enabled on a sold-out sale")
    status, summary = h.api("GET", "/sales/%s/summary" % sale_id, bearer=dave)
    expect(summary.get("closedReason") == "sold_out", "summary: %s" % summary)


def check_n_ended(h, ctx):
    """A sale that reaches its end while the page is open: Ended, the form gives way, no reconnect."""
    sale_id, _ = h.create_sale(stock=50, starts_in_seconds=0, limit=2, duration=3, name="Three-second sale")
    h.open_shopper(sale_id, token("nina"))
    until(h.button_enabled, 3, "the order button")
    until(lambda: h.text("sale-state") == "Ended", 8, "the Ended badge")
    expect("has ended" in (h.text("closed-banner") or ""), "banner: %r" % h.text("closed-banner"))
    expect(not h.button_enabled() and not h.visible("order-form"), "the order form is still usable after the end")
    sockets = h.js("return window.__probe.sockets")
    time.sleep(3)
    expect(h.js("return window.__probe.sockets") == sockets, "the page reconnected after the sale ended")
    status, summary = h.api("GET", "/sales/%s/summary" % sale_id, bearer=h.admin)
    expect(summary.get("closedReason") == "ended", "summary: %s" % summary)


def check_f_console(h, ctx):
    """The console lists a sale created through the API, drains browser-b for it and closes it."""
    sale_id, _ = h.create_sale(stock=60, starts_in_seconds=0, limit=2, name="Console drill " + time.strftime("%H:%M:%S"))
    # Orders through browser-b so that it holds a lease of the sale.
    for index in range(3):
        status, reply = h.api("POST", "/sales/%s/orders" % sale_id, {"quantity": 1, "delivery": DELIVERY},
                              bearer=token("gina-%d" % index), instance="browser-b")
        expect(status == 201, "order through browser-b answered %s %s" % (status, reply))
    # Enough older sales (opened an hour ago, ended since) for the list to need a second page.
    for index in range(21):
        h.create_sale(stock=5, starts_in_seconds=-3600 - index, duration=60, name="Earlier sale %d" % index)
    status, listing = h.api("GET", "/admin/sales?limit=100", bearer=h.admin)
    expect(status == 200 and len(listing["sales"]) > 20, "the API lists %s %s" % (status, len(listing.get("sales", []))))
    everything = [sale["id"] for sale in listing["sales"]]
    h.driver.get("about:blank")
    h.driver.get("%s/admin/#token=%s" % (h.base(), h.admin))
    expect("token" not in h.driver.current_url, "the admin token is still in the address bar")
    row = until(lambda: h.driver.find_element(By.CSS_SELECTOR, 'tr[data-sale-id="%s"]' % sale_id), 5, "the sale in the list")
    expect("open" in row.text.lower(), "the row says %r" % row.text)
    listed = lambda: h.js("return Array.from(document.querySelectorAll('#sales-table tbody tr')).map(function (tr) { return tr.dataset.saleId; })")
    expect(listed() == everything[:20], "the first page is not the API's newest 20")
    h.shot("06-console-list")
    h.driver.find_element(By.ID, "more-sales").click()
    until(lambda: listed() == everything, 5, "every sale after More (%d)" % len(everything))
    expect(not h.visible("more-sales"), "More still shows on the last page")
    status, closed = h.api("GET", "/admin/sales?status=closed&limit=100", bearer=h.admin)
    h.js("const f = document.getElementById('status-filter'); f.value = 'closed'; f.dispatchEvent(new Event('change'));")
    until(lambda: listed() == [sale["id"] for sale in closed["sales"]][:20], 5, "the closed sales only")
    h.js("const f = document.getElementById('status-filter'); f.value = ''; f.dispatchEvent(new Event('change'));")
    row = until(lambda: h.driver.find_element(By.CSS_SELECTOR, 'tr[data-sale-id="%s"]' % sale_id), 5, "the sale in the list again")
    row.find_element(By.CSS_SELECTOR, "button.sale-link").click()
    until(lambda: h.js("return document.querySelectorAll('#lease-table tbody tr').length") > 0, 6, "the lease table")
    until(lambda: h.number("detail-sold") == 3, 4, "3 sold in the detail")
    until(lambda: h.driver.find_element(By.CSS_SELECTOR, '[data-drain="browser-b"]'), 4, "the Drain button of browser-b")
    # A small stream of orders through both instances while the console watches: 12 orders in about 4 s.
    for index in range(12):
        status, reply = h.api("POST", "/sales/%s/orders" % sale_id, {"quantity": 1 + index % 2, "delivery": DELIVERY},
                              bearer=token("kim-%d" % index), instance=("browser-a", "browser-b")[index % 2])
        expect(status == 201, "order %d answered %s %s" % (index, status, reply))
        time.sleep(0.33)
    until(lambda: h.number("detail-sold") == 21, 3, "21 sold in the detail")
    until(lambda: float(h.text("detail-rate")) >= 1.0, 3, "the orders/s tile to show the stream")
    chart = h.text("chart-text")
    expect(re.match(r"(\d+) units? sold in the last 2 minutes", chart) and int(chart.split()[0]) == 18,
           "the chart counts %r (18 units sold while watching)" % chart)
    time.sleep(1.2)
    h.shot("07-console-sale-detail")
    h.doc_shot("console", height=900)
    status, shards = h.api("GET", "/admin/sales/%s/shards" % sale_id, bearer=h.admin)
    held = [lease for lease in shards["leases"] if lease["owner"] == "browser-b" and lease["remaining"] > 0]
    h.driver.find_element(By.CSS_SELECTOR, '[data-drain="browser-b"]').click()
    result = until(lambda: re.search(r"(\d+) leases? revoked, (\d+) units? returned", h.text("action-result") or ""), 5,
                   "the drain reply")
    revoked = int(result.group(1))
    expect(revoked >= len(held), "drain revoked %d leases while browser-b held %d" % (revoked, len(held)))
    status, shards = h.api("GET", "/admin/sales/%s/shards" % sale_id, bearer=h.admin)
    left = [lease for lease in shards["leases"] if lease["owner"] == "browser-b" and lease["remaining"] > 0]
    expect(not left, "browser-b still holds %s after the drain" % left)
    until(lambda: h.js("""return Array.from(document.querySelectorAll('#lease-table tbody tr')).every(function (tr) {
        return tr.dataset.owner !== 'browser-b' || tr.dataset.remaining === '0'; })"""), 5, "the lease table without browser-b")
    h.driver.find_element(By.ID, "close-button").click()
    confirm = until(lambda: h.driver.find_element(By.ID, "close-confirm"), 3, "the close confirm step")
    status, sale = h.api("GET", "/sales/%s" % sale_id, bearer=h.admin)
    expect(sale["status"] == "open", "the sale closed before the confirm step")
    confirm.click()
    until(lambda: h.text("detail-status") == "closed", 5, "the detail to say closed")
    until(lambda: h.visible("summary"), 15, "the final summary")
    h.no_policy_violations()
    h.shot("08-console-after-close", scroll_to="summary")
    summary = until(lambda: (lambda reply: reply[1] if reply[0] == 200 and reply[1].get("final") else None)(
        h.api("GET", "/sales/%s/summary" % sale_id, bearer=h.admin)), 15, "a final summary")
    expect(summary["status"] == "closed" and summary["closedReason"] == "closed" and summary["sold"] == 21,
           "summary after Close now: %s" % summary)
    expect("closed" in (h.text("summary") or "") and str(summary["sold"]) in (h.text("summary-sold") or ""),
           "summary shown: %r" % h.text("summary"))
    # The list shows it closed too (with the status filter).
    # The shopper page of that sale.
    h.open_shopper(sale_id, token("hank"))
    until(lambda: h.text("sale-state") == "Closed", 5, "Closed on the shopper page")
    expect("closed by the shop" in (h.text("closed-banner") or ""), "banner: %r" % h.text("closed-banner"))
    expect(not h.button_enabled(), "the button is enabled on a closed sale")
    h.shot("09-shopper-closed-by-admin")


def check_g_insecure_origin(h, ctx):
    """At an origin that is not a secure context (http://shop.test, mapped to 127.0.0.1 inside chromium)
    the page still loads, goes live and orders with an Idempotency-Key."""
    sale_id, _ = h.create_sale(stock=5, starts_in_seconds=0, limit=2, name="Plain HTTP sale")
    h.open_shopper(sale_id, token("ivan"), host=SHOP_HOST)
    expect(h.js("return window.isSecureContext") is False, "http://%s is a secure context here" % SHOP_HOST)
    expect(h.js("return typeof crypto.randomUUID") == "undefined", "randomUUID exists outside a secure context")
    until(lambda: "Live" == h.text("connection"), 5, "the live socket")
    until(h.button_enabled, 5, "the order button")
    h.fill_order_form(quantity=2)
    # By keyboard: Tab from the address field reaches the button, Enter orders.
    h.driver.find_element(By.ID, "delivery-address").send_keys(Keys.TAB)
    expect(h.js("return document.activeElement.id") == "order-button", "Tab from the address does not reach the button")
    h.driver.switch_to.active_element.send_keys(Keys.ENTER)
    until(lambda: [o for o in h.dom_orders() if o["status"] == "confirmed"], 10, "ivan's order")
    ledger = h.ledger_orders(sale_id, "ivan")
    expect(len(ledger) == 1 and ledger[0]["q"] == 2 and re.fullmatch(r"[0-9a-f]{32}", ledger[0].get("k", "")),
           "the ledger holds %s" % ledger)
    expect("2 units" in (h.text("result") or ""), "result says %r" % h.text("result"))
    h.shot("10-shopper-plain-http")


def check_x_cross_origin(h, ctx):
    """The sale page served from another origin (a copy whose <meta name="flashsale-api"> names browser-b)
    calls the API and opens the socket there: CORS preflights, the exposed Date header, the order."""
    api = "http://127.0.0.1:%d" % h.ports["browser-b"]
    pages = os.path.join(h.workdir, "pages-cross-origin")
    os.makedirs(pages, exist_ok=True)
    for name, path in (("sale.html", "/"), ("flashsale.css", "/assets/flashsale.css"), ("flashsale.js", "/assets/flashsale.js"),
                       ("sale.js", "/assets/sale.js")):
        status, body = h.api("GET", path)
        expect(status == 200 and isinstance(body, str), "GET %s answered %s" % (path, status))
        if name == "sale.html":
            expect('<meta name="flashsale-api" content="">' in body, "sale.html has no empty flashsale-api meta")
            body = body.replace('<meta name="flashsale-api" content="">', '<meta name="flashsale-api" content="%s">' % api)
        with open(os.path.join(pages, name), "w") as out:
            out.write(body)
    h.start_instance("browser-pages", h.page_port, pages)
    expect(wait_until(lambda: request(h.page_port, "GET", "/readyz")[0] == 200, 30), "the page instance did not become ready")
    sale_id, _ = h.create_sale(stock=5, starts_in_seconds=0, limit=2, name="Cross-origin sale")
    h.open_shopper(sale_id, token("jane"), host=SHOP_HOST, port=h.page_port)
    until(lambda: "Live" == h.text("connection"), 5, "the live socket")
    hosts = h.js("return window.__probe.socketHosts")
    expect(hosts and set(hosts) == {"127.0.0.1:%d" % h.ports["browser-b"]}, "the socket went to %s" % hosts)
    expect(h.js("return FlashSale.clock.known"), "no server time: the Date header or asOf did not reach the page")
    until(h.button_enabled, 5, "the order button")
    h.fill_order_form(quantity=1)
    h.driver.find_element(By.ID, "order-button").click()
    until(lambda: [o for o in h.dom_orders() if o["status"] == "confirmed"], 10, "jane's order")
    ledger = h.ledger_orders(sale_id, "jane")
    expect(len(ledger) == 1, "the ledger holds %s" % ledger)
    h.no_policy_violations()


def check_s_signed_in_name(h, ctx):
    """The page shows who is signed in: the token's `name` claim, as text (markup in it stays text), else
    its subject. "Not you? Sign out" forgets the token (sessionStorage and localStorage), closes the live
    socket and clears the customer's orders and details: the signed-out page, also after a reload. An
    expired link with nobody signed in says so."""
    sale_id, _ = h.create_sale(stock=10, starts_in_seconds=0, limit=2, name="Session sale")
    grace = named_token("grace-s", "Grace <b>Hopper</b>")
    h.open_shopper(sale_id, grace)
    until(lambda: h.visible("session"), 5, "the signed-in line")
    expect(h.text("session-name") == "Grace <b>Hopper</b>", "the name shows %r" % h.text("session-name"))
    expect(h.js("return document.getElementById('session-name').children.length") == 0, "the name was parsed as HTML")
    henry = token("henry-s")
    status, order = h.api("POST", "/sales/%s/orders" % sale_id, {"quantity": 1, "delivery": DELIVERY}, bearer=henry)
    expect(status == 201, "henry's order answered %s %s" % (status, order))
    h.open_shopper(sale_id, henry)
    until(lambda: h.text("session-name") == "henry-s", 5, "the subject for a token without a name")
    until(lambda: h.text("connection") == "Live", 5, "the live socket")
    until(lambda: [o["id"] for o in h.dom_orders()] == [order["orderId"]], 5, "henry's order in My orders")
    h.fill_order_form(quantity=1)
    # The shop's login may have stored the token too: signing out forgets that copy as well.
    h.js("localStorage.setItem('flashsale.token', arguments[0])", henry)
    h.shot("11-shopper-signed-in")
    h.driver.find_element(By.ID, "sign-out").click()
    until(lambda: "Sign in at the shop" in (h.text("notice") or ""), 3, "the signed-out message")
    expect(h.stored("flashsale.token") is None and h.stored("flashsale.token", "localStorage") is None,
           "a token is still stored after signing out")
    expect(not h.visible("session"), "the signed-in line still shows after signing out")
    expect(not h.button_enabled() and "Sign in" in (h.text("order-reason") or ""),
           "order button after signing out: reason %r" % h.text("order-reason"))
    expect(h.dom_orders() == [] and h.visible("orders-empty"), "My orders still shows %s" % h.dom_orders())
    expect(h.js("return document.getElementById('delivery-address').value") == "", "the delivery address stays filled in")
    until(lambda: h.js("return window.__probe.openSockets.every(function (s) { return s.readyState === WebSocket.CLOSED; })"),
          3, "the live socket to close")
    expect(not h.visible("connection"), "the connection still says %r" % h.text("connection"))
    expect(h.text("stock-available") == "–", "the stock still shows %r without a token" % h.text("stock-available"))
    sockets = h.js("return window.__probe.sockets")
    time.sleep(1.5)
    expect(h.js("return window.__probe.sockets") == sockets, "a socket was opened after signing out")
    h.no_policy_violations()
    h.shot("12-shopper-signed-out-by-hand")
    h.driver.refresh()
    h.wait_page()
    expect("Sign in at the shop" in (h.text("notice") or "") and not h.visible("session"),
           "after a reload: notice %r" % h.text("notice"))
    # An expired link while nobody is signed in: said so, nothing stored.
    h.open_shopper(sale_id, named_token("ivy-s", "Ivy", ttl=-600))
    until(lambda: "has expired" in (h.text("session-message") or ""), 3, "the expired-link message")
    expect(h.stored("flashsale.token") is None and not h.visible("session"), "an expired link was taken")
    expect(not h.button_enabled(), "the order button is enabled after an expired link")


def check_k_switching_customers(h, ctx):
    """A #token= for another customer while one is signed in asks first: the first customer stays (name,
    stored token, orders) until "Switch to ..." is clicked; "Stay signed in as ..." keeps them, also after a
    reload. The same for a later link that changes only the fragment (hashchange). An expired or malformed
    token in a later link is refused with a message, the session kept."""
    sale_id, _ = h.create_sale(stock=10, starts_in_seconds=0, limit=2, name="Shared tablet sale")
    ada, bert = named_token("ada-k", "Ada King"), named_token("bert-k", "Bert Stone")
    status, order = h.api("POST", "/sales/%s/orders" % sale_id, {"quantity": 1, "delivery": DELIVERY}, bearer=ada)
    expect(status == 201, "ada's order answered %s %s" % (status, order))
    ada_orders = [order["orderId"]]
    h.open_shopper(sale_id, ada)
    until(lambda: [o["id"] for o in h.dom_orders()] == ada_orders, 5, "Ada's order")
    # Bert's link opened in the same tab: asked, Ada stays meanwhile.
    h.open_shopper(sale_id, bert, fresh=False)
    until(lambda: h.visible("session-question"), 5, "the question about switching")
    question = h.text("session-question-text") or ""
    expect("Bert Stone" in question and "Ada King" in question, "the question says %r" % question)
    expect(h.text("session-switch") == "Switch to Bert Stone" and h.text("session-stay") == "Stay signed in as Ada King",
           "the buttons say %r and %r" % (h.text("session-switch"), h.text("session-stay")))
    expect("token" not in h.driver.current_url, "the token is still in the address bar: " + h.driver.current_url)
    expect(h.text("session-name") == "Ada King" and h.stored("flashsale.token") == ada,
           "while asked, %r is signed in" % h.text("session-name"))
    until(lambda: [o["id"] for o in h.dom_orders()] == ada_orders and h.button_enabled(), 5, "Ada's page while asked")
    h.no_policy_violations()
    h.shot("13-shopper-switch-question")
    h.driver.find_element(By.ID, "session-switch").click()
    until(lambda: h.text("session-name") == "Bert Stone", 5, "Bert after switching")
    h.wait_page()
    until(h.button_enabled, 5, "Bert's order button")
    expect(h.stored("flashsale.token") == bert and not h.visible("session-question") and h.dom_orders() == [],
           "after switching: stored %s, orders %s" % ("Bert's" if h.stored("flashsale.token") == bert else "another", h.dom_orders()))
    # Ada's link again: "Stay" keeps Bert, and the offered token is not kept anywhere.
    h.open_shopper(sale_id, ada, fresh=False)
    until(lambda: h.visible("session-question"), 5, "the question about switching back")
    expect(h.text("session-stay") == "Stay signed in as Bert Stone", "stay says %r" % h.text("session-stay"))
    h.driver.find_element(By.ID, "session-stay").click()
    until(lambda: not h.visible("session-question"), 2, "the question to go")
    expect(h.text("session-name") == "Bert Stone" and h.stored("flashsale.token") == bert, "Stay did not keep Bert")
    h.driver.refresh()
    h.wait_page()
    expect(h.text("session-name") == "Bert Stone" and not h.visible("session-question"), "Bert is gone after a reload")
    # A later link in the already open page (hashchange): asked the same way.
    until(h.button_enabled, 5, "Bert's order button")
    h.js("window.location.hash = 'token=' + arguments[0]", ada)
    until(lambda: h.visible("session-question"), 3, "the question after a hashchange")
    expect("token" not in h.driver.current_url, "the token stays in the address bar after a hashchange")
    expect(h.text("session-name") == "Bert Stone" and h.stored("flashsale.token") == bert and h.button_enabled(),
           "a hashchange swapped the customer before asking")
    h.driver.find_element(By.ID, "session-stay").click()
    until(lambda: not h.visible("session-question"), 2, "the question to go after Stay")
    expect(h.text("session-name") == "Bert Stone" and h.stored("flashsale.token") == bert, "Stay after a hashchange did not keep Bert")
    h.js("window.location.hash = 'token=' + arguments[0]", ada)
    until(lambda: h.visible("session-question"), 3, "the question after a second hashchange")
    h.driver.find_element(By.ID, "session-switch").click()
    until(lambda: h.text("session-name") == "Ada King", 5, "Ada after switching by hashchange")
    h.wait_page()
    until(lambda: [o["id"] for o in h.dom_orders()] == ada_orders, 5, "Ada's order after switching back")
    expect(h.stored("flashsale.token") == ada, "Ada's token is not the stored one")
    # Expired and malformed tokens in a later link: refused with a message, Ada stays.
    h.js("window.location.hash = 'token=' + arguments[0]", named_token("zoe-k", "Zoe", ttl=-600))
    until(lambda: "has expired" in (h.text("session-message") or ""), 3, "the expired-link message")
    expect("Ada King" in h.text("session-message") and not h.visible("session-question"), "message: %r" % h.text("session-message"))
    h.js("window.location.hash = 'token=not-a-token'")
    until(lambda: "valid sign-in" in (h.text("session-message") or ""), 3, "the malformed-link message")
    expect(h.text("session-name") == "Ada King" and h.stored("flashsale.token") == ada and "token" not in h.driver.current_url,
           "a refused link changed the session")
    h.no_policy_violations()


def check_l_live_subprotocol(h, ctx):
    """The live socket carries no token in its URL: it offers `flashsale.live.v1` and `bearer.<token>`, the
    server selects `flashsale.live.v1`, and stock sold on the other instance arrives over it. A newer token
    of the same customer in a later link is taken silently and the socket reopened with it; a socket with
    `?access_token=` in its URL is refused."""
    sale_id, _ = h.create_sale(stock=10, starts_in_seconds=0, limit=2, name="Quiet socket sale")
    lou = named_token("lou-l", "Lou Reed")
    h.open_shopper(sale_id, lou)
    until(lambda: h.text("connection") == "Live", 5, "the live socket")
    opens = h.js("return window.__probe.socketOpens")
    expect(opens, "no socket was opened")
    for entry in opens:
        expect("access_token" not in entry["url"] and "token" not in entry["url"] and lou.split(".")[2] not in entry["url"],
               "a socket URL carries the token: %s" % entry["url"])
        expect(entry["protocols"] == ["flashsale.live.v1", "bearer." + lou], "the socket offered %s" % entry["protocols"])
    until(lambda: h.js("return window.__probe.socketOpens")[-1]["selected"] == "flashsale.live.v1", 3,
          "the server to select flashsale.live.v1")
    before = until(lambda: h.number("stock-available"), 5, "the stock figure")
    messages = h.js("return window.__probe.stockMessages")
    status, reply = h.api("POST", "/sales/%s/orders" % sale_id, {"quantity": 1, "delivery": DELIVERY},
                          bearer=token("mo-l"), instance="browser-b")
    expect(status == 201, "mo's order answered %s %s" % (status, reply))
    until(lambda: h.number("stock-available") == before - 1, 3, "the page to show %d available" % (before - 1))
    expect(h.js("return window.__probe.stockMessages") > messages, "the new stock did not come over the socket")
    # A newer token of the same customer: no question, kept, and the socket reopened with it.
    newer = named_token("lou-l", "Lou Reed", ttl=7200)
    expect(newer != lou, "the newer token is the same token")
    h.js("window.__before = true; window.location.hash = 'token=' + arguments[0]", newer)
    until(lambda: h.js("return window.__probe.socketOpens")[-1]["protocols"] == ["flashsale.live.v1", "bearer." + newer], 3,
          "a socket with the newer token")
    until(lambda: h.js("return window.__probe.socketOpens")[-1]["selected"] == "flashsale.live.v1", 3, "the newer socket to open")
    expect(h.stored("flashsale.token") == newer and not h.visible("session-question") and h.text("session-name") == "Lou Reed"
           and h.js("return window.__before === true"), "the newer token of the same customer was not taken silently (in the same page)")
    until(lambda: h.js("return window.__probe.openSockets.slice(0, -1).every(function (s) { return s.readyState === WebSocket.CLOSED; })"),
          3, "the socket with the older token to close")
    expect(h.text("connection") == "Live", "the connection says %r after the newer token" % h.text("connection"))
    h.no_policy_violations()
    # The token in the URL, as pages did before: refused.
    url = "ws://127.0.0.1:%d/sales/%s/live?access_token=%s" % (h.ports["browser-a"], sale_id, newer)
    outcome = h.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        let opened = false;
        const socket = new WebSocket(arguments[0]);
        socket.onopen = function () { opened = true; socket.close(); };
        socket.onclose = function (event) { done({ opened: opened, code: event.code }); };""", url)
    expect(not outcome["opened"], "a socket with ?access_token= was accepted: %s" % outcome)


def check_t_console_token(h, ctx):
    """The console keeps the admin token in sessionStorage only (a copy in localStorage is removed) and
    shows its subject and expiry; when the token expires it stops, says so and takes a new one pasted in."""
    h.driver.get(h.base() + "/assets/flashsale.css")
    h.js("sessionStorage.clear(); localStorage.clear(); localStorage.setItem('flashsale.adminToken', arguments[0]);", h.admin)
    tina = token("ops-tina", admin=True, ttl=1800)
    expires_at = json.loads(base64.urlsafe_b64decode(tina.split(".")[1] + "==="))["exp"]
    h.driver.get("about:blank")
    h.driver.get("%s/admin/#token=%s" % (h.base(), tina))
    until(lambda: h.visible("session") and h.visible("console"), 5, "the console with its token")
    expect(h.text("session-name") == "ops-tina", "the subject shows as %r" % h.text("session-name"))
    expiry = h.text("token-expiry") or ""
    local = h.js("return FlashSale.formatTime(arguments[0])", expires_at * 1000)
    expect(local in expiry and re.search(r"\(in (29|30) min\)", expiry), "the expiry shows as %r (%s expected)" % (expiry, local))
    expect(h.stored("flashsale.adminToken") == tina, "the admin token is not in sessionStorage")
    expect(h.js("return Object.keys(localStorage).length") == 0, "localStorage holds %s" % h.js("return Object.keys(localStorage)"))
    h.shot("14-console-token")
    # A token that expires 6 s from now: the console stops and asks for a new one.
    brief = token("ops-brief", admin=True, ttl=6)
    h.driver.get("about:blank")
    h.driver.get("%s/admin/#token=%s" % (h.base(), brief))
    until(lambda: h.text("session-name") == "ops-brief" and h.visible("console"), 5, "the console with a brief token")
    until(lambda: "expired" in (h.text("notice") or ""), 10, "the expiry message")
    expect("ops-brief" in h.text("notice") and "expired" in (h.text("token-expiry") or ""),
           "notice %r, expiry %r" % (h.text("notice"), h.text("token-expiry")))
    expect(not h.visible("console") and h.visible("token-form"), "the console still shows after the token expired")
    expect(h.stored("flashsale.adminToken") is None, "the expired token is still stored")
    h.shot("15-console-token-expired")
    field = h.driver.find_element(By.ID, "token-input")
    field.send_keys("not-a-token")
    h.driver.find_element(By.ID, "token-button").click()
    until(lambda: "not a token" in (h.text("token-result") or ""), 2, "the refusal of a malformed token")
    expect(h.stored("flashsale.adminToken") is None, "a malformed token was stored")
    field.clear()
    field.send_keys(tina)
    h.driver.find_element(By.ID, "token-button").click()
    until(lambda: h.text("session-name") == "ops-tina" and h.visible("console"), 5, "the console with the pasted token")
    expect(h.stored("flashsale.adminToken") == tina and h.js("return Object.keys(localStorage).length") == 0
           and not h.visible("token-form"), "after pasting a token")
    h.no_policy_violations()


def check_o_opener_policy(h, ctx):
    """HTML answers (the sale page, the console, a 304 too) carry Cross-Origin-Opener-Policy: same-origin
    beside the Content-Security-Policy; in the browser, a window that opens the sale page from another origin
    loses its handle on it, while it keeps one on a file without the header."""
    for path in ("/", "/?sale=anything", "/admin/"):
        status, headers = h.headers(path)
        expect(status == 200, "GET %s answered %s" % (path, status))
        expect(headers.get("cross-origin-opener-policy") == "same-origin",
               "GET %s: Cross-Origin-Opener-Policy %r" % (path, headers.get("cross-origin-opener-policy")))
        expect("script-src 'self'" in headers.get("content-security-policy", ""), "GET %s: no Content-Security-Policy" % path)
        status, again = h.headers(path, request_headers={"If-None-Match": headers.get("etag", "")})
        expect(status == 304 and again.get("cross-origin-opener-policy") == "same-origin",
               "GET %s with its ETag: %s, Cross-Origin-Opener-Policy %r" % (path, status, again.get("cross-origin-opener-policy")))
    status, headers = h.headers("/assets/flashsale.css")
    expect(status == 200 and "cross-origin-opener-policy" not in headers, "the stylesheet carries %s" % headers)
    opener = "http://%s:%d/assets/flashsale.css" % (SHOP_HOST, h.ports["browser-a"])
    h.driver.get("about:blank")
    h.driver.get(opener)
    home = h.driver.current_window_handle
    try:
        h.js("window.__page = window.open(arguments[0]); window.__file = window.open(arguments[1]);",
             "%s/?sale=anything" % h.base(), "%s/assets/flashsale.js" % h.base())
        until(lambda: len(h.driver.window_handles) == 3, 5, "the two windows")
        until(lambda: h.js("return window.__page.closed"), 5, "the sale page to cut its opener's handle")
        time.sleep(0.3)
        expect(h.js("return window.__file.closed") is False, "the handle on a file without the header was cut too")
    finally:
        for handle in h.driver.window_handles:
            if handle != home:
                h.driver.switch_to.window(handle)
                h.driver.close()
        h.driver.switch_to.window(home)


def check_h_no_sale_no_token(h, ctx):
    """Without ?sale= the page says how to open a sale; without a token it says to sign in, order disabled."""
    h.js("sessionStorage.clear(); localStorage.clear();")
    h.driver.get(h.base() + "/")
    until(lambda: "?sale=" in (h.text("notice") or ""), 5, "the how-to-open message")
    h.driver.get("%s/?sale=%s" % (h.base(), ctx.get("sale", "x")))
    h.js("sessionStorage.clear(); localStorage.clear();")
    h.driver.refresh()
    until(lambda: "Sign in at the shop" in (h.text("notice") or ""), 5, "the sign-in message")
    expect(not h.button_enabled(), "the order button is enabled without a token")
    expect(h.js("return window.__probe.sockets") == 0, "a socket was opened without a token")
    h.shot("04-shopper-signed-out")


CHECKS = [
    ("a", "order from the page", check_a_order_from_page),
    ("b", "live stock from another instance", check_b_live_stock),
    ("c", "double click makes one order", check_c_double_click),
    ("r", "retries keep the Idempotency-Key", check_r_retries),
    ("d", "cancel from the page", check_d_cancel),
    ("w", "waitlisted, then served", check_w_waitlist),
    ("e", "sold out stops the socket", check_e_sold_out),
    ("n", "ended at endsAt", check_n_ended),
    ("f", "console: list, drain, close", check_f_console),
    ("t", "console: admin token and its expiry", check_t_console_token),
    ("g", "plain HTTP, not a secure context", check_g_insecure_origin),
    ("x", "served from another origin (CORS)", check_x_cross_origin),
    ("s", "who is signed in, and signing out", check_s_signed_in_name),
    ("k", "another customer's link asks first", check_k_switching_customers),
    ("l", "live socket: token as a subprotocol", check_l_live_subprotocol),
    ("o", "Cross-Origin-Opener-Policy", check_o_opener_policy),
    ("h", "no sale, no token", check_h_no_sale_no_token),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=".build/debug/flashsale")
    parser.add_argument("--report", default="reports/browser")
    parser.add_argument("--pages-dir", help="serve the pages from this folder (FLASHSALE_PAGES_DIR)")
    parser.add_argument("--docs-images", help="also write 1000 px wide screenshots for the README here")
    parser.add_argument("--only", help="comma-separated check letters")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args()
    os.makedirs(args.report, exist_ok=True)
    for name in os.listdir(args.report):
        if name.endswith(".png"):
            os.remove(os.path.join(args.report, name))
    selected = set(args.only.split(",")) if args.only else None

    harness = Harness(args)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    # The whole run is bounded: past the limit the main thread is interrupted and everything is stopped.
    watchdog = threading.Timer(RUN_LIMIT_SECONDS, lambda: os.kill(os.getpid(), signal.SIGTERM))
    watchdog.daemon = True
    watchdog.start()
    results = []
    started = time.monotonic()
    try:
        try:
            harness.start()
        except (CheckFailed, WebDriverException, OSError) as error:
            print("FAIL setup: %s" % error, flush=True)
            results.append(("-", "setup", False, str(error)))
            raise KeyboardInterrupt("setup failed") from None
        context = {}
        for letter, title, check in CHECKS:
            if selected and letter not in selected:
                continue
            began = time.monotonic()
            try:
                note = check(harness, context)
                results.append((letter, title, True, note or ""))
            except Skipped as skipped:
                print("SKIP %s. %s: %s" % (letter, title, skipped), flush=True)
                continue
            except (CheckFailed, WebDriverException, AssertionError, KeyError, TypeError) as error:
                detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                results.append((letter, title, False, detail))
                try:
                    harness.shot("failed-" + letter)
                except Exception:  # noqa: BLE001 - the screenshot is only a help
                    pass
                if not isinstance(error, CheckFailed):
                    traceback.print_exc()
            verdict = results[-1]
            print("%s %s. %s (%.1f s)%s" % ("PASS" if verdict[2] else "FAIL", letter, title, time.monotonic() - began,
                                           ": " + verdict[3] if verdict[3] else ""), flush=True)
    except KeyboardInterrupt as interrupt:
        print("FAIL run interrupted (%s) after %.0f s" % (str(interrupt) or "Ctrl-C", time.monotonic() - started), flush=True)
        results.append(("-", "run", False, "interrupted"))
    finally:
        watchdog.cancel()
        harness.stop()
    failed = [r for r in results if not r[2]]
    print("%d passed, %d failed" % (len(results) - len(failed), len(failed)))
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
