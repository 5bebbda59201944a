// A message's formatted_body, reduced to the Matrix spec's allowed HTML subset by DOMPurify:
// no scripts, styles, event handlers or images (our page loads nothing from other hosts), links
// only to http(s) and mailto, opening in a new tab without an opener.
import DOMPurify from "dompurify";

const TAGS = [
  "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup", "sub",
  "li", "b", "i", "u", "strong", "em", "s", "strike", "code", "hr", "br", "div", "table",
  "thead", "tbody", "tr", "th", "td", "caption", "pre", "span", "details", "summary",
];
const ATTRIBUTES = ["href", "start", "class"];
const LINK = /^(https?:|mailto:)/i;

const purifier = DOMPurify(window);
purifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    if (!LINK.test(node.getAttribute("href") || "")) node.removeAttribute("href");
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
  // Only code blocks keep a class, and only the spec's language-* one.
  const cls = node.getAttribute?.("class");
  if (cls && !(node.tagName === "CODE" && /^language-[\w-]+$/.test(cls))) node.removeAttribute("class");
});

// Replies quote what they answer in <mx-reply>: the spec says to drop it before rendering.
export function sanitizedFragment(html) {
  const cleaned = purifier.sanitize(html.replace(/<mx-reply>[\s\S]*?<\/mx-reply>/gi, ""), {
    ALLOWED_TAGS: TAGS,
    ALLOWED_ATTR: ATTRIBUTES,
    ALLOW_DATA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  });
  return cleaned;
}
