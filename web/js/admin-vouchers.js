// The admin's campaigns page, /admin/vouchers: create campaigns (a platform budget) and, under one, platform
// or co-funded vouchers with an allotment; every campaign and voucher shows its budget use from Redis
// (funded / reserved / spent / free), polled every 3 s. REST: /api/v1/campaigns[/{id}[/vouchers]],
// /api/v1/vouchers/{id}/end, /api/v1/brands, /api/v1/products.

import { api, byTestId as t, dateTime, el, localInputValue, money, renderAccount, requireRole, sayAt, toMinor } from "/web/js/api.js";
import { fundingText, isoFromLocal, liveBudget, readTerms, termsFields, voucherTerms } from "/web/js/vouchers.js";

const POLL_MS = 3000;
const state = { campaigns: [], vouchers: new Map(), brands: [], products: [], open: null, drawn: "" };
const message = t("message");
const show = (text, kind = "info", code, near) => sayAt(message, near, text, kind, code);
const refuse = (error, near) => show(error?.message || "Something went wrong.", "error", error?.code, near);

/** A campaign's budget use: its own live figures when its GET has them, else the sum over its vouchers. */
function campaignBudget(campaign) {
  const own = liveBudget(campaign);
  if (own) return own;
  const parts = (state.vouchers.get(campaign.id) || []).map(liveBudget).filter(Boolean);
  if (!parts.length) return null;
  const sum = { funded: 0, reserved: 0, spent: 0, free: 0, claimed: 0 };
  for (const part of parts) for (const key of Object.keys(sum)) sum[key] += part[key];
  return sum;
}

function moneyCells(budget, currency, prefix) {
  return ["funded", "reserved", "spent", "free"].map((part) =>
    el("td", { class: "num", "data-label": part[0].toUpperCase() + part.slice(1), testid: `${prefix}-${part}`, dataset: { minor: budget ? String(budget[part]) : "" }, text: budget ? money(budget[part], currency) : "—" }),
  );
}

function render() {
  const shown = JSON.stringify([state.campaigns, [...state.vouchers], state.open]);
  if (shown === state.drawn) return;
  state.drawn = shown;
  const body = t("campaign-list");
  body.replaceChildren();
  if (!state.campaigns.length) body.append(el("tr", {}, el("td", { colspan: 10, class: "empty", text: "No campaigns yet. Create one below." })));
  for (const c of state.campaigns) {
    body.append(
      el(
        "tr",
        { testid: "campaign-row", dataset: { campaignId: String(c.id), status: c.status } },
        el("td", { "data-label": "Campaign", testid: "campaign-row-name", text: c.name }),
        el("td", { "data-label": "Window", text: `${dateTime(c.starts_at)} – ${dateTime(c.ends_at)}` }),
        el("td", { class: "num", "data-label": "Budget", testid: "campaign-budget-cell", dataset: { minor: String(c.budget_minor) }, text: money(c.budget_minor, c.currency) }),
        el("td", { class: "num", "data-label": "Allotted", testid: "campaign-allotted", dataset: { minor: String(c.allotted_minor) }, text: money(c.allotted_minor, c.currency) }),
        moneyCells(campaignBudget(c), c.currency, "campaign"),
        el("td", { "data-label": "Status" }, el("span", { class: "badge", text: c.status })),
        el("td", {}, el("button", { type: "button", class: "small secondary", testid: "open-campaign", text: "Vouchers", onclick: () => openCampaign(c.id) })),
      ),
    );
  }
  renderCampaign();
}

function renderCampaign() {
  const campaign = state.campaigns.find((c) => c.id === state.open);
  t("campaign-panel").hidden = !campaign;
  if (!campaign) return;
  t("campaign-title").textContent = `${campaign.name} · ${money(campaign.unallotted_minor, campaign.currency)} not allotted`;
  const body = t("campaign-voucher-list");
  body.replaceChildren();
  const vouchers = state.vouchers.get(campaign.id) || [];
  if (!vouchers.length) body.append(el("tr", {}, el("td", { colspan: 10, class: "empty", text: "No vouchers under this campaign yet." })));
  for (const v of vouchers) {
    const budget = liveBudget(v);
    const brand = v.brand_id ? state.brands.find((b) => b.id === v.brand_id)?.name || `Brand ${v.brand_id}` : "Any brand";
    body.append(
      el(
        "tr",
        { testid: "campaign-voucher-row", dataset: { voucherId: String(v.id), status: v.status, funding: v.funding } },
        el("td", { "data-label": "Voucher", text: v.title }),
        el("td", { "data-label": "Terms", text: `${voucherTerms(v)} · ${fundingText(v)}` }),
        el("td", { "data-label": "Brand", text: brand }),
        el("td", { class: "num", "data-label": "Claimed", testid: "voucher-claimed", text: `${budget ? budget.claimed : "—"} / ${v.quota}` }),
        moneyCells(budget, v.currency, "voucher"),
        el("td", { "data-label": "Status" }, el("span", { class: "badge", text: v.status })),
        el("td", {}, v.status === "active" ? el("button", { type: "button", class: "small secondary", testid: "end-voucher-button", text: "End", onclick: () => endVoucher(v) }) : null),
      ),
    );
  }
}

