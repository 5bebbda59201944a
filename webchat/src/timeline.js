// One timeline event as an element. Party text is set as text; formatted bodies go through
// the sanitiser (html.js). Bot notices are system messages; admins carry a badge.
import { h } from "./dom.js";
import { sanitizedFragment } from "./html.js";

const MEDIA = new Set(["m.image", "m.file", "m.video", "m.audio"]);
const THUMBNAIL = [800, 600];

// Edits in the loaded timeline: each original's latest replacement by its own sender.
export function replacements(events) {
  const latest = new Map();
  for (const event of events) {
    const relation = event.getWireContent()["m.relates_to"];
    if (relation?.rel_type !== "m.replace" || typeof relation.event_id !== "string") continue;
    const known = latest.get(relation.event_id);
    if (!known || known.getTs() <= event.getTs()) latest.set(relation.event_id, event);
  }
  return latest;
}

export function isEdit(event) {
  return event.getWireContent()["m.relates_to"]?.rel_type === "m.replace";
}

// What the timeline shows of an event, or null to leave it out.
export function shown(event, me, bot) {
  const type = event.getType();
  if (type === "m.room.message") return isEdit(event) && !event.isRedacted() ? null : "message";
  if (type === "m.room.member") {
    const now = event.getContent().membership;
    const before = event.getPrevContent().membership;
    if (event.getStateKey() === me || event.getStateKey() === bot || now === before) return null;
    if (now === "join" || now === "leave" || now === "ban") return "membership";
  }
  return null;
}

export class EventRenderer {
  constructor(view) {
    this.view = view;
    this.strings = view.strings;
  }

  t(key, values) {
    return this.strings.t(key, values);
  }

  // A signature of everything the element shows: when it is unchanged, the element is kept.
  signature(event, replacement) {
    return [
      event.getId(),
      event.status || "",
      event.isRedacted() ? "r" : "",
      replacement?.getId() || "",
      this.view.senderName(event.getSender()),
    ].join("|");
  }

  render(event, kind, replacement) {
    if (kind === "membership") return this.membership(event);
    const sender = event.getSender();
    const time = new Date(event.getTs());
    const stamp = h("time", { datetime: time.toISOString(), title: this.strings.full.format(time) }, this.strings.time.format(time));
    if (sender === this.view.bot) {
      return h("li", { class: "mc-item mc-system", "data-event-id": event.getId() },
        h("span", { class: "mc-visually-hidden" }, `${this.t("marketplace")}: `),
        this.body(event, replacement), " ", stamp);
    }
    const mine = sender === this.view.me;
    const badge = this.view.isAdmin(sender) ? h("span", { class: "mc-badge mc-admin" }, this.t("admin")) : null;
    const status = event.status ? h("span", { class: "mc-pending" }, this.t("sending")) : null;
    return h("li", { class: `mc-item mc-msg ${mine ? "mc-mine" : "mc-theirs"}`, "data-event-id": event.getId() },
      h("div", { class: "mc-meta" },
        h("span", { class: "mc-sender" }, this.view.senderName(sender)), badge, " ", stamp, status),
      h("div", { class: "mc-bubble" }, this.body(event, replacement)));
  }

  membership(event) {
    const name = this.view.senderName(event.getStateKey());
    const key = event.getContent().membership === "join" ? "joined" : "left";
    const badge = this.view.isAdmin(event.getStateKey()) ? ` (${this.t("admin")})` : "";
    return h("li", { class: "mc-item mc-system mc-membership" }, this.t(key, { name: name + badge }));
  }

  body(event, replacement) {
    if (event.isRedacted()) return h("em", { class: "mc-removed" }, this.t("removed"));
    const edited = replacement && !replacement.isRedacted();
    const content = edited ? replacement.getContent()["m.new_content"] || event.getContent() : event.getContent();
    const parts = [];
    if (MEDIA.has(content.msgtype)) parts.push(this.media(content));
    else parts.push(this.text(content));
    if (edited) parts.push(" ", h("span", { class: "mc-edited" }, this.t("edited")));
    return h("div", { class: "mc-content" }, parts);
  }

  text(content) {
    let body = typeof content.body === "string" ? content.body : "";
    // A reply's body starts with its fallback quote ("> <@who> what"): the spec says to drop it.
    if (content["m.relates_to"]?.["m.in_reply_to"]) body = body.replace(/^(> .*\n)+\n?/, "");
    if (content.format === "org.matrix.custom.html" && typeof content.formatted_body === "string") {
      return h("div", { class: "mc-text mc-html" }, sanitizedFragment(content.formatted_body));
    }
    return h("div", { class: "mc-text" }, body);
  }

  media(content) {
    const name = typeof content.body === "string" && content.body ? content.body : this.t("file");
    const size = Number.isInteger(content.info?.size) ? ` (${this.strings.bytes(content.info.size)})` : "";
    const download = () => this.view.media.download(content.url, name);
    if (content.msgtype === "m.image") {
      const image = h("img", { class: "mc-image", alt: this.t("imageOf", { name }), loading: "lazy" });
      const width = content.info?.w;
      const height = content.info?.h;
      if (width && height) image.style.aspectRatio = `${width} / ${height}`;
      this.view.media.url(content.url, ...THUMBNAIL).then(
        (url) => url && (image.src = url),
        () => image.replaceWith(h("span", { class: "mc-file" }, name)),
      );
      return h("button", { type: "button", class: "mc-image-button", "aria-label": this.t("download", { name }), onclick: download }, image);
    }
    return h("button", { type: "button", class: "mc-file", onclick: download }, this.t("download", { name }) + size);
  }
}
