// Stratochat's browser client: wires the API, the socket, the state and the views together.
// Plain ES modules, no build step; see docs/protocol.md ("Browser client") for what it relies on.

import { api, onUnauthorized, url } from "./js/api.js";
import { AuthView } from "./js/auth.js";
import { ChatView } from "./js/chatview.js";
import { Connection } from "./js/connection.js";
import { $, randomId, show } from "./js/dom.js";
import { FileSender } from "./js/files.js";
import { InboxView } from "./js/inbox.js";
import { store } from "./js/store.js";

const PAGE = 50;
const RECOVERY_PAGE = 200;
const ACK_TIMEOUT_MS = 15_000;
const TYPING_EVERY_MS = 2_500;
const TYPING_SHOWN_MS = 5_000;
const CHAT_ROUTE = /^#\/c\/([A-Za-z0-9_-]{1,64})$/;

const appScreen = $("#app-screen");
const banner = $("#offline-banner");
const bannerText = $("#offline-text");

let signedIn = false;
let syncing = Promise.resolve(); // recoveries run one after another
let lastTypingAt = 0;
const gapFills = new Map(); // chat_id -> promise of the running gap fill

const conn = new Connection({
  onFrame: (frame) => handleFrame(frame),
  onStatus: (status) => connectionStatus(status),
  onSessionEnded: () => sessionEnded("Your session has ended. Sign in again to continue."),
});

const inbox = new InboxView();
const chatView = new ChatView({
  send: (chat, text) => send(chat, text),
  retry: (chat, cmid) => retry(chat, cmid),
  loadOlder: (chat) => loadOlder(chat),
  typing: (chat) => typing(chat),
  seen: (chat) => markRead(chat),
  back: () => {
    location.hash = "#/";
  },
});
const auth = new AuthView(() => enter());
// Attach button: upload straight to storage, then the file message (it may also arrive on the socket).
const fileSender = new FileSender({
  onSent: (message) => {
    if (store.usage && message.file) {
      store.usage.messages_today = (store.usage.messages_today || 0) + 1;
      store.usage.storage_bytes = (store.usage.storage_bytes || 0) + message.file.size;
      inbox.renderMe();
    }
    receive(message, { live: false });
  },
});
chatView.setAttachHandler((chat) => fileSender.pick(chat));

// start ------------------------------------------------------------------------------------------
async function boot() {
  try {
    store.config = { ...store.config, ...(await api.config()) };
  } catch {
    // The defaults are fine until the server answers.
  }
  auth.setProviders(store.config.providers);
  chatView.configure(store.config);
  try {
    await enter();
  } catch (err) {
    showAuth(err.status === 401 ? "" : err.detail || "Cannot reach the server.");
  } finally {
    show($("#boot"), false);
  }
}

async function enter() {
  const me = await api.me();
  store.me = me.user;
  store.limits = me.limits;
  store.usage = me.usage;
  signedIn = true;
  auth.close();
  show(appScreen, true);
  inbox.renderMe();
  try {
    const { chats } = await api.chats();
    for (const chat of chats) store.upsert(chat);
  } catch (err) {
    if (err.status === 401) return;
    // The socket's ready frame runs the recovery, which loads the inbox again.
  }
  inbox.render();
  conn.start();
  route();
}

function showAuth(notice) {
  show(appScreen, false);
  banner.classList.remove("visible");
  bannerText.textContent = "";
  auth.open(notice);
}

function sessionEnded(notice) {
  if (!signedIn) return;
  signedIn = false;
  conn.stop();
  document.documentElement.dataset.connection = "signed-out";
  chatView.close();
  store.reset();
  gapFills.clear();
  inbox.render();
  showAuth(notice);
}

onUnauthorized(() => sessionEnded("Your session has ended. Sign in again to continue."));

$("#logout").addEventListener("click", async () => {
  conn.stop();
  if (store.config.providers && store.config.providers.length) {
    // GET /logout also signs the browser out at the identity provider when the session came from it.
    location.assign(url("logout"));
    return;
  }
  try {
    await api.logout();
  } catch {
    // Signed out locally either way; the server expires the session on its own.
  }
  sessionEnded("You signed out.");
});

