"use strict";
// The operator console: the list of sales, a form to schedule one, and for the selected sale its live
// stock, an orders/s chart, the lease table with rebalance and drain, "Close now" and the final summary.
// The admin token stays in this tab's sessionStorage; its subject and expiry show in the top bar.
(function () {
  const F = window.FlashSale;
  const TOKEN_KEY = "flashsale.adminToken";
  const SHARDS_MILLISECONDS = 2000;
  const POLL_MILLISECONDS = 3000;
  const CHART_SECONDS = 120;

  const $ = function (id) { return document.getElementById(id); };
  const view = {
    notice: $("notice"), main: $("console"), connection: $("connection"),
    filter: $("status-filter"), refresh: $("refresh-sales"), salesBody: document.querySelector("#sales-table tbody"),
    salesEmpty: $("sales-empty"), salesStatus: $("sales-status"), more: $("more-sales"),
    form: $("schedule-form"), newName: $("new-name"), newStock: $("new-stock"), newLimit: $("new-limit"),
    newStarts: $("new-starts"), newDuration: $("new-duration"), newEnds: $("new-ends"), newID: $("new-id"),
    endDuration: $("end-duration"), endAt: $("end-at"), scheduleButton: $("schedule-button"), scheduleResult: $("schedule-result"),
    detail: $("detail"), detailEmpty: $("detail-empty"), detailEmptyText: $("detail-empty-text"), detailBody: $("detail-body"),
    title: $("detail-title"), id: $("detail-id"), status: $("detail-status"), window: $("detail-window"),
    shopLink: $("detail-shop-link"), rebalance: $("rebalance-button"), close: $("close-button"),
    closeBox: $("close-confirm-box"), closeConfirm: $("close-confirm"), closeKeep: $("close-keep"), actionResult: $("action-result"),
    available: $("detail-available"), sold: $("detail-sold"), waitlist: $("detail-waitlist"), rate: $("detail-rate"),
    pool: $("detail-pool"), outbox: $("detail-outbox"), chart: $("rate-chart"), chartText: $("chart-text"),
    instances: $("instances"), leaseBody: document.querySelector("#lease-table tbody"), leaseEmpty: $("lease-empty"),
    leaseBalance: $("lease-balance"), summary: $("summary"),
    session: $("session"), sessionName: $("session-name"), tokenExpiry: $("token-expiry"),
    tokenForm: $("token-form"), tokenInput: $("token-input"), tokenResult: $("token-result"),
  };

  const state = {
    token: "",
    holder: null,         // what the token says (FlashSale.readToken), null when unreadable
    expired: false,
    tokenTimer: 0,
    sales: [],
    next: null,
    loadingSales: false,
    selected: null,       // the selected sale (GET /sales/{id} shape)
    stock: null,
    shards: null,
    samples: [],          // [{at, sold}] from the live numbers, for the orders/s chart
    live: null,
    liveUp: false,
    timers: [],
    busy: false,
    summaryFinal: false,
    settled: false,
  };

  function showNotice(text, tone) {
    view.notice.hidden = !text;
    view.notice.className = "notice" + (tone ? " notice-" + tone : "");
    F.setText(view.notice, text || "");
  }

  function showResult(node, text, tone) {
    node.hidden = !text;
    node.className = "result" + (tone ? " result-" + tone : "");
    F.setText(node, text || "");
  }

  function setConnection(text, tone) {
    view.connection.hidden = !text;
    view.connection.className = "connection" + (tone ? " connection-" + tone : "");
    F.setText(view.connection, text || "");
  }

  /** Shared handling of a refused token: say what to do, stop everything that polls. */
  function tokenRefused(reply) {
    if (reply.status !== 401 && reply.status !== 403) return false;
    if (state.expired) return true;
    if (reply.status === 401 && tokenLeftMilliseconds() <= 0) {
      tokenExpired();
      return true;
    }
    if (reply.status === 401) F.forgetToken(TOKEN_KEY);
    stopSelected();
    view.main.hidden = true;
    showNotice(reply.status === 401
      ? "The operator token was refused (" + F.describe(reply) + "). Paste a new admin token below, or open the console again as /admin/#token=<admin token>."
      : "This token has no admin scope. Paste an operator's token below.", "error");
    askForToken();
    return true;
  }

  // ---- the operator's token ---------------------------------------------------------------------

  /** Milliseconds until the token expires, on the server's clock; Infinity without `exp`. */
  function tokenLeftMilliseconds() {
    if (!state.holder || !isFinite(state.holder.expiresAtMilliseconds)) return Infinity;
    return state.holder.expiresAtMilliseconds - F.clock.now();
  }

  /** "45 s", "58 min", "2 h 05 min". */
  function formatLeft(milliseconds) {
    const seconds = Math.max(0, Math.floor(milliseconds / 1000));
    if (seconds < 60) return seconds + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min";
    const rest = minutes % 60;
    return Math.floor(minutes / 60) + " h " + (rest < 10 ? "0" : "") + rest + " min";
  }

  /** Who the token names and when it expires, counted down every second; at expiry, tokenExpired(). */
  function renderToken() {
    const holder = state.holder;
    view.session.hidden = !holder;
    if (!holder) return;
    F.setText(view.sessionName, holder.name ? holder.name + " (" + holder.subject + ")" : holder.subject);
    const left = tokenLeftMilliseconds();
    if (!isFinite(left)) {
      F.setText(view.tokenExpiry, "· token without expiry");
      return;
    }
    if (left <= 0) {
      tokenExpired();
      return;
    }
    F.setText(view.tokenExpiry, "· token expires " + F.formatTime(holder.expiresAtMilliseconds) + " (in " + formatLeft(left) + ")");
    view.tokenExpiry.classList.toggle("session-expiring", left < 5 * 60000);
  }

  /** The token has expired: everything that polls stops and the console asks for a new token. */
  function tokenExpired() {
    if (state.expired) return;
    state.expired = true;
    clearInterval(state.tokenTimer);
    stopSelected();
    F.forgetToken(TOKEN_KEY);
    state.token = "";
    view.main.hidden = true;
    const at = F.formatTime(state.holder.expiresAtMilliseconds);
    F.setText(view.tokenExpiry, "· token expired " + at);
    view.tokenExpiry.classList.add("session-expiring");
    showNotice("The operator token of " + state.holder.subject + " expired at " + at + ". Paste a new admin token " +
      "below, or open the console again as " + window.location.origin + window.location.pathname + "#token=<admin token>.", "warning");
    askForToken();
  }

  function askForToken() {
    view.tokenForm.hidden = false;
    view.tokenInput.value = "";
    showResult(view.tokenResult, "");
  }

  /** Keeps a token pasted in or given in the address; "" when kept, else why not. */
  function keepOfferedToken(token) {
    if (!token) return "Paste an admin token first.";
    const holder = F.readToken(token);
    if (!holder) return "That is not a token: an admin token is a JWT, three base64url parts separated by dots.";
    if (holder.expiresAtMilliseconds <= F.clock.now()) return "That token expired at " + F.formatTime(holder.expiresAtMilliseconds) + ".";
    F.keepToken(TOKEN_KEY, token);
    return "";
  }

  function useTypedToken(event) {
    event.preventDefault();
    const problem = keepOfferedToken(view.tokenInput.value.trim());
    if (problem) {
      showResult(view.tokenResult, problem, "error");
      view.tokenInput.focus();
      return;
    }
    // A fresh start with the new token (the selected sale stays in the address).
    window.location.reload();
  }

  const saleURL = function (id, tail) { return "/sales/" + encodeURIComponent(id) + (tail || ""); };
  const adminURL = function (id, tail) { return "/admin/sales/" + encodeURIComponent(id) + (tail || ""); };

  // ---- the list ---------------------------------------------------------------------------------

  async function loadSales(append) {
    if (state.loadingSales) return;
    state.loadingSales = true;
    const query = new URLSearchParams();
    if (view.filter.value) query.set("status", view.filter.value);
    if (append && state.next) query.set("cursor", state.next);
    F.setText(view.salesStatus, "Loading…");
    const text = query.toString();
    const reply = await F.call("GET", "/admin/sales" + (text ? "?" + text : ""), { token: state.token });
    state.loadingSales = false;
    if (tokenRefused(reply)) return;
    if (reply.status !== 200 || !reply.body || !Array.isArray(reply.body.sales)) {
      F.setText(view.salesStatus, "The list could not be loaded. " + F.describe(reply));
      return;
    }
    state.sales = append ? state.sales.concat(reply.body.sales) : reply.body.sales;
    state.next = reply.body.next || null;
    renderSales();
  }

  function renderSales() {
    F.clear(view.salesBody);
    state.sales.forEach(function (sale) {
      const selected = state.selected && state.selected.id === sale.id;
      const row = F.el("tr", { "data-sale-id": sale.id, class: selected ? "selected" : "", "aria-selected": selected ? "true" : "false" }, [
        F.el("td", { class: "sale-cell" }, [
          F.el("button", { type: "button", class: "sale-link", text: sale.name, "aria-label": "Watch " + sale.name + " (" + sale.id + ")",
            onclick: function () { select(sale.id, true); } }),
          F.el("div", { class: "code muted", text: sale.id }),
        ]),
        F.el("td", {}, [F.el("span", { class: "status-pill status-" + sale.status, text: sale.status })]),
        F.el("td", { text: F.formatShortTime(F.parseTime(sale.startsAt)) }),
        F.el("td", { class: "number", text: F.formatNumber(sale.sold) + " / " + F.formatNumber(sale.stock) }),
      ]);
      view.salesBody.appendChild(row);
    });
    view.salesEmpty.hidden = state.sales.length > 0;
    view.more.hidden = !state.next;
    F.setText(view.salesStatus, state.sales.length === 1 ? "1 sale" : F.formatNumber(state.sales.length) + " sales" +
      (state.next ? " (more below)" : ""));
  }

  /** Keeps the list's row of the selected sale in step with what the detail knows. */
  function updateListRow() {
    if (!state.selected) return;
    const sale = state.sales.find(function (item) { return item.id === state.selected.id; });
    if (!sale) return;
    const changed = sale.status !== state.selected.status || (state.stock && sale.sold !== state.stock.sold);
    if (!changed) return;
    sale.status = state.selected.status;
    if (state.stock) sale.sold = state.stock.sold;
    renderSales();
  }

  // ---- scheduling -------------------------------------------------------------------------------

  function localInputValue(milliseconds) {
    const date = new Date(milliseconds);
    const two = function (value) { return (value < 10 ? "0" : "") + value; };
    return date.getFullYear() + "-" + two(date.getMonth() + 1) + "-" + two(date.getDate()) + "T" +
      two(date.getHours()) + ":" + two(date.getMinutes()) + ":" + two(date.getSeconds());
  }

  /** A datetime-local value (the operator's own time zone) as RFC 3339 UTC, "" when empty or invalid. */
  function toUTC(value) {
    if (!value) return "";
    const parsed = new Date(value);
    return isNaN(parsed.getTime()) ? "" : parsed.toISOString();
  }

  function endMode() {
    const checked = view.form.querySelector('input[name="end-mode"]:checked');
    return checked ? checked.value : "duration";
  }

  async function schedule(event) {
    event.preventDefault();
    if (view.scheduleButton.disabled) return;
    const body = {
      name: view.newName.value.trim(),
      stock: Number(view.newStock.value),
      perCustomerLimit: Number(view.newLimit.value),
      startsAt: toUTC(view.newStarts.value),
    };
    const problems = [];
    if (!body.name) problems.push("Enter a name.");
    if (!Number.isInteger(body.stock) || body.stock < 1) problems.push("Stock must be a whole number of at least 1.");
    if (!Number.isInteger(body.perCustomerLimit) || body.perCustomerLimit < 1) problems.push("The limit must be a whole number of at least 1.");
    if (!body.startsAt) problems.push("Choose when the sale opens.");
    if (endMode() === "duration") {
      body.durationSeconds = Number(view.newDuration.value);
      if (!Number.isInteger(body.durationSeconds) || body.durationSeconds < 1) problems.push("The duration must be a whole number of seconds.");
    } else {
      body.endsAt = toUTC(view.newEnds.value);
      if (!body.endsAt) problems.push("Choose when the sale ends.");
    }
    const id = view.newID.value.trim();
    if (id) body.id = id;
    // The server checks the ranges too; only what would make a malformed request is stopped here.
    if (problems.length > 0) {
      showResult(view.scheduleResult, problems.join(" "), "error");
      return;
    }
    view.scheduleButton.disabled = true;
    showResult(view.scheduleResult, "Scheduling…", "pending");
    const reply = await F.call("POST", "/admin/sales", { token: state.token, body: body });
    view.scheduleButton.disabled = false;
    if (tokenRefused(reply)) return;
    if (reply.status !== 201 || !reply.body) {
      showResult(view.scheduleResult, "Not scheduled. " + F.describe(reply), "error");
      return;
    }
    const sale = reply.body;
    showResult(view.scheduleResult, "Scheduled “" + sale.name + "” (" + sale.id + "), opening " +
      F.formatTime(F.parseTime(sale.startsAt)) + ".", "success");
    view.newName.value = "";
    view.newID.value = "";
    await loadSales(false);
    select(sale.id, false);
  }

  // ---- the selected sale ------------------------------------------------------------------------

  function stopSelected() {
    if (state.live) state.live.stop();
    state.live = null;
    state.liveUp = false;
    state.timers.forEach(clearInterval);
    state.timers = [];
    setConnection("");
  }

  async function select(id, focus) {
    stopSelected();
    const url = new URL(window.location.href);
    url.searchParams.set("sale", id);
    window.history.replaceState(window.history.state, "", url.pathname + url.search);
    state.selected = null;
    state.stock = null;
    state.shards = null;
    state.samples = [];
    state.summaryFinal = false;
    state.settled = false;
    view.closeBox.hidden = true;
    view.summary.hidden = true;
    showResult(view.actionResult, "");
    const reply = await F.call("GET", saleURL(id), { token: state.token });
    if (tokenRefused(reply)) return;
    if (reply.status !== 200 || !reply.body) {
      view.detailBody.hidden = true;
      view.detailEmpty.hidden = false;
      F.setText(view.detailEmptyText, "Sale " + id + " could not be loaded. " + F.describe(reply));
      return;
    }
    state.selected = reply.body;
    state.stock = { available: reply.body.available, sold: reply.body.sold, waitlist: NaN, status: reply.body.status };
    view.detailEmpty.hidden = true;
    view.detailBody.hidden = false;
    renderSales();
    renderDetail();
    if (focus) view.detail.focus();
    // /stock carries the ledger's time in milliseconds: lease expiry is shown on that clock.
    loadStock();
    loadShards();
    if (state.selected.status === "closed") loadSummary();
    else startLive();
    state.timers.push(setInterval(loadShards, SHARDS_MILLISECONDS));
    state.timers.push(setInterval(function () {
      if (!state.liveUp && state.selected && state.selected.status !== "closed") loadStock();
      if (state.selected && state.selected.status === "closed" && !state.summaryFinal) loadSummary();
    }, POLL_MILLISECONDS));
    state.timers.push(setInterval(function () { renderRate(); drawChart(); renderLeases(); }, 1000));
  }

  function startLive() {
    const sale = state.selected;
    state.live = new F.LiveSocket(sale.id, state.token, {
      up: function () { state.liveUp = true; setConnection("Live", "live"); },
      down: function () { state.liveUp = false; if (state.selected && state.selected.status !== "closed") setConnection("Reconnecting…", "down"); },
      message: function (message) {
        if (!state.selected || state.selected.id !== sale.id) return;
        if (message.type === "stock") applyStock(message);
        else if (message.type === "closed") markClosed(message.reason);
      },
      ended: function (why, detail) {
        if (why === "policy") {
          setConnection("Live updates stopped", "down");
          showResult(view.actionResult, "Live updates stopped: " + (detail || "the server ended them") +
            ". The numbers still refresh every few seconds.", "warning");
        }
      },
    });
    state.live.start();
  }

  async function loadStock() {
    const sale = state.selected;
    const reply = await F.call("GET", saleURL(sale.id, "/stock"), { token: state.token });
    if (tokenRefused(reply)) return;
    if (reply.status === 200 && state.selected === sale) applyStock(reply.body);
  }

  function applyStock(stock) {
    if (!stock || typeof stock.sold !== "number") return;
    state.stock = stock;
    state.samples.push({ at: Date.now(), sold: stock.sold });
    const horizon = Date.now() - (CHART_SECONDS + 15) * 1000;
    while (state.samples.length > 2 && state.samples[1].at < horizon) state.samples.shift();
    if (stock.status && state.selected.status !== "closed") state.selected.status = stock.status;
    if (stock.status === "closed") markClosed("");
    renderNumbers();
    updateListRow();
  }

  function markClosed(reason) {
    const sale = state.selected;
    if (!sale) return;
    const first = sale.status !== "closed" || (reason && !sale.closedReason);
    sale.status = "closed";
    if (reason) sale.closedReason = reason;
    if (state.live) state.live.stop();
    setConnection("");
    renderDetail();
    updateListRow();
    if (first) {
      loadSummary();
      loadShards();
    }
  }

  async function loadShards() {
    const sale = state.selected;
    if (!sale || document.hidden || state.settled) return;
    const reply = await F.call("GET", adminURL(sale.id, "/shards"), { token: state.token });
    if (tokenRefused(reply)) return;
    if (state.selected !== sale) return;
    if (reply.status === 200 && reply.body) {
      state.shards = reply.body;
      state.shards.receivedAt = Date.now();
      renderShards();
    }
  }

  let summaryInFlight = false;
  async function loadSummary() {
    const sale = state.selected;
    if (!sale || summaryInFlight) return;
    summaryInFlight = true;
    const reply = await F.call("GET", saleURL(sale.id, "/summary"), { token: state.token });
    summaryInFlight = false;
    if (tokenRefused(reply)) return;
    if (state.selected !== sale || reply.status !== 200 || !reply.body) return;
    const summary = reply.body;
    if (summary.closedReason) sale.closedReason = summary.closedReason;
    if (summary.final) {
      // A settled sale no longer changes: one last look at its leases, then the refresh stops.
      if (!state.summaryFinal) loadShards().then(function () { state.settled = true; });
      state.summaryFinal = true;
      renderSummary(summary);
      renderDetail();
    }
  }

  // ---- detail rendering -------------------------------------------------------------------------

  const reasonText = { sold_out: "sold out", ended: "ended", closed: "closed by an operator" };

  function renderDetail() {
    const sale = state.selected;
    if (!sale) return;
    F.setText(view.title, sale.name);
    F.setText(view.id, sale.id);
    F.setText(view.status, sale.status);
    view.status.className = "status-pill status-" + sale.status;
    let line = "Opens " + F.formatTime(F.parseTime(sale.startsAt)) + " · ends " + F.formatTime(F.parseTime(sale.endsAt)) +
      " · limit " + F.units(sale.perCustomerLimit) + " per customer · stock " + F.units(sale.stock);
    if (sale.status === "closed" && sale.closedReason) line += " · " + (reasonText[sale.closedReason] || sale.closedReason);
    F.setText(view.window, line);
    view.shopLink.href = "../?sale=" + encodeURIComponent(sale.id);
    const closed = sale.status === "closed";
    view.close.disabled = closed;
    view.rebalance.disabled = closed || state.busy;
    if (closed) view.closeBox.hidden = true;
    renderNumbers();
    renderShards();
  }

  function renderNumbers() {
    const stock = state.stock;
    if (!stock) return;
    F.setText(view.available, F.formatNumber(stock.available));
    F.setText(view.sold, F.formatNumber(stock.sold));
    F.setText(view.waitlist, F.formatNumber(stock.waitlist));
  }

  /** Units sold per second over the last `seconds`, from the live samples (cancellations do not count). */
  function soldBetween(from, to) {
    let total = 0;
    for (let index = 1; index < state.samples.length; index += 1) {
      const sample = state.samples[index];
      if (sample.at <= from || sample.at > to) continue;
      total += Math.max(0, sample.sold - state.samples[index - 1].sold);
    }
    return total;
  }

  function renderRate() {
    if (!state.selected) return;
    const now = Date.now();
    const rate = soldBetween(now - 10000, now) / 10;
    F.setText(view.rate, rate >= 10 ? Math.round(rate).toString() : rate.toFixed(1));
  }

  function drawChart() {
    const canvas = view.chart;
    if (!state.selected || canvas.offsetParent === null) return;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);

    const now = Date.now();
    const bins = [];
    for (let second = CHART_SECONDS - 1; second >= 0; second -= 1) {
      const end = now - second * 1000;
      bins.push(soldBetween(end - 1000, end));
    }
    const peak = Math.max.apply(null, bins);
    const top = 4 * niceStep(peak / 4);
    const left = 40, right = 8, topPad = 10, bottom = 22;
    const plotWidth = width - left - right;
    const plotHeight = height - topPad - bottom;

    context.font = "11px system-ui, sans-serif";
    context.fillStyle = "#4a5060";
    context.strokeStyle = "#e3e6ec";
    context.lineWidth = 1;
    context.textAlign = "right";
    context.textBaseline = "middle";
    for (let step = 0; step <= 4; step += 1) {
      const value = top * step / 4;
      const y = topPad + plotHeight - plotHeight * step / 4;
      context.beginPath();
      context.moveTo(left, Math.round(y) + 0.5);
      context.lineTo(width - right, Math.round(y) + 0.5);
      context.stroke();
      context.fillText(F.formatNumber(value), left - 6, y);
    }
    context.textAlign = "center";
    context.textBaseline = "top";
    [120, 90, 60, 30, 0].forEach(function (secondsAgo) {
      const x = left + plotWidth * (1 - secondsAgo / CHART_SECONDS);
      context.fillText(secondsAgo === 0 ? "now" : "-" + secondsAgo + " s", Math.min(width - right - 12, Math.max(left + 12, x)), height - bottom + 6);
    });
    const barWidth = plotWidth / CHART_SECONDS;
    context.fillStyle = "#4f46e5";
    bins.forEach(function (value, index) {
      if (value <= 0) return;
      const barHeight = Math.max(1, plotHeight * value / top);
      context.fillRect(left + index * barWidth + 0.5, topPad + plotHeight - barHeight, Math.max(1, barWidth - 1), barHeight);
    });
    const total = bins.reduce(function (sum, value) { return sum + value; }, 0);
    F.setText(view.chartText, F.units(total) + " sold in the last 2 minutes; peak " + F.formatNumber(peak) + " per second.");
  }

  /** The smallest of 1, 2, 5, 10, 20, 50, ... at least `value`: whole-number grid lines. */
  function niceStep(value) {
    if (!(value > 1)) return 1;
    const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    const steps = [1, 2, 5, 10];
    for (let index = 0; index < steps.length; index += 1) {
      if (steps[index] * magnitude >= value) return steps[index] * magnitude;
    }
    return 10 * magnitude;
  }

  function renderShards() {
    const shards = state.shards;
    if (!shards) return;
    F.setText(view.pool, F.formatNumber(shards.pool));
    F.setText(view.outbox, typeof shards.outboxBacklog === "number" ? F.formatNumber(shards.outboxBacklog) : "–");
    view.outbox.title = typeof shards.outboxBacklog === "number" ? "" : "Not reported by this server";
    const leased = shards.leases.reduce(function (sum, lease) { return sum + lease.remaining; }, 0);
    const balanced = shards.pool + leased + shards.sold === shards.stock;
    F.setText(view.leaseBalance, "· pool " + F.formatNumber(shards.pool) + " + leased " + F.formatNumber(leased) + " + sold " +
      F.formatNumber(shards.sold) + (balanced ? " = " : " ≠ ") + "stock " + F.formatNumber(shards.stock));
    view.leaseBalance.classList.toggle("result-error", !balanced);
    renderInstances();
    renderLeases();
  }

  function renderInstances() {
    const shards = state.shards;
    const names = (shards.instances || []).slice();
    shards.leases.forEach(function (lease) { if (names.indexOf(lease.owner) < 0) names.push(lease.owner); });
    names.sort();
    const key = names.join("\n") + "|" + state.selected.status + "|" + state.busy;
    if (view.instances.dataset.key === key) return;
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.drain : undefined;
    view.instances.dataset.key = key;
    F.clear(view.instances);
    if (names.length === 0) {
      view.instances.appendChild(F.el("li", { class: "muted", text: state.selected.status === "closed"
        ? "None: the sale is closed." : "No instance has taken part in this sale yet." }));
    }
    names.forEach(function (name) {
      view.instances.appendChild(F.el("li", { class: "instance" }, [
        F.el("span", { class: "code", text: name }),
        F.el("button", {
          type: "button", class: "button quiet small", "data-drain": name, text: "Drain",
          "aria-label": "Drain " + name + ": revoke its leases of this sale",
          disabled: state.selected.status === "closed" || state.busy,
          onclick: function () { rebalance({ mode: "drain", instance: name }, "Drain " + name); },
        }),
      ]));
    });
    if (focused) {
      const again = view.instances.querySelector('[data-drain="' + focused + '"]');
      if (again) again.focus();
    }
  }

  function renderLeases() {
    const shards = state.shards;
    if (!shards) return;
    // Expiry is counted on the server's clock: the lease table's times are the ledger's.
    const now = F.clock.now();
    F.clear(view.leaseBody);
    shards.leases.slice().sort(function (a, b) { return a.shardId < b.shardId ? -1 : a.shardId > b.shardId ? 1 : 0; })
      .forEach(function (lease) {
        const left = F.parseTime(lease.expiresAt) - now;
        view.leaseBody.appendChild(F.el("tr", { "data-owner": lease.owner, "data-remaining": String(lease.remaining) }, [
          F.el("td", { class: "code", text: lease.shardId }),
          F.el("td", { class: "code", text: lease.owner }),
          F.el("td", { class: "number", text: String(lease.fence) }),
          F.el("td", { class: "number", text: F.formatNumber(lease.remaining) }),
          F.el("td", { class: "number", text: isFinite(left) ? (left <= 0 ? "expired" : (left / 1000).toFixed(1) + " s") : "–" }),
        ]));
      });
    view.leaseEmpty.hidden = shards.leases.length > 0;
  }

  function renderSummary(summary) {
    view.summary.hidden = false;
    F.setText($("summary-status"), summary.status + (summary.closedReason ? " (" + (reasonText[summary.closedReason] || summary.closedReason) + ")" : ""));
    F.setText($("summary-sold"), F.units(summary.sold) + " of " + F.formatNumber(summary.stock));
    F.setText($("summary-orders"), F.formatNumber(summary.orders) + " / " + F.formatNumber(summary.buyers));
    F.setText($("summary-cancelled"), F.formatNumber(summary.cancelled));
    F.setText($("summary-opened"), summary.openedAt ? F.formatTime(F.parseTime(summary.openedAt)) : "–");
    F.setText($("summary-sellout"), typeof summary.sellOutMilliseconds === "number"
      ? (summary.sellOutMilliseconds / 1000).toFixed(3) + " s" : "did not sell out");
    F.setText($("summary-closed"), summary.closedAt ? F.formatTime(F.parseTime(summary.closedAt)) : "–");
    const waitlist = summary.waitlist || {};
    F.setText($("summary-waitlist"), F.formatNumber(waitlist.joined) + " joined, " + F.formatNumber(waitlist.served) +
      " served, " + F.formatNumber(waitlist.unserved) + " unserved");
    const rejections = Object.keys(summary.rejections || {}).sort().map(function (code) {
      return code + " " + F.formatNumber(summary.rejections[code]);
    });
    F.setText($("summary-rejections"), rejections.length ? rejections.join(", ") : "none");
  }

  // ---- actions ----------------------------------------------------------------------------------

  async function rebalance(body, label) {
    const sale = state.selected;
    if (!sale || state.busy) return;
    state.busy = true;
    renderDetail();
    showResult(view.actionResult, label + "…", "pending");
    const reply = await F.call("POST", adminURL(sale.id, "/rebalance"), { token: state.token, body: body });
    state.busy = false;
    if (tokenRefused(reply)) return;
    if (state.selected !== sale) return;
    if (reply.status === 202 && reply.body) {
      const leases = reply.body.revokedLeases, units = reply.body.returnedUnits;
      showResult(view.actionResult, label + ": " + F.formatNumber(leases) + (leases === 1 ? " lease" : " leases") +
        " revoked, " + F.units(units) + " returned to the pool.", "success");
    } else {
      showResult(view.actionResult, label + " failed. " + F.describe(reply), "error");
    }
    renderDetail();
    loadShards();
  }

  async function closeNow() {
    const sale = state.selected;
    if (!sale || state.busy) return;
    state.busy = true;
    view.closeConfirm.disabled = true;
    showResult(view.actionResult, "Closing…", "pending");
    const reply = await F.call("POST", adminURL(sale.id, "/close"), { token: state.token });
    state.busy = false;
    view.closeConfirm.disabled = false;
    view.closeBox.hidden = true;
    if (tokenRefused(reply)) return;
    if (state.selected !== sale) return;
    if (reply.status === 200) {
      showResult(view.actionResult, "The sale is closed. The summary appears once every instance has settled.", "success");
      if (reply.body && reply.body.status) sale.status = reply.body.status;
      markClosed("closed");
    } else if (reply.body && reply.body.code === "SALE_ENDED") {
      showResult(view.actionResult, "The sale was already closed. " + F.describe(reply), "warning");
      markClosed("");
    } else {
      showResult(view.actionResult, "The sale was not closed. " + F.describe(reply), "error");
    }
    view.close.focus();
  }

  // ---- start ------------------------------------------------------------------------------------

  function start() {
    // The admin token lives in this tab's sessionStorage only. A copy in localStorage (where a back office
    // may have put one) would outlive the browser session: it is removed, never read.
    try { window.localStorage.removeItem(TOKEN_KEY); } catch (error) { /* storage disabled */ }
    view.tokenForm.addEventListener("submit", useTypedToken);
    // A link that changes only the fragment does not load the page again: a usable new token restarts it.
    window.addEventListener("hashchange", function () {
      const later = F.takeAddressToken();
      if (!later) return;
      const problem = keepOfferedToken(later);
      if (problem) showNotice("The token in the address was not used. " + problem, "warning");
      else window.location.reload();
    });
    const offered = F.takeAddressToken();
    const addressProblem = offered ? keepOfferedToken(offered) : "";
    const notUsed = addressProblem ? "The token in the address was not used. " + addressProblem + " " : "";
    state.token = F.storedToken(TOKEN_KEY);
    if (!state.token) {
      showNotice(notUsed + "The console needs an operator token (a token with the admin scope). Paste it below, " +
        "open the console as " + window.location.origin + window.location.pathname + "#token=<admin token>, or " +
        "let the back office store it in this tab's sessionStorage under “" + TOKEN_KEY + "”.", addressProblem ? "warning" : "info");
      askForToken();
      return;
    }
    if (addressProblem) showNotice(notUsed + "The console carries on with the token it had.", "warning");
    state.holder = F.readToken(state.token);
    renderToken();
    if (state.expired) return;
    state.tokenTimer = setInterval(renderToken, 1000);
    view.main.hidden = false;
    view.newStarts.value = localInputValue(Math.ceil((Date.now() + 10 * 60000) / 60000) * 60000);
    view.newEnds.value = localInputValue(Math.ceil((Date.now() + 70 * 60000) / 60000) * 60000);

    view.filter.addEventListener("change", function () { loadSales(false); });
    view.refresh.addEventListener("click", function () { loadSales(false); });
    view.more.addEventListener("click", function () { loadSales(true); });
    view.form.addEventListener("submit", schedule);
    view.form.querySelectorAll('input[name="end-mode"]').forEach(function (radio) {
      radio.addEventListener("change", function () {
        view.endDuration.hidden = endMode() !== "duration";
        view.endAt.hidden = endMode() !== "at";
      });
    });
    view.rebalance.addEventListener("click", function () { rebalance({ mode: "even" }, "Rebalance evenly"); });
    view.close.addEventListener("click", function () {
      view.closeBox.hidden = false;
      view.closeConfirm.focus();
    });
    view.closeKeep.addEventListener("click", function () {
      view.closeBox.hidden = true;
      view.close.focus();
    });
    view.closeConfirm.addEventListener("click", closeNow);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) loadShards(); });

    loadSales(false);
    const preselected = new URLSearchParams(window.location.search).get("sale");
    if (preselected) select(preselected, false);
  }

  start();
})();
