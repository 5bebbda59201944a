// A transaction's or a dispute's room: header, timeline, composer. The composer follows the
// room's power levels as they arrive (payment opens it live); the header follows the bridge.
import { Direction, EventStatus, RoomEvent, RoomMemberEvent, RoomStateEvent } from "matrix-js-sdk";

import { Composer } from "./composer.js";
import { h, oncePerFrame, replaceChildren } from "./dom.js";
import { EventRenderer, replacements, shown } from "./timeline.js";

const PAGE = 30;
const NEAR_TOP_PX = 80;
const NEAR_BOTTOM_PX = 60;
let views = 0;

// A paid transaction whose room is locked was locked by the moderators (an admin command).
const lockedByModerators = (chat) => chat.access === "locked" && chat.kind === "transaction" && chat.state !== "awaiting_payment";

export function stateLabel(chat) {
  if (chat.kind === "dispute") return chat.state === "resolved" ? "disputeResolved" : "disputeOpen";
  if (lockedByModerators(chat)) return "stateLockedByModerators";
  return { locked: "stateLocked", open: "stateOpen", frozen: "stateFrozen", archived: "stateArchived" }[chat.access];
}

function closedReason(chat) {
  if (lockedByModerators(chat)) return "reasonLockedByModerators";
  return { locked: "reasonLocked", frozen: "reasonFrozen", archived: "reasonArchived" }[chat.access] || "reasonNoPower";
}

export class RoomView {
  constructor(app, chat, onBack) {
    this.app = app;
    this.uid = ++views;
    this.client = app.client;
    this.media = app.media;
    this.config = app.config;
    this.strings = app.strings;
    this.chat = chat;
    this.roomId = chat.room_id;
    this.me = app.info.matrix_id;
    this.bot = app.info.bot;
    this.admins = new Set(app.info.admins);
    this.online = true;
    this.nodes = new Map(); // event id -> {signature, element}
    this.renderer = new EventRenderer(this);
    this.receiptSentFor = null;
    this.listeners = [];
    this.schedule = oncePerFrame(() => this.renderTimeline());

    const t = (key, values) => this.strings.t(key, values);
    this.title = h("h1", { class: "mc-title", id: `mc-title-${this.uid}` });
    this.state = h("span", { class: "mc-state" });
    this.party = h("span", { class: "mc-party" });
    this.reasonLine = h("p", { class: "mc-dispute-reason" });
    this.avatar = h("img", { class: "mc-avatar", alt: "", hidden: true });
    const back = onBack ? h("button", { type: "button", class: "mc-back", "aria-label": t("back"), title: t("back"), onclick: onBack }, "‹") : null;
    this.header = h("header", { class: "mc-header" }, back, this.avatar,
      h("div", { class: "mc-heading" }, this.title, h("p", { class: "mc-subtitle" }, this.state, this.party), this.reasonLine));
    this.older = h("button", { type: "button", class: "mc-older", onclick: () => this.loadOlder() }, t("loadOlder"));
    this.items = h("ol", { class: "mc-items" });
    this.timeline = h("div", { class: "mc-timeline", role: "log", tabindex: 0, "aria-labelledby": this.title.id, onscroll: () => this.scrolled() },
      this.older,
      h("p", { class: "mc-note", role: "note" }, t("notEncrypted")),
      this.items);
    this.typing = h("p", { class: "mc-typing", "aria-live": "polite" });
    this.composer = new Composer(this);
    this.element = h("section", { class: `mc-room mc-${chat.kind}`, "aria-labelledby": this.title.id },
      this.header, this.timeline, this.typing, this.composer.element);

    const onRoom = (handler) => (first, ...rest) => {
      const roomId = first?.getRoomId?.() ?? first?.roomId ?? rest.find((x) => x?.roomId)?.roomId;
      if (!roomId || roomId === this.roomId) handler();
    };
    this.listen(RoomEvent.Timeline, onRoom(() => this.schedule()));
    this.listen(RoomEvent.TimelineReset, onRoom(() => this.schedule()));
    this.listen(RoomEvent.Redaction, onRoom(() => this.schedule()));
    this.listen(RoomEvent.LocalEchoUpdated, onRoom(() => this.schedule()));
    this.listen(RoomEvent.Receipt, onRoom(() => this.schedule()));
    this.listen(RoomMemberEvent.Typing, (_event, member) => member.roomId === this.roomId && this.showTyping());
    this.listen(RoomMemberEvent.Name, (_event, member) => member.roomId === this.roomId && this.schedule());
    this.listen(RoomStateEvent.Events, (event) => event.getRoomId() === this.roomId && this.stateChanged());
    this.onVisible = () => this.sendReceipt();
    document.addEventListener("visibilitychange", this.onVisible);
    window.addEventListener("focus", this.onVisible);
    // A reader at the newest message stays there when the frame is resized (a phone turned,
    // the keyboard opened).
    this.stuck = true;
    this.resizes = new ResizeObserver(() => {
      if (this.stuck) this.timeline.scrollTop = this.timeline.scrollHeight;
    });
    this.resizes.observe(this.timeline);

    this.setInfo(app.info);
    this.update();
  }