// connection status ------------------------------------------------------------------------------
function connectionStatus(status) {
  // Exposed for styling and for tests that wait for the socket.
  document.documentElement.dataset.connection = status;
  if (!signedIn) return;
  if (status === "online") {
    updateBanner();
    return;
  }
  if (status === "offline") {
    // In-flight sends wait for the next connection (and are resent with the same client_msg_id).
    for (const chat of store.chats.values()) {
      for (const p of chat.pending.values()) {
        if (p.status !== "sending") continue;
        clearTimeout(p.timer);
        p.queued = true;
        if (chatView.isOpen(chat)) chatView.updatePending(p);
      }
    }
  }
  updateBanner(status);
}

function updateBanner(status = conn.ready ? "online" : "offline") {
  let text = "";
  if (!navigator.onLine) text = "You’re offline. Messages will be sent when you’re back.";
  else if (status !== "online" && conn.everReady) text = "Offline: connection lost. Reconnecting…";
  else if (status === "offline") text = "Offline: cannot reach the server. Retrying…";
  banner.classList.toggle("visible", Boolean(text));
  bannerText.textContent = text;
}

window.addEventListener("online", () => {
  updateBanner();
  conn.nudge();
});
window.addEventListener("offline", () => {
  // A socket may linger without a close event while the network is gone; sends would vanish into it.
  conn.drop();
  updateBanner();
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState !== "visible" || !signedIn) return;
  conn.nudge();
  const chat = openChat();
  if (chat) markRead(chat);
});

// frames -----------------------------------------------------------------------------------------
function handleFrame(frame) {
  switch (frame.type) {
    case "ready":
      if (frame.user) {
        store.me = { ...store.me, ...frame.user };
        inbox.renderMe();
      }
      requestRecovery();
      break;
    case "message":
      if (frame.message) receive(frame.message, { live: true });
      break;
    case "ack":
      if (frame.message) acked(frame);
      break;
    case "error":
      failed(frame);
      break;
    case "chat":
      if (frame.chat) {
        store.upsert(frame.chat);
        inbox.schedule();
        route();
        // A new chat's frame does not say who is online; the inbox does.
        refreshInbox();
      }
      break;
    case "typing":
      typingFrom(frame);
      break;
    case "read":
      readFrom(frame);
      break;
    case "presence":
      presence(frame);
      break;
    default:
      break;
  }
}

let inboxTimer = 0;

/** Reloads the inbox soon (debounced): member presence and counters from the server. */
function refreshInbox() {
  clearTimeout(inboxTimer);
  inboxTimer = setTimeout(async () => {
    try {
      const { chats } = await api.chats();
      for (const c of chats) store.upsert(c);
      inbox.schedule();
      chatView.header();
    } catch {
      // The next recovery reloads it.
    }
  }, 250);
}

let recoveryQueued = false;

/** Runs one recovery after the running one (if any); requests made meanwhile share it. */
function requestRecovery() {
  if (recoveryQueued) return;
  recoveryQueued = true;
  syncing = syncing.then(() => {
    recoveryQueued = false;
    return recover();
  });
}

/** After every (re)connect: compare each chat's last_seq and fetch what was missed, then resend. */
async function recover() {
  if (!signedIn) return;
  try {
    const [{ chats }, me] = await Promise.all([api.chats(), api.me()]);
    store.limits = me.limits;
    store.usage = me.usage;
    inbox.renderMe();
    const fills = [];
    for (const c of chats) {
      const chat = store.upsert(c);
      if (chat.loaded && chat.last_seq > chat.synced) fills.push(fillGap(chat));
    }
    inbox.render();
    chatView.header();
    await Promise.all(fills);
    route();
    const open = openChat();
    if (open) markRead(open);
  } catch (err) {
    if (err.status === 401) return;
    console.warn("stratochat: recovery failed", err);
  }
  for (const chat of store.chats.values()) {
    for (const p of chat.pending.values()) if (p.status === "sending") transmit(chat, p);
  }
}

