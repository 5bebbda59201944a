// The host page's helper, for a page that would rather not write the postMessage side itself:
//
//   <script src="https://bridge.example/chat/embed.js"></script>
//   <div id="chat"></div>
//   <script>
//     MarketChat.mount(document.getElementById("chat"), {
//       view: "transaction", transactionId: "order-1",   // or "dispute" + disputeId, or "list"
//       getSession: () => fetch("/my-backend/chat-session").then((r) => r.json()),
//       onUnread: (count) => {}, onRoomOpened: (room) => {},
//     });
//   </script>
//
// getSession is called whenever the chat needs one (at start, before and after expiry); the
// session travels by postMessage to the chat's origin only, never in a URL.
(() => {
  const PREFIX = "market-chat:";
  const script = document.currentScript;
  const base = new URL(".", script ? script.src : location.href);

  function mount(element, options) {
    const url = new URL(options.url || base.href);
    const params = new URLSearchParams({ view: options.view || "list" });
    if (options.transactionId) params.set("transaction_id", options.transactionId);
    if (options.disputeId) params.set("dispute_id", options.disputeId);
    if (options.lang) params.set("lang", options.lang);
    url.search = params.toString();
    const frame = document.createElement("iframe");
    frame.src = url.href;
    frame.title = options.title || "Chat";
    frame.className = options.className || "market-chat-frame";
    frame.setAttribute("allow", "clipboard-write");
    frame.style.border = "0";
    frame.style.width = "100%";
    frame.style.height = "100%";
    const origin = url.origin;
    let asking = null;

    async function sendSession() {
      if (asking) return asking;
      asking = (async () => {
        try {
          const session = await options.getSession();
          frame.contentWindow.postMessage({ type: PREFIX + "session", session }, origin);
        } finally {
          asking = null;
        }
      })();
      return asking;
    }

    function listen(event) {
      if (event.source !== frame.contentWindow || event.origin !== origin) return;
      const data = event.data || {};
      if (data.type === PREFIX + "ready" || data.type === PREFIX + "need-session") {
        sendSession().catch((error) => options.onError?.(error));
      } else if (data.type === PREFIX + "unread") {
        options.onUnread?.(data.count);
      } else if (data.type === PREFIX + "room-opened") {
        options.onRoomOpened?.(data);
      }
    }

    window.addEventListener("message", listen);
    element.append(frame);
    return {
      frame,
      setSession(session) {
        frame.contentWindow.postMessage({ type: PREFIX + "session", session }, origin);
      },
      destroy() {
        window.removeEventListener("message", listen);
        frame.remove();
      },
    };
  }

  window.MarketChat = { mount };
})();
