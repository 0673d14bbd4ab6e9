// DOM helpers. User data only ever reaches the page as text nodes or validated URLs: nothing here
// parses HTML, and the page's CSP forbids inline scripts and style attributes anyway.

/** Creates an element. props: class, text, dataset, on<event>, or attributes; children: nodes or strings (as text). */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key === "dataset") Object.assign(el.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function show(el, visible) {
  el.hidden = !visible;
}

const URL_RE = /\bhttps?:\/\/[^\s<>"']+/gi;
const TRAILING = /[.,;:!?)\]}'"]+$/;

/** Message text as a fragment: text nodes, and links for http(s) URLs (checked with the URL parser). */
export function richText(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    let raw = match[0];
    const trail = raw.match(TRAILING);
    if (trail) raw = raw.slice(0, -trail[0].length);
    let url = null;
    try {
      url = new URL(raw);
    } catch {
      url = null;
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) continue;
    frag.append(document.createTextNode(text.slice(last, match.index)));
    frag.append(h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer nofollow", text: raw }));
    last = match.index + raw.length;
  }
  frag.append(document.createTextNode(text.slice(last)));
  return frag;
}

const PALETTE = 8;

/** A stable colour class for an id (CSS classes only: inline styles are blocked by the CSP). */
export function colorClass(id) {
  let hash = 0;
  for (const ch of String(id)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `c${hash % PALETTE}`;
}

export function initials(name) {
  const clean = String(name || "?").replace(/[^\p{L}\p{N}]+/gu, " ").trim();
  const parts = clean.split(" ").filter(Boolean);
  if (parts.length === 0) return "?";
  if (parts.length === 1) return [...parts[0]].slice(0, 2).join("").toUpperCase();
  return ([...parts[0]][0] + [...parts[1]][0]).toUpperCase();
}

/** Fills an avatar span: initials on a colour from the id, and an optional presence dot. */
export function fillAvatar(el, id, name, online) {
  el.className = el.className
    .split(" ")
    .filter((c) => c && !/^c\d$/.test(c))
    .concat(colorClass(id))
    .join(" ");
  el.replaceChildren(document.createTextNode(initials(name)));
  if (online !== undefined && online !== null) {
    el.append(h("span", { class: `dot ${online ? "dot-on" : "dot-off"}` }));
  }
}

/** A random id for client_msg_id. crypto.randomUUID needs a secure context; plain-HTTP LAN pages have none. */
export function randomId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
