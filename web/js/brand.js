// The brand dashboard, /brand: products, flash sales (with invite lists or codes), a live sale panel with a
// chart, orders with a CSV export, (brand-market.js) collaborations and the statement, and (brand-vouchers.js)
// vouchers.

import { ApiError, api, byTestId as t, dateTime, el, fromMinor, localInputValue, money, renderAccount, requireRole, sayAt, timeOfDay, toMinor } from "/web/js/api.js";
import { startMarket } from "/web/js/brand-market.js";
import { startVouchers } from "/web/js/brand-vouchers.js";
import { startBrandDashboard } from "/web/js/dashboard-panel.js";
import { legend, lineChart } from "/web/js/chart.js";

const ORDER_POLL_MS = 3000;
const SALE_POLL_MS = 1000;
const SALES_POLL_MS = 3000; // sales go live, sell out and end on their own: the list follows within this

const state = {
  me: null,
  brandId: null,
  products: new Map(),
  sales: [],
  rooms: [],
  watching: null, // sale id shown in the live panel
};

const message = t("message");
// The one status line shows next to what it is about: `near` is the element it goes under (a form's button
// row, a table); without it, under the page title.
const show = (text, kind = "info", code, near) => sayAt(message, near, text, kind, code);
const refuse = (error, near) => show(error?.message || "Something went wrong.", "error", error?.code, near);
const under = (testid) => t(testid).closest(".table-wrap") || t(testid).parentElement;

// --- products ---------------------------------------------------------------------------------------------------

async function loadProducts() {
  state.products.clear();
  let after = null;
  do {
    const page = await api(`/products?brand_id=${state.brandId}&limit=100${after ? "&after=" + after : ""}`);
    for (const product of page.items) state.products.set(product.id, product);
    after = page.next;
  } while (after);
  renderProducts();
  renderProductChoices();
}

function renderProducts() {
  const body = t("product-list");
  body.replaceChildren();
  if (!state.products.size) {
    body.append(el("tr", {}, el("td", { colspan: 6, class: "empty", text: "No products yet. Add your first one below." })));
    return;
  }
  for (const product of state.products.values()) {
    const price = el("input", { testid: "edit-price", inputmode: "decimal", value: fromMinor(product.price_minor), "aria-label": "Price" });
    const stock = el("input", { testid: "edit-stock", type: "number", min: 0, step: 1, value: String(product.stock), "aria-label": "Stock" });
    const save = el("button", {
      type: "button",
      class: "small",
      testid: "save-product",
      text: "Save",
      onclick: async () => {
        const changes = {};
        const near = under("product-list");
        const minor = toMinor(price.value);
        if (minor === null) return show("Enter the price as a number, such as 19.99.", "error", "invalid_request", near);
        if (minor !== product.price_minor) changes.price_minor = minor;
        const units = Number(stock.value);
        if (!Number.isInteger(units) || units < 0) return show("Stock is a whole number of units, 0 or more.", "error", "invalid_request", near);
        if (units !== product.stock) changes.stock = units;
        if (!Object.keys(changes).length) return show("Nothing changed.", "info", undefined, near);
        save.disabled = true;
        try {
          const updated = await api(`/products/${product.id}`, { method: "PATCH", body: changes, auth: "required", forbid: "signin" });
          state.products.set(updated.id, updated);
          show(`Saved “${updated.title}”.`, "ok", undefined, near);
          renderProducts();
        } catch (error) {
          refuse(error, near);
          save.disabled = false;
        }
      },
    });
    body.append(
      el(
        "tr",
        { testid: "product-row", dataset: { productId: String(product.id) } },
        el("td", { class: "cell-main" }, el("div", { class: "name", testid: "product-name", text: product.title }), el("div", { class: "muted small card-only", text: "SKU " + product.sku })),
        el("td", { class: "muted hide-sm", text: product.sku }),
        el("td", { class: "num", "data-label": "Price" }, price),
        el("td", { class: "num", "data-label": "Stock" }, stock),
        el("td", { class: "num", "data-label": "Sold", text: String(product.units_sold) }),
        el("td", { class: "num cell-end" }, save),
      ),
    );
  }
}

