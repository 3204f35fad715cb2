// WHIP (publish) and WHEP (watch) against the server's aiortc endpoints. The server does not trickle ICE:
// gather every candidate first (or give up waiting after ~2 s), then POST the complete offer.

import { ApiError, getToken } from "/web/js/api.js";

const GATHER_TIMEOUT_MS = 2000;

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const headers = { "Content-Type": "application/sdp" };
  if (token) headers.Authorization = "Bearer " + token;
  let response;
  try {
    response = await fetch(url, { method: "POST", headers, body: pc.localDescription.sdp });
  } catch {
    throw new ApiError(0, "network", "Cannot reach the server for video.");
  }
  if (response.status !== 201) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, problem?.code || "http_" + response.status, problem?.detail || "The video server refused the connection.", problem);
  }
  const location = new URL(response.headers.get("Location"), url).toString();
  await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  return location;
}

/** A session to DELETE when leaving (best effort; keepalive so it also works while the page unloads). */
function closer(pc, location, token) {
  let closed = false;
  return async () => {
    if (closed) return;
    closed = true;
    pc.close();
    if (!location) return;
    const headers = token ? { Authorization: "Bearer " + token } : {};
    try {
      await fetch(location, { method: "DELETE", headers, keepalive: true });
    } catch {
      /* the server times the session out anyway */
    }
  };
}

/**
 * Watch room `roomId`: resolves with {pc, stream, close}. `onState(state)` hears the peer connection state.
 */
export async function watch(roomId, { onTrack, onState } = {}) {
  const pc = new RTCPeerConnection();
  const stream = new MediaStream();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addEventListener("track", (event) => {
    stream.addTrack(event.track);
    onTrack?.(stream, event.track);
  });
  pc.addEventListener("connectionstatechange", () => onState?.(pc.connectionState));
  try {
    const location = await exchange(pc, new URL(`/api/v1/rooms/${roomId}/whep`, window.location.origin).toString(), getToken());
    return { pc, stream, close: closer(pc, location, null) };
  } catch (error) {
    pc.close();
    throw error;
  }
}

/** Publish `mediaStream` to room `roomId` with the host's token: resolves with {pc, close}. */
export async function publish(roomId, mediaStream, { onState } = {}) {
  const token = getToken();
  const pc = new RTCPeerConnection();
  for (const track of mediaStream.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [mediaStream] });
  pc.addEventListener("connectionstatechange", () => onState?.(pc.connectionState));
  try {
    const location = await exchange(pc, whipUrl(roomId), token);
    return { pc, close: closer(pc, location, token) };
  } catch (error) {
    pc.close();
    throw error;
  }
}

export function whipUrl(roomId) {
  return new URL(`/api/v1/rooms/${roomId}/whip`, window.location.origin).toString();
}
