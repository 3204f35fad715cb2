// The host console, /host/{room_id}: go live, camera (WHIP) or OBS, pin products, flash-sale countdowns,
// live metrics with a chart, chat moderation, end the room.

import { api, byTestId as t, compact, dateTime, el, getToken, money, renderAccount, requireRole, sayAt, timeOfDay } from "/web/js/api.js";
import { legend, lineChart } from "/web/js/chart.js";
import { chatList } from "/web/js/chat.js";
import { joinRoom } from "/web/js/live.js";
import { publish, whipUrl } from "/web/js/webrtc.js";
import { startRoomDashboard } from "/web/js/dashboard-panel.js";
import { fundingText, voucherTerms } from "/web/js/vouchers.js";

const roomId = Number(location.pathname.split("/")[2]);
const MUTE_SECONDS = 300;
const WHIP_RETRIES = 20;
const WHIP_RETRY_MS = 3000;

const state = {
  me: null,
  room: null,
  products: new Map(),
  sales: [],
  pinned: null,
  pinnedVoucher: null, // the pinned voucher card, or null
  vouchers: [], // the room's usable vouchers (socket `room_vouchers`)
  viewers: 0,
  likes: 0,
  pools: new Map(), // pool -> {sold, price_minor, currency}
  currency: "USD",
  saleStats: new Map(), // sale id -> GET /sales/{id}/stats
};

const message = t("message");
// The one status line shows next to what it is about (`near`: a row, a list, a button's row); without
// `near`, under the room's title, where go-live and end-room are.
const show = (text, kind = "info", code, near) => sayAt(message, near, text, kind, code);
const refuse = (error, near) => show(error?.message || "Something went wrong.", "error", error?.code, near);
const SALES_POLL_MS = 5000; // sales go live (and end) on their own: the list follows within this

let live = null;

// --- room status ------------------------------------------------------------------------------------------------

function renderStatus() {
  const status = state.room?.status;
  const badge = t("room-status");
  badge.textContent = status || "";
  badge.className = "badge" + (status === "live" ? " live" : status === "scheduled" ? " warn" : "");
  t("go-live").hidden = status !== "scheduled";
  t("end-room").hidden = status === "ended" || !status;
  if (status === "ended") t("end-room-confirm").hidden = true;
  t("publish-camera").disabled = status === "ended" || Boolean(camera.session) || camera.starting;
  for (const button of document.querySelectorAll("[data-testid=pin-button],[data-testid=unpin-button]")) button.disabled = status !== "live";
  document.body.dataset.roomStatus = status || "";
}

t("go-live").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    state.room = await api(`/rooms/${roomId}/live`, { method: "POST", auth: "required" });
    show("You're live! Start the camera, or stream from OBS.", "ok");
  } catch (error) {
    refuse(error);
  } finally {
    button.disabled = false;
    renderStatus();
  }
});

t("end-room").addEventListener("click", () => {
  t("end-room-confirm").hidden = false;
  t("end-room").hidden = true;
  show("End the show for everyone? Viewers stay connected but chat, pins and video stop.", "warn");
});

t("end-room-confirm").addEventListener("click", async () => {
  t("end-room-confirm").hidden = true;
  try {
    state.room = await api(`/rooms/${roomId}/end`, { method: "POST", auth: "required" });
    await stopCamera();
    show("The room has ended.", "ok");
  } catch (error) {
    refuse(error);
  }
  renderStatus();
});

// --- camera (WHIP) and OBS --------------------------------------------------------------------------------------

const camera = { stream: null, session: null, starting: false };

function setPublishState(text) {
  const badge = t("publish-state");
  badge.textContent = text;
  badge.className = "badge" + (text === "publishing" ? " live" : text === "failed" ? " warn" : "");
}

t("publish-camera").addEventListener("click", async () => {
  camera.starting = true;
  renderStatus();
  setPublishState("connecting");
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    t("preview").srcObject = camera.stream;
    t("preview-off").hidden = true;
    const onState = (pcState) => {
      if (pcState === "connected") setPublishState("publishing");
      else if (pcState === "failed") setPublishState("failed");
    };
    for (let attempt = 0; ; attempt++) {
      try {
        camera.session = await publish(roomId, camera.stream, { onState });
        break;
      } catch (error) {
        // A session from an earlier page (a reload, a crash) holds the room until the server notices it is gone.
        if (error.status !== 409 || attempt >= WHIP_RETRIES || !camera.stream) throw error;
        show("The previous camera session is still closing; retrying in a moment…", "warn", error.code, cameraRow());
        await new Promise((resolve) => setTimeout(resolve, WHIP_RETRY_MS));
      }
    }
    show("");
    if (camera.session.pc.connectionState === "connected") setPublishState("publishing");
    t("stop-camera").hidden = false;
    if (state.room?.status !== "live") show("Your camera is connected. Press Go live so viewers can see you.", "info");
  } catch (error) {
    setPublishState("failed");
    camera.stream?.getTracks().forEach((track) => track.stop());
    camera.stream = null;
    t("preview").srcObject = null;
    t("preview-off").hidden = false;
    show(error.name === "NotAllowedError" ? "Camera access was refused: allow it in the browser's site settings." : error.message, "error", error.code, cameraRow());
  } finally {
    camera.starting = false;
    renderStatus();
  }
});

