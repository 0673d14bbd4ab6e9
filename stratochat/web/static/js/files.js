// Sending files: the attach button picks a file, the server grants an upload, the browser uploads it
// straight to storage (XMLHttpRequest: fetch reports no upload progress) and then sends the file message.
// See docs/protocol.md ("Files").

import { ApiError, post } from "./api.js";
import { $, h, randomId, show } from "./dom.js";
import { bytes } from "./format.js";

const FAILED_SHOWN_MS = 8_000;

export class FileSender {
  /** onSent(message): the stored file message (the socket may deliver it too; adding is idempotent). */
  constructor({ onSent }) {
    this.onSent = onSent;
    this.input = h("input", { type: "file", id: "file-input", class: "sr-only", tabindex: "-1", "aria-hidden": "true" });
    this.name = h("span", { class: "upload-name" });
    this.bar = h("progress", { max: "100", value: "0", "aria-label": "Upload progress" });
    this.text = h("span", { class: "upload-text" });
    this.status = h("div", { id: "upload-status", class: "upload", role: "status", hidden: true }, this.name, this.bar, this.text);
    const composer = $("#composer");
    composer.before(this.status);
    composer.append(this.input);
    this.chat = null;
    this.hideTimer = 0;
    this.input.addEventListener("change", () => {
      const file = this.input.files && this.input.files[0];
      this.input.value = "";
      if (file && this.chat) this.upload(this.chat, file);
    });
  }

  /** The attach button: choose a file for ``chat``. */
  pick(chat) {
    this.chat = chat;
    this.input.click();
  }

  async upload(chat, file) {
    clearTimeout(this.hideTimer);
    this.status.classList.remove("failed");
    this.name.textContent = `${file.name} (${bytes(file.size)})`;
    this.bar.value = 0;
    show(this.bar, true);
    this.text.textContent = "Uploading…";
    show(this.status, true);
    try {
      const id = encodeURIComponent(chat.chat_id);
      const { upload } = await post(`api/chats/${id}/files`, {
        filename: file.name,
        content_type: file.type || "application/octet-stream",
        size: file.size,
      });
      await sendToStorage(upload, file, (pct) => {
        this.bar.value = pct;
        this.text.textContent = `${pct}%`;
      });
      this.text.textContent = "Sending…";
      const { message } = await post(`api/chats/${id}/messages`, { file_id: upload.file_id, client_msg_id: randomId() });
      show(this.status, false);
      this.onSent(message);
    } catch (err) {
      this.status.classList.add("failed");
      show(this.bar, false);
      this.text.textContent = `Not sent: ${(err && err.detail) || "the upload failed."}`;
      this.hideTimer = setTimeout(() => show(this.status, false), FAILED_SHOWN_MS);
    }
  }
}

/** multipart/form-data to the grant's URL: every field in order, then the file as `file`. */
function sendToStorage(upload, file, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [key, value] of Object.entries(upload.fields)) form.append(key, value);
    form.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", upload.url);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(Math.round((100 * e.loaded) / e.total));
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      else reject(new ApiError(xhr.status, "upload", storageError(xhr)));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network", "the upload failed. Check your connection.")));
    xhr.send(form);
  });
}

function storageError(xhr) {
  // The embedded store answers the contract's JSON errors; S3 answers XML.
  try {
    const detail = JSON.parse(xhr.responseText).error.detail;
    if (detail) return detail;
  } catch {
    // not JSON
  }
  return `the storage refused the upload (${xhr.status}).`;
}
