// The chat list shared by the viewer page and the host console: messages keyed by id, deleted ones removed,
// at most `limit` kept, scrolled to the newest unless the reader scrolled up. Text is inserted as text.
// With no message to show, the list says so (`empty`, changeable with `setEmpty`) instead of showing nothing.

import { el, initial } from "/web/js/api.js";

function hue(id) {
  return (Number(id) * 137) % 360;
}

export function chatList(list, { limit = 200, tools, empty = "No messages yet." } = {}) {
  const nodes = new Map();
  const placeholder = el("li", { class: "chat-empty", testid: "chat-empty", text: empty });
  list.append(placeholder);

  function showEmpty() {
    placeholder.hidden = nodes.size > 0;
    if (!placeholder.isConnected) list.prepend(placeholder);
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  }

  function add(message) {
    if (nodes.has(message.id)) return;
    const name = message.user?.name || "Someone";
    const item = el(
      "li",
      { class: "chat-message", testid: "chat-message", dataset: { messageId: message.id, userId: String(message.user?.id ?? "") } },
      el("span", { class: "avatar", "aria-hidden": "true", style: `background: hsl(${hue(message.user?.id ?? 0)} 55% 42%)`, text: initial(name) }),
      el("div", { class: "body" }, el("span", { class: "chat-author", testid: "chat-author", text: name }), el("span", { class: "chat-text", testid: "chat-text", text: message.text })),
      tools ? tools(message) : null,
    );
    nodes.set(message.id, item);
    list.append(item);
  }

  return {
    /** Add messages (oldest first); already shown ids are skipped. */
    add(messages) {
      const stick = nearBottom();
      for (const message of messages) add(message);
      while (nodes.size > limit) {
        const [id, node] = nodes.entries().next().value;
        node.remove();
        nodes.delete(id);
      }
      showEmpty();
      if (stick) list.scrollTop = list.scrollHeight;
    },
    remove(ids) {
      for (const id of ids) {
        nodes.get(id)?.remove();
        nodes.delete(id);
      }
      showEmpty();
    },
    reset(messages) {
      nodes.clear();
      list.replaceChildren(placeholder);
      this.add(messages);
      list.scrollTop = list.scrollHeight;
    },
    /** What the list says while it has no message (e.g. "Chat opens when the show starts"). */
    setEmpty(text) {
      placeholder.textContent = text;
    },
  };
}
