// The viewer page, /watch/{room_id}: video (WHEP), chat, likes, the pinned product and buying.

import { api, byTestId as t, clock, compact, el, getToken, goSignIn, icon, initial, money, renderAccount, say, sayAt, tapKey, timeOfDay, whoAmI } from "/web/js/api.js";
import { chatList } from "/web/js/chat.js";
import { joinRoom } from "/web/js/live.js";
import { watch } from "/web/js/webrtc.js";
import { priceBlock, voucherTerms } from "/web/js/vouchers.js";

const roomId = Number(location.pathname.split("/")[2]);
const LIKE_FLUSH_MS = 250; // at most 4 like events a second, well under the 20 events/s budget
const MAX_LIKES_PER_EVENT = 50;
const HEART_PATH = "M12 21s-7.5-4.6-9.6-9.2C.9 8.4 3 4.5 6.8 4.5c2.1 0 3.6 1.2 5.2 3 1.6-1.8 3.1-3 5.2-3 3.8 0 5.9 3.9 4.4 7.3C19.5 16.4 12 21 12 21z";
const HEART_COLORS = ["#ff3b6b", "#ff6f91", "#ff9671", "#f9c74f", "#c77dff"];

const state = {
  me: null,
  roomStatus: null,
  videoState: null,
  pinned: null, // {product, offer}: the product pinned last (kept while a voucher card is shown)
  voucher: null, // the pinned voucher card, or null
  claims: new Map(), // voucher id -> this viewer's claim (from claim acks)
  claiming: false,
  quote: null, // {product_id, price}: the price after this viewer's vouchers for the pinned product
  stock: null, // the pinned pool's latest stock event
  saleStarts: new Map(), // sale id -> starts_at (server ms), from countdown events and the sales list
  hold: null,
  holdProduct: null,
  holdUntil: null, // {id, ms}: the local time a hold ends at the latest (the buy's send time + the hold length)
  buyKey: null,
  busy: false,
  likes: 0,
  pendingLikes: 0,
  skipped: 0,
  gone: false, // the room cannot be shown (no such room, or not for you): nothing to like, chat or buy
};

const ui = {
  video: t("video"),
  placeholder: t("video-placeholder"),
  unmute: t("unmute-button"),
  hearts: document.querySelector(".hearts"),
  message: t("message"),
  card: t("pinned-card"),
  buy: t("buy-button"),
  code: t("code-input"),
  holdPanel: t("hold-panel"),
  holdTimer: t("hold-timer"),
  card_input: t("card-input"),
  pay: t("pay-button"),
  confirmation: t("order-confirmation"),
  chatInput: t("chat-input"),
  chatSend: t("chat-send"),
};

const chat = chatList(t("chat-list"), { empty: "No messages yet." });
let live = null;

/**
 * The status line shows next to what it is about: `near` is the element it goes under (the buy button, the
 * hold form); without it, the line sits above the chat composer (chat refusals, the session).
 */
function show(text, kind = "info", code, near) {
  sayAt(ui.message, near, text, kind, code);
}

function refuse(error, near) {
  show(error?.message || "Something went wrong. Try again.", "error", error?.code, near);
}

ui.message.addEventListener("click", () => say(ui.message, ""));

// --- room status and header ------------------------------------------------------------------------------------

function setRoomStatus(status) {
  state.roomStatus = status;
  const badge = t("room-status");
  badge.hidden = !status;
  badge.textContent = status || "";
  badge.className = "badge" + (status === "live" ? " live" : "");
  document.body.dataset.roomStatus = status || "";
  updatePlaceholder();
  renderBuy();
  if (status === "ended") stopVideo();
}

function renderRoom(room) {
  t("room-title").textContent = room.title;
  document.title = room.title + " · livecommerce";
  const brands = (room.brands || []).map((b) => b.name).join(", ");
  t("room-host").textContent = room.host.display_name + (brands ? " · " + brands : "");
  setRoomStatus(room.status);
}

// --- video ------------------------------------------------------------------------------------------------------

let viewer = null; // {close, pc}
let connecting = false;
let retryTimer = null;

