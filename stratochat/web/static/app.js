// Minimal page: proves the server and its socket answer. The full client replaces it.
const status = document.getElementById("status");
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(`${scheme}//${location.host}/ws`);
ws.onopen = () => { status.textContent = "Connected."; };
ws.onclose = (e) => { status.textContent = e.code === 1008 || e.code === 1006 ? "Sign in through the API to connect." : `Disconnected (${e.code}).`; };
