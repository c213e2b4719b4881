#!/usr/bin/env python3
"""Build small OCI image layouts for peapod's tests, offline, from Debian's busybox-static.

    hack/fixtures.py OUTDIR

writes, for each image NAME below, OUTDIR/NAME/ (an OCI image layout directory: oci-layout,
index.json, blobs/sha256/...) and OUTDIR/NAME.tar (the same layout as a tar, what
`skopeo copy ... oci-archive:` produces):

  busybox            /bin/busybox + every applet as a hard link, /etc/passwd, /etc/group,
                     /tmp (1777); Env PATH, Cmd ["sh"]
  busybox-user       the same layer; User "app" (uid 1000, gid 1000)
  busybox-entry      + a layer with /work; Entrypoint ["/bin/echo","entry"], Cmd ["cmd"],
                     Env FOO=bar, WorkingDir /work
  busybox-whiteout   + a layer with /data/a, + a layer deleting /bin/vi (bin/.wh.vi) and making
                     /data opaque (data/.wh..wh..opq) with a new /data/b
  pause              the busybox layer; Entrypoint ["/bin/sleep","2147483647"], Cmd []: a
                     sandbox image for containerd's CRI (sandbox_image) in `make bench`

Every image is named peapod.test/NAME:latest (index annotations org.opencontainers.image.ref.name
and io.containerd.image.name). Output is deterministic (fixed mtimes and owners, a fixed entry
order, gzip mtime 0, sorted JSON), so reruns give identical digests, and an image whose outputs
are newer than this script is not rebuilt. Needs only the Python 3 standard library and
/bin/busybox (apt-get install -y busybox-static); root is not needed.
"""

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile

BUSYBOX = "/bin/busybox"
MTIME = 1700000000  # 2023-11-14T22:13:20Z, stamped on every file
CREATED = "2023-11-14T22:13:20Z"
REGISTRY = "peapod.test"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