function updatePlaceholder() {
  if (state.gone) return; // roomGone() wrote why
  const playing = viewer && !ui.video.paused && ui.video.readyState >= 2 && state.videoState === "live";
  let text = "";
  if (state.roomStatus === "ended") text = "This live has ended. Thanks for watching!";
  else if (state.roomStatus === "scheduled") text = "The show hasn't started yet. Stay here: it starts soon.";
  else if (state.videoState === "reconnecting") text = "The host's connection dropped. Reconnecting…";
  else if (state.videoState === "ended") text = "The host stopped the camera.";
  else if (!playing) text = state.roomStatus === "live" ? "Waiting for the host's camera…" : "Connecting…";
  ui.placeholder.textContent = text;
  ui.placeholder.hidden = !text || (playing && state.videoState === "live");
}

async function startVideo() {
  if (viewer || connecting || state.roomStatus === "ended") return;
  connecting = true;
  clearTimeout(retryTimer);
  try {
    const session = await watch(roomId, {
      onTrack: (stream) => {
        if (ui.video.srcObject !== stream) ui.video.srcObject = stream;
        ui.video.play().catch(() => {});
      },
      onState: (pcState) => {
        if (pcState === "failed" || pcState === "closed") {
          if (viewer === session) {
            viewer = null;
            session.close();
            scheduleVideoRetry();
          }
        }
      },
    });
    viewer = session;
  } catch (error) {
    console.info("video not available yet:", error.message);
    scheduleVideoRetry();
  } finally {
    connecting = false;
    updatePlaceholder();
  }
}

function scheduleVideoRetry() {
  clearTimeout(retryTimer);
  if (state.roomStatus === "ended" || !["live", "reconnecting"].includes(state.videoState)) return;
  retryTimer = setTimeout(startVideo, 3000);
}

function stopVideo() {
  clearTimeout(retryTimer);
  if (viewer) viewer.close();
  viewer = null;
  ui.video.srcObject = null;
  updatePlaceholder();
}

function setVideoState(videoState) {
  state.videoState = videoState;
  if (videoState === "live" || videoState === "reconnecting") startVideo();
  else if (videoState === "ended") stopVideo();
  updatePlaceholder();
}

for (const event of ["playing", "pause", "emptied", "loadeddata"]) ui.video.addEventListener(event, () => {
  updatePlaceholder();
  ui.unmute.hidden = !ui.video.muted || ui.video.paused;
});
ui.unmute.addEventListener("click", () => {
  ui.video.muted = false;
  ui.video.play().catch(() => {});
  ui.unmute.hidden = true;
});
addEventListener("pagehide", () => viewer?.close());

// --- likes ------------------------------------------------------------------------------------------------------

function renderLikes() {
  t("like-count").textContent = String(state.likes);
}

function heart() {
  if (ui.hearts.childElementCount > 24) return; // a hot room: enough hearts on screen already
  const node = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  node.setAttribute("viewBox", "0 0 24 24");
  node.setAttribute("class", "heart");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", HEART_PATH);
  path.setAttribute("fill", HEART_COLORS[Math.floor(Math.random() * HEART_COLORS.length)]);
  node.append(path);
  node.style.setProperty("--dx1", `${Math.round(Math.random() * 30 - 15)}px`);
  node.style.setProperty("--dx2", `${Math.round(Math.random() * 60 - 30)}px`);
  node.style.right = `${Math.round(Math.random() * 30)}px`;
  node.addEventListener("animationend", () => node.remove());
  ui.hearts.append(node);
}

t("like-button").addEventListener("click", () => {
  state.pendingLikes += 1;
  state.likes += 1;
  renderLikes();
  heart();
});

setInterval(async () => {
  if (!state.pendingLikes || !live || !live.joined) return;
  const count = Math.min(state.pendingLikes, MAX_LIKES_PER_EVENT);
  state.pendingLikes -= count;
  const ack = await live.request("like", { room_id: roomId, count });
  if (!ack.ok && ack.error.code === "rate_limited") state.pendingLikes += count; // send them a bit later
}, LIKE_FLUSH_MS);

// --- chat -------------------------------------------------------------------------------------------------------

function renderComposer() {
  const signedIn = Boolean(state.me);
  ui.chatInput.hidden = !signedIn;
  ui.chatSend.hidden = !signedIn;
  const cta = t("chat-signin");
  cta.hidden = signedIn;
  cta.href = "/signin?next=" + encodeURIComponent(location.pathname);
  const open = state.roomStatus === "live";
  ui.chatInput.disabled = !open;
  ui.chatSend.disabled = !open;
  ui.chatInput.placeholder = open ? "Say something…" : state.roomStatus === "ended" ? "Chat is closed" : "Chat opens when the show starts";
  chat.setEmpty(
    state.roomStatus === "ended" ? "No one chatted during this show." : open ? (signedIn ? "No messages yet. Say hello!" : "No messages yet.") : "Chat opens when the show starts.",
  );
}

