// The user's chats: title, state, last message and an unread badge, kept live from sync.
import { h, oncePerFrame, replaceChildren } from "./dom.js";
import { stateLabel } from "./room-view.js";
import { isEdit } from "./timeline.js";
import { unreadCount } from "./unread.js";

export function lastMessage(room, strings) {
  const events = room.getLiveTimeline().getEvents();
  for (let i = events.length - 1; i >= 0; i -= 1) {
    const event = events[i];
    if (event.getType() !== "m.room.message" || isEdit(event)) continue;
    if (event.isRedacted()) return { text: strings.t("removed"), ts: event.getTs() };
    const content = event.getContent();
    const text =
      content.msgtype === "m.image" ? strings.t("image")
      : ["m.file", "m.video", "m.audio"].includes(content.msgtype) ? strings.t("file")
      : String(content.body ?? "");
    return { text, ts: event.getTs() };
  }
  return null;
}

export class ChatListView {
  constructor(app, open) {
    this.app = app;
    this.open = open;
    this.strings = app.strings;
    this.update = oncePerFrame(() => this.render());
    this.list = h("ul", { class: "mc-chats" });
    const heading = h("h1", { class: "mc-title", id: "mc-chats-title" }, this.strings.t("chatsTitle"));
    this.element = h("section", { class: "mc-list", "aria-labelledby": heading.id }, h("header", { class: "mc-header" }, heading), this.list);
    this.update();
  }

  setInfo() {
    this.update();
  }

  close() {}

  render() {
    const { client, info } = this.app;
    if (!client || !info) return;
    const t = (key, values) => this.strings.t(key, values);
    const rows = info.chats.map((chat) => {
      const room = client.getRoom(chat.room_id);
      const last = room ? lastMessage(room, this.strings) : null;
      const unread = room ? unreadCount(room, info.matrix_id, info.bot) : 0;
      return { chat, room, last, unread };
    });
    // Newest activity first; the bridge's order (newest created) breaks ties.
    rows.sort((a, b) => (b.last?.ts ?? 0) - (a.last?.ts ?? 0));
    if (rows.length === 0) return replaceChildren(this.list, h("li", { class: "mc-empty" }, t("noChats")));
    const focused = document.activeElement?.dataset?.roomId;
    replaceChildren(this.list, ...rows.map(({ chat, last, unread }) => {
      const title = chat.kind === "dispute" ? t("disputePrefix", { title: chat.title }) : chat.title;
      const badge = unread > 0 ? h("span", { class: "mc-unread", "aria-label": t("unreadLabel", { count: unread }) }, String(unread)) : null;
      const time = last ? new Date(last.ts) : null;
      return h("li", { class: "mc-chat" },
        h("button", { type: "button", class: "mc-chat-button", "data-room-id": chat.room_id, "aria-label": `${t("open", { title })}${unread ? `, ${t("unreadLabel", { count: unread })}` : ""}`, onclick: () => this.open(chat) },
          h("span", { class: "mc-chat-top" },
            h("span", { class: "mc-chat-title" }, title),
            time ? h("time", { datetime: time.toISOString() }, this.strings.time.format(time)) : null),
          h("span", { class: "mc-chat-bottom" },
            h("span", { class: "mc-state", "data-state": chat.kind === "dispute" ? `dispute-${chat.state}` : chat.access }, t(stateLabel(chat))),
            h("span", { class: "mc-last" }, last ? last.text : t("noMessages")),
            badge)));
    }));
    if (focused) this.list.querySelector(`[data-room-id="${CSS.escape(focused)}"]`)?.focus();
  }
}