function renderProductChoices() {
  const select = t("sale-product");
  const chosen = select.value;
  select.replaceChildren(...[...state.products.values()].map((p) => el("option", { value: String(p.id), text: `${p.title} — ${money(p.price_minor, p.currency)} · ${p.stock} in stock` })));
  if (chosen) select.value = chosen;
}

t("new-product-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const near = t("create-product").parentElement;
  const price = toMinor(form.elements.price.value);
  if (price === null) return show("Enter the price as a number, such as 19.99.", "error", "invalid_request", near);
  const body = {
    sku: form.elements.sku.value.trim(),
    title: form.elements.title.value.trim(),
    price_minor: price,
    currency: form.elements.currency.value.trim().toUpperCase(),
    stock: Number(form.elements.stock.value),
  };
  const image = form.elements.image.value.trim();
  if (image) body.image_url = image;
  try {
    const product = await api(`/brands/${state.brandId}/products`, { method: "POST", body, auth: "required", forbid: "signin" });
    state.products.set(product.id, product);
    renderProducts();
    renderProductChoices();
    form.reset();
    show(`Added “${product.title}”.`, "ok", undefined, near);
  } catch (error) {
    refuse(error, near);
  }
});

// --- flash sales ------------------------------------------------------------------------------------------------

/** What the sale rows show: the table is drawn again only when this changes (buttons stay put otherwise). */
function salesShown() {
  return JSON.stringify(state.sales.map((s) => [s.id, s.status, s.starts_at, s.ends_at, s.quantity, s.price_minor, s.code_count, s.invite_count, state.products.get(s.product_id)?.title]));
}

async function loadSales({ force = false } = {}) {
  const page = await api(`/sales?brand_id=${state.brandId}&limit=100`, { auth: "required" });
  const before = salesShown();
  state.sales = page.items.sort((a, b) => b.id - a.id);
  if (force || salesShown() !== before) renderSales();
}

async function loadRooms() {
  const page = await api("/rooms?limit=100", { auth: "required" });
  state.rooms = page.items.filter((room) => room.status !== "ended" && room.brands.some((b) => b.id === state.brandId));
  const box = t("sale-rooms");
  box.replaceChildren();
  for (const room of state.rooms) {
    const only = state.rooms.length === 1; // checked by default, and again after the form is reset
    box.append(el("label", { class: "inline" }, el("input", { type: "checkbox", name: "room", value: String(room.id), checked: only, defaultChecked: only }), `${room.title} (${room.status})`));
  }
  if (!state.rooms.length) box.append(el("span", { class: "muted small", text: "No upcoming or live rooms feature this brand yet." }));
}

async function saleAction(sale, action, done) {
  const near = under("sale-list");
  try {
    await api(`/sales/${sale.id}/${action}`, { method: "POST", auth: "required", forbid: "signin" });
    show(done, "ok", undefined, near);
    await Promise.all([loadSales(), loadProducts()]);
  } catch (error) {
    refuse(error, near);
  }
}