t("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = ui.chatInput.value.trim();
  if (!text || !live) return;
  if (!state.me) return goSignIn();
  ui.chatSend.disabled = true;
  const ack = await live.request("chat", { room_id: roomId, text });
  ui.chatSend.disabled = false;
  if (ack.ok) {
    ui.chatInput.value = "";
    chat.add([ack.data.message]);
    if (ui.message.dataset.code && ["muted", "slow_mode", "rate_limited", "banned", "invalid_request"].includes(ui.message.dataset.code)) say(ui.message, "");
  } else {
    refuse(ack.error);
  }
  ui.chatInput.focus();
});

function renderSkipped() {
  const node = t("chat-skipped");
  node.hidden = state.skipped <= 0;
  node.textContent = state.skipped === 1 ? "1 message skipped to keep up" : `${compact(state.skipped)} messages skipped to keep up`;
  node.dataset.count = String(state.skipped);
}

// --- pinned product, stock and countdown ------------------------------------------------------------------------

function currentSale() {
  return state.pinned?.offer?.sale || null;
}

function saleStartsAt() {
  const sale = currentSale();
  if (!sale) return null;
  return state.saleStarts.get(sale.id) ?? sale.starts_at_ms ?? null;
}

function renderPinned() {
  const pinned = state.pinned;
  const product = pinned?.product;
  ui.card.hidden = !product && !state.hold;
  if (!product) return;
  ui.card.dataset.productId = String(product.id);
  const offer = pinned.offer || {};
  t("pinned-title").textContent = product.title;
  const thumb = t("pinned-thumb");
  thumb.replaceChildren();
  if (product.image_url) {
    thumb.append(el("img", { class: "thumb", testid: "pinned-image", src: product.image_url, alt: "", referrerpolicy: "no-referrer" }));
  } else {
    thumb.textContent = initial(product.title, "");
  }
  const currency = offer.currency || product.currency;
  const price = offer.price_minor ?? product.price_minor;
  t("pinned-price").textContent = money(price, currency);
  const list = t("list-price");
  const discounted = offer.list_price_minor && offer.list_price_minor > price;
  list.hidden = !discounted;
  list.textContent = discounted ? money(offer.list_price_minor, currency) : "";
  t("sale-badge").hidden = !offer.sale;
  const limit = t("limit-line");
  limit.hidden = !offer.sale || !offer.per_buyer_limit;
  limit.textContent = offer.per_buyer_limit ? `Limit ${offer.per_buyer_limit} per buyer` : "";
  ui.code.hidden = offer.sale?.audience !== "invite_codes";
  renderStock();
  renderCountdown();
  renderQuote();
}

// --- vouchers ---------------------------------------------------------------------------------------------------

function renderVoucher() {
  const card = t("voucher-card");
  const v = state.voucher;
  const paying = state.hold && (state.hold.state === "held" || state.hold.state === "paying"); // the hold shows its price
  card.hidden = !v || state.gone || Boolean(paying);
  if (!v) return;
  card.dataset.voucherId = String(v.id);
  const claim = state.claims.get(v.id);
  card.dataset.state = claim ? "claimed" : "open";
  t("voucher-title").textContent = v.title;
  t("voucher-terms").textContent = voucherTerms(v);
  t("voucher-left").textContent = v.left > 0 ? `${v.left} left` : "None left";
  t("voucher-ends").textContent = "until " + timeOfDay(v.ends_at_ms);
  const button = t("claim-button");
  if (claim) {
    button.textContent = "Claimed";
    button.disabled = true;
  } else if (!state.me) {
    button.textContent = "Sign in to claim";
    button.disabled = false;
  } else {
    button.textContent = state.claiming ? "Claiming…" : "Claim";
    button.disabled = state.claiming || state.roomStatus !== "live";
  }
}

/** The price after this viewer's vouchers for the pinned product (`quote`), shown on the product card. */
async function requestQuote() {
  const product = state.pinned?.product;
  if (!product || !state.me || !state.claims.size || state.roomStatus !== "live") return renderQuote();
  const ack = await live.request("quote", { room_id: roomId, product_id: product.id, quantity: 1 });
  if (ack.ok && state.pinned?.product?.id === product.id) state.quote = { product_id: product.id, price: ack.data.price };
  renderQuote();
}

