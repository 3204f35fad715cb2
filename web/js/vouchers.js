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