/** Pages with after= from the last seq held without a hole until has_more is false. */
function fillGap(chat) {
  const running = gapFills.get(chat.chat_id);
  if (running) {
    running.again = true;
    return running.promise;
  }
  const job = { again: false, promise: null };
  job.promise = (async () => {
    try {
      do {
        job.again = false;
        let after = chat.synced;
        for (;;) {
          const page = await api.messages(chat.chat_id, { after, limit: RECOVERY_PAGE });
          for (const m of page.messages) receive(m, { live: false });
          if (page.messages.length) after = page.messages[page.messages.length - 1].seq;
          if (!page.has_more || !page.messages.length) break;
        }
        if (after > chat.synced) {
          chat.synced = after;
          chat.advance();
        }
      } while (job.again);
    } finally {
      gapFills.delete(chat.chat_id);
    }
  })();
  gapFills.set(chat.chat_id, job);
  return job.promise;
}

function receive(message, { live }) {
  const chat = store.chats.get(message.chat_id);
  if (!chat) {
    // A chat we have not heard of (its chat frame was missed): the inbox reload brings it.
    requestRecovery();
    return;
  }
  const gap = chat.loaded && message.seq > chat.synced + 1;
  if (!chat.add(message)) return;
  const mine = store.me && message.sender_id === store.me.user_id;
  if (mine && message.client_msg_id && chat.pending.has(message.client_msg_id)) {
    clearTimeout(chat.pending.get(message.client_msg_id).timer);
    chat.pending.delete(message.client_msg_id);
  }
  if (chat.typing.has(message.sender_id)) {
    clearTimeout(chat.typing.get(message.sender_id));
    chat.typing.delete(message.sender_id);
    if (chatView.isOpen(chat)) chatView.typing();
  }
  if (chatView.isOpen(chat)) chatView.insert(message);
  if (!mine) {
    if (visible(chat)) markRead(chat);
    else if (live) chat.unread_count += 1;
  }
  inbox.schedule();
  if (gap && live) fillGap(chat);
}

function acked(frame) {
  const message = frame.message;
  const chat = store.chats.get(message.chat_id);
  if (!chat) return;
  const p = chat.pending.get(frame.client_msg_id);
  if (p && store.usage && !p.counted) {
    p.counted = true;
    store.usage.messages_today = (store.usage.messages_today || 0) + 1;
    inbox.renderMe();
  }
  if (chat.messages.has(message.seq)) {
    // Already recovered through history; the pending row still goes.
    if (p) {
      clearTimeout(p.timer);
      chat.pending.delete(p.cmid);
    }
    if (chatView.isOpen(chat)) chatView.insert(message);
    return;
  }
  receive(message, { live: false });
}

function failed(frame) {
  if (typeof frame.client_msg_id !== "string") {
    if (frame.code) console.warn(`stratochat: ${frame.code}: ${frame.detail}`);
    return;
  }
  for (const chat of store.chats.values()) {
    const p = chat.pending.get(frame.client_msg_id);
    if (!p) continue;
    clearTimeout(p.timer);
    if (frame.code === "rate_limited" && typeof frame.retry_after === "number" && !p.autoRetried) {
      // A burst limit: wait as told and resend once (same client_msg_id) before showing a failure.
      p.autoRetried = true;
      p.timer = setTimeout(() => transmit(chat, p), Math.min(30, Math.max(0.2, frame.retry_after)) * 1000);
      continue;
    }
    p.status = "failed";
    p.queued = false;
    p.error = errorText(frame);
    if (chatView.isOpen(chat)) chatView.updatePending(p);
  }
}

function errorText(frame) {
  if (frame.code === "rate_limited") return "you are sending too fast. Try again in a moment.";
  if (frame.code === "quota_exceeded") return frame.detail || "your daily message limit is reached.";
  return frame.detail || frame.code || "unknown error";
}