function cameraRow() {
  return t("publish-camera").parentElement;
}

async function stopCamera() {
  await camera.session?.close();
  camera.session = null;
  camera.stream?.getTracks().forEach((track) => track.stop());
  camera.stream = null;
  t("preview").srcObject = null;
  t("preview-off").hidden = false;
  t("stop-camera").hidden = true;
  setPublishState("idle");
  renderStatus();
}

t("stop-camera").addEventListener("click", stopCamera);
addEventListener("pagehide", () => camera.session?.close());

t("show-stream-key").addEventListener("click", (event) => {
  const key = t("stream-key");
  key.classList.toggle("shown");
  event.currentTarget.textContent = key.classList.contains("shown") ? "Hide" : "Show";
});
t("copy-stream-key").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(getToken() || "");
    show("Stream key copied.", "ok", undefined, t("copy-stream-key").parentElement);
  } catch {
    show("Copy failed: select the key and copy it by hand.", "warn", undefined, t("copy-stream-key").parentElement);
  }
});

// --- products and pinning ---------------------------------------------------------------------------------------

function renderProducts() {
  const box = t("product-list");
  box.replaceChildren();
  if (!state.products.size) {
    box.append(el("p", { class: "empty", text: state.room?.brands.length ? "The featured brands have no products yet." : "Feature a brand in this room to sell its products." }));
    return;
  }
  const pinnedId = state.pinned?.product?.id;
  const isLive = state.room?.status === "live";
  for (const product of state.products.values()) {
    const pinned = product.id === pinnedId;
    box.append(
      el(
        "div",
        { class: "item" + (pinned ? " pinned" : ""), testid: "product-row", dataset: { productId: String(product.id), pinned: pinned ? "true" : "false" } },
        el(
          "div",
          { class: "grow" },
          el("div", { class: "name", title: product.title, text: product.title }),
          el("div", { class: "sub", text: `${money(product.price_minor, product.currency)} · ${product.stock} in stock · ${product.sku}` }),
        ),
        pinned
          ? el("button", { type: "button", class: "secondary small", testid: "unpin-button", text: "Unpin", disabled: !isLive, onclick: unpin })
          : el("button", { type: "button", class: "small", testid: "pin-button", text: "Pin", disabled: !isLive, onclick: () => pin(product.id) }),
      ),
    );
  }
  t("pinned-name").textContent = state.pinned?.product ? "Pinned: " + state.pinned.product.title : "Nothing pinned";
}

function productRow(productId) {
  return document.querySelector(`[data-testid=product-row][data-product-id="${productId}"]`);
}

async function pin(productId) {
  const ack = await live.request("pin", { room_id: roomId, product_id: productId });
  if (ack.ok) onPinned(ack.data);
  else refuse(ack.error, productRow(productId));
}

async function unpin() {
  const pinnedId = state.pinned?.product?.id;
  const ack = await live.request("unpin", { room_id: roomId });
  if (ack.ok) onPinned(ack.data);
  else refuse(ack.error, productRow(pinnedId));
}

function onPinned(payload) {
  state.pinned = payload.product ? payload : null;
  state.pinnedVoucher = payload.voucher || null;
  renderVouchers();
  if (payload.product && payload.offer) {
    const pool = state.pools.get(payload.offer.pool) || { sold: 0 };
    pool.price_minor = payload.offer.price_minor;
    pool.currency = payload.offer.currency;
    state.currency = payload.offer.currency;
    state.pools.set(payload.offer.pool, pool);
  }
  renderProducts();
}

