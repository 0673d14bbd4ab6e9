// One message's content. Text is rendered as text (links only for http/https URLs); a file message
// gets a file card, with a preview for raster images (served inline; every other type downloads).

import { api } from "./api.js";
import { h, richText } from "./dom.js";
import { bytes } from "./format.js";

const RASTER = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

export function messageBody(message) {
  const parts = [];
  if (message.message_type === "file" && message.file) parts.push(fileCard(message.file));
  if (message.content) parts.push(h("p", { class: "text" }, richText(message.content)));
  return parts;
}

function fileCard(file) {
  const kind = RASTER.has(file.content_type) ? "image" : file.content_type === "application/pdf" ? "pdf" : "file";
  return h(
    "a",
    { class: `file-card file-${kind}`, href: api.fileUrl(file.file_id), target: "_blank", rel: "noopener noreferrer" },
    kind === "image"
      ? h("img", { class: "file-preview", src: api.fileUrl(file.file_id), alt: file.filename || "image", loading: "lazy", decoding: "async" })
      : h("span", { class: "file-icon", "aria-hidden": "true" }),
    h(
      "span",
      { class: "file-info" },
      h("span", { class: "file-name", text: file.filename || "file" }),
      h("span", { class: "file-size", text: bytes(file.size) }),
    ),
  );
}
