// /rankings: the leaderboards of creators and brands by GMV or GMV growth (GET /rankings/creators and
// /rankings/brands), for any signed-in account, polled every few seconds. Amounts are minor units of the shop's
// currency (the rankings add minor units across currencies; the demo sells in one).

import { byTestId as t, api, el, money, renderAccount, requireRole, say, timeOfDay } from "/web/js/api.js";

const POLL_MS = 3000;
const LIMIT = 15;
const CURRENCY = "USD";

function growthText(entry) {
  const sign = entry.growth_minor > 0 ? "+" : "";
  const pct = entry.growth_pct === null ? "new" : `${sign}${entry.growth_pct.toFixed(1)}%`;
  return `${sign}${money(entry.growth_minor, CURRENCY)} (${pct})`;
}

function render(body, items, withLevel) {
  body.replaceChildren();
  if (!items.length) {
    body.append(el("tr", {}, el("td", { colspan: withLevel ? 6 : 5, class: "empty", text: "No sales in this period yet." })));
    return;
  }
  for (const entry of items) {
    body.append(
      el("tr", { testid: withLevel ? "creator-row" : "brand-row", dataset: { id: String(entry.id) } },
        el("td", { class: "num", text: String(entry.rank) }),
        el("td", { testid: "rank-name", text: entry.name }),
        withLevel ? el("td", {}, el("span", { class: "badge", testid: "rank-level", text: entry.level })) : null,
        el("td", { class: "num", testid: "rank-gmv", text: money(entry.gmv_minor, CURRENCY) }),
        el("td", { class: "num", text: money(entry.previous_minor, CURRENCY) }),
        el("td", { class: "num", testid: "rank-growth", text: growthText(entry) })));
  }
}

async function refresh() {
  const query = `?period=${t("rank-period").value}&by=${t("rank-by").value}&limit=${LIMIT}`;
  try {
    const [creators, brands] = await Promise.all([
      api(`/rankings/creators${query}`, { auth: "required" }),
      api(`/rankings/brands${query}`, { auth: "required" }),
    ]);
    render(t("creator-board"), creators.items, true);
    render(t("brand-board"), brands.items, false);
    t("rank-updated").textContent = `Updated ${timeOfDay(new Date())}`;
    say(t("message"), "");
  } catch (error) {
    say(t("message"), error.message, "error", error.code);
  }
}

const me = await requireRole(["viewer", "host", "brand_staff", "admin"]);
renderAccount(document.getElementById("account"), me);
t("rank-period").addEventListener("change", refresh);
t("rank-by").addEventListener("change", refresh);
await refresh();
setInterval(refresh, POLL_MS);