async function load() {
  // Lists carry no live figures: each campaign and voucher is read on its own for them.
  const page = await api("/campaigns", { auth: "required" });
  const one = (path) => api(path, { auth: "required" });
  state.campaigns = await Promise.all(page.items.map((c) => one(`/campaigns/${c.id}`)));
  for (const c of state.campaigns) {
    const list = (await one(`/campaigns/${c.id}/vouchers`)).items;
    state.vouchers.set(c.id, await Promise.all(list.map((v) => one(`/vouchers/${v.id}`))));
  }
  render();
}

function openCampaign(id) {
  state.open = id;
  render();
  t("campaign-panel").scrollIntoView({ block: "nearest" });
}

async function endVoucher(v) {
  const near = t("campaign-voucher-list").closest(".table-wrap");
  try {
    await api(`/vouchers/${v.id}/end`, { method: "POST", auth: "required" });
    show(`“${v.title}” ended: no new claims; unused claims return to the budget.`, "ok", undefined, near);
    await load();
  } catch (error) {
    refuse(error, near);
  }
}

async function loadBrands() {
  let after = null;
  state.brands = [];
  do {
    const page = await api(`/brands?limit=100${after ? "&after=" + after : ""}`);
    state.brands.push(...page.items);
    after = page.next;
  } while (after);
}

async function loadProducts(brandId) {
  state.products = [];
  if (!brandId) return;
  let after = null;
  do {
    const page = await api(`/products?brand_id=${brandId}&limit=100${after ? "&after=" + after : ""}`);
    state.products.push(...page.items);
    after = page.next;
  } while (after);
}

async function voucherFields() {
  const funding = t("voucher-funding").value;
  t("voucher-share-label").hidden = funding !== "co";
  const select = t("voucher-brand");
  const chosen = select.value;
  select.replaceChildren(
    ...(funding === "platform" ? [el("option", { value: "", text: "Any brand" })] : []),
    ...state.brands.map((b) => el("option", { value: String(b.id), text: b.name })),
  );
  if ([...select.options].some((o) => o.value === chosen)) select.value = chosen;
  await loadProducts(select.value ? Number(select.value) : null);
  t("voucher-fields").replaceChildren(...termsFields(state.products, { anyProduct: select.value ? "All the brand's products" : "Any product" }));
}

t("voucher-funding").addEventListener("change", () => voucherFields().catch((e) => refuse(e)));
t("voucher-brand").addEventListener("change", () => voucherFields().catch((e) => refuse(e)));
t("campaign-close").addEventListener("click", () => {
  state.open = null;
  render();
});

t("new-campaign-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = t("create-campaign");
  const body = {
    name: t("campaign-name").value.trim(),
    currency: t("campaign-currency").value.trim().toUpperCase(),
    budget_minor: toMinor(t("campaign-budget").value),
    starts_at: isoFromLocal(t("campaign-starts").value),
    ends_at: isoFromLocal(t("campaign-ends").value),
  };
  if (body.budget_minor === null) return show("Enter the budget as an amount, such as 1000.00.", "error", "invalid_request", button.parentElement);
  button.disabled = true;
  try {
    const made = await api("/campaigns", { method: "POST", body, auth: "required" });
    show(`Campaign “${made.name}” created with ${money(made.budget_minor, made.currency)}.`, "ok", undefined, button.parentElement);
    t("campaign-name").value = "";
    await load();
    openCampaign(made.id);
  } catch (error) {
    refuse(error, button.parentElement);
  } finally {
    button.disabled = false;
  }
});

t("new-campaign-voucher-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = t("create-campaign-voucher");
  const campaign = state.campaigns.find((c) => c.id === state.open);
  if (!campaign) return;
  let body;
  try {
    body = readTerms(event.currentTarget, { toMinor });
  } catch (error) {
    return show(error.message, "error", "invalid_request", button.parentElement);
  }
  body.funding = t("voucher-funding").value;
  const brand = t("voucher-brand").value;
  if (brand) body.brand_id = Number(brand);
  if (body.funding === "co") {
    const share = Number(t("voucher-share").value);
    if (!(share > 0 && share < 100)) return show("A co-funded voucher's platform share is between 0 and 100 percent.", "error", "invalid_request", button.parentElement);
    body.platform_share_bps = Math.round(share * 100);
  }
  body.budget_minor = toMinor(t("voucher-allotment").value);
  if (body.budget_minor === null) return show("Enter the allotment as an amount, such as 100.00.", "error", "invalid_request", button.parentElement);
  button.disabled = true;
  try {
    const made = await api(`/campaigns/${campaign.id}/vouchers`, { method: "POST", body, auth: "required" });
    show(`Voucher “${made.title}” created under “${campaign.name}”.`, "ok", undefined, button.parentElement);
    await voucherFields();
    await load();
  } catch (error) {
    refuse(error, button.parentElement);
  } finally {
    button.disabled = false;
  }
});

async function main() {
  const me = await requireRole(["admin"]);
  renderAccount(document.getElementById("account"), me);
  const now = new Date();
  t("campaign-starts").value = localInputValue(now);
  t("campaign-ends").value = localInputValue(new Date(now.getTime() + 30 * 86400e3));
  try {
    await loadBrands();
    await voucherFields();
    await load();
  } catch (error) {
    refuse(error);
  }
  setInterval(() => load().catch(() => {}), POLL_MS);
}

main();
