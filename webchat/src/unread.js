// Unread messages, counted in the browser: the homeserver keeps no notification counts for the
// accounts an appservice manages (Synapse skips push rules for its exclusive namespace). As
// the bridge's own chat list does: people's messages (never the bot's) after the reader's
// read receipt, removed ones left out.
import { isEdit } from "./timeline.js";

export function unreadCount(room, me, bot) {
  const events = room.getLiveTimeline().getEvents();
  let count = 0;
  for (let i = events.length - 1; i >= 0; i -= 1) {
    const event = events[i];
    const sender = event.getSender();
    if (sender === me || (event.getId() && room.hasUserReadEvent(me, event.getId()))) break;
    if (event.getType() === "m.room.message" && sender !== bot && !isEdit(event) && !event.isRedacted()) {
      count += 1;
    }
  }
  return count;
}