function renderSales() {
  const body = t("sale-list");
  body.replaceChildren();
  if (!state.sales.length) {
    body.append(el("tr", {}, el("td", { colspan: 7, class: "empty", text: "No flash sales yet. Plan one below." })));
    return;
  }
  for (const sale of state.sales) {
    const product = state.products.get(sale.product_id);
    const actions = el("div", { class: "row actions" });
    if (sale.status === "draft") {
      actions.append(el("button", { type: "button", class: "small", testid: "schedule-button", text: "Schedule", onclick: () => saleAction(sale, "schedule", "Sale scheduled: its units are reserved from stock.") }));
    }
    if (sale.status === "draft" || sale.status === "scheduled") {
      actions.append(el("button", { type: "button", class: "ghost small", testid: "cancel-button", text: "Cancel", onclick: () => saleAction(sale, "cancel", "Sale cancelled.") }));
    }
    if (sale.status === "live") {
      actions.append(el("button", { type: "button", class: "ghost small", testid: "end-sale-button", text: "End now", onclick: () => saleAction(sale, "end", "Sale ended; unsold units go back to stock.") }));
    }
    if (sale.audience === "invite_codes") {
      actions.append(el("button", { type: "button", class: "secondary small", testid: "codes-button", text: "Codes", onclick: () => showCodes(sale) }));
    }
    if (["scheduled", "live", "ended"].includes(sale.status)) {
      actions.append(el("button", { type: "button", class: "small", testid: "watch-button", text: "Watch", onclick: () => watchSale(sale.id) }));
    }
    const audience = { open: "Open", invite_list: `Invited (${sale.invite_count ?? 0})`, invite_codes: `Codes (${sale.code_count ?? 0})` }[sale.audience];
    body.append(
      el(
        "tr",
        { testid: "sale-row", dataset: { saleId: String(sale.id), status: sale.status } },
        el("td", { class: "cell-main" }, el("div", { class: "name", text: product ? product.title : `Product ${sale.product_id}` }), el("div", { class: "muted small", text: `Limit ${sale.per_buyer_limit} per buyer · hold ${sale.hold_seconds} s` })),
        el("td", { class: "num", "data-label": "Price", text: money(sale.price_minor, sale.currency) }),
        el("td", { class: "num", "data-label": "Units", text: String(sale.quantity) }),
        el("td", { class: "small hide-sm cell-wide cell-late", "data-label": "Window", text: saleWindow(sale) }),
        el("td", { "data-label": "Audience", text: audience }),
        el("td", { class: "cell-aside" }, el("span", { class: "status-pill", testid: "sale-status", dataset: { status: sale.status }, text: sale.status })),
        el("td", { class: "cell-wide cell-last" }, actions),
      ),
    );
  }
}

/** "Nov 21, 2026, 9:12 PM – 10:12 PM" (the end's date only when it is another day). */
function saleWindow(sale) {
  const starts = new Date(sale.starts_at);
  const ends = new Date(sale.ends_at);
  const sameDay = starts.toDateString() === ends.toDateString();
  const end = sameDay ? timeOfDay(sale.ends_at) : dateTime(sale.ends_at);
  return `${dateTime(sale.starts_at)} – ${end}`;
}

async function showCodes(sale) {
  const panel = t("sale-codes-panel");
  const box = t("sale-codes");
  box.replaceChildren();
  panel.hidden = false;
  t("sale-codes-title").textContent = `Invite codes — sale #${sale.id}`;
  try {
    let after = null;
    do {
      const page = await api(`/sales/${sale.id}/codes?limit=100${after ? "&after=" + after : ""}`, { auth: "required", forbid: "signin" });
      for (const code of page.items) {
        box.append(el("code", { class: code.redeemed_hold ? "used" : "", testid: "sale-code", dataset: { used: code.redeemed_hold ? "true" : "false" }, title: code.redeemed_hold ? "Used" : "Unused", text: code.code }));
      }
      after = page.next;
    } while (after);
    if (!box.childElementCount) box.append(el("span", { class: "muted", text: "No codes yet." }));
  } catch (error) {
    refuse(error, under("sale-list"));
  }
}
t("sale-codes-close").addEventListener("click", () => (t("sale-codes-panel").hidden = true));

function updateAudienceFields() {
  const audience = t("sale-audience").value;
  t("sale-invites-label").hidden = audience !== "invite_list";
  t("sale-code-count-label").hidden = audience !== "invite_codes";
}
t("sale-audience").addEventListener("change", updateAudienceFields);

