// The brand dashboard's marketplace sections: collaborations (plans and their rates, a targeted offer to a
// creator, pending applications, creators and what each sold) and the brand's statement (this month's totals
// per currency, a CSV of every posting). Started by brand.js with the brand id and its status line.

import { ApiError, api, byTestId as t, el, money } from "/web/js/api.js";

const POLL_MS = 3000;
const percent = (bps) => (bps === null || bps === undefined ? "—" : `${(bps / 100).toFixed(bps % 100 ? 2 : 0)}%`);
/** "15" or "12.5" (percent) → basis points, or null. */
const toBps = (text) => (/^\d{1,2}(\.\d{1,2})?$/.test(String(text).trim()) ? Math.round(Number(text) * 100) : null);

export function startMarket(brandId, products, show, refuse) {
  const near = (testid) => t(testid).closest(".table-wrap") || t(testid).parentElement;
  let plans = [];
  let collaborations = [];
  let statement = null;

  function productChoices(select) {
    const chosen = select.value;
    select.replaceChildren(...[...products.values()].map((p) => el("option", { value: String(p.id), text: `${p.title} — ${money(p.price_minor, p.currency)}` })));
    if (chosen) select.value = chosen;
  }

  function renderPlans() {
    const box = t("plan-list");
    box.replaceChildren();
    t("open-plan-form").hidden = plans.some((p) => p.kind === "open" && !p.ended_at);
    if (!plans.length) box.append(el("p", { class: "empty", text: "No plans yet. Open one so creators can apply to sell your products." }));
    for (const plan of plans) {
      const rates = el("div", { class: "list" });
      for (const rate of plan.rates) {
        const input = el("input", { testid: "rate-input", inputmode: "decimal", value: (rate.rate_bps / 100).toString(), "aria-label": "Commission %", size: 5 });
        const save = el("button", {
          type: "button", class: "small secondary", testid: "rate-save", text: "Set",
          onclick: async () => {
            const bps = toBps(input.value);
            if (bps === null) return show("Enter the commission as a percent, such as 15 or 12.5.", "error", "invalid_request", rates);
            try {
              const set = await api(`/plans/${plan.id}/rates/${rate.product_id}`, { method: "PUT", body: { rate_bps: bps }, auth: "required" });
              const when = Date.parse(set.effective_at) > Date.parse(set.set_at) + 1000 ? ` (reaches creators already selling on ${new Date(set.effective_at).toLocaleDateString()})` : "";
              show(`Rate for “${rate.title}” set to ${percent(set.rate_bps)}${when}.`, "ok", undefined, rates);
              await loadPlans();
            } catch (error) {
              refuse(error, rates);
            }
          },
        });
        rates.append(el("div", { class: "item", testid: "plan-rate", dataset: { productId: String(rate.product_id) } },
          el("div", { class: "grow" }, el("div", { class: "name", text: rate.title }), el("div", { class: "sub", text: `${money(rate.price_minor, rate.currency)} · now ${percent(rate.rate_bps)}` })),
          input, save));
      }
      const add = el("select", { testid: "plan-add-product", "aria-label": "Product" });
      productChoices(add);
      const addRate = el("input", { testid: "plan-add-rate", inputmode: "decimal", placeholder: "15", size: 5, "aria-label": "Commission %" });
      const addButton = el("button", {
        type: "button", class: "small", testid: "plan-add-button", text: "Add rate",
        onclick: async () => {
          const bps = toBps(addRate.value);
          if (bps === null) return show("Enter the commission as a percent, such as 15 or 12.5.", "error", "invalid_request", rates);
          try {
            await api(`/plans/${plan.id}/rates/${add.value}`, { method: "PUT", body: { rate_bps: bps }, auth: "required" });
            show("Rate added.", "ok", undefined, rates);
            await loadPlans();
          } catch (error) {
            refuse(error, rates);
          }
        },
      });
      box.append(el("div", { class: "stack", testid: "plan-row", dataset: { planId: String(plan.id), kind: plan.kind } },
        el("div", { class: "card-head" }, el("h3", { testid: "plan-name", text: plan.name }), el("span", { class: "badge", text: plan.kind === "open" ? "open to all creators" : "targeted offer" })),
        rates, el("div", { class: "row" }, add, addRate, addButton)));
    }
  }

  function renderCollaborations() {
    const pending = collaborations.filter((c) => c.status === "applied");
    const list = t("application-list");
    list.replaceChildren();
    if (!pending.length) list.append(el("p", { class: "empty", text: "No applications waiting." }));
    for (const c of pending) {
      const reason = el("input", { testid: "reject-reason", placeholder: "Reason (for a rejection)", "aria-label": "Reason" });
      const decide = async (action) => {
        const body = action === "reject" ? { reason: reason.value.trim() } : undefined;
        if (action === "reject" && !body.reason) return show("Say why, so the creator knows.", "error", "invalid_request", list);
        try {
          await api(`/collaborations/${c.id}/${action}`, { method: "POST", body, auth: "required" });
          show(`${c.creator_name} ${action === "approve" ? "approved: they can sell your products now" : "rejected"}.`, "ok", undefined, list);
          await loadCollaborations();
        } catch (error) {
          refuse(error, list);
        }
      };
      list.append(el("div", { class: "item", testid: "application-row", dataset: { collaborationId: String(c.id), creatorId: String(c.creator_id) } },
        el("div", { class: "grow" }, el("div", { class: "name", testid: "application-creator", text: c.creator_name }), el("div", { class: "sub", text: c.message || "No message." })),
        reason,
        el("button", { type: "button", class: "small", testid: "approve-button", text: "Approve", onclick: () => decide("approve") }),
        el("button", { type: "button", class: "small ghost", testid: "reject-button", text: "Reject", onclick: () => decide("reject") })));
    }
    renderCreators();
  }

  function renderCreators() {
    const body = t("creator-list");
    body.replaceChildren();
    const rows = new Map(); // creator id → {name, status, sales by currency}
    for (const c of collaborations) {
      if (!["approved", "offered", "ended"].includes(c.status)) continue;
      const row = rows.get(c.creator_id) || { name: c.creator_name, statuses: new Set(), sales: [] };
      row.statuses.add(c.status);
      rows.set(c.creator_id, row);
    }
    for (const s of statement?.by_creator || []) {
      const row = rows.get(s.creator_id) || { name: s.creator_name, statuses: new Set(), sales: [] };
      row.sales.push(s);
      rows.set(s.creator_id, row);
    }
    if (!rows.size) body.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No creators yet." })));
    for (const [id, row] of rows) {
      const sales = row.sales.length ? row.sales : [{ currency: "USD", orders: 0, gmv_minor: 0, commission_minor: 0 }];
      const status = row.statuses.has("approved") ? "approved" : [...row.statuses][0] || "—";
      body.append(el("tr", { testid: "creator-row", dataset: { creatorId: String(id) } },
        el("td", { class: "cell-main" }, el("div", { class: "name", testid: "creator-name", text: row.name }), el("div", { class: "muted small", text: status })),
        el("td", { class: "num", "data-label": "Orders", testid: "creator-orders", text: sales.map((s) => String(s.orders)).join(" · ") }),
        el("td", { class: "num", "data-label": "Sold", testid: "creator-gmv", text: sales.map((s) => money(s.gmv_minor, s.currency)).join(" · ") }),
        el("td", { class: "num", "data-label": "Commission", testid: "creator-commission", text: sales.map((s) => money(s.commission_minor, s.currency)).join(" · ") })));
    }
  }

  function renderStatement() {
    const body = t("statement-list");
    body.replaceChildren();
    const totals = statement?.totals || [];
    if (!totals.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "empty", text: "Nothing sold this month yet." })));
    for (const s of totals) {
      const cell = (testid, label, minor) => el("td", { class: "num", "data-label": label, testid, dataset: { minor: String(minor) }, text: money(minor, s.currency) });
      body.append(el("tr", { testid: "statement-row", dataset: { currency: s.currency } },
        el("td", { class: "cell-main", text: s.currency }),
        el("td", { class: "num", "data-label": "Orders", testid: "statement-orders", text: String(s.orders) }),
        cell("statement-gmv", "GMV", s.gmv_minor),
        cell("statement-refunds", "Refunds", s.refunds_minor),
        cell("statement-commission", "Commission", s.commission_minor - s.commission_reversed_minor),
        cell("statement-fees", "Fees", s.fees_minor - s.fees_reversed_minor),
        cell("statement-seller-vouchers", "Your vouchers", s.seller_discount_minor ?? 0),
        cell("statement-platform-vouchers", "Platform vouchers", s.platform_discount_minor ?? 0),
        cell("statement-net", "Net", s.net_minor)));
    }
    if (statement) t("statement-period").textContent = `${new Date(statement.from).toLocaleDateString()} – ${new Date(Date.parse(statement.to) - 1).toLocaleDateString()}`;
  }

  async function loadPlans() {
    plans = (await api(`/brands/${brandId}/plans`, { auth: "required" })).items;
    renderPlans();
  }
  async function loadCollaborations() {
    collaborations = (await api(`/collaborations?brand_id=${brandId}`, { auth: "required" })).items;
    renderCollaborations();
  }
  async function loadStatement() {
    statement = await api(`/brands/${brandId}/statement`, { auth: "required" });
    renderStatement();
    renderCreators();
  }

  t("open-plan-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const at = t("create-open-plan").parentElement;
    const bps = toBps(form.elements.rate.value);
    if (bps === null) return show("Enter the commission as a percent, such as 15 or 12.5.", "error", "invalid_request", at);
    const body = { kind: "open", name: form.elements.name.value.trim(), rates: [{ product_id: Number(form.elements.product.value), rate_bps: bps }] };
    try {
      await api(`/brands/${brandId}/plans`, { method: "POST", body, auth: "required" });
      show("Open plan created: creators can apply now.", "ok", undefined, at);
      form.reset();
      await loadPlans();
    } catch (error) {
      refuse(error, at);
    }
  });

  t("offer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const at = t("create-offer").parentElement;
    const bps = toBps(form.elements.rate.value);
    const creator = form.elements.creator.value.trim();
    if (!/^\d+$/.test(creator)) return show("The creator is a user id: a whole number.", "error", "invalid_request", at);
    if (bps === null) return show("Enter the commission as a percent, such as 15 or 12.5.", "error", "invalid_request", at);
    const body = { kind: "targeted", name: form.elements.name.value.trim(), creator_ids: [Number(creator)], rates: [{ product_id: Number(form.elements.product.value), rate_bps: bps }] };
    try {
      await api(`/brands/${brandId}/plans`, { method: "POST", body, auth: "required" });
      show("Offer sent: the creator accepts or declines it.", "ok", undefined, at);
      form.reset();
      await Promise.all([loadPlans(), loadCollaborations()]);
    } catch (error) {
      refuse(error, at);
    }
  });

  t("statement-csv").addEventListener("click", async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const response = await api(`/brands/${brandId}/statement.csv`, { auth: "required", raw: true });
      const url = URL.createObjectURL(await response.blob());
      const link = el("a", { href: url, download: `brand-${brandId}-statement.csv`, hidden: true });
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

  productChoices(t("plan-product"));
  productChoices(t("offer-product"));
  const poll = async () => {
    try {
      await Promise.all([loadCollaborations(), loadStatement()]);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 0) refuse(error, t("statement-list").closest(".table-wrap"));
    }
    setTimeout(poll, POLL_MS);
  };
  loadPlans().catch((error) => refuse(error, t("plan-list")));
  poll();
}
