// /signin: a pasted bearer token, or demo buttons when `/health` says `demo: true`; then back to `next`.

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

/** Show the demo accounts only when `/health` says the server runs in demo mode; otherwise the token form is
 * the way in. `/health` is asked without the token: a stale one would be refused there too. */
async function probeDemo() {
  let demo = false;
  try {
    const response = await fetch("/health", { headers: { Accept: "application/json" } });
    demo = response.ok && (await response.json()).demo === true;
  } catch {
    /* unreachable or not JSON: no demo buttons */
  }
  t("demo-section").hidden = !demo;
  document.body.dataset.demo = String(demo);
  t("token-title").textContent = demo ? "Or use a token" : "Sign in with a token";
  if (demo) t("token-input").placeholder = "Paste a token (livecommerce serve --demo prints one per demo user)";
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
