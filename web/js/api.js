// Shared helpers: the bearer token, REST calls with problem+json errors, DOM building, money and time.
//
// Rule for every page: text that came from the server (names, chat, product fields) goes into the DOM through
// `textContent` / `el()` only. No page uses innerHTML with data.

const TOKEN_KEY = "livecommerce.token";

export function getToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null;
  }
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** An error answered by the API (RFC 9457 problem JSON): `message` is its `detail`, shown to people as is. */
export class ApiError extends Error {
  constructor(status, code, message, problem) {
    super(message);
    this.status = status;
    this.code = code;
    this.problem = problem;
  }
}

/** Send the browser to the sign-in page, coming back here afterwards. */
export function goSignIn(reason) {
  const here = location.pathname + location.search;
  const params = new URLSearchParams({ next: here });
  if (reason) params.set("reason", reason);
  location.assign("/signin?" + params.toString());
}

/**
 * Call `/api/v1{path}`. Resolves with the parsed JSON (or null for 204); rejects with ApiError.
 * `auth: "required"` sends a 401 (and, with `forbid: "signin"`, a 403) to the sign-in page.
 */
export async function api(path, { method = "GET", body, auth = "optional", forbid, raw = false } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch("/api/v1" + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "Cannot reach the server. Check your connection and try again.");
  }
  if (response.ok) {
    if (raw) return response;
    if (response.status === 204) return null;
    const type = response.headers.get("Content-Type") || "";
    return type.includes("json") ? response.json() : response.text();
  }
  let problem = null;
  try {
    problem = await response.json();
  } catch {
    /* not JSON */
  }
  let message = (problem && problem.detail) || response.statusText || "Request failed";
  if (problem && Array.isArray(problem.errors) && problem.errors.length) {
    message += ": " + problem.errors.map((e) => `${e.field.replace(/^body\./, "")} ${e.message}`).join("; ");
  }
  const error = new ApiError(response.status, (problem && problem.code) || "http_" + response.status, message, problem);
  if (response.status === 401 && token) setToken(null); // expired or revoked: forget it
  if (auth === "required" && (response.status === 401 || (response.status === 403 && forbid === "signin"))) {
    goSignIn(response.status === 401 ? "expired" : "forbidden");
  }
  throw error;
}

/** The signed-in user (`/api/v1/me`), or null when signed out or the token no longer works. */
export async function whoAmI() {
  if (!getToken()) return null;
  try {
    return await api("/me");
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

/**
 * The signed-in user if their role is one of `roles`; otherwise sends them to sign in and never resolves.
 */
export async function requireRole(roles) {
  const me = await whoAmI();
  if (!me) {
    goSignIn("signin");
    return new Promise(() => {});
  }
  if (!roles.includes(me.role)) {
    goSignIn("role:" + roles.join(","));
    return new Promise(() => {});
  }
  return me;
}

/** Build an element: el("div", {class: "x", testid: "y", text: "..."}, child, ...). Text goes in as text. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key === "testid") node.dataset.testid = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/**
 * The first letter or digit of `text`, upper-cased, for an avatar or a thumbnail: never half of an emoji's
 * surrogate pair, and never an emoji (which shows as an empty box where no emoji font is installed).
 */
export function initial(text, fallback = "?") {
  const match = /[\p{L}\p{N}]/u.exec(String(text ?? ""));
  return match ? match[0].toUpperCase() : fallback;
}

const ICONS = {
  check: "M9.5 16.2 5.3 12l-1.4 1.4 5.6 5.6 11-11-1.4-1.4z",
};

/** A small inline-SVG icon (a name in ICONS) in the text colour: the pages' icons never rely on emoji. */
export function icon(name) {
  const ns = "http://www.w3.org/2000/svg";
  const node = document.createElementNS(ns, "svg");
  node.setAttribute("class", "icon");
  node.setAttribute("viewBox", "0 0 24 24");
  node.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "currentColor");
  node.append(path);
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const byTestId = (id, root = document) => root.querySelector(`[data-testid="${id}"]`);

const formats = new Map();

/** "$18.99" for (1899, "USD"). */
export function money(minor, currency = "USD") {
  let format = formats.get(currency);
  if (!format) {
    try {
      format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    } catch {
      format = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2 });
    }
    formats.set(currency, format);
  }
  const digits = format.resolvedOptions().maximumFractionDigits ?? 2;
  return format.format(minor / 10 ** digits);
}

/** Parse "18.99" into 1899 minor units (null when not a number). */
export function toMinor(text, digits = 2) {
  const value = Number(String(text).replace(",", ".").trim());
  if (!Number.isFinite(value) || value < 0) return null;
  return Math.round(value * 10 ** digits);
}

export function fromMinor(minor, digits = 2) {
  return (minor / 10 ** digits).toFixed(digits);
}

/** "m:ss" (or "h:mm:ss") for a number of milliseconds (never negative). */
export function clock(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function compact(n) {
  return new Intl.NumberFormat(undefined, { notation: n >= 10000 ? "compact" : "standard" }).format(n);
}

/** "Dec 2, 2026, 3:50 PM": every page shows dates and times this way (the landing page too). */
export function dateTime(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** "3:50 PM": a time of day, as `dateTime` writes it. */
export function timeOfDay(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString(undefined, { timeStyle: "short" });
}

/** A value for <input type="datetime-local"> from a Date, in local time. */
export function localInputValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Show a status line: kind is "error", "ok" or "info". */
export function say(node, text, kind = "info", code) {
  node.textContent = text || "";
  node.dataset.kind = kind;
  if (code) node.dataset.code = code;
  else delete node.dataset.code;
  node.hidden = !text;
}

const homes = new WeakMap(); // status line -> the comment marking where the page put it

/**
 * Show a status line next to what it concerns: the line (`node`, the page's one `message`) moves to just
 * after `anchor` (the field, the button's row, the form) and is scrolled into view, so a refusal is read where
 * the tap was, not at the top of a long page. Without an anchor it goes back to where the page put it.
 */
export function sayAt(node, anchor, text, kind = "info", code) {
  if (!homes.has(node)) {
    const home = document.createComment("status line");
    node.before(home);
    homes.set(node, home);
  }
  const place = anchor || homes.get(node);
  if (place.nextSibling !== node) place.after(node);
  say(node, text, kind, code);
  if (text && anchor) node.scrollIntoView({ block: "nearest" });
}

/** The header's account area: who is signed in, and sign-in / sign-out. */
export function renderAccount(node, me) {
  node.replaceChildren();
  if (me) {
    node.append(
      el("span", { class: "who", testid: "account-name", text: me.display_name }),
      el("span", { class: "role", text: me.role.replace("_", " ") }),
      el("button", {
        class: "link",
        type: "button",
        testid: "sign-out",
        text: "Sign out",
        onclick: () => {
          setToken(null);
          location.reload();
        },
      }),
    );
  } else {
    const next = encodeURIComponent(location.pathname + location.search);
    node.append(el("a", { class: "button small", href: "/signin?next=" + next, testid: "signin-link", text: "Sign in" }));
  }
}

/** A fresh idempotency key for one tap. */
export function tapKey() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return "tap-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
