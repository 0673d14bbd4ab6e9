// The WebSocket: connect, reconnect with exponential backoff and jitter, heartbeat, and the
// "session ended" close code (4401), after which it never reconnects.

import { sessionAlive, wsUrl } from "./api.js";

export const SESSION_ENDED = 4401;
const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15_000;
const PING_EVERY_MS = 25_000;
const DEAD_AFTER_MS = 60_000;

export class Connection {
  /**
   * handlers: onFrame(frame), onStatus("connecting" | "online" | "offline"), onSessionEnded().
   * "online" means the server's ready frame arrived, not merely that the socket opened.
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.ws = null;
    this.ready = false;
    this.stopped = true;
    this.attempt = 0;
    this.timer = null;
    this.heartbeat = null;
    this.lastFrameAt = 0;
    this.retryAt = 0;
    this.everReady = false;
  }

  start() {
    this.stopped = false;
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.detach(1000, "bye");
  }

  /** Reconnect now instead of waiting for the backoff (the browser came back online, the tab woke up). */
  nudge() {
    if (this.stopped || this.ws) return;
    clearTimeout(this.timer);
    this.attempt = 0;
    this.connect();
  }

  /** The browser says it went offline: the socket is as good as dead, so stop trusting it now. */
  drop() {
    if (this.stopped || !this.ws) return;
    this.detach(4000, "offline");
    this.status("offline");
    this.schedule();
  }

  send(frame) {
    if (!this.ready || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  connect() {
    if (this.stopped || this.ws) return;
    this.status("connecting");
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch {
      this.schedule();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (event) => {
      this.lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (!frame || typeof frame.type !== "string") return;
      if (frame.type === "ready") {
        this.ready = true;
        this.everReady = true;
        this.attempt = 0;
        this.startHeartbeat();
        this.status("online");
      }
      if (frame.type === "pong") return;
      this.handlers.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.afterClose(event.code, opened);
    };
  }

  afterClose(code, opened) {
    this.ws = null;
    this.ready = false;
    this.stopHeartbeat();
    if (this.stopped) return;
    if (code === SESSION_ENDED) {
      this.stopped = true;
      this.handlers.onSessionEnded();
      return;
    }
    this.status("offline");
    if (opened) {
      this.schedule();
      return;
    }
    // A refused upgrade looks the same as an unreachable server from here: ask the API which it was.
    sessionAlive().then((alive) => {
      if (this.stopped) return;
      if (alive === false) {
        this.stopped = true;
        this.handlers.onSessionEnded();
      } else {
        this.schedule();
      }
    });
  }

  schedule() {
    clearTimeout(this.timer);
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
    this.attempt += 1;
    // "Equal jitter": at least half the ceiling, so a crowd of clients spreads out without retrying at once.
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.retryAt = Date.now() + delay;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  detach(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.ready = false;
    this.stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  startHeartbeat() {
    this.stopHeartbeat();
    this.lastFrameAt = Date.now();
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastFrameAt > DEAD_AFTER_MS) {
        // No frame, not even a pong, for a long while: the connection is dead without knowing it.
        this.detach(4000, "heartbeat timeout");
        this.status("offline");
        this.schedule();
        return;
      }
      this.send({ type: "ping" });
    }, PING_EVERY_MS);
  }

  stopHeartbeat() {
    clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  status(value) {
    this.handlers.onStatus(value);
  }
}
