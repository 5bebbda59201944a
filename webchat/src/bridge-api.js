// The one call the chat makes to the bridge: the session's own chats (room ids, titles,
// states, roles, a dispute's reason). Everything else comes from the homeserver.
export class BridgeError extends Error {
  constructor(status, errcode, message) {
    super(message);
    this.status = status;
    this.errcode = errcode;
  }
}

export async function fetchChats(apiUrl, accessToken) {
  let response;
  try {
    response = await fetch(`${apiUrl}/chats`, {
      headers: { Authorization: `Bearer ${accessToken}` },
      cache: "no-store",
    });
  } catch (error) {
    throw new BridgeError(0, "NETWORK", String(error));
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new BridgeError(response.status, body.errcode || "UNKNOWN", body.error || "");
  return body;
}

// The chat a page's parameters name, in the user's chats; null if it is not theirs.
export function chatFor(chats, view) {
  if (view.name === "transaction") {
    return chats.find((c) => c.kind === "transaction" && c.transaction_id === view.transactionId) || null;
  }
  if (view.name === "dispute") {
    return chats.find((c) => c.kind === "dispute" && c.dispute_id === view.disputeId) || null;
  }
  return null;
}