function typingFrom({ chat_id, user_id }) {
  const chat = store.chats.get(chat_id);
  if (!chat || (store.me && user_id === store.me.user_id)) return;
  clearTimeout(chat.typing.get(user_id));
  chat.typing.set(
    user_id,
    setTimeout(() => {
      chat.typing.delete(user_id);
      if (chatView.isOpen(chat)) chatView.typing();
      inbox.schedule();
    }, TYPING_SHOWN_MS),
  );
  if (chatView.isOpen(chat)) chatView.typing();
  inbox.schedule();
}

function readFrom({ chat_id, user_id, seq }) {
  const chat = store.chats.get(chat_id);
  if (!chat || typeof seq !== "number") return;
  if (store.me && user_id === store.me.user_id) {
    // Our own marker (this or another device of ours) moved.
    chat.readSent = Math.max(chat.readSent, seq);
    chat.unread_count = Math.max(0, Math.min(chat.unread_count, chat.last_seq - seq));
    inbox.schedule();
    return;
  }
  chat.reads.set(user_id, Math.max(chat.reads.get(user_id) || 0, seq));
  if (chatView.isOpen(chat)) chatView.refreshStatuses();
}

function presence({ user_id, online }) {
  let changed = false;
  for (const chat of store.chats.values()) {
    for (const m of chat.members) {
      if (m.user_id === user_id && m.online !== online) {
        m.online = Boolean(online);
        changed = true;
      }
    }
  }
  if (changed) {
    inbox.schedule();
    chatView.header();
  }
}

// actions ----------------------------------------------------------------------------------------
function send(chat, text) {
  if (!text.trim()) return false;
  const p = { cmid: randomId(), content: text, status: "sending", queued: false, error: null, createdAt: new Date().toISOString(), timer: 0, counted: false };
  chat.pending.set(p.cmid, p);
  chatView.addPending(p);
  transmit(chat, p);
  lastTypingAt = 0;
  return true;
}

/** Sends (or resends) a pending message; the same client_msg_id every time, so a retry never duplicates. */
function transmit(chat, p) {
  clearTimeout(p.timer);
  p.status = "sending";
  p.error = null;
  const sent = conn.send({ type: "send", chat_id: chat.chat_id, content: p.content, client_msg_id: p.cmid });
  p.queued = !sent;
  if (sent) {
    p.timer = setTimeout(() => {
      p.status = "failed";
      p.error = "no answer from the server.";
      if (chatView.isOpen(chat)) chatView.updatePending(p);
    }, ACK_TIMEOUT_MS);
  }
  if (chatView.isOpen(chat)) chatView.updatePending(p);
}

function retry(chat, cmid) {
  const p = chat && chat.pending.get(cmid);
  if (!p) return;
  p.autoRetried = false;
  transmit(chat, p);
}

function typing(chat) {
  const now = Date.now();
  if (now - lastTypingAt < TYPING_EVERY_MS) return;
  if (conn.send({ type: "typing", chat_id: chat.chat_id })) lastTypingAt = now;
}

function visible(chat) {
  return signedIn && chatView.isOpen(chat) && document.visibilityState === "visible" && !appScreen.hidden;
}

/** Moves the read marker to the newest message while the chat is on screen. */
function markRead(chat) {
  if (!visible(chat)) return;
  if (chat.unread_count === 0 && chat.last_seq <= chat.readSent) return;
  const seq = chat.last_seq;
  chat.readSent = seq;
  chat.unread_count = 0;
  inbox.schedule();
  if (seq <= 0) return;
  if (!conn.send({ type: "read", chat_id: chat.chat_id, seq })) {
    api.markRead(chat.chat_id, seq).catch(() => {
      chat.readSent = 0;
    });
  }
}