t("new-sale-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const near = t("create-sale").parentElement;
  const price = toMinor(form.elements.price.value);
  if (price === null) return show("Enter the sale price as a number, such as 9.99.", "error", "invalid_request", near);
  const body = {
    product_id: Number(form.elements.product.value),
    price_minor: price,
    quantity: Number(form.elements.quantity.value),
    per_buyer_limit: Number(form.elements.limit.value),
    starts_at: new Date(form.elements.starts.value).toISOString(),
    ends_at: new Date(form.elements.ends.value).toISOString(),
    hold_seconds: Number(form.elements.hold.value),
    audience: form.elements.audience.value,
    room_ids: [...form.querySelectorAll("input[name=room]:checked")].map((box) => Number(box.value)),
  };
  if (body.audience === "invite_list") {
    const ids = form.elements.invites.value.split(/[\s,]+/).filter(Boolean);
    if (ids.some((id) => !/^\d+$/.test(id))) return show("Invited users are user ids: whole numbers separated by commas.", "error", "invalid_request", near);
    body.invitee_ids = ids.map(Number);
  }
  if (body.audience === "invite_codes") body.code_count = Number(form.elements.codes.value);
  const button = t("create-sale");
  button.disabled = true;
  try {
    let sale = await api("/sales", { method: "POST", body, auth: "required", forbid: "signin" });
    resetSaleForm(); // the sale exists: its values left in the form would invite a duplicate
    if (form.elements.schedule.checked) {
      try {
        sale = await api(`/sales/${sale.id}/schedule`, { method: "POST", auth: "required" });
      } catch (error) {
        show(`Sale #${sale.id} was saved as a draft, but not scheduled: ${error.message}`, "warn", error.code, near);
        await loadSales();
        return;
      }
    }
    show(`Sale #${sale.id} ${sale.status === "scheduled" ? "scheduled" : "saved as a draft"}.`, "ok", undefined, near);
    await Promise.all([loadSales(), loadProducts()]);
    if (sale.audience === "invite_codes") showCodes(sale);
  } catch (error) {
    refuse(error, near);
  } finally {
    button.disabled = false;
  }
});

/** The sale form as it first showed: defaults, fresh times, the audience's fields to match. */
function resetSaleForm() {
  t("new-sale-form").reset();
  resetSaleTimes();
  updateAudienceFields();
}

function resetSaleTimes() {
  const start = new Date(Date.now() + 15 * 60 * 1000);
  t("sale-starts").value = localInputValue(start);
  t("sale-ends").value = localInputValue(new Date(start.getTime() + 60 * 60 * 1000));
}

// --- the live sale panel ----------------------------------------------------------------------------------------

const saleSeries = [
  { name: "GMV", color: "#e0245e", format: (v) => money(v) },
  { name: "Paid units", color: "#13a05a" },
  { name: "In holds", color: "#e39b00" },
];
const saleChart = lineChart(t("sale-chart"), saleSeries, { keep: 120 });
document.getElementById("sale-legend").replaceWith(legend(saleSeries, saleChart));
let saleTimer = null;

function watchSale(saleId) {
  state.watching = saleId;
  saleChart.clear();
  const sale = state.sales.find((s) => s.id === saleId);
  const product = sale && state.products.get(sale.product_id);
  t("sale-live-title").textContent = `Live sale #${saleId}${product ? " — " + product.title : ""}`;
  t("sale-live").hidden = false;
  t("sale-live").dataset.saleId = String(saleId);
  t("sale-live").scrollIntoView({ behavior: "smooth", block: "start" });
  clearTimeout(saleTimer);
  pollSale();
}

async function pollSale() {
  const saleId = state.watching;
  if (!saleId) return;
  try {
    const stats = await api(`/sales/${saleId}/stats`, { auth: "required" });
    if (state.watching !== saleId) return;
    t("sale-left").textContent = String(stats.available);
    t("sale-held").textContent = String(stats.held);
    t("sale-paid").textContent = String(stats.paid);
    t("sale-gmv").textContent = money(stats.gmv_minor, stats.currency);
    t("sale-gmv").dataset.minor = String(stats.gmv_minor);
    const status = t("sale-live-status");
    status.textContent = stats.sold_out ? "sold out" : stats.status;
    status.dataset.status = stats.status;
    saleChart.push([stats.gmv_minor, stats.paid, stats.held], stats.ts_ms);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 0) refuse(error, t("sale-live-title").closest(".card-head"));
  }
  if (state.watching === saleId) saleTimer = setTimeout(pollSale, SALE_POLL_MS);
}

