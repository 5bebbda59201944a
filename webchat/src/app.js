// The chat's controller: waits for a session from the host page, checks it with the bridge,
// runs a matrix-js-sdk client on it, and shows the view the page asked for. A session that
// ends (expiry, revocation) keeps the view on screen, says so, and asks the host for another.
import {
  ClientEvent,
  createClient,
  HttpApiEvent,
  RoomEvent,
  RoomStateEvent,
  SyncState,
} from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

import { BridgeError, chatFor, fetchChats } from "./bridge-api.js";
import { h, replaceChildren } from "./dom.js";
import { ChatListView } from "./list-view.js";
import { Media } from "./media.js";
import { RoomView } from "./room-view.js";
import { unreadCount } from "./unread.js";

const RENEW_BEFORE_MS = 60_000; // ask for the next session a minute before this one expires
const RETRY_MS = [1000, 2000, 5000, 10000, 30000];
// Sessions in a row the homeserver refused before one worked: then the host is asked no more
// (a page handing out bad sessions would otherwise be asked again and again).
const MAX_REFUSED_SESSIONS = 2;
const ENDED = new Set(["M_UNKNOWN_TOKEN", "M_USER_LOCKED", "M_USER_DEACTIVATED"]);
// State that changes what the bridge says of a room (its access, a dispute's state).
const WATCHED_STATE = new Set(["m.room.power_levels", "m.room.topic", "m.room.name"]);

export class App {
  constructor(root, config, strings, host, view) {
    Object.assign(this, { root, config, strings, host, view });
    this.session = null;
    this.client = null;
    this.info = null; // the bridge's answer: {user_id, matrix_id, bot, admins, chats}
    this.current = null; // the view on screen
    this.status = h("div", { class: "mc-status", role: "status", "aria-live": "polite" });
    this.body = h("div", { class: "mc-body" });
    replaceChildren(root, this.status, this.body);
    this.timers = new Set();
    this.refusedSessions = 0;
  }

  start() {
    // The browser knows first when the network goes: a sync request in flight may hang until
    // its own timeout. Back online, the client retries at once instead of after its backoff.
    window.addEventListener("offline", () => {
      if (!this.client || this.expired) return;
      this.setStatus("reconnecting", "warning");
      this.current?.setOnline?.(false);
    });
    window.addEventListener("online", () => this.backOnline());
    if (!this.host.framed) {
      this.showMessage(this.t("notFramed"));
      return;
    }
    this.showMessage(this.strings.t("waitingForSession"));
    this.host.onSession((session) => this.useSession(session));
    this.host.post("ready");
  }

  t(key, values) {
    return this.strings.t(key, values);
  }

  setStatus(key, tone = "info") {
    this.status.dataset.tone = tone;
    this.status.textContent = key ? this.t(key) : "";
    this.status.hidden = !key;
  }

  showMessage(text, tone = "info") {
    this.current?.close();
    this.current = null;
    replaceChildren(this.body, h("p", { class: `mc-message mc-${tone}` }, text));
  }

  later(fn, ms) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  async useSession(session) {
    if (this.session?.access_token === session.access_token) return;
    this.session = session;
    this.expired = false;
    this.synced = false;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    if (session.expires_at) {
      const left = Date.parse(session.expires_at) - Date.now() - RENEW_BEFORE_MS;
      if (left > 0) this.later(() => this.host.post("need-session"), Math.min(left, 2 ** 31 - 1));
    }
    this.setStatus("connecting");
    await this.loadChats(session, 0);
  }

