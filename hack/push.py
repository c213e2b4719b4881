#!/usr/bin/env python3
"""Pushes an OCI image layout directory (as hack/fixtures.py writes) to a registry over plain
HTTP with the distribution API, using only the standard library.

    hack/push.py LAYOUT_DIR 127.0.0.1:5000 REPO:TAG [USER:PASSWORD]
"""
import base64
import json
import sys
import urllib.request
from pathlib import Path


def request(method, url, data=None, headers=None, auth=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(req) as resp:
        return resp.status, dict(resp.headers), resp.read()


def main():
    layout, registry, ref = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    auth = sys.argv[4] if len(sys.argv) > 4 else None
    repo, tag = ref.rsplit(":", 1)
    base = f"http://{registry}/v2/{repo}"
    index = json.loads((layout / "index.json").read_text())
    mdesc = index["manifests"][0]
    blob = lambda d: (layout / "blobs" / d.split(":")[0] / d.split(":")[1]).read_bytes()
    manifest_bytes = blob(mdesc["digest"])
    manifest = json.loads(manifest_bytes)
    for desc in [manifest["config"]] + manifest["layers"]:
        digest = desc["digest"]
        try:
            request("HEAD", f"{base}/blobs/{digest}", auth=auth)
            continue  # already there
        except urllib.error.HTTPError:
            pass
        _, headers, _ = request("POST", f"{base}/blobs/uploads/", data=b"", auth=auth)
        loc = headers["Location"]
        if loc.startswith("/"):
            loc = f"http://{registry}{loc}"
        sep = "&" if "?" in loc else "?"
        request("PUT", f"{loc}{sep}digest={digest}", data=blob(digest),
                headers={"Content-Type": "application/octet-stream"}, auth=auth)
    request("PUT", f"{base}/manifests/{tag}", data=manifest_bytes,
            headers={"Content-Type": mdesc.get("mediaType", manifest.get("mediaType"))}, auth=auth)
    print(mdesc["digest"])


if __name__ == "__main__":
    main()