t("sale-live-close").addEventListener("click", () => {
  state.watching = null;
  clearTimeout(saleTimer);
  t("sale-live").hidden = true;
});

// --- orders -----------------------------------------------------------------------------------------------------

async function loadOrders() {
  const page = await api(`/brands/${state.brandId}/orders?limit=50`, { auth: "required", forbid: "signin" });
  const body = t("order-list");
  body.replaceChildren();
  if (!page.items.length) {
    body.append(el("tr", {}, el("td", { colspan: 7, class: "empty", text: "No orders yet. They appear here as viewers buy." })));
    return;
  }
  for (const order of page.items) {
    const product = state.products.get(order.product_id);
    body.append(
      el(
        "tr",
        { testid: "order-row", dataset: { orderId: String(order.id), status: order.status, holdId: order.hold_id } },
        el("td", { class: "cell-main tabular" }, el("span", { class: "card-only", text: "Order " }), "#" + order.id),
        el("td", { class: "small cell-wide cell-late", "data-label": "Time", text: dateTime(order.paid_at || order.held_at) }),
        el("td", { class: "cell-wide", "data-label": "Product", text: (product ? product.title : `Product ${order.product_id}`) + (order.sale_id ? ` · sale #${order.sale_id}` : "") }),
        el("td", { class: "num", "data-label": "Qty", text: String(order.quantity) }),
        el("td", { class: "num", "data-label": "Total", text: money(order.total_minor, order.currency) }),
        el("td", { class: "cell-aside" }, el("span", { class: "status-pill", dataset: { status: order.status }, text: order.status })),
        el("td", { class: "muted hide-sm", testid: "order-buyer", "data-label": "Buyer", text: order.buyer_name || `User ${order.buyer_id}` }),
      ),
    );
  }
}

async function pollOrders() {
  try {
    await loadOrders();
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 0) refuse(error);
  }
  setTimeout(pollOrders, ORDER_POLL_MS);
}

t("orders-csv").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const response = await api(`/brands/${state.brandId}/orders.csv`, { auth: "required", forbid: "signin", raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: `brand-${state.brandId}-orders.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    refuse(error, button.closest(".card-head"));
  } finally {
    button.disabled = false;
  }
});

// --- start ------------------------------------------------------------------------------------------------------

async function chooseBrand() {
  if (state.me.role === "brand_staff") return state.me.brand_id;
  const page = await api("/brands?limit=100");
  const select = t("brand-select");
  select.replaceChildren(...page.items.map((brand) => el("option", { value: String(brand.id), text: brand.name })));
  t("brand-picker").hidden = page.items.length < 2;
  const wanted = Number(new URLSearchParams(location.search).get("brand_id"));
  const id = page.items.some((b) => b.id === wanted) ? wanted : page.items[0]?.id;
  if (id) select.value = String(id);
  select.addEventListener("change", () => location.assign("/brand?brand_id=" + select.value));
  return id ?? null;
}

async function main() {
  state.me = await requireRole(["brand_staff", "admin"]);
  renderAccount(document.getElementById("account"), state.me);
  t("nav-host").hidden = state.me.role !== "admin";
  resetSaleTimes();
  updateAudienceFields();
  state.brandId = await chooseBrand();
  if (!state.brandId) return show("There are no brands yet.", "info");
  try {
    const brand = await api(`/brands/${state.brandId}`);
    t("brand-name").textContent = brand.name;
    document.title = brand.name + " · Brand dashboard";
    await loadProducts();
    await Promise.all([loadSales({ force: true }), loadRooms()]);
    startMarket(state.brandId, state.products, show, refuse);
    startVouchers(state.brandId, state.products, show, refuse);
    startBrandDashboard(document.querySelector(".dash"), state.brandId);
  } catch (error) {
    refuse(error);
  }
  pollOrders();
  setInterval(() => loadSales().catch(() => {}), SALES_POLL_MS);
}

main();