  async loadChats(session, attempt) {
    try {
      const info = await fetchChats(this.config.api_url, session.access_token);
      if (this.session !== session) return;
      if (info.matrix_id !== session.matrix_id) throw new BridgeError(401, "MISMATCH", "");
      this.info = info;
      this.startClient(session);
    } catch (error) {
      if (this.session !== session) return;
      if (error.status === 401) return this.sessionEnded();
      if (error.status === 404) return this.showMessage(this.t("notMarketUser"), "error");
      this.setStatus("unavailable", "warning");
      this.later(() => this.loadChats(session, attempt + 1), RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]);
    }
  }

  startClient(session) {
    this.stopClient();
    const client = createClient({
      baseUrl: this.config.homeserver_url,
      accessToken: session.access_token,
      userId: session.matrix_id,
      deviceId: session.device_id,
      timelineSupport: true,
      useAuthorizationHeader: true,
    });
    this.client = client;
    this.media = new Media(client);
    this.needsRender = true; // the view on screen (if any) belongs to the previous client
    client.on(HttpApiEvent.SessionLoggedOut, () => client === this.client && this.sessionEnded());
    client.on(ClientEvent.Sync, (state, _previous, data) => {
      if (client !== this.client) return;
      // A locked or deactivated account (a suspended or erased user) ends the session too.
      if (state === SyncState.Error && ENDED.has(data?.error?.errcode)) return this.sessionEnded();
      this.onSync(state);
    });
    client.on(RoomStateEvent.Events, (event) => {
      if (WATCHED_STATE.has(event.getType()) && this.isOurRoom(event.getRoomId())) this.refreshChats();
    });
    client.on(ClientEvent.Room, (room) => {
      if (!this.isOurRoom(room.roomId)) this.refreshChats(); // a room we did not know yet
      this.current?.update?.();
    });
    client.on(RoomEvent.MyMembership, () => this.current?.update?.());
    for (const name of [RoomEvent.Timeline, RoomEvent.Receipt, RoomEvent.Redaction]) {
      client.on(name, () => this.countUnread());
    }
    client.startClient({ initialSyncLimit: 30, pollTimeout: 30000 });
  }

  async backOnline() {
    const client = this.client;
    if (!client) return;
    client.retryImmediately();
    // A long poll that outlived the outage answers only with the next event: ask the
    // homeserver something quick to know the way is open again.
    try {
      await client.whoami();
      if (client === this.client) this.onSync(client.getSyncState());
    } catch {
      // still unreachable: the sync loop's own retries report when it is back
    }
  }

  stopClient() {
    if (!this.client) return;
    this.client.removeAllListeners();
    this.client.stopClient();
    this.media?.close();
    this.client = null;
  }

  onSync(state) {
    if (this.expired) return;
    if (!navigator.onLine) return; // a sync answered before the browser noticed: still offline
    if (state === SyncState.Prepared || state === SyncState.Syncing) {
      this.refusedSessions = 0;
      this.synced = true;
      this.setStatus(null);
      if (this.needsRender) {
        this.needsRender = false;
        this.render();
      }
      this.countUnread();
    } else if (state === SyncState.Reconnecting || state === SyncState.Error) {
      this.setStatus("reconnecting", "warning");
    } else if (state === SyncState.Catchup) {
      this.setStatus("catchingUp", "info");
    }
    this.current?.setOnline?.(state === SyncState.Prepared || state === SyncState.Syncing);
  }

  sessionEnded() {
    if (this.expired) return;
    this.expired = true;
    const worked = this.synced;
    this.stopClient();
    this.session = null;
    this.current?.setOnline?.(false);
    this.refusedSessions = worked ? 0 : this.refusedSessions + 1;
    if (this.refusedSessions >= MAX_REFUSED_SESSIONS) {
      this.setStatus(null);
      return this.showMessage(this.t("sessionRefused"), "error");
    }
    this.setStatus("sessionExpired", "warning");
    if (!this.current) this.showMessage(this.t("sessionExpired"), "warning");
    this.host.post("need-session");
  }

  isOurRoom(roomId) {
    return Boolean(this.info?.chats.some((chat) => chat.room_id === roomId));
  }

  refreshChats() {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    const session = this.session;
    if (!session) return;
    this.refreshing = (async () => {
      try {
        const info = await fetchChats(this.config.api_url, session.access_token);
        if (this.session === session) {
          this.info = info;
          this.current?.setInfo?.(info);
          this.countUnread();
        }
      } catch (error) {
        if (error.status === 401 && this.session === session) this.sessionEnded();
      } finally {
        this.refreshing = null;
        if (this.refreshAgain) {
          this.refreshAgain = false;
          this.refreshChats();
        }
      }
    })();
  }

  countUnread() {
    if (!this.client || !this.info) return;
    let total = 0;
    for (const chat of this.info.chats) {
      const room = chat.room_id && this.client.getRoom(chat.room_id);
      if (room) total += unreadCount(room, this.info.matrix_id, this.info.bot);
    }
    this.host.unread(total);
    this.current?.update?.();
  }

  render() {
    if (this.view.name === "list") {
      const opened = this.opened && this.info.chats.find((c) => c.room_id === this.opened.room_id);
      return opened ? this.openRoom(opened, true) : this.openList();
    }
    const chat = chatFor(this.info.chats, this.view);
    if (!chat) return this.showMessage(this.t("notAvailable"), "error");
    this.openRoom(chat, false);
  }

  openList() {
    this.opened = null;
    this.current?.close();
    this.current = new ChatListView(this, (chat) => this.openRoom(chat, true));
    replaceChildren(this.body, this.current.element);
  }

  openRoom(chat, fromList) {
    this.opened = fromList ? chat : null;
    this.current?.close();
    this.current = new RoomView(this, chat, fromList ? () => this.openList() : null);
    replaceChildren(this.body, this.current.element);
    this.current.focus();
    this.host.post("room-opened", {
      room_id: chat.room_id,
      kind: chat.kind,
      transaction_id: chat.transaction_id,
      dispute_id: chat.dispute_id,
    });
  }
}

export function quietSdkLogs() {
  logger.setLevel("error"); // its warnings are about push rules we do not use
}