async function loadLatest(chat) {
  if (chat.loading) return chat.loading;
  chat.loading = (async () => {
    try {
      const page = await api.messages(chat.chat_id, { limit: PAGE });
      for (const m of page.messages) receive(m, { live: false });
      chat.loaded = true;
      chat.hasMoreBefore = page.has_more;
      const top = page.messages.length ? page.messages[page.messages.length - 1].seq : 0;
      chat.synced = Math.max(chat.synced, top);
      chat.advance();
      if (chatView.isOpen(chat)) {
        // Messages that arrived live before the page are already in the map: draw them too.
        for (const m of chat.sortedMessages()) chatView.insert(m);
        chatView.updateTop();
        chatView.scrollToBottom();
        markRead(chat);
      }
      if (chat.last_seq > chat.synced) await fillGap(chat);
      if (chatView.isOpen(chat) && chatView.nearTop()) loadOlder(chat);
    } catch (err) {
      console.warn("stratochat: cannot load messages", err);
    } finally {
      chat.loading = null;
    }
  })();
  return chat.loading;
}

async function loadOlder(chat) {
  if (!chat.loaded || !chat.hasMoreBefore || chat.loadingOlder) return;
  chat.loadingOlder = true;
  chatView.updateTop();
  try {
    const before = chat.minSeq;
    const page = await api.messages(chat.chat_id, { before, limit: PAGE });
    for (const m of page.messages) chat.add(m);
    chat.hasMoreBefore = page.has_more;
    if (chatView.isOpen(chat)) chatView.prepend(page.messages);
  } catch (err) {
    console.warn("stratochat: cannot load older messages", err);
  } finally {
    chat.loadingOlder = false;
  }
  if (chatView.isOpen(chat)) {
    chatView.updateTop();
    // Still at the top (a short page, a tall screen): keep going.
    if (chatView.nearTop()) requestAnimationFrame(() => loadOlder(chat));
  }
}

// routing ----------------------------------------------------------------------------------------
function openChat() {
  return store.openChatId ? store.chats.get(store.openChatId) || null : null;
}

function route() {
  if (!signedIn) return;
  const match = location.hash.match(CHAT_ROUTE);
  const chat = match ? store.chats.get(match[1]) : null;
  if (chat) {
    const fresh = store.openChatId !== chat.chat_id;
    store.openChatId = chat.chat_id;
    appScreen.classList.add("chat-open");
    chatView.open(chat, { focus: fresh && matchMedia("(pointer: fine)").matches });
    if (fresh) inbox.render();
    // Also retries a first page that failed to load (loadLatest shares a load in flight).
    if (!chat.loaded) loadLatest(chat);
    else if (fresh) markRead(chat);
    return;
  }
  if (store.openChatId !== null) {
    const previous = store.openChatId;
    store.openChatId = null;
    appScreen.classList.remove("chat-open");
    chatView.close();
    inbox.render();
    const link = document.querySelector(`#chat-list [data-chat-id="${CSS.escape(previous)}"]`);
    if (link && !match) link.focus({ preventScroll: true });
  }
}

window.addEventListener("hashchange", () => route());

// new chats --------------------------------------------------------------------------------------
function dialog(id, openButton, submit) {
  const dlg = $(id);
  const form = dlg.querySelector("form");
  const error = form.querySelector(".form-error");
  $(openButton).addEventListener("click", () => {
    form.reset();
    error.textContent = "";
    dlg.showModal();
  });
  for (const b of dlg.querySelectorAll("[data-close]")) b.addEventListener("click", () => dlg.close());
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const chat = await submit(form);
      dlg.close();
      location.hash = `#/c/${chat.chat_id}`;
    } catch (err) {
      error.textContent = err.detail || err.message || "Something went wrong.";
    } finally {
      button.disabled = false;
    }
  });
}

function usernames(value) {
  return value
    .split(/[\s,;]+/)
    .map((u) => u.replace(/^@/, "").trim())
    .filter(Boolean);
}

dialog("#direct-dialog", "#new-chat", async (form) => {
  const names = usernames(form.elements.username.value);
  if (names.length !== 1) throw new Error("Enter one username.");
  const { chat } = await api.createChat(names);
  return store.upsert(chat);
});

dialog("#group-dialog", "#new-group", async (form) => {
  const title = form.elements.title.value.trim();
  const names = usernames(form.elements.members.value);
  if (!title) throw new Error("Give the group a title.");
  if (!names.length) throw new Error("Add at least one member.");
  const { chat } = await api.createChat(names, title);
  return store.upsert(chat);
});

boot();