  listen(name, handler) {
    this.client.on(name, handler);
    this.listeners.push([name, handler]);
  }

  close() {
    for (const [name, handler] of this.listeners) this.client.removeListener(name, handler);
    document.removeEventListener("visibilitychange", this.onVisible);
    window.removeEventListener("focus", this.onVisible);
    this.resizes.disconnect();
    this.composer.stopTyping();
  }

  focus() {
    if (!this.composer.input.disabled) this.composer.input.focus();
  }

  get room() {
    const room = this.client.getRoom(this.roomId);
    return room?.getMyMembership() === "join" ? room : null;
  }

  senderName(userId) {
    const member = this.client.getRoom(this.roomId)?.getMember(userId);
    return member?.name || userId;
  }

  isAdmin(userId) {
    return this.admins.has(userId);
  }

  setInfo(info) {
    const chat = info.chats.find((c) => c.room_id === this.roomId);
    if (chat) this.chat = chat;
    this.admins = new Set(info.admins);
    this.renderHeader();
    this.updateComposer();
  }

  setOnline(online) {
    this.online = online;
    this.updateComposer();
  }

  update() {
    this.renderHeader();
    this.updateComposer();
    this.schedule();
  }

  stateChanged() {
    this.updateComposer(); // power levels: the composer opens or closes at once
    this.renderHeader();
  }

  renderHeader() {
    const t = (key, values) => this.strings.t(key, values);
    const chat = this.chat;
    this.title.textContent = chat.kind === "dispute" ? t("disputePrefix", { title: chat.title }) : chat.title;
    this.state.textContent = t(stateLabel(chat));
    this.state.dataset.state = chat.kind === "dispute" ? `dispute-${chat.state}` : chat.access;
    const other = chat.role === "buyer" ? chat.seller : chat.buyer;
    const member = this.client.getRoom(this.roomId)?.getMember(other);
    const name = member?.name || "";
    this.party.textContent = name ? ` · ${t("withParty", { name })}` : "";
    this.reasonLine.textContent = chat.reason ? t("disputeReason", { reason: chat.reason }) : "";
    this.reasonLine.hidden = !chat.reason;
    const mxc = member?.getMxcAvatarUrl?.();
    if (mxc && mxc !== this.avatarMxc) {
      this.avatarMxc = mxc;
      this.media.url(mxc, 64, 64).then((url) => {
        if (!url) return;
        this.avatar.src = url;
        this.avatar.alt = name;
        this.avatar.hidden = false;
      }, () => {});
    }
  }

  updateComposer() {
    const room = this.room;
    const mayPost = Boolean(room?.currentState.maySendMessage(this.me));
    const enabled = mayPost && this.online && !this.app.expired;
    let reason = "";
    if (this.app.expired) reason = this.strings.t("sessionExpired");
    else if (!this.online) reason = this.strings.t("reconnecting");
    else if (!mayPost) reason = this.strings.t(closedReason(this.chat));
    this.composer.setEnabled(enabled, reason);
  }