async function loadProducts() {
  state.products.clear();
  for (const brand of state.room.brands) {
    let after = null;
    do {
      const page = await api(`/products?brand_id=${brand.id}&limit=100${after ? "&after=" + after : ""}`);
      for (const product of page.items) state.products.set(product.id, product);
      after = page.next;
    } while (after);
  }
  // The host also sells what they collaborate on (approved collaborations' products with a rate), of any brand.
  if (state.me?.role === "host") {
    try {
      const own = await api("/collaborations?status=approved", { auth: "required" });
      const ids = new Set(own.items.flatMap((c) => c.rates.filter((r) => r.rate_bps !== null).map((r) => r.product_id)));
      for (const id of ids) if (!state.products.has(id)) state.products.set(id, await api(`/products/${id}`));
    } catch (error) {
      refuse(error, t("product-list"));
    }
  }
  renderProducts();
}

// --- vouchers ---------------------------------------------------------------------------------------------------

function voucherRow(voucherId) {
  return document.querySelector(`[data-testid=voucher-row][data-voucher-id="${voucherId}"]`);
}

function renderVouchers() {
  const box = t("voucher-list");
  box.replaceChildren();
  const pinnedId = state.pinnedVoucher?.id;
  const isLive = state.room?.status === "live";
  if (!state.vouchers.length) box.append(el("p", { class: "empty", text: "No voucher can be pinned in this room now." }));
  for (const v of state.vouchers) {
    const pinned = v.id === pinnedId;
    const left = pinned ? state.pinnedVoucher.left : v.left;
    box.append(
      el(
        "div",
        { class: "item" + (pinned ? " pinned" : ""), testid: "voucher-row", dataset: { voucherId: String(v.id), pinned: pinned ? "true" : "false" } },
        el(
          "div",
          { class: "grow" },
          el("div", { class: "name", title: v.title, text: v.title }),
          el("div", { class: "sub", text: `${voucherTerms(v)} · ${fundingText(v)} · ${left} left` }),
        ),
        pinned
          ? el("button", { type: "button", class: "secondary small", testid: "voucher-unpin-button", text: "Unpin", disabled: !isLive, onclick: unpinVoucher })
          : el("button", { type: "button", class: "small", testid: "voucher-pin-button", text: "Pin", disabled: !isLive, onclick: () => pinVoucher(v.id) }),
      ),
    );
  }
  t("pinned-voucher-name").textContent = state.pinnedVoucher ? "Pinned: " + state.pinnedVoucher.title : "";
}

async function loadVouchers() {
  const ack = await live.request("room_vouchers", { room_id: roomId });
  if (ack.ok) state.vouchers = ack.data.vouchers;
  else refuse(ack.error, t("voucher-list"));
  renderVouchers();
}

async function pinVoucher(voucherId) {
  const ack = await live.request("pin", { room_id: roomId, voucher_id: voucherId });
  if (ack.ok) onPinned(ack.data);
  else refuse(ack.error, voucherRow(voucherId));
}

async function unpinVoucher() {
  const pinnedId = state.pinnedVoucher?.id;
  const ack = await live.request("unpin", { room_id: roomId });
  if (ack.ok) onPinned(ack.data);
  else refuse(ack.error, voucherRow(pinnedId));
}

// --- flash sales ------------------------------------------------------------------------------------------------

/** What a sale row shows: the list is drawn again only when one of these changes (not under a typing host). */
function salesShown() {
  return JSON.stringify(state.sales.map((sale) => [sale.id, sale.status, sale.starts_at, sale.quantity, state.products.get(sale.product_id)?.title]));
}

async function loadSales() {
  const page = await api(`/sales?room_id=${roomId}&limit=100`, { auth: "required" });
  const before = salesShown();
  state.sales = page.items;
  if (salesShown() !== before || !t("sale-list").querySelector("[data-testid=sale-row], .empty.ready")) renderSales();
}

