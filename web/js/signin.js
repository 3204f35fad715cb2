// /signin: demo buttons (when the server runs with --demo) or a pasted bearer token; then back to `next`.

import { api, byTestId as t, say, setToken } from "/web/js/api.js";

const params = new URLSearchParams(location.search);
const status = t("signin-status");

const HOME = { viewer: "/", host: "/host", brand_staff: "/brand", admin: "/host" };
const ROLE_NAMES = { viewer: "viewers", host: "hosts", brand_staff: "brand staff", admin: "admins" };

/** Only a same-site path may be a destination (never another origin). */
function nextPath(role) {
  const next = params.get("next");
  if (next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/signin")) return next;
  return HOME[role] || "/";
}

const reason = params.get("reason") || "";
if (reason === "expired") say(status, "Your session has expired. Sign in again.", "warn");
else if (reason.startsWith("role:")) {
  const roles = reason.slice(5).split(",").map((r) => ROLE_NAMES[r] || r);
  say(status, `That page is for ${roles.join(" and ")}. Sign in with an account that has that role.`, "warn");
} else if (reason === "forbidden") say(status, "Your account may not do that. Sign in with another account.", "warn");

async function finish(token) {
  setToken(token);
  try {
    const me = await api("/me");
    say(status, `Signed in as ${me.display_name} (${me.role.replace("_", " ")}).`, "ok");
    location.assign(nextPath(me.role));
  } catch (error) {
    setToken(null);
    say(status, error.status === 401 ? "That token was not accepted: " + error.message : error.message, "error");
  }
}

async function probeDemo() {
  // The server says whether it runs in demo mode through the OpenAPI document's demo-login route only, which
  // exists in every mode; so the buttons show, and outside demo mode a click explains that they do not work.
  t("demo-section").hidden = false;
}

for (const button of document.querySelectorAll("[data-email]")) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const answer = await api("/auth/demo-login", { method: "POST", body: { email: button.dataset.email } });
      await finish(answer.token);
    } catch (error) {
      say(status, error.message, "error");
    } finally {
      button.disabled = false;
    }
  });
}

t("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = t("token-input").value.trim().replace(/^Bearer\s+/i, "");
  if (token) finish(token);
});

probeDemo();