PASSWD = """root:x:0:0:root:/root:/bin/sh
www-data:x:33:33:www-data:/var/www:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

GROUP = """root:x:0:
www-data:x:33:
app:x:1000:
nogroup:x:65534:
"""


# ---- tar building ----

def dir_entry(name, mode=0o755, uid=0, gid=0):
    return (name, tarfile.DIRTYPE, mode, b"", "", uid, gid)


def file_entry(name, data, mode=0o644, uid=0, gid=0):
    return (name, tarfile.REGTYPE, mode, data, "", uid, gid)


def hardlink_entry(name, target, mode=0o755):
    return (name, tarfile.LNKTYPE, mode, b"", target, 0, 0)


def ordered(entries):
    """Directories first (sorted, so parents precede children), then files, then hard links:
    a fixed order in which every link target is already there."""
    rank = {tarfile.DIRTYPE: 0, tarfile.REGTYPE: 1, tarfile.LNKTYPE: 2}
    return sorted(entries, key=lambda e: (rank[e[1]], e[0]))


def make_tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, mode, data, linkname, uid, gid in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.uid, info.gid = uid, gid
            info.uname = info.gname = ""
            info.mtime = MTIME
            info.linkname = linkname
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buf.getvalue()


def gzip_bytes(data):
    out = io.BytesIO()
    # mtime=0 and no file name keep the gzip header identical from run to run.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return out.getvalue()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ---- layers ----

def base_layer():
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True)
    names = sorted({a.strip() for a in applets.stdout.split() if a.strip()} - {"busybox"})
    entries = [
        dir_entry("bin"),
        dir_entry("etc"),
        dir_entry("home"),
        dir_entry("home/app", uid=1000, gid=1000),
        dir_entry("root", mode=0o700),
        dir_entry("tmp", mode=0o1777),
        file_entry("bin/busybox", busybox, mode=0o755),
        file_entry("etc/passwd", PASSWD.encode()),
        file_entry("etc/group", GROUP.encode()),
    ]
    entries += [hardlink_entry("bin/" + n, "bin/busybox") for n in names if "/" not in n]
    return make_tar(ordered(entries))


def work_layer():
    return make_tar(ordered([dir_entry("work")]))


def data_layer():
    return make_tar(ordered([dir_entry("data"), file_entry("data/a", b"a\n")]))


def whiteout_layer():
    return make_tar(ordered([
        dir_entry("bin"),
        dir_entry("data"),
        file_entry("bin/.wh.vi", b""),
        file_entry("data/.wh..wh..opq", b""),
        file_entry("data/b", b"b\n"),
    ]))


# ---- images ----

def oci_arch():
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(
        platform.machine(), platform.machine())


def build_image(name, layers, config_extra):
    """Returns {relative path: bytes} of the OCI layout of one image."""
    blobs = {}
    layer_descs, diff_ids = [], []
    for tar in layers:
        gz = gzip_bytes(tar)
        digest = sha256(gz)
        blobs[digest] = gz
        diff_ids.append(sha256(tar))
        layer_descs.append({"mediaType": MT_LAYER_GZIP, "digest": digest, "size": len(gz)})
    config = {
        "created": CREATED,
        "architecture": oci_arch(),
        "os": "linux",
        "config": dict({"Env": [PATH_ENV], "Cmd": ["sh"]}, **config_extra),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = canonical_json(config)
    blobs[sha256(config_bytes)] = config_bytes
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": sha256(config_bytes),
                   "size": len(config_bytes)},
        "layers": layer_descs,
    }
    manifest_bytes = canonical_json(manifest)
    blobs[sha256(manifest_bytes)] = manifest_bytes
    ref = f"{REGISTRY}/{name}:latest"
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": sha256(manifest_bytes),
            "size": len(manifest_bytes),
            "platform": {"architecture": oci_arch(), "os": "linux"},
            "annotations": {
                "org.opencontainers.image.ref.name": ref,
                "io.containerd.image.name": ref,
            },
        }],
    }
    files = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": canonical_json(index),
    }
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    return files


def write_layout(outdir, name, files):
    """Writes OUTDIR/NAME/ and OUTDIR/NAME.tar, each via a temp name and a rename."""
    final_dir = os.path.join(outdir, name)
    tmp_dir = os.path.join(outdir, f".{name}.tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    for rel, data in files.items():
        path = os.path.join(tmp_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    shutil.rmtree(final_dir, ignore_errors=True)
    os.rename(tmp_dir, final_dir)

    entries = [dir_entry("blobs"), dir_entry("blobs/sha256")]
    entries += [file_entry(rel, data) for rel, data in files.items()]
    tar_tmp = os.path.join(outdir, f".{name}.tar.tmp")
    with open(tar_tmp, "wb") as f:
        f.write(make_tar(ordered(entries)))
    os.rename(tar_tmp, os.path.join(outdir, f"{name}.tar"))


def up_to_date(outdir, name):
    script_mtime = os.path.getmtime(os.path.abspath(__file__))
    outputs = [os.path.join(outdir, name, "index.json"), os.path.join(outdir, f"{name}.tar")]
    return all(os.path.exists(p) and os.path.getmtime(p) > script_mtime for p in outputs)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print(f"usage: {argv[0]} OUTDIR", file=sys.stderr)
        return 2
    outdir = argv[1]
    if not os.access(BUSYBOX, os.X_OK):
        print(f"{BUSYBOX} not found: apt-get install -y busybox-static", file=sys.stderr)
        return 1
    os.makedirs(outdir, exist_ok=True)

    images = {
        "busybox": lambda base: build_image("busybox", [base], {}),
        "busybox-user": lambda base: build_image("busybox-user", [base], {"User": "app"}),
        "busybox-entry": lambda base: build_image("busybox-entry", [base, work_layer()], {
            "Entrypoint": ["/bin/echo", "entry"],
            "Cmd": ["cmd"],
            "Env": [PATH_ENV, "FOO=bar"],
            "WorkingDir": "/work",
        }),
        "busybox-whiteout": lambda base: build_image(
            "busybox-whiteout", [base, data_layer(), whiteout_layer()], {}),
        "pause": lambda base: build_image("pause", [base], {
            "Entrypoint": ["/bin/sleep", "2147483647"],
            "Cmd": [],
        }),
    }
    base = None
    for name, build in images.items():
        if up_to_date(outdir, name):
            print(f"{name}: up to date", file=sys.stderr)
            continue
        if base is None:
            base = base_layer()
        write_layout(outdir, name, build(base))
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