  showTyping() {
    const room = this.client.getRoom(this.roomId);
    const typing = (room?.getMembers() || []).filter((m) => m.typing && m.userId !== this.me);
    this.typing.textContent =
      typing.length === 0 ? "" : typing.length === 1 ? this.strings.t("typingOne", { name: typing[0].name }) : this.strings.t("typingMany");
  }

  atBottom() {
    const t = this.timeline;
    return t.scrollHeight - t.scrollTop - t.clientHeight < NEAR_BOTTOM_PX;
  }

  renderTimeline() {
    const room = this.room;
    if (!room) return;
    const stick = this.atBottom() || !this.rendered;
    const fromBottom = this.timeline.scrollHeight - this.timeline.scrollTop;
    const events = room.getLiveTimeline().getEvents();
    const edits = replacements(events);
    const children = [];
    const seen = new Set();
    let lastDay = null;
    let lastMine = null;
    for (const event of events) {
      const kind = shown(event, this.me, this.bot);
      if (!kind || event.status === EventStatus.CANCELLED) continue;
      const day = new Date(event.getTs()).toDateString();
      if (day !== lastDay) {
        lastDay = day;
        children.push(h("li", { class: "mc-day", role: "separator" }, this.strings.dayLabel(new Date(event.getTs()))));
      }
      const id = event.getId() || event.getTxnId();
      const replacement = edits.get(event.getId());
      const signature = this.renderer.signature(event, replacement);
      let node = this.nodes.get(id);
      if (!node || node.signature !== signature) {
        node = { signature, element: this.renderer.render(event, kind, replacement) };
        this.nodes.set(id, node);
      }
      seen.add(id);
      children.push(node.element);
      if (event.getSender() === this.me && kind === "message" && !event.status) lastMine = { event, index: children.length };
    }
    for (const id of this.nodes.keys()) if (!seen.has(id)) this.nodes.delete(id);
    if (lastMine && this.seenByOthers(room, lastMine.event)) {
      children.splice(lastMine.index, 0, h("li", { class: "mc-seen" }, this.strings.t("seen")));
    }
    replaceChildren(this.items, ...children);
    // The start: nothing more to ask for, or the room's creation is loaded.
    const atStart =
      room.getLiveTimeline().getPaginationToken(Direction.Backward) === null ||
      events.some((event) => event.getType() === "m.room.create");
    this.older.textContent = this.strings.t(atStart ? "beginning" : "loadOlder");
    this.older.disabled = atStart;
    this.timeline.scrollTop = stick ? this.timeline.scrollHeight : this.timeline.scrollHeight - fromBottom;
    this.stuck = stick;
    this.rendered = true;
    this.showTyping();
    this.sendReceipt();
  }

  seenByOthers(room, event) {
    return room.getUsersReadUpTo(event).some((user) => user !== this.me && user !== this.bot);
  }

  scrolled() {
    this.stuck = this.atBottom();
    if (this.timeline.scrollTop < NEAR_TOP_PX) this.loadOlder();
    if (this.atBottom()) this.sendReceipt();
  }

  async loadOlder() {
    const room = this.room;
    if (!room || this.loading || this.older.disabled) return;
    this.loading = true;
    try {
      await this.client.scrollback(room, PAGE);
    } catch {
      // offline: the next scroll tries again
    } finally {
      this.loading = false;
      this.schedule();
    }
  }

  // A read receipt for the newest event, once the reader can see it.
  sendReceipt() {
    const room = this.room;
    if (!room || document.visibilityState !== "visible" || !this.atBottom() || this.app.expired) return;
    const events = room.getLiveTimeline().getEvents();
    const last = [...events].reverse().find((e) => e.getId()?.startsWith("$") && !e.status);
    if (!last || last.getId() === this.receiptSentFor) return;
    this.receiptSentFor = last.getId();
    this.client.sendReadReceipt(last).catch(() => {
      this.receiptSentFor = null;
    });
  }
}