function renderQuote() {
  const box = t("voucher-price-box");
  const product = state.pinned?.product;
  const quote = state.quote && product && state.quote.product_id === product.id ? state.quote.price : null;
  box.replaceChildren(...[priceBlock(quote, product?.currency)].filter(Boolean));
}

t("claim-button").addEventListener("click", async () => {
  const v = state.voucher;
  if (!v) return;
  if (!state.me) return goSignIn();
  const payload = { room_id: roomId, voucher_id: v.id, idempotency_key: tapKey() };
  state.claiming = true;
  say(ui.message, "");
  renderVoucher();
  let ack = await live.request("claim_voucher", payload);
  if (!ack.ok && ack.error.code === "timeout") ack = await live.request("claim_voucher", payload); // same key: one claim
  state.claiming = false;
  if (ack.ok) {
    state.claims.set(v.id, ack.data.claim);
    const product = state.pinned?.product;
    if (ack.data.quote && product) state.quote = { product_id: product.id, price: ack.data.quote };
    show(ack.data.replayed ? "You already claimed this voucher." : "Voucher claimed: it comes off at checkout.", "ok", undefined, t("voucher-card"));
    renderQuote();
  } else {
    refuse(ack.error, t("voucher-card"));
  }
  renderVoucher();
});

function poolStock() {
  const pool = state.pinned?.offer?.pool;
  return state.stock && pool && state.stock.pool === pool ? state.stock : null;
}

/**
 * Whether the pinned offer's stock is known: a `stock` event for its pool came, or the pin carried units.
 * Right after a pin whose sale is not loaded yet the pin says 0, which means "not known yet", not "sold out".
 */
function stockKnown() {
  return Boolean(poolStock()) || (state.pinned?.product?.stock ?? 0) > 0;
}

function available() {
  return poolStock()?.available ?? state.pinned?.product?.stock ?? 0;
}

function renderStock() {
  if (!state.pinned?.product) return;
  const known = stockKnown();
  const left = available();
  t("stock-count").textContent = known ? String(left) : "—";
  t("stock-note").textContent = known ? "left" : "left · opens soon";
  t("sold-out").hidden = !known || left > 0;
  t("stock-line").hidden = known && left <= 0;
  renderBuy();
}

function renderCountdown() {
  const node = t("countdown");
  const startsAt = saleStartsAt();
  const wait = startsAt === null ? 0 : startsAt - live?.serverNow();
  const counting = startsAt !== null && wait > 0;
  node.hidden = !counting;
  if (counting) node.textContent = "Starts in " + clock(wait);
  const before = ui.card.dataset.counting === "1";
  ui.card.dataset.counting = counting ? "1" : "0";
  if (before !== counting) renderBuy();
}
setInterval(renderCountdown, 250);

function renderBuy() {
  const product = state.pinned?.product;
  const holding = state.hold && state.hold.state !== "paid";
  ui.buy.hidden = Boolean(holding);
  if (!product) return;
  let label = "Buy now";
  let disabled = state.busy;
  if (!state.me) label = "Sign in to buy";
  else if (state.roomStatus !== "live") {
    label = state.roomStatus === "ended" ? "The show has ended" : "Buying opens when the show starts";
    disabled = true;
  } else if (!stockKnown() && currentSale()) {
    label = "Opens soon";
    disabled = true;
  } else if (stockKnown() && available() <= 0) {
    label = "Sold out";
    disabled = true;
  } else if (ui.card.dataset.counting === "1") {
    label = "Starts soon";
    disabled = true;
  } else if (state.hold?.state === "paid") label = "Buy another";
  ui.buy.textContent = state.busy ? "Reserving…" : label;
  ui.buy.disabled = disabled;
}

// --- buying -----------------------------------------------------------------------------------------------------

let holdTicker = null;

/** What the buyer pays for a hold: after vouchers when the hold records them (`price`), else its total. */
function payMinor(hold) {
  return hold.price?.pay_minor ?? hold.pay_minor ?? hold.total_minor;
}

