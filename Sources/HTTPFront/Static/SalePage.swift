/// The sale page served at `/`: plain HTML and JavaScript, no build step. `?sale=ID` picks the sale;
/// the token is pasted once and kept in the browser's session storage.
enum SalePage {
    static let html = #"""
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>FlashSale</title>
    <style>
      body { font-family: system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem; color: #1b1b1b; }
      .stock { font-size: 3rem; font-weight: 700; }
      .muted { color: #666; }
      form { display: grid; gap: .5rem; margin-top: 1.5rem; }
      input, button { font: inherit; padding: .5rem; }
      button { background: #d40000; color: white; border: 0; border-radius: .25rem; cursor: pointer; }
      button:disabled { background: #999; }
      #result { margin-top: 1rem; white-space: pre-wrap; }
    </style>
    </head>
    <body>
    <h1 id="name">FlashSale</h1>
    <p id="countdown" class="muted"></p>
    <p><span class="stock" id="available">–</span> <span class="muted">left · <span id="sold">0</span> sold · <span id="waitlist">0</span> waiting</span></p>
    <form id="order">
      <input id="token" placeholder="Access token (flashsale token --sub you)" required>
      <input id="quantity" type="number" min="1" value="1" required>
      <input id="delivery-name" placeholder="Name" maxlength="100" required>
      <input id="delivery-phone" placeholder="Phone" minlength="6" maxlength="20" required>
      <input id="delivery-address" placeholder="Address" maxlength="500" required>
      <button id="submit" type="submit">Order</button>
    </form>
    <div id="result"></div>
    <script>
    const sale = new URLSearchParams(location.search).get("sale") || "demo";
    const $ = (id) => document.getElementById(id);
    $("token").value = sessionStorage.getItem("flashsale.token") || "";
    let startsAt = null;
    const headers = () => ({ "Authorization": "Bearer " + $("token").value, "Content-Type": "application/json" });
    async function load() {
      sessionStorage.setItem("flashsale.token", $("token").value);
      const response = await fetch("/sales/" + encodeURIComponent(sale), { headers: headers() });
      if (!response.ok) { $("result").textContent = (await response.json()).detail; return; }
      const body = await response.json();
      $("name").textContent = body.name;
      startsAt = new Date(body.startsAt);
      $("quantity").max = body.perCustomerLimit;
      show(body);
      connect();
    }
    function show(stock) {
      $("available").textContent = stock.available;
      $("sold").textContent = stock.sold;
      if (stock.waitlist !== undefined) $("waitlist").textContent = stock.waitlist;
      $("submit").disabled = stock.status === "closed";
    }
    function connect() {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const socket = new WebSocket(scheme + location.host + "/sales/" + encodeURIComponent(sale) + "/live?access_token=" + encodeURIComponent($("token").value));
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === "stock") show(message);
        if (message.type === "closed") { $("submit").disabled = true; $("countdown").textContent = "Closed: " + message.reason.replace("_", " "); }
      };
      socket.onclose = () => setTimeout(connect, 2000);
    }
    setInterval(() => {
      if (!startsAt) return;
      const seconds = Math.ceil((startsAt - Date.now()) / 1000);
      if (seconds > 0) $("countdown").textContent = "Opens in " + seconds + " s";
      else if (!$("countdown").textContent.startsWith("Closed")) $("countdown").textContent = "Open now";
    }, 250);
    $("order").addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = await fetch("/sales/" + encodeURIComponent(sale) + "/orders", {
        method: "POST", headers: { ...headers(), "Idempotency-Key": crypto.randomUUID() },
        body: JSON.stringify({ quantity: Number($("quantity").value), delivery: {
          name: $("delivery-name").value, phone: $("delivery-phone").value, address: $("delivery-address").value } })
      });
      const body = await response.json();
      $("result").textContent = response.status === 201 ? "Confirmed: order " + body.orderId
        : response.status === 202 ? "You are number " + body.position + " on the waiting list"
        : body.detail;
    });
    $("token").addEventListener("change", load);
    if ($("token").value) load();
    </script>
    </body>
    </html>
    """#
}
