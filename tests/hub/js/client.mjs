// One official socket.io-client session against the hub: connect (default transports: polling, then
// upgrade), join a room, chat, wait for our message to come back in a `chat` batch, print a JSON report.
// Usage: node client.mjs <url> <token> <room_id>
import { io } from "socket.io-client";

const [url, token, roomId] = process.argv.slice(2);
const report = { connected: false, transport: null, join: null, chat: null, echoed: false, error: null };
const socket = io(url, { auth: { token }, reconnection: false, timeout: 5000 });
const done = (code) => { socket.close(); console.log(JSON.stringify(report)); process.exit(code); };
setTimeout(() => { report.error = "timed out"; done(1); }, 10000);

socket.on("connect_error", (err) => { report.error = String(err && err.message); done(1); });
// Done once our message came back and the invalid event was answered, in whichever order they arrive.
const finish = () => { if (report.echoed && report.bad) done(0); };
socket.on("chat", (batch) => {
  if (batch.messages.some((m) => m.text === "hello from node")) { report.echoed = true; finish(); }
});
socket.on("connect", async () => {
  report.connected = true;
  report.join = await socket.timeout(5000).emitWithAck("join", { room_id: Number(roomId) });
  report.transport = socket.io.engine.transport.name;
  report.chat = await socket.timeout(5000).emitWithAck("chat", { room_id: Number(roomId), text: "hello from node" });
  report.bad = await socket.timeout(5000).emitWithAck("chat", { room_id: Number(roomId) });
  finish();
});
