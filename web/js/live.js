// One room over Socket.IO (docs/protocol.md): join with a snapshot, resume with `since` after a reconnect,
// drop events already covered by the snapshot, and turn every request into a promise of its acknowledgement.

import { io } from "/web/vendor/socket.io.esm.min.js";
import { getToken, setToken } from "/web/js/api.js";

/** Compare two seqs "<ms>-<n>": negative, zero or positive. */
export function compareSeq(a, b) {
  const [am, an] = String(a).split("-").map(Number);
  const [bm, bn] = String(b).split("-").map(Number);
  return am - bm || an - bn;
}

/**
 * A join's `replay` list as `[event, payload]` pairs to handle exactly like live events: each item is
 * `{event, seq, payload}` and its payload is the live one (`chat`: `{room_id, messages, skipped}`), so nothing
 * is re-wrapped; the item's `seq` is added to payloads that carry none.
 */
export function replayed(items) {
  return items.map((item) => [item.event, item.event === "chat" || item.payload.seq ? item.payload : { ...item.payload, seq: item.seq }]);
}

const SEQ_EVENTS = ["pinned", "room_status", "countdown", "chat_deleted", "chat_settings", "video"];
const ACK_TIMEOUT_MS = 10000;

/**
 * Connect and join `roomId`. `on` holds handlers: snapshot(s), pinned(p), stock(p), room_status(p),
 * countdown(p), chat(p), chat_deleted(p), chat_settings(p), counters(p), video(p), online(bool),
 * joinError(error), authLost(). Each event handler gets the payload; `serverOffset` tracks the clock.
 */
export function joinRoom(roomId, on) {
  let floor = null; // the snapshot's seq: events at or below it are already in the snapshot
  let last = null; // the newest seq processed, for `since` on a reconnect
  let joined = false;
  const seenChat = new Set();
  const clock = { offset: null }; // local ms minus server ms (the least-delayed event's)

  const socket = io(location.origin, {
    auth: tokenAuth(),
    transports: ["websocket"],
    reconnectionDelay: 500,
    reconnectionDelayMax: 4000,
  });

  function tokenAuth() {
    const token = getToken();
    return token ? { token } : {};
  }

  function note(seq) {
    if (seq && (last === null || compareSeq(seq, last) > 0)) last = seq;
  }

  function tick(ts) {
    if (typeof ts !== "number") return;
    const offset = Date.now() - ts;
    if (clock.offset === null || offset < clock.offset) clock.offset = offset;
  }

  function fresh(seq) {
    return !seq || floor === null || compareSeq(seq, floor) > 0;
  }

  function deliver(event, payload) {
    tick(payload.ts);
    if (event === "chat") {
      const messages = (payload.messages || []).filter((m) => {
        if (seenChat.has(m.id) || !fresh(m.id)) return false;
        seenChat.add(m.id);
        note(m.id);
        return true;
      });
      if (seenChat.size > 2000) {
        const keep = [...seenChat].slice(-1000);
        seenChat.clear();
        keep.forEach((id) => seenChat.add(id));
      }
      if (messages.length || payload.skipped) on.chat?.({ ...payload, messages });
      return;
    }
    if (SEQ_EVENTS.includes(event)) {
      if (!fresh(payload.seq)) return;
      note(payload.seq);
    }
    on[event]?.(payload);
  }

  async function join() {
    const since = last;
    const ack = await request("join", since ? { room_id: roomId, since } : { room_id: roomId });
    if (!ack.ok) {
      on.joinError?.(ack.error);
      return;
    }
    joined = true;
    const data = ack.data;
    if (data.snapshot) {
      const snapshot = data.snapshot;
      floor = snapshot.seq;
      note(snapshot.seq);
      seenChat.clear();
      for (const message of snapshot.chat || []) seenChat.add(message.id);
      on.snapshot?.(snapshot);
    } else if (data.replay) {
      floor = since;
      for (const [event, payload] of replayed(data.replay)) deliver(event, payload);
    }
  }

  function request(event, payload) {
    return new Promise((resolve) => {
      socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (error, ack) => {
        if (error) {
          resolve({ ok: false, error: { code: "timeout", message: "No answer from the server. Check your connection and try again." } });
        } else {
          resolve(ack || { ok: false, error: { code: "internal", message: "Empty answer from the server." } });
        }
      });
    });
  }

  socket.on("connect", () => {
    on.online?.(true);
    join();
  });
  socket.on("disconnect", (reason) => {
    joined = false;
    on.online?.(false);
    if (reason === "io server disconnect") setTimeout(() => socket.connect(), 1000);
  });
  socket.on("connect_error", (error) => {
    on.online?.(false);
    const data = error && error.data;
    if (data && data.code === "unauthorized" && getToken()) {
      setToken(null); // expired: carry on signed out
      socket.auth = {};
      on.authLost?.(data.message);
      setTimeout(() => socket.connect(), 200);
    }
  });
  for (const event of ["pinned", "stock", "room_status", "countdown", "chat", "chat_deleted", "chat_settings", "counters", "video"]) {
    socket.on(event, (payload) => {
      if (payload && payload.room_id === roomId) deliver(event, payload);
    });
  }
  socket.on("resync", (payload) => {
    if (payload && payload.room_id === roomId) join();
  });

  return {
    socket,
    clock,
    /** Send a request; resolves with `{ok, data}` or `{ok: false, error: {code, message, retry_after?}}`. */
    request,
    get joined() {
      return joined;
    },
    /** Server time now (ms), from the clock offset seen on events. */
    serverNow() {
      return Date.now() - (clock.offset ?? 0);
    },
  };
}
