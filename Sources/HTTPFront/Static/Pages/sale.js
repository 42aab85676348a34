"use strict";
// The shopper's sale page: the sale from ?sale=, live stock, a countdown on the server's clock, the order
// form (one Idempotency-Key per purchase intent, retried on 429/503/network errors), the customer's own
// orders and waitlist place, and who is signed in (never swapped for another customer without asking).
(function () {
  const F = window.FlashSale;
  const TOKEN_KEY = "flashsale.token";
  const MAX_ATTEMPTS = 6;
  const POLL_MILLISECONDS = 3000;

  const $ = function (id) { return document.getElementById(id); };
  const view = {
    page: $("page"), saleID: $("sale-id"), name: $("sale-name"), badge: $("sale-state"), window: $("sale-window"),
    notice: $("notice"), body: $("sale-body"), connection: $("connection"),
    countdown: $("countdown"), countdownValue: $("countdown-value"), countdownAt: $("countdown-at"),
    closedBanner: $("closed-banner"),
    available: $("stock-available"), availableLabel: $("available-label"), sold: $("stock-sold"), waitlist: $("stock-waitlist"), meter: $("stock-meter"),
    announcer: $("stock-announcer"), limit: $("limit"),
    form: $("order-form"), orderOver: $("order-over"), quantity: $("quantity"), quantityHint: $("quantity-hint"),
    phone: $("delivery-phone"), address: $("delivery-address"), deliveryName: $("delivery-name"),
    button: $("order-button"), reason: $("order-reason"), result: $("result"),
    waitlistBox: $("waitlist"), waitlistPosition: $("waitlist-position"),
    orders: $("orders"), ordersEmpty: $("orders-empty"),
    session: $("session"), sessionName: $("session-name"), signOut: $("sign-out"), sessionMessage: $("session-message"),
    question: $("session-question"), questionText: $("session-question-text"),
    switchButton: $("session-switch"), stayButton: $("session-stay"),
  };

  const state = {
    saleID: "",
    token: "",
    sale: null,
    stock: null,
    closedReason: "",
    me: null,
    // The purchase in progress or awaiting a retry: its key is reused until a definite answer.
    intent: null,
    inFlight: false,
    // Right after a confirmed order the button rests briefly, so the second click of a double click that
    // lands after a fast answer does not start a second purchase.
    settledUntil: 0,
    live: null,
    liveUp: false,
    signedOut: false,
    // A token from the address for another customer, held (never stored) while the shopper is asked.
    offeredToken: "",
    confirmingCancel: "",
    cancelling: "",
    openedRefresh: false,
    lastAnnounced: "",
    lastAnnouncedAt: 0,
  };

  const closedText = {
    sold_out: { badge: "Sold out", banner: "Sold out. Every unit of this sale is sold." },
    ended: { badge: "Ended", banner: "This sale has ended." },
    closed: { badge: "Closed", banner: "This sale was closed by the shop." },
    "": { badge: "Closed", banner: "This sale is closed." },
  };

  /** What to say about the close; a reason this page does not know reads as a plain close. */
  function closedInfo() {
    return closedText[state.closedReason] || closedText[""];
  }

  function showNotice(text, tone) {
    view.notice.hidden = !text;
    view.notice.className = "notice" + (tone ? " notice-" + tone : "");
    F.setText(view.notice, text || "");
  }

  function showResult(text, tone) {
    view.result.hidden = !text;
    view.result.className = "result" + (tone ? " result-" + tone : "");
    F.setText(view.result, text || "");
  }

  function setConnection(text, tone) {
    view.connection.hidden = !text;
    view.connection.className = "connection" + (tone ? " connection-" + tone : "");
    F.setText(view.connection, text || "");
  }

  function showSessionMessage(text) {
    view.sessionMessage.hidden = !text;
    F.setText(view.sessionMessage, text || "");
  }

  function startsAt() { return state.sale ? F.parseTime(state.sale.startsAt) : NaN; }
  function endsAt() { return state.sale ? F.parseTime(state.sale.endsAt) : NaN; }
  function isClosed() { return !!state.sale && (state.sale.status === "closed" || (state.stock && state.stock.status === "closed")); }
  function beforeOpening() { return !!state.sale && !isClosed() && F.clock.now() < startsAt(); }
  function limit() { return state.sale ? state.sale.perCustomerLimit : 0; }
  function purchased() { return state.me ? state.me.purchased : 0; }
  function remainingAllowance() { return Math.max(0, limit() - purchased()); }
  function waitlisted() { return !!(state.me && state.me.waitlist); }

  // ---- rendering ----------------------------------------------------------------------------------

  function renderSale() {
    const sale = state.sale;
    document.title = sale.name + " · FlashSale";
    F.setText(view.name, sale.name);
    F.setText(view.window, "Opens " + F.formatTime(startsAt()) + " · ends " + F.formatTime(endsAt()));
    renderLimit();
  }

  function renderLimit() {
    if (!state.sale) return;
    const text = "Limit per customer: " + F.units(limit()) + "." +
      (state.me ? " You have bought " + F.units(purchased()) + "." : "");
    F.setText(view.limit, text);
    const most = Math.max(1, remainingAllowance());
    view.quantity.max = String(most);
    if (parseInt(view.quantity.value, 10) > most) view.quantity.value = String(most);
    F.setText(view.quantityHint, remainingAllowance() > 0
      ? "Up to " + F.units(most) + "." : "You have reached the limit for this sale.");
  }

  function renderStock() {
    const stock = state.stock;
    if (!stock) return;
    F.setText(view.available, F.formatNumber(stock.available));
    F.setText(view.sold, F.formatNumber(stock.sold));
    F.setText(view.waitlist, F.formatNumber(stock.waitlist));
    const total = state.sale ? state.sale.stock : stock.available + stock.sold;
    const share = total > 0 ? Math.max(0, Math.min(1, stock.available / total)) : 0;
    view.meter.style.width = (share * 100).toFixed(1) + "%";
    view.meter.classList.toggle("meter-low", share > 0 && share < 0.1);
    announceStock(false);
  }

  // Screen readers get the stock at most every 5 seconds (a busy sale changes it ten times a second),
  // and at once when the state changes.
  function announceStock(force) {
    const stock = state.stock;
    if (!stock) return;
    let text;
    if (isClosed()) text = closedInfo().banner;
    else text = F.units(stock.available) + " available, " + F.formatNumber(stock.sold) + " sold.";
    const now = Date.now();
    if (text === state.lastAnnounced) return;
    if (!force && now - state.lastAnnouncedAt < 5000) return;
    state.lastAnnounced = text;
    state.lastAnnouncedAt = now;
    F.setText(view.announcer, text);
  }

  function renderState() {
    if (!state.sale) return;
    let badge, tone;
    if (isClosed()) {
      badge = closedInfo().badge;
      tone = state.closedReason === "sold_out" ? "soldout" : "closed";
    } else if (beforeOpening()) {
      badge = "Opens soon";
      tone = "scheduled";
    } else {
      badge = "Open now";
      tone = "open";
    }
    view.badge.hidden = false;
    view.badge.className = "state-badge state-" + tone;
    F.setText(view.badge, badge);
    view.page.dataset.state = tone;

    F.setText(view.availableLabel, isClosed() ? "Unsold" : "Available");
    view.closedBanner.hidden = !isClosed();
    // Once the sale is over the form has nothing left to do: it gives way to the reason.
    view.form.hidden = isClosed();
    view.orderOver.hidden = !isClosed();
    if (isClosed()) F.setText(view.orderOver, "Ordering is over. " + closedInfo().banner);
    if (isClosed()) F.setText(view.closedBanner, closedInfo().banner);
    renderCountdown();
    renderButton();
  }

  function renderCountdown() {
    const show = beforeOpening();
    view.countdown.hidden = !show;
    if (!show) return;
    F.setText(view.countdownValue, F.formatDuration(startsAt() - F.clock.now()));
    F.setText(view.countdownAt, "at " + F.formatTime(startsAt()));
  }

  /** Why ordering is not possible right now, or "" when it is. */
  function blockedReason() {
    if (!state.token || state.signedOut) return "Sign in at the shop to order.";
    if (!state.sale) return "Loading the sale…";
    if (isClosed()) return closedInfo().banner;
    if (beforeOpening()) return "Ordering opens when the countdown ends.";
    if (state.inFlight) return "Sending your order…";
    if (Date.now() < state.settledUntil) return "Order confirmed.";
    if (waitlisted()) return "You are on the waiting list; this page updates when you are served.";
    if (!state.me) return "Loading your orders…";
    if (remainingAllowance() === 0) return "You have bought the most this sale allows (" + F.units(limit()) + ").";
    return "";
  }

  function renderButton() {
    const reason = blockedReason();
    view.button.disabled = reason !== "";
    view.button.setAttribute("aria-disabled", reason !== "" ? "true" : "false");
    F.setText(view.button, state.inFlight ? "Ordering…" : Date.now() < state.settledUntil ? "Ordered" : state.intent ? "Try again" : "Order");
    F.setText(view.reason, reason);
  }

  function renderMe() {
    const me = state.me;
    if (!me) return;
    renderLimit();
    view.waitlistBox.hidden = !me.waitlist;
    if (me.waitlist) F.setText(view.waitlistPosition, F.formatNumber(me.waitlist.position));
    const orders = (me.orders || []).slice().sort(function (a, b) {
      return F.parseTime(b.createdAt) - F.parseTime(a.createdAt);
    });
    view.ordersEmpty.hidden = orders.length > 0;
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focusKey : "";
    F.clear(view.orders);
    orders.forEach(function (order) { view.orders.appendChild(renderOrder(order)); });
    if (focused) {
      const again = view.orders.querySelector('[data-focus-key="' + focused + '"]');
      if (again) again.focus();
    }
    renderButton();
  }

  function renderOrder(order) {
    const cancellable = order.status === "confirmed" && !isClosed() && state.sale && state.sale.status !== "closed";
    const actions = F.el("div", { class: "order-actions" });
    if (cancellable && state.confirmingCancel === order.orderId) {
      actions.appendChild(F.el("span", { class: "confirm-text", text: "Cancel this order?" }));
      actions.appendChild(F.el("button", {
        type: "button", class: "button danger small", "data-action": "confirm-cancel",
        "data-focus-key": "confirm-" + order.orderId, disabled: state.cancelling === order.orderId,
        text: state.cancelling === order.orderId ? "Cancelling…" : "Yes, cancel",
        onclick: function () { cancelOrder(order.orderId); },
      }));
      actions.appendChild(F.el("button", {
        type: "button", class: "button quiet small", "data-action": "keep",
        "data-focus-key": "keep-" + order.orderId, text: "Keep it",
        onclick: function () { state.confirmingCancel = ""; renderMe(); focusKey("cancel-" + order.orderId); },
      }));
    } else if (cancellable) {
      actions.appendChild(F.el("button", {
        type: "button", class: "button quiet small", "data-action": "cancel",
        "data-focus-key": "cancel-" + order.orderId, text: "Cancel",
        "aria-label": "Cancel order " + order.orderId,
        onclick: function () { state.confirmingCancel = order.orderId; renderMe(); focusKey("confirm-" + order.orderId); },
      }));
    }
    const statusLabel = { confirmed: "Confirmed", cancelled: "Cancelled", failed: "Failed" }[order.status] || order.status;
    return F.el("li", { class: "order order-" + order.status, "data-order-id": order.orderId, "data-status": order.status }, [
      F.el("div", { class: "order-main" }, [
        F.el("span", { class: "order-quantity", text: F.units(order.quantity) }),
        F.el("span", { class: "status-pill status-" + order.status, text: statusLabel }),
      ]),
      F.el("div", { class: "order-meta muted" }, [
        F.el("span", { class: "order-id", title: order.orderId, text: "Order " + shortOrderID(order.orderId) }),
        F.el("span", { text: " · " + F.formatTime(F.parseTime(order.createdAt)) }),
      ]),
      actions,
    ]);
  }

  /** Order ids start with the sale's id; the page is about one sale, so the rest identifies the order. */
  function shortOrderID(orderID) {
    const prefix = state.saleID + ".";
    return orderID.indexOf(prefix) === 0 && orderID.length > prefix.length ? orderID.slice(prefix.length) : orderID;
  }

  function focusKey(key) {
    const node = view.orders.querySelector('[data-focus-key="' + key + '"]');
    if (node) node.focus();
  }

  // ---- the session: who is signed in ---------------------------------------------------------------

  /** The token of the session, "" when signed out. */
  function sessionToken() {
    return state.signedOut ? "" : state.token;
  }

  function renderSession() {
    const holder = sessionToken() ? F.readToken(state.token) : null;
    view.session.hidden = !sessionToken();
    F.setText(view.sessionName, holder ? holder.label : "a customer this page cannot name");
  }

  /**
   * A token from the address, at load or later (a link that changes only the fragment): taken when nobody
   * is signed in, taken silently when it is a newer token of the same customer, asked about when it names
   * another customer, and refused (the session stays) when it has expired or is not a token.
   */
  function offerToken(offeredToken, atLoad) {
    const decision = F.decideSession(sessionToken(), offeredToken, F.clock.now());
    switch (decision.action) {
      case "adopt":
        F.keepToken(TOKEN_KEY, offeredToken);
        if (atLoad) state.token = offeredToken;
        else window.location.reload();
        break;
      case "refresh":
        F.keepToken(TOKEN_KEY, offeredToken);
        state.token = offeredToken;
        if (state.live) state.live.renew(offeredToken);
        renderSession();
        break;
      case "ask":
        askToSwitch(offeredToken, decision.current, decision.offered);
        break;
      default:
        if (decision.reason === "empty") break;
        showSessionMessage((decision.reason === "expired"
          ? "The sign-in link you opened has expired, so it was not used."
          : "The sign-in link you opened does not carry a valid sign-in, so it was not used.") +
          (decision.current ? " You are still signed in as " + decision.current.label + "."
            : " Sign in at the shop again to get a new one."));
        break;
    }
  }

  /** The in-page question: switch to the link's customer, or stay. Until then the session stays as it is. */
  function askToSwitch(offeredToken, current, offered) {
    // Two customers with the same name are told apart by their subjects.
    const alike = current.label === offered.label;
    const currentLabel = alike ? current.label + " (" + current.subject + ")" : current.label;
    const offeredLabel = alike ? offered.label + " (" + offered.subject + ")" : offered.label;
    state.offeredToken = offeredToken;
    showSessionMessage("");
    F.setText(view.questionText, "The link you opened signs in " + offeredLabel + ", but " + currentLabel +
      " is signed in on this page. Switch customer?");
    F.setText(view.switchButton, "Switch to " + offeredLabel);
    F.setText(view.stayButton, "Stay signed in as " + currentLabel);
    view.question.hidden = false;
    view.question.focus();
  }

  function switchCustomer() {
    const token = state.offeredToken;
    state.offeredToken = "";
    view.question.hidden = true;
    if (!token) return;
    F.keepToken(TOKEN_KEY, token);
    // A fresh start: nothing of the previous customer (orders, socket, form) carries over.
    window.location.reload();
  }

  function staySignedIn() {
    state.offeredToken = "";
    view.question.hidden = true;
  }

  /** "Not you? Sign out": the token is forgotten and nothing of the customer stays on the page. */
  function signOut() {
    F.forgetToken(TOKEN_KEY);
    state.token = "";
    state.signedOut = true;
    state.offeredToken = "";
    view.question.hidden = true;
    if (state.live) state.live.stop();
    state.live = null;
    state.liveUp = false;
    setConnection("");
    // The stock no longer updates without a token: it shows as unknown, as on a page opened signed out.
    state.stock = null;
    [view.available, view.sold, view.waitlist].forEach(function (node) { F.setText(node, "–"); });
    view.meter.style.width = "0";
    state.me = null;
    state.intent = null;
    state.confirmingCancel = "";
    F.clear(view.orders);
    view.ordersEmpty.hidden = false;
    view.waitlistBox.hidden = true;
    view.form.reset();
    showResult("");
    showSessionMessage("");
    showNotice("You are signed out. Sign in at the shop to order.", "info");
    renderSession();
    renderLimit();
    renderButton();
  }

  // ---- server state -------------------------------------------------------------------------------

  function signedOut(reply) {
    state.signedOut = true;
    F.forgetToken(TOKEN_KEY);
    if (state.live) state.live.stop();
    setConnection("");
    showNotice("Your sign-in has expired. Sign in at the shop again to order. " +
      (reply ? "(" + F.describe(reply) + ")" : ""), "warning");
    renderSession();
    renderButton();
  }

  function applyStock(stock) {
    if (!stock || typeof stock.available !== "number") return;
    state.stock = { available: stock.available, sold: stock.sold, status: stock.status, waitlist: stock.waitlist };
    if (state.sale && stock.status && state.sale.status !== "closed") state.sale.status = stock.status;
    renderStock();
    if (stock.status === "closed" && !state.closedReason) learnClosedReason();
    renderState();
  }

  function setClosed(reason) {
    const wasClosed = isClosed() && state.closedReason;
    state.closedReason = reason || state.closedReason;
    if (state.sale) state.sale.status = "closed";
    if (state.stock) state.stock.status = "closed";
    if (state.live) state.live.stop();
    setConnection("");
    state.confirmingCancel = "";
    renderState();
    announceStock(true);
    if (!wasClosed) loadMe();
  }

  // A sale seen closed by polling (no `closed` message) takes its reason from the summary.
  let learningReason = false;
  async function learnClosedReason() {
    if (learningReason || state.closedReason || !sessionToken()) return;
    learningReason = true;
    const reply = await F.call("GET", "/sales/" + encodeURIComponent(state.saleID) + "/summary", { token: state.token });
    learningReason = false;
    if (reply.status === 200 && reply.body && reply.body.closedReason) setClosed(reply.body.closedReason);
    else setClosed("");
  }

  async function loadStock() {
    if (!sessionToken()) return null;
    const reply = await F.call("GET", "/sales/" + encodeURIComponent(state.saleID) + "/stock", { token: state.token });
    if (reply.status === 200) applyStock(reply.body);
    else if (reply.status === 401) signedOut(reply);
    return reply;
  }

  let loadingMe = null;
  function loadMe() {
    if (!loadingMe) {
      loadingMe = loadMeOnce().finally(function () { loadingMe = null; });
    }
    return loadingMe;
  }

  async function loadMeOnce() {
    if (!sessionToken()) return;
    const reply = await F.call("GET", "/sales/" + encodeURIComponent(state.saleID) + "/me", { token: state.token });
    if (reply.status === 401) { signedOut(reply); return; }
    if (reply.status !== 200 || !reply.body) return;
    const before = state.me;
    state.me = reply.body;
    if (before && before.waitlist && !state.me.waitlist) noticeWaitlistEnd(before);
    renderMe();
  }

  /** The customer left the waiting list: served (a new order) or, at close, not. */
  function noticeWaitlistEnd(before) {
    const known = {};
    (before.orders || []).forEach(function (order) { known[order.orderId] = true; });
    const served = (state.me.orders || []).filter(function (order) { return !known[order.orderId] && order.status === "confirmed"; });
    if (served.length > 0) {
      announceServed(served[0].orderId, served[0].quantity);
    } else if (isClosed()) {
      showResult("The sale closed before units came back; your place on the waiting list was not served.", "warning");
    }
  }

  let servedShown = "";
  function announceServed(orderID, quantity) {
    if (servedShown === orderID) return;
    servedShown = orderID;
    showResult("Good news: you were served from the waiting list. Order " + shortOrderID(orderID) + " is confirmed (" +
      F.units(quantity) + ").", "success");
    view.result.classList.add("result-flash");
  }

  // ---- the live socket and its fallback ------------------------------------------------------------

  function startLive() {
    if (state.live || isClosed() || state.signedOut) return;
    state.live = new F.LiveSocket(state.saleID, state.token, {
      up: function () { state.liveUp = true; setConnection("Live", "live"); },
      down: function () {
        state.liveUp = false;
        if (!isClosed() && !state.signedOut) setConnection("Reconnecting… (updates every few seconds)", "down");
      },
      message: function (message) {
        if (message.type === "stock") {
          applyStock(message);
        } else if (message.type === "closed") {
          setClosed(message.reason || "");
        } else if (message.type === "waitlist" && message.status === "confirmed") {
          announceServed(message.orderId, message.quantity);
          loadMe();
        }
      },
      ended: function (why, detail) {
        state.liveUp = false;
        if (why === "policy" && !isClosed()) {
          setConnection("Live updates stopped", "down");
          showNotice("Live updates stopped: " + (detail || "the server ended them") +
            ". The stock still refreshes every few seconds; reload the page to get live updates back.", "warning");
        }
      },
    });
    state.live.start();
  }

  // While the socket is down the stock is polled; while waitlisted /me is polled too, because the instance
  // that serves the waitlist may not be the one holding this page's socket.
  function tickPoll() {
    if (!state.sale || state.signedOut) return;
    if (!state.liveUp && !isClosed()) loadStock();
    if (waitlisted() || !state.me) loadMe();
  }

  function tickClock() {
    if (!state.sale) return;
    const wasBefore = view.page.dataset.state === "scheduled";
    renderState();
    if (wasBefore && !beforeOpening() && !state.openedRefresh) {
      // The opening instant passed on the server's clock: fetch fresh numbers instead of waiting for a push.
      state.openedRefresh = true;
      loadStock();
    }
  }

  // ---- ordering -------------------------------------------------------------------------------------

  function readForm() {
    const quantity = Number(view.quantity.value);
    const name = view.deliveryName.value.trim();
    const phone = view.phone.value.trim();
    const address = view.address.value.trim();
    const problems = [];
    const mark = function (input, bad) {
      input.setAttribute("aria-invalid", bad ? "true" : "false");
      return bad;
    };
    if (mark(view.quantity, !Number.isInteger(quantity) || quantity < 1 || quantity > remainingAllowance())) {
      problems.push({ input: view.quantity, text: "Quantity must be a whole number from 1 to " + remainingAllowance() + "." });
    }
    if (mark(view.deliveryName, name.length < 1 || name.length > 100)) problems.push({ input: view.deliveryName, text: "Enter your name." });
    if (mark(view.phone, phone.length < 6 || phone.length > 20)) problems.push({ input: view.phone, text: "Enter a phone number of 6 to 20 characters." });
    if (mark(view.address, address.length < 1 || address.length > 500)) problems.push({ input: view.address, text: "Enter a delivery address." });
    return { problems: problems, body: { quantity: quantity, delivery: { name: name, phone: phone, address: address } } };
  }

  async function submitOrder(event) {
    event.preventDefault();
    // A second click while the first is in flight does nothing: the button is disabled, and this guard
    // covers clicks that arrive before the browser repaints it.
    if (state.inFlight || blockedReason() !== "") return;
    const form = readForm();
    if (form.problems.length > 0) {
      showResult(form.problems.map(function (problem) { return problem.text; }).join(" "), "error");
      form.problems[0].input.focus();
      return;
    }
    if (!state.intent) state.intent = { key: F.newKey() };
    state.intent.body = form.body;
    state.inFlight = true;
    view.result.classList.remove("result-flash");
    showResult("Sending your order…", "pending");
    renderButton();

    const path = "/sales/" + encodeURIComponent(state.saleID) + "/orders";
    let reply;
    for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt += 1) {
      reply = await F.call("POST", path, { token: state.token, body: state.intent.body, idempotencyKey: state.intent.key });
      const retryable = reply.status === 0 || reply.status === 429 || reply.status === 503;
      if (!retryable || attempt === MAX_ATTEMPTS) break;
      const wait = F.backoffMilliseconds(attempt, reply.retryAfterSeconds, 1000, 15000);
      showResult(F.describe(reply) + " Trying again in " + Math.ceil(wait / 1000) + " s (attempt " +
        (attempt + 1) + " of " + MAX_ATTEMPTS + ")…", "pending");
      await F.sleep(wait);
      if (isClosed()) break;
    }
    state.inFlight = false;
    handleOrderReply(reply);
    renderButton();
  }

  function handleOrderReply(reply) {
    const body = reply.body || {};
    const definite = reply.status !== 0 && reply.status !== 429 && reply.status !== 503;
    if (definite) state.intent = null;
    if (reply.status === 201) {
      state.settledUntil = Date.now() + 1500;
      showResult("Order confirmed: " + F.units(body.quantity) + ". Order " + shortOrderID(body.orderId) + ".", "success");
      loadMe();
      return;
    }
    if (reply.status === 202) {
      showResult("No unit is free right now, so you joined the waiting list at position " +
        F.formatNumber(body.position) + ".", "pending");
      state.me = Object.assign({}, state.me || { purchased: 0, orders: [] }, { waitlist: { position: body.position } });
      renderMe();
      loadMe();
      return;
    }
    if (!definite) {
      showResult("Your order is not confirmed yet: " + F.describe(reply) + " Press “Try again”: the same order is " +
        "never placed twice.", "error");
      return;
    }
    showResult(F.describe(reply), "error");
    switch (body.code) {
      case "UNAUTHORIZED": signedOut(reply); break;
      case "SOLD_OUT": setClosed("sold_out"); break;
      case "SALE_ENDED": learnClosedReason(); loadStock(); break;
      case "LIMIT_EXCEEDED": loadMe(); break;
      case "INSUFFICIENT_STOCK": loadStock(); break;
      case "SALE_NOT_STARTED": loadStock(); break;
      default: break;
    }
  }

  async function cancelOrder(orderID) {
    if (state.cancelling) return;
    state.cancelling = orderID;
    renderMe();
    const reply = await F.call("DELETE", "/orders/" + encodeURIComponent(orderID), { token: state.token });
    state.cancelling = "";
    state.confirmingCancel = "";
    if (reply.status === 200) {
      showResult("Order " + shortOrderID(orderID) + " is cancelled; its units went back to the sale.", "success");
    } else {
      showResult("The order could not be cancelled. " + F.describe(reply), "error");
      if (reply.status === 401) signedOut(reply);
      if (reply.body && reply.body.code === "SALE_ENDED") learnClosedReason();
    }
    await loadMe();
    loadStock();
    focusKey("cancel-" + orderID);
  }

  // ---- start ----------------------------------------------------------------------------------------

  async function loadSale() {
    const path = "/sales/" + encodeURIComponent(state.saleID);
    for (let attempt = 1; ; attempt += 1) {
      const reply = await F.call("GET", path, { token: state.token });
      if (reply.status === 200 && reply.body) return reply.body;
      if (reply.status === 401) { signedOut(reply); return null; }
      if (reply.status === 404) {
        showNotice("There is no sale with the id “" + state.saleID + "”. Check the link you followed.", "error");
        return null;
      }
      if (reply.status !== 0 && reply.status !== 429 && reply.status !== 503) {
        showNotice("The sale could not be loaded. " + F.describe(reply), "error");
        return null;
      }
      const wait = F.backoffMilliseconds(Math.min(attempt, 6), reply.retryAfterSeconds, 1000, 30000);
      showNotice("The sale could not be loaded yet (" + F.describe(reply) + "). Trying again in " +
        Math.ceil(wait / 1000) + " s…", "warning");
      await F.sleep(wait);
    }
  }

  async function start() {
    state.saleID = new URLSearchParams(window.location.search).get("sale") || "";
    // The shop's login may have stored the token in localStorage; a token from the address is kept in
    // sessionStorage, for this tab only.
    state.token = F.storedToken(TOKEN_KEY, { localStorage: true });
    const offered = F.takeAddressToken();
    if (offered !== null) offerToken(offered, true);
    window.addEventListener("hashchange", function () {
      const later = F.takeAddressToken();
      if (later !== null) offerToken(later, false);
    });
    renderSession();
    view.signOut.addEventListener("click", signOut);
    view.switchButton.addEventListener("click", switchCustomer);
    view.stayButton.addEventListener("click", staySignedIn);
    view.form.addEventListener("submit", submitOrder);
    // A double click is one intent: its second click (detail 2) never submits.
    view.button.addEventListener("click", function (event) { if (event.detail > 1) event.preventDefault(); });

    if (!state.saleID) {
      view.page.removeAttribute("aria-busy");
      F.setText(view.name, "Which sale?");
      showNotice("This page shows one sale at a time. Open it from the shop's link to the sale: its address " +
        "ends in ?sale= followed by the sale's id, for example " + window.location.origin +
        window.location.pathname + "?sale=spring-phones.", "info");
      return;
    }
    F.setText(view.saleID, "Sale " + state.saleID);
    view.body.hidden = false;
    renderButton();
    if (!state.token) {
      view.page.removeAttribute("aria-busy");
      state.signedOut = true;
      showNotice("Sign in at the shop to order. Once you are signed in, this page shows the sale's stock, " +
        "its opening countdown and your orders.", "info");
      renderButton();
      return;
    }

    const sale = await loadSale();
    view.page.removeAttribute("aria-busy");
    if (!sale) {
      if (!state.signedOut) view.body.hidden = true;
      return;
    }
    showNotice("");
    state.sale = sale;
    if (sale.status === "closed" && sale.closedReason) state.closedReason = sale.closedReason;
    renderSale();
    applyStock({ available: sale.available, sold: sale.sold, status: sale.status, waitlist: 0 });
    await Promise.all([loadStock(), loadMe()]);
    if (!state.signedOut) startLive();
    setInterval(tickClock, 250);
    setInterval(tickPoll, POLL_MILLISECONDS);
  }

  start();
})();