function renderSales() {
  const box = t("sale-list");
  box.replaceChildren();
  if (!state.sales.length) {
    box.append(el("p", { class: "empty ready", text: "No flash sales in this room. Brands schedule them from their dashboard." }));
    return;
  }
  for (const sale of state.sales) {
    const product = state.products.get(sale.product_id);
    const seconds = el("input", { type: "number", min: 10, max: 300, value: "30", testid: "countdown-seconds", "aria-label": "Countdown seconds", style: "width: 80px" });
    const startable = sale.status === "scheduled";
    const start = el("button", {
      type: "button",
      class: "small",
      testid: "countdown-button",
      text: "Start countdown",
      onclick: async () => {
        const value = Number(seconds.value);
        const row = start.closest("[data-testid=sale-row]");
        if (!(value >= 10 && value <= 300)) return show("The countdown lasts 10 to 300 seconds.", "error", "invalid_request", row);
        start.disabled = true;
        try {
          const started = await api(`/sales/${sale.id}/countdown`, { method: "POST", body: { room_id: roomId, seconds: value }, auth: "required" });
          await loadSales();
          show(`Countdown started: the sale opens at ${timeOfDay(started.starts_at)}.`, "ok", undefined, t("sale-list"));
        } catch (error) {
          refuse(error, row);
          start.disabled = false;
        }
      },
    });
    box.append(
      el(
        "div",
        { class: "item stacked", testid: "sale-row", dataset: { saleId: String(sale.id), status: sale.status } },
        el(
          "div",
          { class: "row" },
          el("div", { class: "name grow", text: `${product ? product.title : "Product " + sale.product_id}` }),
          el("span", { class: "status-pill", testid: "sale-status", dataset: { status: sale.status }, text: sale.status }),
        ),
        el("div", {
          class: "sub",
          text: `${money(sale.price_minor, sale.currency)} · ${sale.quantity} units · starts ${dateTime(sale.starts_at)}${sale.audience !== "open" ? " · " + sale.audience.replace("_", " ") : ""}`,
        }),
        startable ? el("div", { class: "row" }, el("label", { class: "inline" }, "Countdown", seconds, "s"), start) : null,
      ),
    );
  }
}

// --- metrics ----------------------------------------------------------------------------------------------------

const series = [
  { name: "Viewers", color: "#3b6ff5", format: (v) => compact(v) },
  { name: "GMV", color: "#e0245e", format: (v) => money(v, state.currency) },
  { name: "Units sold", color: "#13a05a", format: (v) => compact(v) },
];
const chart = lineChart(t("metrics-chart"), series, { keep: 90 });
chart.push([0, 0, 0]);
document.getElementById("metrics-legend").replaceWith(legend(series, chart));

/**
 * Units sold and GMV in this room: each flash sale's figures from `GET /sales/{id}/stats` (polled), plus the
 * products sold at their own price, from the `stock` events of their pools (sold units × price).
 */
function totals() {
  let units = 0;
  let gmv = 0;
  for (const [name, pool] of state.pools) {
    if (name.startsWith("s") && state.saleStats.has(Number(name.slice(1)))) continue;
    units += pool.sold || 0;
    gmv += (pool.sold || 0) * (pool.price_minor || 0);
  }
  for (const stats of state.saleStats.values()) {
    units += stats.paid;
    gmv += stats.gmv_minor;
  }
  return { units, gmv };
}

/** The started sales' figures; a sale whose status moved on (live, sold out, ended) reloads the list. */
async function pollSaleStats() {
  const started = state.sales.filter((sale) => ["scheduled", "live", "ended"].includes(sale.status));
  let moved = false;
  await Promise.all(
    started.map(async (sale) => {
      try {
        const stats = await api(`/sales/${sale.id}/stats`);
        state.saleStats.set(sale.id, stats);
        if (stats.status !== sale.status) moved = true;
      } catch {
        /* not readable (or gone): the stock events still count */
      }
    }),
  );
  if (moved) await loadSales().catch(() => {});
  renderMetrics();
}

function renderMetrics() {
  const { units, gmv } = totals();
  t("metric-viewers").textContent = String(state.viewers);
  t("metric-likes").textContent = String(state.likes);
  t("metric-units").textContent = String(units);
  t("metric-gmv").textContent = money(gmv, state.currency);
  t("metric-gmv").dataset.minor = String(gmv);
}

setInterval(() => {
  if (state.room?.status !== "ended") loadSales().catch(() => {});
}, SALES_POLL_MS);

setInterval(async () => {
  if (state.room?.status === "live") await pollSaleStats();
  const { units, gmv } = totals();
  chart.push([state.viewers, gmv, units]);
}, 2000);

// --- chat moderation --------------------------------------------------------------------------------------------

async function moderate(payload, done, near = t("chat-list")) {
  const ack = await live.request("moderate", { room_id: roomId, ...payload });
  if (ack.ok) {
    if (done) show(done, "ok", undefined, near);
  } else refuse(ack.error, near);
  return ack.ok;
}

