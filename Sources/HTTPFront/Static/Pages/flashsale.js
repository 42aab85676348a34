"use strict";
// Client code shared by the sale page and the operator console: API calls, the server clock, the live
// stock socket, tokens and readable errors. Plain browser JavaScript with no build step and no
// secure-context API, so the pages work over plain HTTP on any address.
(function () {
  /** The API origin from <meta name="flashsale-api">; "" means the page's own origin. */
  function apiBase() {
    const meta = document.querySelector('meta[name="flashsale-api"]');
    const value = meta ? (meta.getAttribute("content") || "").trim() : "";
    return value.replace(/\/+$/, "");
  }

  /** An absolute URL of an API path (the page may live under /admin/, so never a relative one). */
  function apiURL(path) {
    const base = apiBase() || window.location.origin;
    return base + path;
  }

  /** The live socket URL for an API path: same host as the API, ws: for http:, wss: for https:. */
  function socketURL(path) {
    return apiURL(path).replace(/^http(s?):/i, function (_, secure) { return secure ? "wss:" : "ws:"; });
  }

  function readStorage(storage, key) {
    try { return storage.getItem(key) || ""; } catch (error) { return ""; }
  }

  function writeStorage(storage, key, value) {
    try {
      if (value) storage.setItem(key, value); else storage.removeItem(key);
    } catch (error) {
      // Storage may be disabled (private mode, policy); the token then lives for this page only.
    }
  }

  /**
   * The `#token=...` of the address, removed from the address bar at once (so it is neither bookmarked nor
   * shared): the token, "" for an empty one, null when the address carries none.
   */
  function takeAddressToken() {
    const hash = window.location.hash.replace(/^#/, "");
    if (!hash) return null;
    const params = new URLSearchParams(hash);
    const fromAddress = params.get("token");
    if (fromAddress === null) return null;
    params.delete("token");
    const rest = params.toString();
    const url = window.location.pathname + window.location.search + (rest ? "#" + rest : "");
    window.history.replaceState(window.history.state, "", url);
    return fromAddress.trim();
  }

  /**
   * The token kept under `key`: sessionStorage, then localStorage when `options.localStorage` (where a shop's
   * own login may have stored it).
   */
  function storedToken(key, options) {
    const fromSession = readStorage(window.sessionStorage, key);
    if (fromSession || !(options && options.localStorage)) return fromSession;
    return readStorage(window.localStorage, key);
  }

  /** Keeps a token for this browser tab only (sessionStorage). */
  function keepToken(key, token) {
    writeStorage(window.sessionStorage, key, token);
  }

  /** Forgets a token (signed out, or refused by the server), wherever it was stored. */
  function forgetToken(key) {
    writeStorage(window.sessionStorage, key, "");
    writeStorage(window.localStorage, key, "");
  }

  /** The bytes of base64url text as a string of UTF-8 text; throws on anything else. */
  function decodeBase64URL(text) {
    if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const binary = window.atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let index = 0; index < binary.length; index += 1) bytes[index] = binary.charCodeAt(index);
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  }

  /**
   * What a token says about its holder, read from its payload without checking the signature (the server
   * does that): {subject, name, label, expiresAtMilliseconds (NaN without `exp`)}; null when it is not
   * a JWT with a subject. `label` is what the pages show: the `name` claim, else the subject.
   */
  function readToken(token) {
    const parts = typeof token === "string" ? token.split(".") : [];
    if (parts.length !== 3) return null;
    let claims;
    try {
      claims = JSON.parse(decodeBase64URL(parts[1]));
    } catch (error) {
      return null;
    }
    if (!claims || typeof claims !== "object" || typeof claims.sub !== "string" || !claims.sub) return null;
    const name = typeof claims.name === "string" ? claims.name.trim().slice(0, 80) : "";
    return {
      subject: claims.sub,
      name: name,
      label: name || claims.sub,
      expiresAtMilliseconds: typeof claims.exp === "number" ? claims.exp * 1000 : NaN,
    };
  }

  /** The clock skew the server tolerates on `exp`; the server judges expiry again anyway. */
  const tokenLeewayMilliseconds = 30000;

  /** Whether a read token has expired at `nowMilliseconds` (a token without `exp` does not). */
  function tokenExpired(holder, nowMilliseconds) {
    return isFinite(holder.expiresAtMilliseconds) && holder.expiresAtMilliseconds + tokenLeewayMilliseconds <= nowMilliseconds;
  }

  /**
   * What to do with a token offered in the address while `current` (the page's token, "" when signed out)
   * holds the session. Decides only; the page does it. One of
   *   {action: "adopt", offered}: no usable session yet, take the offered token;
   *   {action: "refresh", offered}: the same customer (subject) with a newer token, take it silently;
   *   {action: "ask", current, offered}: another customer, ask before switching;
   *   {action: "refuse", reason: "expired" | "unreadable" | "empty", offered, current}: keep the session.
   * `current` and `offered` in the answers are read tokens (readToken), `current` null without a session.
   */
  function decideSession(currentToken, offeredToken, nowMilliseconds) {
    const current = currentToken ? readToken(currentToken) : null;
    const session = current && !tokenExpired(current, nowMilliseconds) ? current : null;
    if (!offeredToken) return { action: "refuse", reason: "empty", offered: null, current: session };
    const offered = readToken(offeredToken);
    if (!offered) return { action: "refuse", reason: "unreadable", offered: null, current: session };
    if (tokenExpired(offered, nowMilliseconds)) return { action: "refuse", reason: "expired", offered: offered, current: session };
    // A stored token the page cannot read or that has expired is no session worth keeping.
    if (!session) return { action: "adopt", offered: offered, current: null };
    if (session.subject === offered.subject) return { action: "refresh", offered: offered, current: session };
    return { action: "ask", offered: offered, current: session };
  }

  /**
   * The server's clock as an offset from the browser's. Countdowns use it, never the browser clock alone,
   * which may be minutes off. A sample is taken from `asOf` (milliseconds) when a reply has one, else from
   * the `Date` header (whole seconds, so its middle is taken); each is placed at the middle of the round trip.
   */
  const clock = {
    offsetMilliseconds: 0,
    precise: false,
    known: false,
    now: function () { return Date.now() + this.offsetMilliseconds; },
    sample: function (serverMilliseconds, sentAt, receivedAt, precise) {
      if (!isFinite(serverMilliseconds)) return;
      if (this.precise && !precise) return;
      this.offsetMilliseconds = serverMilliseconds - (sentAt + receivedAt) / 2;
      this.precise = this.precise || precise;
      this.known = true;
    },
  };

  /** Milliseconds since the epoch of an RFC 3339 time, NaN when absent. */
  function parseTime(text) {
    return text ? Date.parse(text) : NaN;
  }

  /**
   * One API call: resolves to {status, body, retryAfterSeconds}, status 0 for a network error (body then
   * holds the message). Never throws. The token goes in the Authorization header only.
   */
  async function call(method, path, options) {
    options = options || {};
    const headers = { "Accept": "application/json" };
    if (options.token) headers["Authorization"] = "Bearer " + options.token;
    if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
    let body;
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    const controller = typeof AbortController === "function" ? new AbortController() : null;
    const timer = controller ? setTimeout(function () { controller.abort(); }, options.timeoutMilliseconds || 15000) : 0;
    const sentAt = Date.now();
    let response;
    try {
      response = await fetch(apiURL(path), {
        method: method, headers: headers, body: body, cache: "no-store",
        credentials: "omit", signal: controller ? controller.signal : undefined,
      });
    } catch (error) {
      clearTimeout(timer);
      const aborted = error && error.name === "AbortError";
      return { status: 0, body: { detail: aborted ? "The server did not answer in time." : "The server could not be reached." }, retryAfterSeconds: NaN };
    }
    const receivedAt = Date.now();
    let parsed = null;
    try {
      const text = await response.text();
      parsed = text ? JSON.parse(text) : null;
    } catch (error) {
      parsed = null;
    }
    clearTimeout(timer);
    const date = parseTime(response.headers.get("Date"));
    if (parsed && typeof parsed.asOf === "string") {
      clock.sample(parseTime(parsed.asOf), sentAt, receivedAt, true);
    } else if (isFinite(date)) {
      clock.sample(date + 500, sentAt, receivedAt, false);
    }
    const retryAfter = parseFloat(response.headers.get("Retry-After") || "");
    return { status: response.status, body: parsed, retryAfterSeconds: retryAfter };
  }

  /** What each stable error code means to a person; the server's `detail` is shown next to it. */
  const messages = {
    INVALID_REQUEST: "The request was not accepted; check the details you entered.",
    UNAUTHORIZED: "Your sign-in is missing or has expired. Sign in at the shop again.",
    FORBIDDEN: "Your account may not do this.",
    NOT_FOUND: "There is no such sale or order.",
    SALE_EXISTS: "A sale with this id already exists.",
    SALE_NOT_STARTED: "The sale has not opened yet.",
    SALE_ENDED: "The sale has ended.",
    SOLD_OUT: "Sold out: every unit of this sale is sold.",
    INSUFFICIENT_STOCK: "Fewer units are left than you asked for.",
    LIMIT_EXCEEDED: "That would take you over the limit per customer.",
    RATE_LIMITED: "Too many requests right now.",
    RETRY_LATER: "The shop is very busy right now; nothing was reserved.",
  };

  /** A readable sentence for a failed reply: the meaning of its code, then the server's own detail. */
  function describe(reply) {
    const body = reply.body || {};
    if (reply.status === 0) return body.detail || "The server could not be reached.";
    const known = messages[body.code];
    const detail = typeof body.detail === "string" ? body.detail.trim() : "";
    const lead = known || (body.title ? String(body.title) + "." : "The server answered " + reply.status + ".");
    if (!detail || detail === lead) return lead;
    return lead + " (" + detail + ")";
  }

  /**
   * A random Idempotency-Key. crypto.getRandomValues works in insecure contexts too (unlike
   * crypto.randomUUID); Math.random is the last resort for very old browsers.
   */
  function newKey() {
    const bytes = new Uint8Array(16);
    if (window.crypto && typeof window.crypto.getRandomValues === "function") {
      window.crypto.getRandomValues(bytes);
    } else {
      for (let index = 0; index < bytes.length; index += 1) bytes[index] = Math.floor(Math.random() * 256);
    }
    let text = "";
    for (let index = 0; index < bytes.length; index += 1) text += (bytes[index] + 0x100).toString(16).slice(1);
    return text;
  }

  /** Milliseconds to wait before retry number `attempt` (1-based): Retry-After when given, else doubling, with jitter. */
  function backoffMilliseconds(attempt, retryAfterSeconds, baseMilliseconds, capMilliseconds) {
    if (isFinite(retryAfterSeconds) && retryAfterSeconds >= 0) {
      return Math.min(capMilliseconds, retryAfterSeconds * 1000) + Math.random() * 250;
    }
    const ceiling = Math.min(capMilliseconds, baseMilliseconds * Math.pow(2, attempt - 1));
    return ceiling / 2 + Math.random() * ceiling / 2;
  }

  function sleep(milliseconds) {
    return new Promise(function (resolve) { setTimeout(resolve, milliseconds); });
  }

  /**
   * The live stock socket of one sale. The token never goes in the URL (proxies write URLs to their logs):
   * it is offered as the subprotocol `bearer.<token>` beside `flashsale.live.v1`, which the server selects
   * (a browser cannot set an Authorization header on a WebSocket). Reconnects with exponential backoff and
   * jitter (0.5 s doubling to 30 s) and gives up for good after a `closed` message, after `stop()`, or when
   * the server closes it with the policy code 1008 (token expired, too many pages open). `handlers`:
   * message(data), up(), down(), ended(reason) where reason is "closed" or "policy".
   */
  function LiveSocket(saleID, token, handlers) {
    this.path = "/sales/" + encodeURIComponent(saleID) + "/live";
    this.token = token;
    this.handlers = handlers;
    this.socket = null;
    this.failures = 0;
    this.openedAt = 0;
    this.stopped = false;
    this.timer = 0;
    this.connected = false;
  }

  LiveSocket.minimumDelayMilliseconds = 500;
  LiveSocket.maximumDelayMilliseconds = 30000;
  LiveSocket.stableMilliseconds = 10000;
  LiveSocket.protocol = "flashsale.live.v1";

  LiveSocket.prototype.start = function () {
    if (this.stopped || this.socket) return;
    const self = this;
    let socket;
    try {
      socket = new WebSocket(socketURL(this.path), [LiveSocket.protocol, "bearer." + this.token]);
    } catch (error) {
      this.schedule();
      return;
    }
    this.socket = socket;
    socket.onopen = function () {
      self.connected = true;
      self.openedAt = Date.now();
      if (self.handlers.up) self.handlers.up();
    };
    socket.onmessage = function (event) {
      let data;
      try { data = JSON.parse(event.data); } catch (error) { return; }
      if (self.handlers.message) self.handlers.message(data);
      if (data && data.type === "closed") self.stop("closed");
    };
    socket.onclose = function (event) {
      if (self.socket !== socket) return;
      self.socket = null;
      const wasConnected = self.connected;
      self.connected = false;
      if (self.stopped) return;
      if (event.code === 1008) {
        self.stopped = true;
        if (self.handlers.down) self.handlers.down();
        if (self.handlers.ended) self.handlers.ended("policy", event.reason || "");
        return;
      }
      // Only a socket that stayed up a while resets the backoff: one the server accepts and drops at once
      // must not turn into a reconnect loop.
      const lasted = wasConnected && Date.now() - self.openedAt > LiveSocket.stableMilliseconds;
      self.failures = lasted ? 1 : self.failures + 1;
      if (self.handlers.down) self.handlers.down();
      self.schedule();
    };
  };

  LiveSocket.prototype.schedule = function () {
    if (this.stopped) return;
    const self = this;
    const delay = backoffMilliseconds(Math.max(1, this.failures), NaN,
      LiveSocket.minimumDelayMilliseconds, LiveSocket.maximumDelayMilliseconds);
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.start(); }, delay);
  };

  /**
   * Carries on with a newer token of the same customer: the socket opened with the old one would be closed
   * by the server when that one expires, so a new socket replaces it at once (no `down` in between).
   */
  LiveSocket.prototype.renew = function (token) {
    this.token = token;
    if (this.stopped) return;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    this.connected = false;
    this.failures = 0;
    if (socket) {
      try { socket.close(1000); } catch (error) { /* already closing */ }
    }
    this.start();
  };

  /** Stops for good: no reconnect after this. */
  LiveSocket.prototype.stop = function (reason) {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    this.connected = false;
    if (socket) {
      try { socket.close(1000); } catch (error) { /* already closing */ }
    }
    if (this.handlers.down) this.handlers.down();
    if (reason && this.handlers.ended) this.handlers.ended(reason, "");
  };

  /** Builds an element: el("p", {class: "note", text: "..."}, [children]). Text is never parsed as HTML. */
  function el(tag, attributes, children) {
    const node = document.createElement(tag);
    const names = Object.keys(attributes || {});
    for (let index = 0; index < names.length; index += 1) {
      const name = names[index];
      const value = attributes[name];
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.className = value;
      else if (name.slice(0, 2) === "on" && typeof value === "function") node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  /** Sets an element's text only when it changed (keeps screen readers and layout quiet). */
  function setText(node, text) {
    text = String(text);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  const numberFormat = typeof Intl === "object" ? new Intl.NumberFormat() : null;
  function formatNumber(value) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    return numberFormat ? numberFormat.format(value) : String(value);
  }

  /** "1 unit", "2 units". */
  function units(count) {
    return formatNumber(count) + (count === 1 ? " unit" : " units");
  }

  /** A duration as "2 d 03:04:05", "03:04:05" or "04:05". */
  function formatDuration(milliseconds) {
    let seconds = Math.max(0, Math.ceil(milliseconds / 1000));
    const days = Math.floor(seconds / 86400);
    seconds -= days * 86400;
    const hours = Math.floor(seconds / 3600);
    seconds -= hours * 3600;
    const minutes = Math.floor(seconds / 60);
    seconds -= minutes * 60;
    const two = function (value) { return (value < 10 ? "0" : "") + value; };
    const clockText = (hours > 0 || days > 0 ? two(hours) + ":" : "") + two(minutes) + ":" + two(seconds);
    return days > 0 ? days + " d " + clockText : clockText;
  }

  /** A time in the reader's own time zone, e.g. "27 Nov, 10:30:05". */
  function formatTime(milliseconds) {
    if (!isFinite(milliseconds)) return "–";
    const date = new Date(milliseconds);
    try {
      return date.toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    } catch (error) {
      return date.toISOString();
    }
  }

  /** A shorter time for tables, e.g. "27 Nov, 10:30". */
  function formatShortTime(milliseconds) {
    if (!isFinite(milliseconds)) return "–";
    const date = new Date(milliseconds);
    try {
      return date.toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
    } catch (error) {
      return date.toISOString().slice(0, 16).replace("T", " ");
    }
  }

  window.FlashSale = {
    apiBase: apiBase,
    apiURL: apiURL,
    socketURL: socketURL,
    takeAddressToken: takeAddressToken,
    storedToken: storedToken,
    keepToken: keepToken,
    forgetToken: forgetToken,
    readToken: readToken,
    tokenExpired: tokenExpired,
    decideSession: decideSession,
    clock: clock,
    parseTime: parseTime,
    call: call,
    describe: describe,
    messages: messages,
    newKey: newKey,
    backoffMilliseconds: backoffMilliseconds,
    sleep: sleep,
    LiveSocket: LiveSocket,
    el: el,
    setText: setText,
    clear: clear,
    formatNumber: formatNumber,
    units: units,
    formatDuration: formatDuration,
    formatTime: formatTime,
    formatShortTime: formatShortTime,
  };
})();
