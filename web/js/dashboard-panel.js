// Small live dashboard panels, polled every few seconds: a room's figures in the host console
// (GET /rooms/{id}/dashboard) and a brand's GMV by period on the brand dashboard (GET /brands/{id}/dashboard).
// Each builds its own elements inside the node it is given, so the pages only call it.

import { api, el, money } from "/web/js/api.js";

const POLL_MS = 3000;
const CURRENCY = "USD"; // the rankings add minor units across currencies; the demo sells in one
const PERIOD_NAMES = { day: "Today", week: "7 days", month: "30 days" };

function metric(label, testid) {
  const value = el("div", { class: "value", testid, text: "—" });
  return [el("div", { class: "metric" }, el("div", { class: "label", text: label }), value), value];
}

function poll(load) {
  const run = async () => {
    try {
      await load();
    } catch {
      /* shown as stale figures; the next poll tries again */
    }
  };
  run();
  return setInterval(run, POLL_MS);
}

/** Append the room's figures (orders, buyers, conversion, voucher orders) to `node`. */
export function startRoomDashboard(node, roomId) {
  const cells = {};
  const row = el("div", { class: "metrics", testid: "room-dashboard" });
  for (const [key, label] of [["orders", "Orders"], ["buyers", "Buyers"], ["conversion", "Conversion"], ["voucher_orders", "Voucher orders"]]) {
    const [box, value] = metric(label, `dash-${key.replace("_", "-")}`);
    cells[key] = value;
    row.append(box);
  }
  node.append(row);
  return poll(async () => {
    const d = await api(`/rooms/${roomId}/dashboard`, { auth: "required" });
    cells.orders.textContent = String(d.orders);
    cells.buyers.textContent = String(d.buyers);
    cells.conversion.textContent = d.conversion === null ? "—" : `${(d.conversion * 100).toFixed(1)}%`;
    cells.voucher_orders.textContent = String(d.voucher_orders);
  });
}

/** Put a card with the brand's GMV today, over 7 and 30 days (with its place and growth) first in `node`. */
export function startBrandDashboard(node, brandId) {
  const row = el("div", { class: "metrics" });
  const card = el("section", { class: "card full", testid: "brand-dashboard" },
    el("div", { class: "card-head" }, el("h2", { text: "GMV" }), el("a", { href: "/rankings", class: "small", text: "Rankings" })), row);
  node.prepend(card);
  return poll(async () => {
    const d = await api(`/brands/${brandId}/dashboard`, { auth: "required" });
    row.replaceChildren(...d.periods.map((p) => {
      const place = p.rank === null ? "not ranked" : `#${p.rank}`;
      const growth = p.growth_pct === null ? "" : ` · ${p.growth_pct > 0 ? "+" : ""}${p.growth_pct.toFixed(1)}%`;
      return el("div", { class: "metric", testid: `brand-gmv-${p.period}` },
        el("div", { class: "label", text: PERIOD_NAMES[p.period] }),
        el("div", { class: "value", testid: "brand-gmv", text: money(p.gmv_minor, CURRENCY) }),
        el("div", { class: "muted small", text: place + growth }));
    }));
  });
}
