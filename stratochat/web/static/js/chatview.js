// The open chat: header, the message log (grouped by day and sender, infinite scroll upwards),
// pending sends with their state, the typing line and the composer.

import { $, fillAvatar, h, show } from "./dom.js";
import { dayKey, dayLabel, fullDate, timeOfDay } from "./format.js";
import { messageBody } from "./messages.js";
import { store } from "./store.js";

const RUN_GAP_MS = 5 * 60_000; // a pause this long starts a new run of bubbles from the same sender
const NEAR_TOP_PX = 300;
const NEAR_BOTTOM_PX = 120;

export class ChatView {
  /** ctl: send(chat, text) -> bool, retry(chat, cmid), loadOlder(chat), typing(chat), seen(chat), back(). */
  constructor(ctl) {
    this.ctl = ctl;
    this.view = $("#chat-view");
    this.empty = $("#chat-empty");
    this.title = $("#chat-title");
    this.subtitle = $("#chat-subtitle");
    this.avatar = $("#chat-avatar");
    this.log = $("#log");
    this.top = $("#log-top");
    this.items = $("#log-items");
    this.typingLine = $("#typing");
    this.jump = $("#jump");
    this.form = $("#composer");
    this.input = $("#message-input");
    this.attach = $("#attach");
    this.chat = null;
    this.filesEnabled = false;
    this.attachHandler = null;
    this.attachWired = false;
    this.entries = []; // confirmed messages by seq, then pending sends in the order they were written
    this.confirmed = 0;
    this.bySeq = new Map();
    this.byCmid = new Map();

    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => {
      if (this.chat && this.input.value.trim()) this.ctl.typing(this.chat);
    });
    this.log.addEventListener(
      "scroll",
      () => {
        if (!this.chat) return;
        if (this.log.scrollTop < NEAR_TOP_PX) this.ctl.loadOlder(this.chat);
        if (this.nearBottom()) {
          show(this.jump, false);
          this.ctl.seen(this.chat);
        }
      },
      { passive: true },
    );
    this.jump.addEventListener("click", () => {
      this.scrollToBottom();
      show(this.jump, false);
      this.input.focus();
    });
    $("#back").addEventListener("click", () => this.ctl.back());
  }

  configure(config) {
    this.input.maxLength = config.max_message_chars || 4000;
    this.filesEnabled = Boolean(config.features && config.features.files);
    this.updateAttach();
  }

  /**
   * The slot for file uploads: handler(chat) runs when the attach button is pressed. The button shows
   * only while the server has the files feature on and a handler is set.
   */
  setAttachHandler(handler) {
    this.attachHandler = handler;
    if (!this.attachWired) {
      this.attachWired = true;
      this.attach.addEventListener("click", () => {
        if (this.chat && this.attachHandler) this.attachHandler(this.chat);
      });
    }
    this.updateAttach();
  }

  updateAttach() {
    const ready = Boolean(this.filesEnabled && this.attachHandler);
    show(this.attach, ready);
    this.attach.disabled = !ready;
  }

  open(chat, { focus = false } = {}) {
    const same = this.chat === chat;
    this.chat = chat;
    show(this.empty, false);
    show(this.view, true);
    this.header();
    this.typing();
    if (!same) {
      this.input.value = "";
      this.entries = [];
      this.confirmed = 0;
      this.bySeq.clear();
      this.byCmid.clear();
      this.items.replaceChildren();
      for (const m of chat.sortedMessages()) this.insert(m);
      for (const p of chat.pending.values()) this.addPending(p);
      this.updateTop();
      show(this.jump, false);
      this.scrollToBottom();
    }
    if (focus) this.input.focus({ preventScroll: true });
  }

  close() {
    this.chat = null;
    show(this.view, false);
    show(this.empty, true);
    this.items.replaceChildren();
    this.entries = [];
    this.confirmed = 0;
    this.bySeq.clear();
    this.byCmid.clear();
  }

  isOpen(chat) {
    return this.chat !== null && this.chat === chat;
  }

  submit() {
    if (!this.chat) return;
    const text = this.input.value;
    if (this.ctl.send(this.chat, text)) {
      this.input.value = "";
      this.input.focus();
    }
  }

  // header and typing -------------------------------------------------------------------------------
  header() {
    const chat = this.chat;
    if (!chat) return;
    this.title.textContent = store.title(chat);
    if (chat.is_group) {
      const online = chat.members.filter((m) => m.online).length;
      fillAvatar(this.avatar, chat.chat_id, store.title(chat));
      this.subtitle.textContent = `${chat.members.length} members · ${online} online`;
    } else {
      const other = store.other(chat);
      fillAvatar(this.avatar, other?.user_id ?? chat.chat_id, other?.username, Boolean(other?.online));
      this.subtitle.textContent = other?.online ? "Online" : "Offline";
    }
  }

  typing() {
    const chat = this.chat;
    if (!chat) return;
    const names = [...chat.typing.keys()].map((id) => store.username(chat, id));
    let text = "";
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = "Several people are typing…";
    this.typingLine.textContent = text;
    this.typingLine.classList.toggle("active", Boolean(text));
  }

  updateTop() {
    const chat = this.chat;
    if (!chat) return;
    if (chat.loaded && !chat.hasMoreBefore) {
      const who = chat.is_group ? `of ${store.title(chat)}` : `with ${store.title(chat)}`;
      this.top.replaceChildren(h("p", { class: "log-start", text: `This is the start of your conversation ${who}.` }));
    } else if (chat.loadingOlder || !chat.loaded) {
      this.top.replaceChildren(
        h("span", { class: "spinner spinner-sm", "aria-hidden": "true" }),
        h("span", { class: "sr-only", text: "Loading earlier messages" }),
      );
    } else {
      this.top.replaceChildren();
    }
  }

  // the log -----------------------------------------------------------------------------------------
  nearBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < NEAR_BOTTOM_PX;
  }

  nearTop() {
    return this.log.scrollTop < NEAR_TOP_PX;
  }

  scrollToBottom() {
    this.log.scrollTop = this.log.scrollHeight;
  }

  /** Inserts a confirmed message at its seq (once); a pending send with its client_msg_id becomes it. */
  insert(message) {
    if (this.bySeq.has(message.seq)) return;
    const stick = this.nearBottom();
    const mine = store.me && message.sender_id === store.me.user_id;
    const pendingEntry = mine && message.client_msg_id ? this.byCmid.get(message.client_msg_id) : undefined;
    let lo = 0;
    let hi = this.confirmed;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.entries[mid].seq < message.seq) lo = mid + 1;
      else hi = mid;
    }
    let entry;
    if (pendingEntry && lo === this.confirmed && this.entries[lo] === pendingEntry) {
      // Confirmed in place: the row stays where it is, so it is not announced a second time.
      entry = pendingEntry;
      this.byCmid.delete(message.client_msg_id);
      Object.assign(entry, { seq: message.seq, at: message.created_at, message, pending: null });
      entry.row.classList.remove("pending", "failed");
      entry.row.dataset.seq = String(message.seq);
      delete entry.row.dataset.cmid;
      entry.note.replaceChildren();
      this.confirmed += 1;
    } else {
      if (pendingEntry) this.removeEntry(pendingEntry);
      entry = this.entry(message, null);
      this.entries.splice(lo, 0, entry);
      this.confirmed += 1;
      const next = this.entries[lo + 1];
      this.items.insertBefore(entry.row, next ? next.row : null);
    }
    this.bySeq.set(message.seq, entry);
    const index = this.entries.indexOf(entry);
    this.decorate(index);
    this.decorate(index + 1);
    this.status(entry);
    const atEnd = index === this.confirmed - 1;
    if (atEnd && (stick || mine)) this.scrollToBottom();
    else if (atEnd && !stick) show(this.jump, true);
  }

  /** Older messages above the top: the reader's view stays where it was. */
  prepend(messages) {
    const before = this.log.scrollHeight;
    const top = this.log.scrollTop;
    for (const m of messages) if (!this.bySeq.has(m.seq)) this.insert(m);
    this.log.scrollTop = top + (this.log.scrollHeight - before);
  }

  addPending(p) {
    if (this.byCmid.has(p.cmid)) return;
    const entry = this.entry(null, p);
    this.entries.push(entry);
    this.items.append(entry.row);
    this.byCmid.set(p.cmid, entry);
    this.decorate(this.entries.length - 1);
    this.updatePending(p);
    this.scrollToBottom();
  }

  updatePending(p) {
    const entry = this.byCmid.get(p.cmid);
    if (!entry) return;
    const failed = p.status === "failed";
    entry.row.classList.toggle("failed", failed);
    entry.row.classList.toggle("pending", !failed);
    if (failed) {
      entry.note.replaceChildren(
        h("span", { text: `Not sent${p.error ? `: ${p.error}` : "."}` }),
        h("button", { class: "btn btn-link retry", type: "button", onclick: () => this.ctl.retry(this.chat, p.cmid) }, "Retry"),
      );
    } else {
      entry.note.replaceChildren();
    }
    this.status(entry);
  }

  removeEntry(entry) {
    const index = this.entries.indexOf(entry);
    if (index < 0) return;
    this.entries.splice(index, 1);
    if (entry.pending) this.byCmid.delete(entry.pending.cmid);
    else this.confirmed -= 1;
    entry.row.remove();
    this.decorate(index);
  }

  entry(message, pending) {
    const mine = pending !== null || (store.me && message.sender_id === store.me.user_id);
    const senderId = pending ? store.me.user_id : message.sender_id;
    const content = pending ? { message_type: "text", content: pending.content } : message;
    const row = h("div", { class: `row ${mine ? "mine" : "theirs"}` });
    if (pending) row.dataset.cmid = pending.cmid;
    else row.dataset.seq = String(message.seq);
    const at = pending ? pending.createdAt : message.created_at;
    const time = h("time", { datetime: at, title: fullDate(at), text: timeOfDay(at) });
    const tick = h("span", { class: "tick" });
    const who = mine ? "You" : store.username(this.chat, senderId);
    const bubble = h(
      "div",
      { class: "bubble" },
      h("span", { class: "sr-only", text: `${who}: ` }),
      messageBody(content),
      h("span", { class: "meta" }, time, mine ? tick : null),
    );
    const sender = h("div", { class: "sender", text: who });
    const note = h("div", { class: "note" });
    const body = h("div", { class: "msg" }, bubble, note);
    const day = h("div", { class: "day" }, h("span"));
    row.append(body);
    return { row, body, bubble, sender, note, day, tick, seq: message ? message.seq : null, at, senderId, message, pending, mine };
  }

  decorate(index) {
    const entry = this.entries[index];
    if (!entry) return;
    const prev = this.entries[index - 1];
    const newDay = !prev || dayKey(prev.at) !== dayKey(entry.at);
    if (newDay) {
      entry.day.firstChild.textContent = dayLabel(entry.at);
      if (entry.day.parentNode !== entry.row) entry.row.prepend(entry.day);
    } else if (entry.day.parentNode) {
      entry.day.remove();
    }
    const run =
      prev && !newDay && prev.senderId === entry.senderId && new Date(entry.at) - new Date(prev.at) < RUN_GAP_MS;
    entry.row.classList.toggle("cont", Boolean(run));
    const named = this.chat && this.chat.is_group && !entry.mine && !run;
    if (named && entry.sender.parentNode !== entry.body) entry.body.prepend(entry.sender);
    else if (!named && entry.sender.parentNode) entry.sender.remove();
  }

  /** The state of one's own message: sending, failed, sent, or seen by the other member of a direct chat. */
  status(entry) {
    if (!entry.mine) return;
    let label;
    let cls;
    if (entry.pending) {
      const p = entry.pending;
      label = p.status === "failed" ? "Not sent" : p.queued ? "Waiting for connection" : "Sending";
      cls = p.status === "failed" ? "tick tick-failed" : "tick tick-sending";
    } else if (this.seenBy(entry.seq)) {
      label = "Seen";
      cls = "tick tick-seen";
    } else {
      label = "Sent";
      cls = "tick tick-sent";
    }
    entry.tick.className = cls;
    entry.tick.replaceChildren(h("span", { class: "sr-only", text: label }));
    entry.tick.title = label;
  }

  seenBy(seq) {
    const chat = this.chat;
    if (!chat) return false;
    for (const [userId, readSeq] of chat.reads) {
      if (userId !== store.me.user_id && readSeq >= seq) return true;
    }
    return false;
  }

  refreshStatuses() {
    for (let i = 0; i < this.confirmed; i += 1) this.status(this.entries[i]);
  }
}
