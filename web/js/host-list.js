// /host: the signed-in host's rooms, a form to schedule a new one, and (host-market.js, hosts only) the brands
// they sell for and their earnings.

import { api, byTestId as t, dateTime, el, localInputValue, renderAccount, requireRole, say, sayAt } from "/web/js/api.js";
import { startMarket } from "/web/js/host-market.js";

const message = t("message");
let me = null;

function statusBadge(status) {
  return el("span", { class: "badge" + (status === "live" ? " live" : status === "scheduled" ? " warn" : ""), text: status });
}

async function loadRooms() {
  const box = t("room-list");
  const query = me.role === "admin" ? "" : `&host_id=${me.id}`;
  const page = await api(`/rooms?limit=100${query}`, { auth: "required" });
  box.replaceChildren();
  if (!page.items.length) {
    box.append(el("p", { class: "empty", text: "No rooms yet. Schedule one below." }));
    return;
  }
  const order = { live: 0, scheduled: 1, ended: 2 };
  page.items.sort((a, b) => order[a.status] - order[b.status] || Date.parse(b.scheduled_start) - Date.parse(a.scheduled_start));
  for (const room of page.items) {
    const brands = room.brands.map((b) => b.name).join(", ");
    // The badge and the title share a line; the buttons go on a line of their own when the row is narrow
    // (a phone), so the title and the date never get squeezed to nothing.
    box.append(
      el(
        "div",
        { class: "item room-item", testid: "room-row", dataset: { roomId: String(room.id), status: room.status } },
        statusBadge(room.status),
        el(
          "div",
          { class: "grow" },
          el("div", { class: "name", testid: "room-name", text: room.title }),
          el(
            "div",
            { class: "sub" },
            el("span", { testid: "room-start", text: dateTime(room.scheduled_start) }),
            `${brands ? " · " + brands : ""}${room.visibility === "private" ? " · private" : ""}`,
          ),
        ),
        el(
          "div",
          { class: "row room-actions" },
          el("a", { class: "button small secondary", href: `/watch/${room.id}`, text: "Viewer page" }),
          room.status === "ended" ? null : el("a", { class: "button small", href: `/host/${room.id}`, testid: "room-link", text: "Open console" }),
        ),
      ),
    );
  }
}

async function loadBrands() {
  const box = t("room-brands-input");
  const page = await api("/brands?limit=100");
  box.replaceChildren();
  for (const brand of page.items) {
    box.append(el("label", { class: "inline" }, el("input", { type: "checkbox", name: "brand", value: String(brand.id), checked: page.items.length === 1 }), brand.name));
  }
  if (!page.items.length) box.append(el("span", { class: "muted small", text: "No brands yet: an admin creates them." }));
}

t("new-room-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const start = new Date(form.elements.start.value);
  const body = {
    title: form.elements.title.value.trim(),
    scheduled_start: start.toISOString(),
    visibility: form.elements.visibility.value,
    brand_ids: [...form.querySelectorAll("input[name=brand]:checked")].map((b) => Number(b.value)),
  };
  const near = t("create-room").parentElement; // the answer shows under the form's button
  try {
    const room = await api("/rooms", { method: "POST", body, auth: "required" });
    sayAt(message, near, `Room “${room.title}” created.`, "ok");
    form.elements.title.value = "";
    await loadRooms();
  } catch (error) {
    sayAt(message, near, error.message, "error", error.code);
  }
});

async function main() {
  me = await requireRole(["host", "admin"]);
  renderAccount(document.getElementById("account"), me);
  t("nav-brand").hidden = me.role !== "admin";
  t("room-start-input").value = localInputValue(new Date(Date.now() + 10 * 60 * 1000));
  try {
    await Promise.all([loadRooms(), loadBrands()]);
  } catch (error) {
    say(message, error.message, "error", error.code);
  }
  if (me.role === "host") {
    t("market").hidden = false;
    t("earnings").hidden = false;
    startMarket(me, (text, kind, near, code) => sayAt(message, near, text, kind, code));
  }
}

main();
