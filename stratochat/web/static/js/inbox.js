// The inbox (chats by last message, preview, time, unread badge, presence) and the account footer
// (tier badge and quota meters from /api/me).

import { $, fillAvatar, h, show } from "./dom.js";
import { bytes, inboxTime, number } from "./format.js";
import { store } from "./store.js";

export class InboxView {
  constructor() {
    this.list = $("#chat-list");
    this.empty = $("#inbox-empty");
    this.frame = 0;
  }

  /** Re-renders on the next frame, once however many events arrived. */
  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    if (this.frame) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
    }
    const focused = document.activeElement && document.activeElement.closest("#chat-list [data-chat-id]");
    const focusedId = focused ? focused.dataset.chatId : null;
    const chats = store.inbox();
    const items = chats.map((chat) => h("li", null, this.item(chat)));
    this.list.replaceChildren(...items);
    show(this.empty, chats.length === 0);
    if (focusedId) {
      const again = this.list.querySelector(`[data-chat-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus({ preventScroll: true });
    }
    const unread = store.totalUnread();
    document.title = unread > 0 ? `(${unread}) Stratochat` : "Stratochat";
  }

  item(chat) {
    const title = store.title(chat);
    const other = chat.is_group ? null : store.other(chat);
    const avatar = h("span", { class: "avatar", "aria-hidden": "true" });
    fillAvatar(avatar, other ? other.user_id : chat.chat_id, title, other ? Boolean(other.online) : undefined);

    const typingIds = [...chat.typing.keys()];
    let preview;
    if (typingIds.length) {
      const who = chat.is_group ? `${store.username(chat, typingIds[0])} is typing…` : "typing…";
      preview = h("span", { class: "preview typing-preview", text: who });
    } else if (chat.last_message_content !== null && chat.last_message_content !== undefined) {
      const last = chat.messages.get(chat.last_seq);
      const mine = last && store.me && last.sender_id === store.me.user_id;
      preview = h("span", { class: "preview" }, mine ? h("span", { class: "you", text: "You: " }) : null, chat.last_message_content);
    } else {
      preview = h("span", { class: "preview muted", text: chat.is_group ? "Group created" : "No messages yet" });
    }

    const when = chat.last_message_timestamp || chat.created_at;
    const badge =
      chat.unread_count > 0
        ? h("span", {
            class: "badge",
            role: "img",
            "aria-label": `${chat.unread_count} unread`,
            text: chat.unread_count > 99 ? "99+" : String(chat.unread_count),
          })
        : null;
    const presence = other ? h("span", { class: "sr-only", text: other.online ? " (online)" : " (offline)" }) : null;
    const open = store.openChatId === chat.chat_id;
    return h(
      "a",
      {
        class: `chat-item${chat.unread_count > 0 ? " unread" : ""}`,
        href: `#/c/${encodeURIComponent(chat.chat_id)}`,
        dataset: { chatId: chat.chat_id },
        "aria-current": open ? "true" : null,
      },
      avatar,
      h(
        "span",
        { class: "chat-main" },
        h(
          "span",
          { class: "line" },
          h("span", { class: "name" }, title, presence),
          h("time", { class: "when", datetime: when, text: inboxTime(when) }),
        ),
        h("span", { class: "line" }, preview, badge),
      ),
    );
  }

  renderMe() {
    const me = store.me;
    if (!me) return;
    fillAvatar($("#me-avatar"), me.user_id, me.username);
    $("#me-name").textContent = me.username;
    const tier = $("#me-tier");
    tier.textContent = me.is_premium ? "Premium" : "Free";
    tier.classList.toggle("premium", Boolean(me.is_premium));
    const limits = store.limits || {};
    const usage = store.usage || {};
    const daily = limits.daily_messages;
    const used = usage.messages_today ?? 0;
    meter(
      $("#quota-messages"),
      $("#quota-messages-text"),
      used,
      daily,
      daily === null || daily === undefined ? `${number(used)} · unlimited` : `${number(used)} / ${number(daily)}`,
    );
    const stored = usage.storage_bytes ?? 0;
    meter(
      $("#quota-storage"),
      $("#quota-storage-text"),
      stored,
      limits.storage_bytes,
      `${bytes(stored)} / ${bytes(limits.storage_bytes ?? 0)}`,
    );
  }
}

function meter(el, textEl, value, max, text) {
  textEl.textContent = text;
  const unlimited = max === null || max === undefined;
  el.classList.toggle("unlimited", unlimited);
  el.setAttribute("aria-valuenow", String(value));
  el.setAttribute("aria-valuetext", text);
  if (unlimited) {
    el.removeAttribute("aria-valuemax");
    el.style.setProperty("--fill", "0");
    return;
  }
  el.setAttribute("aria-valuemax", String(max));
  const ratio = max > 0 ? Math.min(1, value / max) : 1;
  // CSSOM, not a style attribute: the CSP allows the former only.
  el.style.setProperty("--fill", String(ratio));
  el.classList.toggle("high", ratio >= 0.9);
}