function tools(messageData) {
  const own = messageData.user?.id === state.me?.id;
  return el(
    "div",
    { class: "chat-tools" },
    el("button", {
      type: "button", class: "ghost small", testid: "delete-button", title: "Delete this message", text: "Delete",
      onclick: async () => {
        if (await moderate({ action: "delete", message_id: messageData.id })) chat.remove([messageData.id]);
      },
    }),
    own ? null : el("button", {
      type: "button", class: "ghost small", testid: "mute-button", title: "Mute for 5 minutes", text: "Mute 5m",
      onclick: () => moderate({ action: "mute", user_id: messageData.user.id, seconds: MUTE_SECONDS }, `${messageData.user.name} is muted for 5 minutes.`),
    }),
    own ? null : el("button", {
      type: "button", class: "ghost small", testid: "ban-button", title: "Ban from this room's chat", text: "Ban",
      onclick: () => moderate({ action: "ban", user_id: messageData.user.id }, `${messageData.user.name} is banned from the chat.`),
    }),
  ); // prettier-ignore
}

const chat = chatList(t("chat-list"), { tools, empty: "No messages yet. Viewers' chat shows up here." });

t("slow-mode").addEventListener("change", async (event) => {
  const seconds = Number(event.currentTarget.value);
  await moderate({ action: "slow_mode", seconds }, seconds ? `Slow mode: one message every ${seconds} s per viewer.` : "Slow mode is off.", t("slow-mode").closest(".row"));
});

t("block-words-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const words = t("block-words").value.split(",").map((w) => w.trim()).filter(Boolean);
  await moderate({ action: "block_words", words }, words.length ? `Blocking ${words.length} word${words.length > 1 ? "s" : ""}.` : "No words are blocked.", t("block-words-save").parentElement);
});

function setSlowMode(seconds) {
  const select = t("slow-mode");
  if (![...select.options].some((o) => Number(o.value) === seconds)) select.append(el("option", { value: String(seconds), text: `${seconds} s` }));
  select.value = String(seconds);
}

// --- live connection --------------------------------------------------------------------------------------------

function connect() {
  live = joinRoom(roomId, {
    online(up) {
      t("offline-banner").hidden = up;
    },
    snapshot(snapshot) {
      state.room = { ...state.room, status: snapshot.room.status };
      state.viewers = snapshot.viewers;
      state.likes = snapshot.likes;
      onPinned(snapshot.pinned || { product: null });
      if (snapshot.stock) onStock(snapshot.stock);
      chat.reset(snapshot.chat || []);
      setSlowMode(snapshot.slow_mode || 0);
      renderStatus();
      renderMetrics();
    },
    joinError: refuse,
    authLost: () => location.reload(),
    pinned: onPinned,
    stock: onStock,
    room_status(payload) {
      state.room = { ...state.room, status: payload.status };
      renderStatus();
      renderProducts();
      renderVouchers();
    },
    countdown() {
      loadSales().catch(() => {});
    },
    chat(payload) {
      chat.add(payload.messages);
    },
    chat_deleted(payload) {
      chat.remove(payload.ids);
    },
    chat_settings(payload) {
      setSlowMode(payload.slow_mode);
    },
    counters(payload) {
      state.viewers = payload.viewers;
      state.likes = payload.likes;
      renderMetrics();
    },
    video(payload) {
      if (payload.state === "live" && camera.session) setPublishState("publishing");
      else if (payload.state === "reconnecting") setPublishState("reconnecting");
    },
  });
}

function onStock(stock) {
  const pool = state.pools.get(stock.pool) || {};
  pool.sold = stock.sold;
  if (pool.price_minor === undefined && state.pinned?.offer?.pool === stock.pool) pool.price_minor = state.pinned.offer.price_minor;
  state.pools.set(stock.pool, pool);
  renderMetrics();
}

async function main() {
  state.me = await requireRole(["host", "admin"]);
  renderAccount(document.getElementById("account"), state.me);
  t("whip-url").textContent = whipUrl(roomId);
  t("stream-key").textContent = getToken();
  t("viewer-link").href = `/watch/${roomId}`;
  try {
    state.room = await api(`/rooms/${roomId}`, { auth: "required" });
  } catch (error) {
    t("room-title").textContent = "Room unavailable";
    return refuse(error);
  }
  if (state.me.role !== "admin" && state.room.host.id !== state.me.id) {
    t("room-title").textContent = state.room.title;
    show("This is another host's room: only its host or an admin can run it.", "error", "forbidden");
    document.querySelector(".console").hidden = true;
    return;
  }
  t("room-title").textContent = state.room.title;
  document.title = state.room.title + " · Host console";
  renderStatus();
  connect();
  loadVouchers().catch((error) => refuse(error, t("voucher-list")));
  startRoomDashboard(t("metrics-chart").closest("section"), roomId);
  try {
    await loadProducts();
    await loadSales();
    await pollSaleStats();
  } catch (error) {
    refuse(error);
  }
}

main();