function renderHold() {
  const hold = state.hold;
  const active = hold && (hold.state === "held" || hold.state === "paying");
  ui.holdPanel.hidden = !active;
  ui.confirmation.hidden = !(hold && hold.state === "paid");
  clearInterval(holdTicker);
  if (active) {
    t("hold-title").textContent = `Reserved: ${state.holdProduct || "your item"}${hold.quantity > 1 ? " × " + hold.quantity : ""}`;
    ui.pay.textContent = hold.state === "paying" ? "Paying…" : "Pay " + money(payMinor(hold), hold.currency);
    t("hold-price-box").replaceChildren(...[priceBlock(hold.price, hold.currency, "hold-price")].filter(Boolean));
    ui.pay.disabled = hold.state === "paying";
    const tick = () => {
      // The server's clock is estimated from events' `ts`, which arrive late: the estimate runs behind, and
      // alone it would show more time than the hold lasts (10:01 for 10 minutes). The hold cannot outlast
      // the moment the buy was sent plus its length, so that bounds it.
      let left = hold.expires_at_ms - live.serverNow();
      if (state.holdUntil?.id === hold.id) left = Math.min(left, state.holdUntil.ms - Date.now());
      ui.holdTimer.textContent = clock(left);
      if (left <= 0 && state.hold === hold && hold.state === "held") {
        state.hold = null;
        renderHold();
        show("Your hold expired and the item went back on sale. Tap Buy to try again.", "warn", "hold_expired", ui.buy);
      }
    };
    tick();
    holdTicker = setInterval(tick, 250);
  }
  if (hold && hold.state === "paid") {
    ui.confirmation.replaceChildren(
      el("span", { class: "confirmed" }, icon("check"), "Paid — your order is confirmed"),
      el("span", { class: "small", testid: "paid-amount", dataset: { minor: String(payMinor(hold)) }, text: `${state.holdProduct || "Item"} × ${hold.quantity} · ${money(payMinor(hold), hold.currency)}` }),
      hold.payment_ref ? el("span", { class: "small", testid: "payment-ref", text: "Payment ref " + hold.payment_ref }) : null,
    );
  }
  if (state.pinned?.product || hold) ui.card.hidden = false;
  renderBuy();
  renderVoucher();
}

ui.buy.addEventListener("click", async () => {
  const product = state.pinned?.product;
  if (!product) return;
  if (!state.me) return goSignIn();
  const payload = { room_id: roomId, product_id: product.id, quantity: 1, idempotency_key: tapKey() };
  const code = ui.code.hidden ? "" : ui.code.value.trim();
  if (code) payload.code = code;
  const holdMs = (state.pinned?.offer?.hold_seconds ?? 0) * 1000;
  const sent = Date.now();
  state.busy = true;
  say(ui.message, "");
  renderBuy();
  let ack = await live.request("buy", payload);
  if (!ack.ok && ack.error.code === "timeout") ack = await live.request("buy", payload); // same key: no double hold
  state.busy = false;
  if (ack.ok) {
    state.hold = ack.data.hold;
    state.holdProduct = product.title;
    state.holdUntil = holdMs > 0 ? { id: state.hold.id, ms: sent + holdMs } : null;
    if (state.hold.state === "paid") show("You already bought this.", "ok", undefined, ui.buy);
    renderHold();
    if (state.hold.state === "held") ui.card_input.focus();
  } else {
    refuse(ack.error, ui.buy);
    renderBuy();
  }
});

ui.holdPanel.addEventListener("submit", async (event) => {
  event.preventDefault();
  const hold = state.hold;
  if (!hold) return;
  const card = ui.card_input.value.trim();
  if (!/^[0-9 ]{12,23}$/.test(card)) {
    show("Enter the card number: 12 to 19 digits (test card 4242 4242 4242 4242).", "error", "invalid_card", ui.holdPanel);
    return;
  }
  hold.state = "paying";
  say(ui.message, "");
  renderHold();
  let ack = await live.request("checkout", { hold_id: hold.id, card_number: card });
  for (let tries = 0; !ack.ok && ["payment_in_progress", "timeout"].includes(ack.error.code) && tries < 5; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    ack = await live.request("checkout", { hold_id: hold.id, card_number: card }); // idempotent: never charges twice
  }
  if (state.hold !== hold) return;
  if (ack.ok) {
    state.hold = ack.data.hold;
    ui.card_input.value = "";
    ui.code.value = ""; // a code buys once: left in the box, the next tap would be refused as used
    say(ui.message, "");
    state.quote = null; // the claims this order used are spent: ask again for what is left
    requestQuote();
  } else {
    hold.state = "held";
    if (["hold_expired", "not_found"].includes(ack.error.code)) state.hold = null;
    refuse(ack.error, state.hold ? ui.holdPanel : ui.buy);
  }
  renderHold();
});

