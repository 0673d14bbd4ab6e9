// The REST side of the protocol. Every URL is resolved against the page's own location, so the client
// works unchanged on http or https, any host and port, and under a path prefix behind a proxy.

const base = new URL(".", location.href);

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

let unauthorizedHandler = () => {};

/** Called when a signed-in request answers 401: the session ended. */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

export function url(path) {
  return new URL(path, base).href;
}

export function wsUrl() {
  const u = new URL("ws", base);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  return u.href;
}

export async function request(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url(path), init);
  } catch {
    throw new ApiError(0, "network", "Cannot reach the server. Check your connection.");
  }
  if (res.status === 204) return null;
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(res.status, err.code || "error", err.detail || `Request failed (${res.status}).`);
    if (res.status === 401 && !path.startsWith("api/auth/")) unauthorizedHandler(e);
    throw e;
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body ?? {});

export const api = {
  config: () => get("api/config"),
  me: () => get("api/me"),
  login: (username, password) => post("api/auth/login", { username, password }),
  register: (username, password) => post("api/auth/register", { username, password }),
  logout: () => post("api/auth/logout"),
  chats: () => get("api/chats"),
  createChat: (members, title) => post("api/chats", title ? { members, title } : { members }),
  messages: (chatId, params) => get(`api/chats/${encodeURIComponent(chatId)}/messages?${new URLSearchParams(params)}`),
  markRead: (chatId, seq) => post(`api/chats/${encodeURIComponent(chatId)}/read`, { seq }),
  fileUrl: (fileId) => url(`api/files/${encodeURIComponent(fileId)}`),
};

/** GET /api/me answers: true signed in, false signed out, null unknown (server unreachable). */
export async function sessionAlive() {
  try {
    const res = await fetch(url("api/me"), { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (res.status === 401) return false;
    return res.ok ? true : null;
  } catch {
    return null;
  }
}
