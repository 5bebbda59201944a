// The web chat's entry point: its config (inlined by the bridge), the view the page's URL
// asks for, the language, and the host page it lives in.
import { App, quietSdkLogs } from "./app.js";
import { Host } from "./host.js";
import { pickLanguage, Strings } from "./i18n.js";

const config = JSON.parse(document.getElementById("market-chat-config").textContent);
const params = new URLSearchParams(location.search);
const view = {
  name: ["transaction", "dispute", "list"].includes(params.get("view")) ? params.get("view") : "list",
  transactionId: params.get("transaction_id"),
  disputeId: params.get("dispute_id"),
};
const strings = new Strings(pickLanguage(params.get("lang"), navigator.languages || [], config.default_language));
document.documentElement.lang = strings.language;
document.title = strings.t(view.name === "list" ? "chatsTitle" : "chatTitle");

quietSdkLogs();
const app = new App(document.getElementById("app"), config, strings, new Host(config.allowed_origins, location.origin), view);
app.start();
