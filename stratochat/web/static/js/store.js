// Client state: the signed-in user, the inbox, and each chat's messages (deduplicated by seq).

export class ChatState {
  constructor(chat) {
    this.messages = new Map(); // seq -> Message
    this.pending = new Map(); // client_msg_id -> {cmid, content, status, error, createdAt, timer}
    this.loaded = false; // the latest page has been fetched
    this.hasMoreBefore = true;
    this.loadingOlder = false;
    // Every seq up to `synced` is held (once loaded); a message above synced + 1 reveals a gap to fill.
    this.synced = 0;
    this.typing = new Map(); // user_id -> timer
    this.reads = new Map(); // user_id -> seq (other members' read markers seen live)
    this.readSent = 0;
    this.chat_id = chat.chat_id;
    this.update(chat);
  }

  /** Takes the server's view of the chat; counters never move backwards from a stale copy. */
  update(chat) {
    this.is_group = Boolean(chat.is_group);
    this.title = chat.title ?? null;
    this.members = Array.isArray(chat.members) ? chat.members : [];
    this.created_at = chat.created_at ?? this.created_at ?? new Date().toISOString();
    const seq = Number(chat.last_seq) || 0;
    if (this.last_seq === undefined || seq >= this.last_seq) {
      this.last_seq = seq;
      this.last_message_content = chat.last_message_content ?? null;
      this.last_message_timestamp = chat.last_message_timestamp ?? null;
    }
    if (typeof chat.unread_count === "number") {
      // An inbox snapshot taken before our own read marker moved must not bring a cleared badge back.
      const sinceRead = Math.max(0, this.last_seq - (this.readSent || 0));
      this.unread_count = Math.min(chat.unread_count, sinceRead);
    }
    this.unread_count ??= 0;
  }

  /** Adds a message once; returns false for a seq already held. */
  add(message) {
    if (this.messages.has(message.seq)) return false;
    this.messages.set(message.seq, message);
    if (message.seq > this.last_seq) {
      this.last_seq = message.seq;
      // As the server's preview: a file message without a caption shows its filename.
      this.last_message_content = message.file && !(message.content || "").trim() ? message.file.filename : message.content;
      this.last_message_timestamp = message.created_at;
    }
    this.advance();
    return true;
  }

  advance() {
    while (this.messages.has(this.synced + 1)) this.synced += 1;
  }

  get minSeq() {
    let min = Infinity;
    for (const seq of this.messages.keys()) if (seq < min) min = seq;
    return min;
  }

  get maxSeq() {
    let max = 0;
    for (const seq of this.messages.keys()) if (seq > max) max = seq;
    return max;
  }

  sortedMessages() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  get sortKey() {
    return this.last_message_timestamp || this.created_at || "";
  }
}

export const store = {
  me: null,
  config: { providers: [], max_message_chars: 4000, features: { files: false } },
  limits: null,
  usage: null,
  chats: new Map(),
  openChatId: null,

  reset() {
    for (const chat of this.chats.values()) {
      for (const p of chat.pending.values()) clearTimeout(p.timer);
      for (const t of chat.typing.values()) clearTimeout(t);
    }
    this.me = null;
    this.limits = null;
    this.usage = null;
    this.chats = new Map();
    this.openChatId = null;
  },

  upsert(chat) {
    let state = this.chats.get(chat.chat_id);
    if (state) state.update(chat);
    else {
      state = new ChatState(chat);
      this.chats.set(chat.chat_id, state);
    }
    return state;
  },

  inbox() {
    return [...this.chats.values()].sort((a, b) => (a.sortKey < b.sortKey ? 1 : a.sortKey > b.sortKey ? -1 : 0));
  },

  member(chat, userId) {
    return chat.members.find((m) => m.user_id === userId);
  },

  /** The other member of a direct chat (or, for a chat with oneself, oneself). */
  other(chat) {
    const me = this.me && this.me.user_id;
    return chat.members.find((m) => m.user_id !== me) || chat.members[0] || null;
  },

  title(chat) {
    if (!chat.is_group) return this.other(chat)?.username ?? "Direct chat";
    if (chat.title) return chat.title;
    const me = this.me && this.me.user_id;
    return chat.members
      .filter((m) => m.user_id !== me)
      .map((m) => m.username)
      .join(", ");
  },

  username(chat, userId) {
    if (this.me && userId === this.me.user_id) return this.me.username;
    return this.member(chat, userId)?.username ?? "someone";
  },

  totalUnread() {
    let n = 0;
    for (const chat of this.chats.values()) n += chat.unread_count;
    return n;
  },
};
