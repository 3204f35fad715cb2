// Vouchers as people read them, shared by the host console, the viewer page and the dashboards: the terms in
// one line ("$2.00 off", "10% off, up to $5.00", "on $20.00 or more") and the price after vouchers.

import { el, money } from "/web/js/api.js";

/** "$2.00 off" / "10% off, up to $5.00", with " · on $20.00 or more" when there is a minimum spend. */
export function voucherTerms(v) {
  const off = v.kind === "percent"
    ? `${(v.percent_bps / 100).toLocaleString("en-US", { maximumFractionDigits: 2 })}% off, up to ${money(v.cap_minor, v.currency)}`
    : `${money(v.amount_minor ?? v.cap_minor, v.currency)} off`;
  return v.min_spend_minor > 0 ? `${off} · on ${money(v.min_spend_minor, v.currency)} or more` : off;
}

/** Who bears a voucher's discount, in words. */
export function fundingText(v) {
  if (v.funding === "platform") return "platform-funded";
  if (v.funding === "co") return `co-funded (platform ${(v.platform_share_bps / 100).toLocaleString("en-US")}%)`;
  return "seller-funded";
}

/**
 * The price after vouchers (a quote's or a hold's `price`: subtotal_minor, seller_discount_minor,
 * platform_discount_minor, pay_minor, vouchers[]) as a small block: "You pay $17.99" over the struck subtotal
 * and one line per voucher used. Null when no voucher takes anything off.
 */
export function priceBlock(price, currency, testid = "voucher-price") {
  if (!price || !(price.pay_minor < price.subtotal_minor)) return null;
  const lines = (price.vouchers || []).map((v) =>
    el("li", { testid: "voucher-price-line", dataset: { voucherId: String(v.voucher_id) } },
      v.discount_minor === null || v.discount_minor === undefined ? (v.title || "Voucher") : `${v.title || "Voucher"}: −${money(v.discount_minor, currency)}`),
  );
  return el(
    "div",
    { class: "voucher-price", testid, dataset: { payMinor: String(price.pay_minor) } },
    el("span", { class: "muted small" }, "After vouchers: "),
    el("strong", { testid: `${testid}-pay`, text: money(price.pay_minor, currency) }),
    " ",
    el("s", { class: "muted small", text: money(price.subtotal_minor, currency) }),
    el("ul", { class: "voucher-lines small muted" }, lines),
  );
}

/**
 * A voucher's or a campaign's live budget figures (from Redis, in its GET): {funded, reserved, spent, free,
 * claimed}, read from `live` (or `budget_live`, or top-level `*_minor` fields); null while not known.
 */
export function liveBudget(v) {
  const b = v?.live ?? v?.budget_live ?? (v && "funded_minor" in v ? v : null);
  if (!b) return null;
  const pick = (name) => b[name] ?? b[name + "_minor"] ?? 0;
  return { funded: pick("funded"), reserved: pick("reserved"), spent: pick("spent"), free: pick("free"), claimed: b.claimed ?? 0 };
}

/** A datetime-local input's value as an ISO instant (local time), or null. */
export function isoFromLocal(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/**
 * The terms every voucher has, read from a form built with `termsFields()` (inputs named by testid). Returns
 * the request body's terms, or throws an Error whose message says what to fix.
 */
export function readTerms(form, { toMinor }) {
  const value = (id) => form.querySelector(`[data-testid="${id}"]`).value.trim();
  const body = { title: value("voucher-title"), kind: value("voucher-kind") };
  if (!body.title) throw new Error("Give the voucher a title.");
  if (body.kind === "amount") {
    body.amount_minor = toMinor(value("voucher-amount"));
    if (!body.amount_minor) throw new Error("Enter the amount off, such as 2.00.");
  } else {
    const percent = Number(value("voucher-percent"));
    if (!(percent > 0 && percent <= 100)) throw new Error("Enter the percent off, between 0 and 100 (e.g. 10).");
    body.percent_bps = Math.round(percent * 100);
    body.cap_minor = toMinor(value("voucher-cap"));
    if (!body.cap_minor) throw new Error("Enter the most a percent voucher takes off, such as 5.00.");
  }
  const minSpend = value("voucher-min-spend");
  body.min_spend_minor = minSpend ? toMinor(minSpend) : 0;
  if (body.min_spend_minor === null) throw new Error("Enter the minimum spend as an amount, such as 20.00, or leave it empty.");
  const product = value("voucher-product");
  if (product) body.product_id = Number(product);
  body.quota = Number(value("voucher-quota"));
  body.per_buyer_limit = Number(value("voucher-limit"));
  if (!(body.quota >= 1) || !(body.per_buyer_limit >= 1)) throw new Error("Claims in total and per buyer must be at least 1.");
  body.starts_at = isoFromLocal(value("voucher-starts"));
  body.ends_at = isoFromLocal(value("voucher-ends"));
  if (!body.starts_at || !body.ends_at) throw new Error("Give the voucher a start and an end.");
  return body;
}

/** The inputs of `readTerms`, as form-grid labels: product choices are [{id, title}] ("" = all / any). */
export function termsFields(products, { anyProduct = "All products" } = {}) {
  const input = (testid, props = {}) => el("input", { testid, ...props });
  const label = (text, field, wide) => el("label", { class: wide ? "wide" : undefined }, text + " ", field);
  const kind = el("select", { testid: "voucher-kind" }, el("option", { value: "amount", text: "Amount off" }), el("option", { value: "percent", text: "Percent off" }));
  const amount = label("Amount off", input("voucher-amount", { inputmode: "decimal", placeholder: "2.00" }));
  const percent = label("Percent off", input("voucher-percent", { inputmode: "decimal", placeholder: "10" }));
  const cap = label("Up to (cap)", input("voucher-cap", { inputmode: "decimal", placeholder: "5.00" }));
  const sync = () => {
    const isPercent = kind.value === "percent";
    amount.hidden = isPercent;
    percent.hidden = cap.hidden = !isPercent;
  };
  kind.addEventListener("change", sync);
  sync();
  const product = el("select", { testid: "voucher-product" }, el("option", { value: "", text: anyProduct }), products.map((p) => el("option", { value: String(p.id), text: p.title })));
  const now = Date.now();
  const local = (ms) => {
    const d = new Date(ms);
    d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
    return d.toISOString().slice(0, 16);
  };
  return [
    label("Title", input("voucher-title", { maxlength: 120, required: true, placeholder: "e.g. $2 off tonight" }), true),
    label("Kind", kind),
    amount,
    percent,
    cap,
    label("Minimum spend", input("voucher-min-spend", { inputmode: "decimal", placeholder: "0.00" })),
    label("Product", product, true),
    label("Claims in total", input("voucher-quota", { type: "number", min: 1, step: 1, value: "100" })),
    label("Per buyer", input("voucher-limit", { type: "number", min: 1, step: 1, value: "1" })),
    label("Starts", input("voucher-starts", { type: "datetime-local", value: local(now) })),
    label("Ends", input("voucher-ends", { type: "datetime-local", value: local(now + 7 * 86400e3) })),
  ];
}
