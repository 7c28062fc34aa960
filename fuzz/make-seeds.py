#!/usr/bin/env python3
"""Writes fuzz/seeds/TARGET/: seed inputs for each fuzz target, in that
target's own input shape (see fuzz/README.md), cut from the project's own
fixtures only: captures in fixtures/local/ (recorded by fixtures/make-local.sh)
fixtures/dns/ (fixtures/make-dns.sh) and fixtures/fragments/
(fixtures/make-fragments.sh),
the lab certificates in fixtures/local/certs/, the lease, RADIUS and
inventory files in fixtures/leases/ and fixtures/inventory/, the detection
config in fixtures/detect/ and systemd/blindspot.toml. Nothing from
../shared/pcaps/ (third-party captures, not to be copied into git).

    python3 fuzz/make-seeds.py            # from the repository root
    python3 fuzz/make-seeds.py --baseline # also rebuild the baseline seed
                                          # (runs `cargo run -- replay` and
                                          # `cargo run -- baseline build`)

The output is deterministic: running it again on the same fixtures writes
the same files. Only the standard library is needed (the captures are
classic pcap, Ethernet).
"""

import base64
import glob
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
LOCAL = os.path.join(ROOT, "fixtures", "local")
# A seed stays small: the fuzzer mutates it, and git keeps it.
MAX_SEED = 16 << 10
# Streams and frame sequences are cut at this size (a handshake fits).
MAX_STREAM = 8 << 10
MAX_PER_TARGET = 30


