// Connect with a token the hub refuses and print what the official client's `connect_error` carries.
// Usage: node refused.mjs <url> <token>
import { io } from "socket.io-client";

const [url, token] = process.argv.slice(2);
const socket = io(url, { auth: { token }, reconnection: false, timeout: 5000, transports: ["websocket"] });
setTimeout(() => { console.log(JSON.stringify({ error: "timed out" })); process.exit(1); }, 10000);
socket.on("connect", () => { console.log(JSON.stringify({ error: "connected" })); process.exit(1); });
socket.on("connect_error", (err) => {
  console.log(JSON.stringify({ message: err.message, data: err.data ?? null }));
  socket.close();
  process.exit(0);
});
