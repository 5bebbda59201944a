// The chat's strings, English and French. A page picks one with ?lang=; otherwise the
// browser's language if we have it, else the bridge's webchat.default_language.
// {name} in a string is replaced by the named value (as text, never as markup).
const STRINGS = {
  en: {
    chatTitle: "Chat",
    chatsTitle: "Your chats",
    waitingForSession: "Connecting to the marketplace…",
    notFramed: "This chat opens inside the marketplace's pages.",
    connecting: "Connecting…",
    reconnecting: "Connection lost. Reconnecting…",
    catchingUp: "Back online. Catching up…",
    sessionExpired: "Your chat session has ended. Asking the marketplace for a new one…",
    sessionRefused: "This chat session is not valid. Reload the page to sign in again.",
    notAvailable: "This conversation does not exist or is not yours.",
    notMarketUser: "This account has no chats on the marketplace.",
    unavailable: "The chat is unavailable right now. Try again in a moment.",
    noChats: "No chats yet.",
    back: "Back to your chats",
    open: "Open the chat about {title}",
    stateLocked: "Waiting for payment",
    stateOpen: "Open",
    stateFrozen: "Frozen during a dispute",
    stateArchived: "Closed",
    stateLockedByModerators: "Locked by the moderators",
    disputeOpen: "Dispute open",
    disputeResolved: "Dispute resolved",
    disputeReason: "Reason: {reason}",
    disputePrefix: "Dispute: {title}",
    withParty: "with {name}",
    reasonLocked: "The chat opens when the marketplace confirms payment.",
    reasonLockedByModerators: "The marketplace's moderators have locked this chat for now.",
    reasonFrozen: "A dispute is open: only the marketplace's moderators can post here for now.",
    reasonArchived: "This chat is closed: it stays here as a read-only archive.",
    reasonNoPower: "You cannot post here right now.",
    notEncrypted:
      "This chat is not end-to-end encrypted: the marketplace's moderators can read it to protect buyers and sellers and to settle disputes with the whole conversation at hand.",
    message: "Message",
    send: "Send",
    attach: "Attach a file",
    loadOlder: "Load older messages",
    beginning: "Start of the conversation",
    typingOne: "{name} is typing…",
    typingMany: "Several people are typing…",
    seen: "Seen",
    sending: "Sending…",
    notSent: "Not sent: {reason}",
    removed: "Message removed",
    edited: "(edited)",
    admin: "Moderator",
    marketplace: "Marketplace",
    image: "Image",
    file: "File",
    download: "Download {name}",
    imageOf: "Image: {name}",
    uploading: "Uploading {name}…",
    tooLarge: "{name} is too large: files up to {max} are allowed.",
    typeRefused: "Files of this type ({type}) are not allowed here.",
    uploadRefused: "{name} was refused: {reason}",
    unreadLabel: "{count} unread messages",
    noMessages: "No messages yet",
    joined: "{name} joined",
    left: "{name} left",
    today: "Today",
    yesterday: "Yesterday",
  },
  fr: {
    chatTitle: "Discussion",
    chatsTitle: "Vos discussions",
    waitingForSession: "Connexion à la place de marché…",
    notFramed: "Cette discussion s'ouvre dans les pages de la place de marché.",
    connecting: "Connexion…",
    reconnecting: "Connexion perdue. Reconnexion…",
    catchingUp: "De retour en ligne. Mise à jour…",
    sessionExpired: "Votre session de discussion a expiré. Demande d'une nouvelle session…",
    sessionRefused: "Cette session n'est pas valide. Rechargez la page pour vous reconnecter.",
    notAvailable: "Cette conversation n'existe pas ou ne vous concerne pas.",
    notMarketUser: "Ce compte n'a aucune discussion sur la place de marché.",
    unavailable: "La discussion est indisponible pour le moment. Réessayez dans un instant.",
    noChats: "Aucune discussion pour l'instant.",
    back: "Retour à vos discussions",
    open: "Ouvrir la discussion « {title} »",
    stateLocked: "En attente du paiement",
    stateOpen: "Ouverte",
    stateFrozen: "Gelée pendant un litige",
    stateArchived: "Clôturée",
    stateLockedByModerators: "Verrouillée par les modérateurs",
    disputeOpen: "Litige en cours",
    disputeResolved: "Litige résolu",
    disputeReason: "Motif : {reason}",
    disputePrefix: "Litige : {title}",
    withParty: "avec {name}",
    reasonLocked: "La discussion s'ouvre quand la place de marché confirme le paiement.",
    reasonLockedByModerators: "Les modérateurs de la place de marché ont verrouillé cette discussion pour l'instant.",
    reasonFrozen:
      "Un litige est en cours : seuls les modérateurs de la place de marché peuvent écrire ici pour l'instant.",
    reasonArchived: "Cette discussion est clôturée : elle reste ici en lecture seule.",
    reasonNoPower: "Vous ne pouvez pas écrire ici pour le moment.",
    notEncrypted:
      "Cette discussion n'est pas chiffrée de bout en bout : les modérateurs de la place de marché peuvent la lire pour protéger acheteurs et vendeurs et trancher les litiges avec toute la conversation sous les yeux.",
    message: "Message",
    send: "Envoyer",
    attach: "Joindre un fichier",
    loadOlder: "Charger les messages précédents",
    beginning: "Début de la conversation",
    typingOne: "{name} écrit…",
    typingMany: "Plusieurs personnes écrivent…",
    seen: "Vu",
    sending: "Envoi…",
    notSent: "Non envoyé : {reason}",
    removed: "Message supprimé",
    edited: "(modifié)",
    admin: "Modérateur",
    marketplace: "Place de marché",
    image: "Image",
    file: "Fichier",
    download: "Télécharger {name}",
    imageOf: "Image : {name}",
    uploading: "Envoi de {name}…",
    tooLarge: "{name} est trop volumineux : les fichiers jusqu'à {max} sont acceptés.",
    typeRefused: "Les fichiers de ce type ({type}) ne sont pas acceptés ici.",
    uploadRefused: "{name} a été refusé : {reason}",
    unreadLabel: "{count} messages non lus",
    noMessages: "Aucun message",
    joined: "{name} a rejoint la discussion",
    left: "{name} a quitté la discussion",
    today: "Aujourd'hui",
    yesterday: "Hier",
  },
};

export const LANGUAGES = Object.keys(STRINGS);

export function pickLanguage(asked, browserLanguages, fallback) {
  for (const tag of [asked, ...browserLanguages]) {
    const base = (tag || "").toLowerCase().split("-")[0];
    if (STRINGS[base]) return base;
  }
  return STRINGS[fallback] ? fallback : "en";
}

export class Strings {
  constructor(language) {
    this.language = language;
    this.table = STRINGS[language];
    this.time = new Intl.DateTimeFormat(language, { hour: "2-digit", minute: "2-digit" });
    this.day = new Intl.DateTimeFormat(language, { weekday: "long", day: "numeric", month: "long", year: "numeric" });
    this.full = new Intl.DateTimeFormat(language, { dateStyle: "full", timeStyle: "short" });
  }

  t(key, values = {}) {
    const text = this.table[key] ?? STRINGS.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
  }

  dayLabel(date, now = new Date()) {
    const start = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
    const days = Math.round((start(now) - start(date)) / 86400000);
    if (days === 0) return this.t("today");
    if (days === 1) return this.t("yesterday");
    return this.day.format(date);
  }

  bytes(count) {
    const units = ["B", "KB", "MB", "GB"];
    let value = count;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${new Intl.NumberFormat(this.language, { maximumFractionDigits: 1 }).format(value)} ${units[unit]}`;
  }
}