def read_pcap(path):
    """[(ts_ns, frame)] of a classic pcap file."""
    d = open(path, "rb").read()
    magic = d[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        e = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        e = ">"
    else:
        raise SystemExit(f"{path}: not a classic pcap file")
    nanos = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (linktype,) = struct.unpack(e + "I", d[20:24])
    assert linktype == 1, f"{path}: link type {linktype}, want Ethernet"
    out, off = [], 24
    while off + 16 <= len(d):
        sec, frac, caplen, _ = struct.unpack(e + "IIII", d[off : off + 16])
        off += 16
        out.append((sec * 10**9 + frac * (1 if nanos else 1000), d[off : off + caplen]))
        off += caplen
    return out


def parse(frame):
    """Ethernet (+ VLAN) / IPv4 or IPv6 / TCP or UDP, as a dict (or None)."""
    if len(frame) < 14:
        return None
    et, off = struct.unpack(">H", frame[12:14])[0], 14
    while et in (0x8100, 0x88A8) and len(frame) >= off + 4:
        et, off = struct.unpack(">H", frame[off + 2 : off + 4])[0], off + 4
    p = {"ethertype": et, "l3": frame[off:], "src_mac": frame[6:12]}
    b = frame[off:]
    if et == 0x0800 and len(b) >= 20:
        ihl = (b[0] & 15) * 4
        total = struct.unpack(">H", b[2:4])[0]
        proto, src, dst, l4 = b[9], b[12:16], b[16:20], b[ihl:total]
    elif et == 0x86DD and len(b) >= 40:
        plen = struct.unpack(">H", b[4:6])[0]
        proto, src, dst, l4 = b[6], b[8:24], b[24:40], b[40 : 40 + plen]
    else:
        return p
    p.update(proto=proto, src=src, dst=dst, l4=l4)
    if proto == 6 and len(l4) >= 20:
        doff = (l4[12] >> 4) * 4
        p.update(
            sport=struct.unpack(">H", l4[0:2])[0],
            dport=struct.unpack(">H", l4[2:4])[0],
            seq=struct.unpack(">I", l4[4:8])[0],
            flags=l4[13],
            payload=l4[doff:],
        )
    elif proto == 17 and len(l4) >= 8:
        p.update(
            sport=struct.unpack(">H", l4[0:2])[0],
            dport=struct.unpack(">H", l4[2:4])[0],
            payload=l4[8:],
        )
    return p


def captures():
    return sorted(glob.glob(os.path.join(LOCAL, "*.pcap")))


def name_of(path):
    return os.path.basename(path).rsplit(".", 1)[0]


class Seeds:
    """The seeds of one target: distinct contents, at most MAX_PER_TARGET."""

    def __init__(self, target):
        self.dir = os.path.join(SEEDS, target)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.seen = set()
        self.count = 0

    def add(self, name, data):
        data = bytes(data)
        h = hashlib.sha256(data).digest()
        if h in self.seen or self.count >= MAX_PER_TARGET:
            return
        assert len(data) <= MAX_SEED, f"{name}: {len(data)} bytes is too big for a seed"
        self.seen.add(h)
        self.count += 1
        with open(os.path.join(self.dir, name), "wb") as f:
            f.write(data)

    def copy(self, path, name=None):
        self.add(name or os.path.basename(path), open(path, "rb").read())


# --- network payloads -------------------------------------------------------


def udp_payloads(ports):
    for cap in captures():
        for i, (_, fr) in enumerate(read_pcap(cap)):
            p = parse(fr)
            if p and p.get("proto") == 17 and (p["sport"] in ports or p["dport"] in ports):
                yield name_of(cap), i, p["payload"]


def dhcp6_messages():
    """DHCPv6 messages written here (the lab capture has none): a SOLICIT
    with a DUID-LL client id, IA_NA and Client FQDN; an ADVERTISE with an
    IA_ADDR; the SOLICIT inside a RELAY-FORW."""

    def opt(code, body):
        return struct.pack(">HH", code, len(body)) + body

    duid_ll = struct.pack(">HH", 3, 1) + bytes.fromhex("02005e100001")
    duid_llt = struct.pack(">HHI", 1, 1, 700000000) + bytes.fromhex("02005e100002")
    fqdn = b"\x00" + b"\x06iphone\x03lab\x00"
    ia_addr = opt(5, bytes.fromhex("20010db8000000000000000000000117") + struct.pack(">II", 3600, 7200))
    solicit = bytes([1, 0x12, 0x34, 0x56]) + opt(1, duid_ll) + opt(3, struct.pack(">III", 1, 0, 0)) + opt(39, fqdn) + opt(8, b"\x00\x00")
    advertise = (
        bytes([2, 0x12, 0x34, 0x56])
        + opt(1, duid_ll)
        + opt(2, duid_llt)
        + opt(3, struct.pack(">III", 1, 1800, 2880) + ia_addr)
    )
    request = bytes([3, 0xAB, 0xCD, 0xEF]) + opt(1, duid_llt) + opt(3, struct.pack(">III", 1, 0, 0) + ia_addr) + opt(39, fqdn)
    reply = bytes([7, 0xAB, 0xCD, 0xEF]) + opt(1, duid_llt) + opt(4, struct.pack(">I", 2) + ia_addr)
    relay = bytes([12, 0]) + bytes(16) + bytes.fromhex("fe800000000000000000000000000001") + opt(9, solicit)
    return [("solicit", solicit), ("advertise", advertise), ("request", request), ("reply", reply), ("relay-forw-solicit", relay)]


def make_dhcp():
    d4 = Seeds("dhcp4")
    for cap, i, pl in udp_payloads({67, 68}):
        d4.add(f"{cap}-{i:03}", pl)
    d6 = Seeds("dhcp6")
    for cap, i, pl in udp_payloads({546, 547}):
        d6.add(f"{cap}-{i:03}", pl)
    for name, m in dhcp6_messages():
        d6.add(name, m)
    ev = Seeds("device_evidence")
    for cap, i, pl in udp_payloads({67, 68, 546, 547}):
        ev.add(f"dhcp-{cap}-{i:03}", pl)
    for name, m in dhcp6_messages():
        ev.add(f"dhcp6-{name}", m)
    for cap in captures():
        for i, (_, fr) in enumerate(read_pcap(cap)):
            p = parse(fr)
            if p and p["ethertype"] == 0x0806:
                ev.add(f"arp-{name_of(cap)}-{i:03}", p["l3"])
            elif p and p.get("proto") == 58 and p["l4"][:1] in (b"\x85", b"\x86", b"\x87", b"\x88"):
                ev.add(f"ndp-{name_of(cap)}-{i:03}", p["l4"])


def make_dns():
    """The dns shape (see blindspot::fuzzing::dns): each UDP transaction of
    fixtures/dns/ as two datagrams; each TCP connection as its stream, every
    segment cut in two (the parser frames messages across pieces)."""
    cap = os.path.join(ROOT, "fixtures", "dns", "dns-names.pcap")
    s = Seeds("dns")
    udp = []
    for _, fr in read_pcap(cap):
        p = parse(fr)
        if p and p.get("proto") == 17 and 53 in (p["sport"], p["dport"]):
            udp.append((1 if p["sport"] == 53 else 0, p["payload"]))
    for k in range(0, len(udp) - 1, 2):
        body = b"".join(struct.pack(">BH", d, len(pl)) + pl for d, pl in udp[k : k + 2])
        s.add(f"udp-{k // 2:02}", b"\x00" + body)
    for n, items in enumerate(tcp_streams(cap)):
        out = bytearray(b"\x01")
        for _, d, pl, _, _ in items:
            h = len(pl) // 2
            for part in (pl[:h], pl[h:]):
                out += struct.pack(">BH", d, len(part)) + part
        if len(out) <= MAX_SEED:
            s.add(f"tcp-{n:02}", out)


# --- frames -----------------------------------------------------------------


def interesting_frames(cap):
    """Frames of a capture worth a seed: the first few of each connection
    (handshakes), every non-TCP one (DHCP, ARP, NDP), and the first of each
    TCP payload size seen (hellos, certificates, alerts)."""
    seen_sizes, out = set(), []
    for i, (ts, fr) in enumerate(read_pcap(cap)):
        p = parse(fr)
        tcp = p is not None and p.get("proto") == 6
        size = len(p.get("payload", b"")) if tcp else -1
        if i < 4 or not tcp or (size > 0 and size not in seen_sizes):
            out.append((i, fr))
        seen_sizes.add(size)
    return out


def relink(fr):
    """One Ethernet frame as the other link types the decoder reads:
    (link type, frame) for raw IP, IPv4/IPv6, Linux cooked v1 and v2, and
    BSD loopback."""
    p = parse(fr)
    if not p or "proto" not in p:
        return []
    et, l3 = p["ethertype"], p["l3"]
    v6 = et == 0x86DD
    sll = struct.pack(">HHH", 0, 1, 6) + fr[6:12] + b"\0\0" + struct.pack(">H", et) + l3
    sll2 = struct.pack(">HHIHBB", et, 0, 1, 1, 0, 6) + fr[6:12] + b"\0\0" + l3
    null = struct.pack("<I", 30 if v6 else 2) + l3
    return [(101, l3), (229 if v6 else 228, l3), (113, sll), (276, sll2), (0, null), (108, struct.pack(">I", 30 if v6 else 2) + l3)]


def make_decode():
    s = Seeds("decode")
    caps = captures()
    for cap in caps:
        for i, fr in interesting_frames(cap)[:3]:
            s.add(f"eth-{name_of(cap)}-{i:03}", struct.pack("<H", 1) + fr)
    # The other link types, from a few of the frames.
    for cap in caps:
        if "tls12-curl-nginx" in cap or "dhcp" in cap:
            for i, fr in interesting_frames(cap)[:2]:
                for lt, f in relink(fr):
                    s.add(f"lt{lt}-{name_of(cap)}-{i:03}", struct.pack("<H", lt) + f)


def make_decode_deferred():
    """Fragment trains of fixtures/fragments/ (make-fragments.sh), whole and
    reordered, as `[link type][len][frame]...` sequences."""
    s = Seeds("decode_deferred")
    frames = [fr for _, fr in read_pcap(os.path.join(ROOT, "fixtures", "fragments", "udp-fragments.pcap"))]

    def seq(idx):
        return struct.pack("<H", 1) + b"".join(struct.pack("<H", len(frames[i])) + frames[i] for i in idx)

    # tshark's frame numbers less one: the v4 and v6 DNS answers, the v4
    # datagrams both ways, the v6 one out of order, then the small ones.
    s.add("v4-dns-answer", seq([9, 10, 11]))
    s.add("v6-dns-answer", seq([15, 16, 17]))
    s.add("v4-both-ways", seq([18, 19, 20, 21, 22, 23]))
    s.add("v6-out-of-order", seq([26, 25, 27, 28, 29, 30, 24, 8]))
    s.add("small-frames", seq([i for i, f in enumerate(frames) if len(f) < 400]))


def make_tunnel():
    """[carrier][bytes]: the VXLAN payloads (header and real inner frame) of
    fixtures/tunnels/vxlan4-tls.pcap after UDP to 4789 (carrier 3), and
    their inner IPv4 packets as IP-in-IP (carrier 1)."""
    s = Seeds("tunnel")
    cap = os.path.join(os.path.dirname(LOCAL), "tunnels", "vxlan4-tls.pcap")
    n = 0
    for _, f in read_pcap(cap):
        vxlan = len(f) > 64 and f[23] == 17 and f[36:38] == b"\x12\xb5"
        if vxlan and f[62:64] == b"\x08\x00" and n < 8:
            s.add(f"vxlan4-tls-{n:03}", bytes([3]) + f[42:])
            s.add(f"ipip-{n:03}", bytes([1]) + f[64:])
            n += 1


def make_flow_table():
    """[length u16 BE][time step u8, 0.1 s][frame] per frame, whole
    connections where they fit in a seed."""
    s = Seeds("flow_table")
    for cap in captures():
        out, last = bytearray(), None
        for ts, fr in read_pcap(cap):
            step = 0 if last is None else min(255, (ts - last) // 100_000_000)
            rec = struct.pack(">HB", len(fr), step) + fr
            if len(out) + len(rec) > MAX_STREAM:
                break
            out += rec
            last = ts
        s.add(name_of(cap), out)


# --- capture files ----------------------------------------------------------


def make_capture_file():
    s = Seeds("capture_file")
    small = [c for c in captures() if os.path.getsize(c) <= MAX_SEED]
    for cap in small:
        s.copy(cap)
    tmp = tempfile.mkdtemp()
    try:
        for cap in small[:3]:
            # pcapng (editcap, from Wireshark), when it is installed.
            ng = os.path.join(tmp, name_of(cap) + ".pcapng")
            if shutil.which("editcap") and subprocess.run(["editcap", "-F", "pcapng", cap, ng]).returncode == 0:
                s.copy(ng)
            # Nanosecond and big-endian pcap headers.
            d = open(cap, "rb").read()
            s.add(name_of(cap) + "-ns.pcap", b"\x4d\x3c\xb2\xa1" + d[4:])
            s.add(name_of(cap) + "-be.pcap", byteswap_pcap(d))
        d = open(small[0], "rb").read()
        s.add(name_of(small[0]) + ".pcap.gz", gzip.compress(d, mtime=0))
        if shutil.which("zstd"):
            z = subprocess.run(["zstd", "-q", "-c", small[0]], capture_output=True, check=True).stdout
            s.add(name_of(small[0]) + ".pcap.zst", z)
        s.add(name_of(small[0]) + "-truncated.pcap", d[: len(d) // 2])
    finally:
        shutil.rmtree(tmp)


def byteswap_pcap(d):
    """A little-endian microsecond pcap rewritten big-endian."""
    h = struct.unpack("<IHHiIII", d[:24])
    out, off = bytearray(struct.pack(">IHHiIII", *h)), 24
    while off + 16 <= len(d):
        r = struct.unpack("<IIII", d[off : off + 16])
        out += struct.pack(">IIII", *r) + d[off + 16 : off + 16 + r[2]]
        off += 16 + r[2]
    return bytes(out)


# --- TLS --------------------------------------------------------------------


def tcp_streams(cap):
    """Per TCP connection, in packet order: [(ts, dir, payload, fin, rst)],
    dir 0 from the side that sent the SYN (else the first sender). Segments
    already seen (retransmissions) are left out."""
    conns = {}
    for ts, fr in read_pcap(cap):
        p = parse(fr)
        if not p or p.get("proto") != 6:
            continue
        a, b = (p["src"], p["sport"]), (p["dst"], p["dport"])
        key = tuple(sorted([a, b]))
        c = conns.setdefault(key, {"client": None, "next": {}, "items": []})
        if c["client"] is None:
            syn_only = p["flags"] & 0x12 == 0x02
            c["client"] = a if syn_only or p["flags"] & 0x02 == 0 else b
        d = 0 if a == c["client"] else 1
        pl = p["payload"]
        nxt = c["next"].get(d)
        if pl and nxt is not None and (p["seq"] - nxt) % 2**32 >= 2**31:
            skip = (nxt - p["seq"]) % 2**32
            pl = pl[skip:]
        if pl:
            c["next"][d] = (p["seq"] + len(p["payload"])) % 2**32
        fin, rst = bool(p["flags"] & 1), bool(p["flags"] & 4)
        if pl or fin or rst:
            c["items"].append((ts, d, pl, fin, rst))
    return [c["items"] for c in conns.values()]


def tls_stream_seed(items, piece=None):
    """The tls_stream shape: [control][length u16 BE][bytes] per chunk (see
    blindspot::fuzzing::tls_stream), cut to MAX_STREAM."""
    out, last = bytearray(), None
    for ts, d, pl, fin, rst in items:
        step = 0 if last is None else min(15, (ts - last) // 1_000_000)
        last = ts
        pieces = [pl[i : i + piece] for i in range(0, len(pl), piece)] if piece else [pl]
        for k, part in enumerate(pieces or [b""]):
            close = (fin or rst) and k == len(pieces or [b""]) - 1
            ctl = d | (4 if close else 0) | (8 if close and rst else 0) | ((step if k == 0 else 0) << 4)
            rec = struct.pack(">BH", ctl, len(part)) + part
            if len(out) + len(rec) > MAX_STREAM:
                room = MAX_STREAM - len(out) - 3
                if room > 0:
                    out += struct.pack(">BH", d, room) + part[:room]
                return bytes(out)
            out += rec
    return bytes(out)


def server_certificates(items):
    """Certificate message bodies (after the 4-byte header) sent by the
    server in cleartext (TLS <= 1.2)."""
    stream = b"".join(pl for _, d, pl, _, _ in items if d == 1)
    hs, off = bytearray(), 0
    while off + 5 <= len(stream):
        ct, ln = stream[off], struct.unpack(">H", stream[off + 3 : off + 5])[0]
        if ct == 20:
            break  # ChangeCipherSpec: the rest is protected.
        if ct == 22:
            hs += stream[off + 5 : off + 5 + ln]
        off += 5 + ln
    out, off = [], 0
    while off + 4 <= len(hs):
        t, ln = hs[off], int.from_bytes(hs[off + 1 : off + 4], "big")
        if t == 11:
            out.append(bytes(hs[off + 4 : off + 4 + ln]))
        off += 4 + ln
    return out


def pem_certs(path):
    text, out = open(path).read(), []
    for block in text.split("-----BEGIN CERTIFICATE-----")[1:]:
        b64 = block.split("-----END CERTIFICATE-----")[0]
        out.append(base64.b64decode("".join(b64.split())))
    return out


def cert_list(ders):
    body = b"".join(len(d).to_bytes(3, "big") + d for d in ders)
    return len(body).to_bytes(3, "big") + body


def make_tls():
    ts = Seeds("tls_stream")
    cs = Seeds("certificate")
    for cap in captures():
        for n, items in enumerate(tcp_streams(cap)):
            if not items:
                continue
            ts.add(f"{name_of(cap)}-{n}", tls_stream_seed(items))
            for k, body in enumerate(server_certificates(items)):
                if len(body) <= MAX_SEED:
                    cs.add(f"{name_of(cap)}-{n}-{k}", body)
    # The same handshakes in 7-byte chunks: record headers split across feeds.
    for cap in captures():
        if "tls12-curl-nginx" in cap or "tls13-client-rejects" in cap:
            for n, items in enumerate(tcp_streams(cap)):
                ts.add(f"{name_of(cap)}-{n}-pieces", tls_stream_seed(items, piece=7))
    certs = {name_of(p): pem_certs(p) for p in sorted(glob.glob(os.path.join(LOCAL, "certs", "*.pem")))}
    detect = sorted(glob.glob(os.path.join(ROOT, "fixtures", "detect", "*.pem")))
    for name, ders in certs.items():
        cs.add(f"lab-{name}", cert_list(ders))
    if "origin" in certs and "lab-ca" in certs:
        cs.add("lab-origin-and-ca", cert_list(certs["origin"] + certs["lab-ca"]))
    for p in detect:
        cs.add(f"detect-{name_of(p)}", cert_list(pem_certs(p)))


# --- files ------------------------------------------------------------------


def make_files():
    fx = os.path.join(ROOT, "fixtures")
    groups = {
        "leases": ["leases/*.leases", "leases/*.csv", "local/dnsmasq.leases"],
        "radius": ["leases/radius.detail"],
        "mdm": ["inventory/mdm-*.json", "detect/mdm.json"],
        "catalog": ["inventory/catalog-*.json", "detect/catalog.json"],
        "app_events": ["inventory/app-events*.jsonl", "detect/app-events.jsonl"],
        "proxy_log": ["detect/squid/access.log"],
        "config": ["detect/*.toml", "../systemd/blindspot.toml"],
    }
    for target, pats in groups.items():
        s = Seeds(target)
        for pat in pats:
            for f in sorted(glob.glob(os.path.join(fx, pat))):
                parent = os.path.basename(os.path.dirname(f))
                s.copy(f, f"{parent}-{os.path.basename(f)}")


def make_baseline(rebuild):
    """A baseline built by `blindspot baseline build` from the records of a
    replay of the local captures (and the detection scenario, made by
    fixtures/make-detect.sh). Kept from the last run unless asked to rebuild."""
    d = os.path.join(SEEDS, "baseline")
    if not rebuild:
        if not os.path.isdir(d):
            sys.exit("fuzz/seeds/baseline/ is missing: run with --baseline")
        return
    s = Seeds("baseline")
    tmp = tempfile.mkdtemp()
    try:
        caps = captures() + [os.path.join(ROOT, "fixtures", "detect", "scenario.pcap")]
        rec = os.path.join(tmp, "records.jsonl")
        run = ["cargo", "run", "--quiet", "--"]
        subprocess.run(run + ["replay", "-o", rec] + caps, cwd=ROOT, check=True)
        out = os.path.join(tmp, "baseline.zst")
        subprocess.run(run + ["baseline", "build", "-o", out, rec], cwd=ROOT, check=True)
        s.copy(out, "local-and-scenario.baseline")
        # The JSON inside, and an empty baseline, compressed by zstd too.
        if shutil.which("zstd"):
            js = subprocess.run(["zstd", "-q", "-d", "-c", out], capture_output=True, check=True).stdout
            s.add("local-and-scenario.baseline.json", js)
            empty = b'{"blindspot_baseline":1,"entries":[]}'
            s.add("empty.baseline", subprocess.run(["zstd", "-q", "-c"], input=empty, capture_output=True, check=True).stdout)
    finally:
        shutil.rmtree(tmp)


def make_tls_upgrade():
    """Each connection of fixtures/starttls/ (STARTTLS, SOCKS, refusals,
    the hostile SMTP server) in the tls_upgrade shape: a byte picking the
    server port of blindspot::fuzzing::tls_upgrade (index 11 is 8080, no
    port rule: the first bytes decide), then the tls_stream chunks; the
    first few also in 7-byte chunks."""
    s = Seeds("tls_upgrade")
    for cap in sorted(glob.glob(os.path.join(ROOT, "fixtures", "starttls", "*.pcap"))):
        for n, items in enumerate(tcp_streams(cap)):
            if not items:
                continue
            s.add(f"{name_of(cap)}-{n}", bytes([11]) + tls_stream_seed(items))
            if n < 4:
                s.add(f"{name_of(cap)}-{n}-pieces", bytes([11]) + tls_stream_seed(items, piece=7))


if __name__ == "__main__":
    make_dhcp()
    make_dns()
    make_decode()
    make_decode_deferred()
    make_tunnel()
    make_flow_table()
    make_capture_file()
    make_tls()
    make_tls_upgrade()
    make_files()
    make_baseline("--baseline" in sys.argv[1:])
    for t in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, t))
        size = sum(os.path.getsize(os.path.join(SEEDS, t, f)) for f in files)
        print(f"{t:16} {len(files):3} files {size:7} bytes")
