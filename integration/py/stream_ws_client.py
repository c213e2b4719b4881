"""A WebSocket client of peapod's streaming server, on the `websockets` package (PyPI), for
the end-to-end tests in src/streaming/tests.rs. Prints one JSON object.

  stream_ws_client.py exec URL SUBPROTOCOL STDIN
      sends STDIN on channel 0 (then, with v5, the close signal for channel 0), and
      collects every message until the server closes
  stream_ws_client.py portforward URL SUBPROTOCOL TEXT
      sends TEXT on channel 0 (data of the first port) and collects every message (the
      port prefixes first) until the server closes

"channels" maps each channel to its messages' payloads in hex, in order.
"""

import asyncio
import base64
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def frame(b64, channel, data):
    if b64:
        return chr(ord("0") + channel) + base64.b64encode(data).decode()
    return bytes([channel]) + data


def unframe(b64, msg):
    if isinstance(msg, str):
        msg = msg.encode()
    if b64:
        return msg[0] - ord("0"), base64.b64decode(msg[1:])
    return msg[0], msg[1:]


async def run(mode, url, proto, text):
    b64 = "base64" in proto
    out = {"protocol": None, "channels": {}, "first": None, "messages": 0}
    try:
        ws = await connect(url, subprotocols=[proto] if proto else None, max_size=None)
    except InvalidStatus as e:
        print(json.dumps({"status": e.response.status_code,
                          "body": e.response.body.decode(errors="replace")}))
        return
    async with ws:
        out["protocol"] = ws.subprotocol
        if text:
            await ws.send(frame(b64, 0, text.encode()))
        if mode == "exec" and proto.startswith("v5."):
            await ws.send(bytes([255, 0]))
        try:
            async for msg in ws:
                ch, data = unframe(b64, msg)
                if out["first"] is None:
                    out["first"] = [ch, len(data)]
                out["messages"] += 1
                out["channels"].setdefault(str(ch), []).append(data.hex())
        except ConnectionClosed:
            pass
        out["close_code"] = ws.close_code
    out["status"] = 101
    print(json.dumps(out))


if __name__ == "__main__":
    mode, url, proto, text = sys.argv[1:5]
    asyncio.run(run(mode, url, proto, text))
