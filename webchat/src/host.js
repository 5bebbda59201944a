// The host-page contract (docs/webchat.md): messages between the marketplace's page and this
// frame. The frame takes sessions only from its parent window and only from an allowed origin
// (webchat.allowed_origins, or the bridge's own); what it sends goes to that origin only.
//
//   host -> chat  {type: "market-chat:session", session: {access_token, matrix_id, device_id,
//                  expires_at, ...}}    (the body POST /api/v1/users/{id}/sessions answered)
//   chat -> host  {type: "market-chat:ready"}            listening: send a session
//                 {type: "market-chat:need-session"}     none yet, expired or revoked
//                 {type: "market-chat:unread", count}    messages waiting in all the user's chats
//                 {type: "market-chat:room-opened", room_id, kind, transaction_id, dispute_id}
const PREFIX = "market-chat:";

export function validSession(session) {
  return (
    session !== null &&
    typeof session === "object" &&
    typeof session.access_token === "string" &&
    session.access_token.length > 0 &&
    typeof session.matrix_id === "string" &&
    session.matrix_id.startsWith("@")
  );
}

export class Host {
  constructor(allowedOrigins, ownOrigin, win = window) {
    this.window = win;
    this.parent = win.parent !== win ? win.parent : null;
    this.allowed = new Set([ownOrigin, ...allowedOrigins]);
    // The parent's origin: Chromium and WebKit tell it; elsewhere it is learnt from the first
    // session, and until then a message goes to each allowed origin (the others drop it).
    const ancestor = win.location.ancestorOrigins?.[0];
    this.origin = ancestor && this.allowed.has(ancestor) ? ancestor : null;
    this.lastUnread = null;
  }

  get framed() {
    return this.parent !== null;
  }

  onSession(handler) {
    this.window.addEventListener("message", (event) => {
      if (event.source !== this.parent || !this.allowed.has(event.origin)) return;
      const data = event.data;
      if (!data || data.type !== `${PREFIX}session` || !validSession(data.session)) return;
      this.origin = event.origin;
      handler(data.session);
    });
  }

  post(type, details = {}) {
    if (!this.parent) return;
    const message = { type: PREFIX + type, ...details };
    for (const origin of this.origin ? [this.origin] : this.allowed) {
      this.parent.postMessage(message, origin);
    }
  }

  unread(count) {
    if (count === this.lastUnread) return;
    this.lastUnread = count;
    this.post("unread", { count });
  }
}