t("cancel-hold-button").addEventListener("click", async () => {
  const hold = state.hold;
  if (!hold) return;
  const ack = await live.request("cancel_hold", { hold_id: hold.id });
  if (ack.ok || ["hold_expired", "not_found"].includes(ack.error.code)) {
    state.hold = null;
    show("Hold cancelled; the item went back on sale.", "info", undefined, ui.buy);
  } else {
    refuse(ack.error, ui.holdPanel);
  }
  renderHold();
});

// --- the live connection ----------------------------------------------------------------------------------------

async function loadSales() {
  try {
    const page = await api(`/sales?room_id=${roomId}&limit=100`);
    for (const sale of page.items) state.saleStarts.set(sale.id, Date.parse(sale.starts_at));
    renderCountdown();
  } catch {
    /* the pinned offer's own starts_at_ms still counts down */
  }
}

function connect() {
  live = joinRoom(roomId, {
    online(up) {
      t("offline-banner").hidden = up || state.gone;
    },
    snapshot(snapshot) {
      renderRoom(snapshot.room);
      state.pinned = snapshot.pinned && snapshot.pinned.product ? snapshot.pinned : null;
      state.voucher = snapshot.pinned?.voucher || null;
      renderVoucher();
      state.stock = snapshot.stock;
      state.likes = Math.max(state.likes, snapshot.likes);
      renderLikes();
      t("viewer-count").textContent = compact(snapshot.viewers);
      chat.reset(snapshot.chat || []);
      renderPinned();
      renderComposer();
      setVideoState(snapshot.video?.state ?? null);
      loadSales();
    },
    joinError(error) {
      roomGone(error.code === "not_found" ? "Room not found" : "Room unavailable", error.message, error.code);
      live.socket.disconnect(); // nothing to follow here
    },
    authLost(message) {
      state.me = null;
      renderAccount(document.getElementById("account"), null);
      renderComposer();
      renderBuy();
      renderVoucher();
      show(message || "Your session expired. Sign in again to chat and buy.", "warn", "unauthorized");
    },
    pinned(payload) {
      state.voucher = payload.voucher || null;
      renderVoucher();
      if (payload.voucher) return; // the product pinned before still sells: its card stays
      state.pinned = payload.product ? payload : null;
      if (!payload.product) ui.card.hidden = !state.hold;
      renderPinned();
      renderBuy();
      requestQuote();
    },
    stock(payload) {
      state.stock = payload;
      renderStock();
    },
    room_status(payload) {
      setRoomStatus(payload.status);
      renderComposer();
      renderVoucher();
    },
    countdown(payload) {
      state.saleStarts.set(payload.sale_id, payload.starts_at);
      renderCountdown();
    },
    chat(payload) {
      chat.add(payload.messages);
      if (payload.skipped > 0) {
        state.skipped += payload.skipped;
        renderSkipped();
      }
    },
    chat_deleted(payload) {
      chat.remove(payload.ids);
    },
    counters(payload) {
      t("viewer-count").textContent = compact(payload.viewers);
      state.likes = Math.max(state.likes, payload.likes);
      renderLikes();
    },
    video(payload) {
      setVideoState(payload.state);
    },
  });
}

/**
 * The room cannot be shown: its title says so, the picture says why (once), and nothing offers to like,
 * chat, buy or sign in to chat in a room that is not there.
 */
function roomGone(title, why, code) {
  state.gone = true;
  t("room-title").textContent = title;
  document.title = title + " · livecommerce";
  t("room-host").textContent = "";
  document.body.dataset.roomStatus = "unavailable";
  document.body.dataset.code = code || "";
  stopVideo();
  ui.placeholder.hidden = false;
  ui.placeholder.textContent = why;
  say(ui.message, "");
  for (const id of ["room-status", "pinned-card", "voucher-card", "composer", "offline-banner"]) t(id).hidden = true;
  document.querySelector(".chat-panel").hidden = true;
  document.querySelector(".watch-head .stat").hidden = true;
}

async function main() {
  if (!Number.isInteger(roomId) || roomId < 1) {
    roomGone("Room not found", "There is no room at this address. Check the link you followed.", "not_found");
    return;
  }
  try {
    state.me = await whoAmI();
  } catch {
    state.me = null;
  }
  renderAccount(document.getElementById("account"), state.me);
  renderComposer();
  if (!getToken()) state.me = null;
  connect();
}

main();
