#!/bin/sh
# A shell agent built from a pipeline around `wingman gateway join --json`:
# every text said in the room comes back in capitals.
#   WINGMAN_URL=ws://127.0.0.1:3000/ws WINGMAN_TOKEN=... sh examples/shell_shout.sh
set -eu
URL="${WINGMAN_URL:-ws://127.0.0.1:3000/ws}"
ROOM="${WINGMAN_ROOM:-lobby}"
WINGMAN="${WINGMAN:-wingman}"
PYTHON="${PYTHON:-python3}"
fifo="$(mktemp -u)"
mkfifo "$fifo"
trap 'rm -f "$fifo"' EXIT
# join's output (one JSON envelope a line) -> pick out texts -> join's input.
"$WINGMAN" gateway join "$URL" --name shout --group "$ROOM" ${WINGMAN_TOKEN:+--token "$WINGMAN_TOKEN"} --json <"$fifo" |
  "$PYTHON" -u -c '
import json, sys
for line in sys.stdin:
    envelope = json.loads(line)
    if envelope.get("type") == "local" and envelope.get("event") == "connected":
        print("shout ready", file=sys.stderr, flush=True)
    text = envelope.get("payload")
    if envelope.get("type") == "broadcast" and isinstance(text, str) and not text.isupper():
        print(json.dumps(text.upper()), flush=True)
' >"$fifo"
