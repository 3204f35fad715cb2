// The brand dashboard's Vouchers section: create seller vouchers for the brand's products, and list the
// brand's vouchers (its own and the platform's co-funded ones naming it) with their claims and state, polled
// every 3 s. REST: GET/POST /api/v1/brands/{id}/vouchers, POST /api/v1/vouchers/{id}/end.

import { api, byTestId as t, el, money, toMinor } from "/web/js/api.js";
import { fundingText, liveBudget, readTerms, termsFields, voucherTerms } from "/web/js/vouchers.js";

const POLL_MS = 3000;

export function startVouchers(brandId, products, show, refuse) {
  const near = () => t("voucher-list").closest(".table-wrap");
  let vouchers = [];
  let drawn = "";

  function fields() {
    t("voucher-fields").replaceChildren(...termsFields([...products.values()]));
  }

  function render() {
    const shown = JSON.stringify(vouchers);
    if (shown === drawn) return;
    drawn = shown;
    const body = t("voucher-list");
    body.replaceChildren();
    if (!vouchers.length) {
      body.append(el("tr", {}, el("td", { colspan: 7, class: "empty", text: "No vouchers yet. Create one below, then a host can pin it in a live." })));
      return;
    }
    for (const v of vouchers) {
      const budget = liveBudget(v);
      const product = v.product_id ? products.get(v.product_id)?.title || `Product ${v.product_id}` : "All products";
      const mine = v.funding === "seller";
      body.append(
        el(
          "tr",
          { testid: "voucher-row", dataset: { voucherId: String(v.id), status: v.status, funding: v.funding } },
          el("td", { "data-label": "Voucher", testid: "voucher-name", text: v.title }),
          el("td", { "data-label": "Terms", testid: "voucher-row-terms", text: `${voucherTerms(v)} · ${fundingText(v)}` }),
          el("td", { "data-label": "Product", text: product }),
          el("td", { class: "num", "data-label": "Claimed", testid: "voucher-claimed", text: budget ? `${budget.claimed} / ${v.quota}` : `— / ${v.quota}` }),
          el("td", { class: "num", "data-label": "Used", testid: "voucher-spent", dataset: { minor: String(budget?.spent ?? 0) }, text: budget && !mine ? money(budget.spent, v.currency) : "—" }),
          el("td", { "data-label": "Status" }, el("span", { class: "badge", testid: "voucher-status", text: v.status })),
          el(
            "td",
            {},
            mine && v.status === "active"
              ? el("button", { type: "button", class: "small secondary", testid: "end-voucher-button", text: "End", onclick: () => end(v) })
              : null,
          ),
        ),
      );
    }
  }

  async function load() {
    const page = await api(`/brands/${brandId}/vouchers`, { auth: "required" });
    // The list carries no live figures: a voucher you manage (`budget_minor` not null) is read on its own.
    vouchers = await Promise.all(page.items.map((v) => (v.budget_minor === null ? v : api(`/vouchers/${v.id}`, { auth: "required" }))));
    render();
  }

  async function end(v) {
    try {
      await api(`/vouchers/${v.id}/end`, { method: "POST", auth: "required" });
      show(`“${v.title}” ended: no new claims.`, "ok", undefined, near());
      await load();
    } catch (error) {
      refuse(error, near());
    }
  }

  t("new-voucher-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const button = t("create-voucher");
    let body;
    try {
      body = readTerms(form, { toMinor });
    } catch (error) {
      return show(error.message, "error", "invalid_request", button.parentElement);
    }
    if (!body.product_id) body.currency = [...products.values()][0]?.currency || "USD";
    button.disabled = true;
    try {
      const made = await api(`/brands/${brandId}/vouchers`, { method: "POST", body, auth: "required" });
      show(`Voucher “${made.title}” created: hosts of rooms selling your products can pin it.`, "ok", undefined, button.parentElement);
      fields();
      await load();
    } catch (error) {
      refuse(error, button.parentElement);
    } finally {
      button.disabled = false;
    }
  });

  fields();
  load().catch((error) => refuse(error, near()));
  setInterval(() => load().catch(() => {}), POLL_MS);
}
