// The host's marketplace sections on /host: "Brands I sell for" (open plans to apply to, offers to accept or
// decline, my collaborations with the rates in force) and "My earnings" (this month's creator statement).
// Started by host-list.js for a signed-in host.

import { ApiError, api, byTestId as t, el, money } from "/web/js/api.js";

const POLL_MS = 3000;
const percent = (bps) => (bps === null || bps === undefined ? "—" : `${(bps / 100).toFixed(bps % 100 ? 2 : 0)}%`);

export function startMarket(me, say) {
  let plans = [];
  let mine = [];

  function ratesText(rates) {
    return rates.map((r) => `${r.title} ${percent(r.rate_bps)}${r.next ? ` (→ ${percent(r.next.rate_bps)} from ${new Date(r.next.effective_at).toLocaleDateString()})` : ""}`).join(" · ") || "No products yet";
  }

  function renderPlans() {
    const box = t("plan-browse");
    box.replaceChildren();
    if (!plans.length) box.append(el("p", { class: "empty", text: "No brand has an open plan yet." }));
    for (const plan of plans) {
      const joined = mine.find((c) => c.plan_id === plan.id);
      const reopen = joined && ["rejected", "ended"].includes(joined.status);
      const apply = async () => {
        try {
          await api(`/plans/${plan.id}/applications`, { method: "POST", body: {}, auth: "required" });
          say(`Applied to ${plan.brand_name}: the brand decides.`, "ok", box);
          await load();
        } catch (error) {
          say(error.message, "error", box, error.code);
        }
      };
      box.append(el("div", { class: "item", testid: "open-plan", dataset: { planId: String(plan.id), brandId: String(plan.brand_id) } },
        el("div", { class: "grow" },
          el("div", { class: "name", testid: "plan-brand", text: plan.brand_name }),
          el("div", { class: "sub", text: plan.rates.map((r) => `${r.title}: ${percent(r.rate_bps)} of ${money(r.price_minor, r.currency)}`).join(" · ") || "No products yet" })),
        joined && !reopen ? el("span", { class: "badge", testid: "plan-status", text: joined.status }) : el("button", { type: "button", class: "small", testid: "apply-button", text: reopen ? "Apply again" : "Apply", onclick: apply })));
    }
  }

  function renderMine() {
    const offers = t("offer-list");
    offers.replaceChildren();
    const offered = mine.filter((c) => c.status === "offered");
    if (!offered.length) offers.append(el("p", { class: "empty", text: "No offers." }));
    for (const c of offered) {
      const answer = async (action) => {
        try {
          await api(`/collaborations/${c.id}/${action}`, { method: "POST", body: {}, auth: "required" });
          say(action === "accept" ? `You sell for ${c.brand_name} now.` : "Offer declined.", "ok", offers);
          await load();
        } catch (error) {
          say(error.message, "error", offers, error.code);
        }
      };
      offers.append(el("div", { class: "item", testid: "offer-row", dataset: { collaborationId: String(c.id) } },
        el("div", { class: "grow" }, el("div", { class: "name", text: `${c.brand_name} — ${c.plan_name}` }), el("div", { class: "sub", text: ratesText(c.rates) })),
        el("button", { type: "button", class: "small", testid: "accept-button", text: "Accept", onclick: () => answer("accept") }),
        el("button", { type: "button", class: "small ghost", testid: "decline-button", text: "Decline", onclick: () => answer("decline") })));
    }
    const list = t("collaboration-list");
    list.replaceChildren();
    const shown = mine.filter((c) => c.status !== "offered");
    if (!shown.length) list.append(el("p", { class: "empty", text: "Apply to a brand's plan to sell its products in your rooms." }));
    for (const c of shown) {
      list.append(el("div", { class: "item", testid: "collaboration-row", dataset: { collaborationId: String(c.id), status: c.status, brandId: String(c.brand_id) } },
        el("span", { class: "badge" + (c.status === "approved" ? " live" : ""), testid: "collaboration-status", text: c.status }),
        el("div", { class: "grow" },
          el("div", { class: "name", text: `${c.brand_name} — ${c.plan_name}` }),
          el("div", { class: "sub", testid: "collaboration-rates", text: c.status === "rejected" && c.reason ? `Rejected: ${c.reason}` : ratesText(c.rates) }))));
    }
  }

  async function loadEarnings() {
    const statement = await api(`/creators/${me.id}/statement`, { auth: "required" });
    const body = t("earnings-list");
    body.replaceChildren();
    if (!statement.totals.length) body.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No sales this month yet." })));
    for (const s of statement.totals) {
      const cell = (testid, label, minor) => el("td", { class: "num", "data-label": label, testid, dataset: { minor: String(minor) }, text: money(minor, s.currency) });
      body.append(el("tr", { testid: "earnings-row", dataset: { currency: s.currency } },
        el("td", { class: "cell-main", text: s.currency }),
        el("td", { class: "num", "data-label": "Orders", testid: "earnings-orders", text: String(s.orders) }),
        cell("earnings-gmv", "Sold", s.gmv_minor),
        cell("earnings-commission", "Commission", s.commission_minor),
        cell("earnings-reversed", "Reversed", s.commission_reversed_minor),
        cell("earnings-net", "Earned", s.net_minor)));
    }
  }

  async function load() {
    const [open, own] = await Promise.all([api("/plans", { auth: "required" }), api(`/collaborations`, { auth: "required" })]);
    plans = open.items;
    mine = own.items;
    renderPlans();
    renderMine();
  }

  const poll = async () => {
    try {
      await Promise.all([load(), loadEarnings()]);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 0) say(error.message, "error", t("plan-browse"), error.code);
    }
    setTimeout(poll, POLL_MS);
  };
  poll();
}
