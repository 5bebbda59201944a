// The composer: text, typing notifications, and uploads checked against the marketplace's
// rules before a byte leaves the browser (the homeserver judges them again, and its verdict
// is shown when it refuses).
import { h } from "./dom.js";

const TYPING_EVERY_MS = 3000;
const TYPING_TIMEOUT_MS = 6000;

export function typeAllowed(patterns, type) {
  return patterns.some((pattern) =>
    pattern.endsWith("/*") ? type.startsWith(pattern.slice(0, -1)) : pattern === type,
  );
}

export function msgtypeOf(type) {
  for (const kind of ["image", "video", "audio"]) if (type.startsWith(`${kind}/`)) return `m.${kind}`;
  return "m.file";
}

// The server's words when it refuses (Synapse's error, the gateway's, a policy verdict).
export function reasonOf(error) {
  return error?.data?.error || error?.message || String(error);
}

export class Composer {
  constructor(view) {
    this.view = view;
    const t = (key, values) => view.strings.t(key, values);
    this.t = t;
    this.typingSentAt = 0;
    this.reason = h("p", { class: "mc-composer-reason", id: `mc-reason-${view.uid}` });
    this.notice = h("p", { class: "mc-composer-notice", role: "alert" });
    this.input = h("textarea", {
      class: "mc-input",
      rows: 1,
      "aria-label": t("message"),
      placeholder: t("message"),
      "aria-describedby": this.reason.id,
      oninput: () => this.typed(),
      onkeydown: (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.send();
        }
      },
      onblur: () => this.stopTyping(),
    });
    this.file = h("input", {
      type: "file",
      class: "mc-visually-hidden",
      tabindex: -1,
      "aria-hidden": "true",
      onchange: () => {
        const [file] = this.file.files;
        this.file.value = "";
        if (file) this.upload(file);
      },
    });
    this.attach = h("button", { type: "button", class: "mc-attach", "aria-label": t("attach"), title: t("attach"), onclick: () => this.file.click() }, "+");
    this.sendButton = h("button", { type: "submit", class: "mc-send" }, t("send"));
    this.form = h("form", { class: "mc-composer", onsubmit: (event) => { event.preventDefault(); this.send(); } },
      this.attach, this.file, this.input, this.sendButton);
    this.element = h("div", { class: "mc-composer-area" }, this.notice, this.form, this.reason);
  }

  setEnabled(enabled, reason) {
    for (const control of [this.input, this.attach, this.sendButton]) control.disabled = !enabled;
    this.reason.textContent = enabled ? "" : reason;
    this.reason.hidden = enabled;
    if (!enabled) this.stopTyping();
  }

  say(text) {
    this.notice.textContent = text || "";
  }

  typed() {
    this.say("");
    if (!this.input.value.trim()) return this.stopTyping();
    const now = Date.now();
    if (now - this.typingSentAt < TYPING_EVERY_MS) return;
    this.typingSentAt = now;
    this.view.client.sendTyping(this.view.roomId, true, TYPING_TIMEOUT_MS).catch(() => {});
  }

  stopTyping() {
    if (!this.typingSentAt) return;
    this.typingSentAt = 0;
    this.view.client?.sendTyping(this.view.roomId, false, 0).catch(() => {});
  }

  async send() {
    const body = this.input.value.trim();
    if (!body || this.input.disabled) return;
    this.input.value = "";
    this.stopTyping();
    try {
      await this.view.client.sendMessage(this.view.roomId, { msgtype: "m.text", body });
    } catch (error) {
      this.dropFailedEcho(error);
      this.say(this.t("notSent", { reason: reasonOf(error) }));
      if (!this.input.value) this.input.value = body; // nothing typed is lost
    }
  }

  dropFailedEcho(error) {
    const client = this.view.client;
    const failed = error?.event; // the SDK hands back the local echo of a failed send
    try {
      if (failed) client.cancelPendingEvent(failed);
    } catch {
      // already gone
    }
  }

  async upload(file) {
    const rules = this.view.config.uploads;
    const type = file.type || "application/octet-stream";
    const msgtype = msgtypeOf(type);
    if (!typeAllowed(rules.media_types, type) || !rules.msgtypes.includes(msgtype)) {
      return this.say(this.t("typeRefused", { type }));
    }
    if (file.size > rules.max_bytes) {
      return this.say(this.t("tooLarge", { name: file.name, max: this.view.strings.bytes(rules.max_bytes) }));
    }
    this.say(this.t("uploading", { name: file.name }));
    try {
      const info = { mimetype: type, size: file.size, ...(await imageSize(file, msgtype)) };
      const { content_uri: url } = await this.view.client.uploadContent(file, { name: file.name, type });
      await this.view.client.sendMessage(this.view.roomId, { msgtype, body: file.name, url, info });
      this.say("");
    } catch (error) {
      this.dropFailedEcho(error);
      this.say(this.t("uploadRefused", { name: file.name, reason: reasonOf(error) }));
    }
  }
}

async function imageSize(file, msgtype) {
  if (msgtype !== "m.image" || typeof createImageBitmap !== "function") return {};
  try {
    const bitmap = await createImageBitmap(file);
    const size = { w: bitmap.width, h: bitmap.height };
    bitmap.close();
    return size;
  } catch {
    return {}; // not an image the browser can read: the homeserver will judge it
  }
}
