// Guest-side Python clients for the network seal's end-to-end tests, written into a sandbox
// with writeFile and run there: each prints one JSON line the test parses.

/**
 * A guest-side websocket client, frames built by hand so the test controls masking and
 * fragmentation: ws.py HOST PORT TLS(0|1) SPLITS TEXT sends TEXT as one text message, cut into
 * fragments at the comma-separated byte offsets SPLITS ("-": one frame), offering
 * permessage-deflate, then prints {"status", "reply"} with the first frame back ("reply": null
 * when the connection was closed instead).
 */
export const WS_PY = `
import base64, json, os, socket, ssl, struct, sys
host, port, tls, splits, text = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5].encode()
ctx = ssl.create_default_context()
s = socket.create_connection((host, port), timeout=20)
if tls: s = ctx.wrap_socket(s, server_hostname=host)
key = base64.b64encode(os.urandom(16))
s.sendall(b"GET /ws HTTP/1.1\\r\\nHost: " + host.encode() + b"\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: " + key
          + b"\\r\\nSec-WebSocket-Version: 13\\r\\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\\r\\n\\r\\n")
head = b""
while b"\\r\\n\\r\\n" not in head:
    c = s.recv(1)
    if not c: break
    head += c
def frame(fin, op, payload):
    mask = os.urandom(4); n = len(payload)
    h = bytes([(0x80 if fin else 0) | op])
    h += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n)
    return h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
cuts = [] if splits == "-" else [int(x) for x in splits.split(",")]
parts = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
for i, p in enumerate(parts):
    s.sendall(frame(i == len(parts) - 1, 1 if i == 0 else 0, p))
def exact(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError
        b += c
    return b
reply = None
try:
    h = exact(2); n = h[1] & 127
    if n == 126: n = struct.unpack(">H", exact(2))[0]
    elif n == 127: n = struct.unpack(">Q", exact(8))[0]
    if h[0] & 15 == 1: reply = exact(n).decode()
except (EOFError, ConnectionError):
    pass
print(json.dumps({"status": head.split(b"\\r\\n")[0].decode(), "reply": reply}))
`;

export interface WsResult { status: string; reply: string | null }

/**
 * A guest-side HTTP client that keeps what a test needs to see: fetch.py URL [NAME:VALUE...]
 * prints {"status", "reason", "headers", "body"} (headers a name → value map, names lower
 * case), or {"error"} when no answer came.
 */
export const FETCH_PY = `
import json, sys, urllib.request, urllib.error
url = sys.argv[1]
headers = dict(h.split(":", 1) for h in sys.argv[2:])
def out(r, status):
    print(json.dumps({"status": status, "reason": r.reason, "headers": {k.lower(): v for k, v in r.headers.items()}, "body": r.read().decode("latin-1")}))
try:
    r = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30)
    out(r, r.status)
except urllib.error.HTTPError as e:
    out(e, e.code)
except Exception as e:
    print(json.dumps({"error": type(e).__name__ + ": " + str(e)}))
`;

export interface FetchResult { status?: number; reason?: string; headers?: Record<string, string>; body?: string; error?: string }

/**
 * A guest-side client that sends bytes exactly as given: raw.py SPEC.json, where SPEC is a list
 * of connections {"host", "port", "tls", "requests": [base64...]}. On each connection it sends
 * the requests one at a time, reading one answer after each, and prints, per connection, a
 * list of {"status", "body"} and finally {"closed": true} if the proxy hung up before a request.
 */
export const RAW_HTTP_PY = `
import base64, http.client, json, socket, ssl, sys
spec = json.load(open(sys.argv[1]))
results = []
for conn in spec:
    s = socket.create_connection((conn["host"], conn["port"]), timeout=30)
    if conn["tls"]: s = ssl.create_default_context().wrap_socket(s, server_hostname=conn["host"])
    got = []
    for raw in conn["requests"]:
        data = base64.b64decode(raw)
        try:
            s.sendall(data)
            r = http.client.HTTPResponse(s, method=data.split(b" ", 1)[0].decode())
            r.begin()
            got.append({"status": r.status, "body": r.read().decode("latin-1")})
        except (OSError, http.client.HTTPException):
            got.append({"closed": True})
            break
    s.close()
    results.append(got)
print(json.dumps(results))
`;

export type RawAnswer = { status: number; body: string } | { closed: true };

/**
 * Streaming bodies from one host, over HTTPS: stream.py HOST ID reads the first event of
 * /sse?id=ID, only then releases the rest (over another connection: a proxy that held the first
 * event back would never let that happen), and prints the content type, the first event, how
 * many events followed and the release's answer; then, on the first connection, /chunked's
 * transfer coding and how many chunks it had.
 */
export const STREAM_PY = `
import http.client, sys
host, sse_id = sys.argv[1], sys.argv[2]
c = http.client.HTTPSConnection(host, timeout=30)
c.request("GET", "/sse?id=" + sse_id); resp = c.getresponse()
first = resp.readline()
c2 = http.client.HTTPSConnection(host, timeout=30)
c2.request("GET", "/sse-release?id=" + sse_id); released = c2.getresponse().read().decode().strip()
rest = resp.read()
print(resp.getheader("Content-Type"), first.decode().strip(), rest.decode().count("data:"), released)
c.request("GET", "/chunked"); r2 = c.getresponse(); print(r2.getheader("Transfer-Encoding"), r2.read().decode().count("chunk"))
`;
