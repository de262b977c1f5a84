// What the console asks of the gateway over HTTP: /health, /stats and the
// server API (/api/*), relative to where the console is served, so a
// gateway behind a path prefix works too.

/** The gateway's base path: what comes before /console/. */
export const base = location.pathname.replace(/\/console(\/.*)?$/, "");

/** The node URL for the JavaScript client: WebSocket first, the bridge if refused. */
export function nodeUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${base}/ws`;
}

/** A failed HTTP call, with the gateway's error code when it gave one. */
export class HttpError extends Error {
  constructor(status, code, message) {
    super(code ? `${code}: ${message}` : message);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, { credential, body } = {}) {
  const headers = { Accept: "application/json" };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(base + path, {
      method, headers, cache: "no-store", credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
  } catch (error) {
    throw new HttpError(0, "UNREACHABLE", `the gateway did not answer (${error.message})`);
  }
  let answer = null;
  try { answer = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const error = answer?.error;
    if (error && typeof error === "object") throw new HttpError(response.status, String(error.code ?? ""), String(error.message ?? ""));
    if (response.status === 404 && path.startsWith("/api/")) throw new HttpError(404, "", "this gateway offers no server API (/api/)");
    throw new HttpError(response.status, "", `${method} ${path} answered HTTP ${response.status}`);
  }
  return answer;
}

export const health = () => call("GET", "/health");
export const stats = (credential) => call("GET", "/stats", { credential });

/** The server API; every call needs the admin credential. */
export const api = {
  publish: (credential, room, message) => call("POST", "/api/publish", { credential, body: { room, message } }),
  disconnect: (credential, nodeId, reason) =>
    call("POST", `/api/nodes/${encodeURIComponent(nodeId)}/disconnect`, { credential, body: reason ? { reason } : {} }),
  close: (credential, room, reason) =>
    call("POST", `/api/rooms/${encodeURIComponent(room)}/close`, { credential, body: reason ? { reason } : {} }),
};
