#!/usr/bin/env python3
"""An independent verifier for Blackbox JSONL logs, written from docs/FORMAT.md alone.

It shares no code with the Rust implementation: if both accept a log and reject the same
tampering, the format document is precise enough to implement. Standard library only; Ed25519
checkpoint signatures are checked when the `cryptography` package is installed.

Several LOG files are read in the given order as one log; a file that continues a chain starts with
an anchor record (FORMAT.md §8). Without `cryptography` an anchor's frontier, head proof and root
are still checked against its checkpoint, but not the signature.

Forward-secure key generations (FORMAT.md §17) are read from `fss` keyring lines: entries named
`<gen>-e<e>` are checked under the epoch key derived from the state held, entries of epochs before
it are listed as not checked. --key-file may be repeated (e.g. a keyring and an initial file).
An erasure marker resolves the redactions it lists when its HMAC verifies or is not checked (no
key, or an erased epoch: then the output says so), never when it fails or names an unknown key
(FORMAT.md §5 "Markers whose HMAC is not checked").

With --witness-key (repeatable) and --witness-quorum N (default: all of them), every chain needs a
checkpoint whose root matches and that carries valid Ed25519 cosignature/v1 lines of N of those
witnesses (FORMAT.md §7 "Cosignatures"); a listed witness's line that does not verify is tampering.

usage: verify_jsonl.py LOG [LOG ...] [--key-file hmac.keys ...] [--public-key checkpoint.pub] [--witness-key w.pub ... [--witness-quorum N]]
exit: 0 OK, 1 TAMPERED or not witnessed, 2 usage error
"""
import base64, datetime, hashlib, hmac, json, re, struct, sys

GENESIS = "sha256:" + "0" * 64
SUFFIX = len(',"hmac_sha256":"') + 64 + len('"}')


def sha(b):
    return hashlib.sha256(b).digest()


def leaf(entry_hash):
    return sha(b"\x00" + entry_hash)


def node(l, r):
    return sha(b"\x01" + l + r)


class Tree:
    """RFC 6962 Merkle tree over leaf hashes (right frontier)."""

    def __init__(self, size=0, frontier=()):
        """An empty tree, or the tree of `size` leaves whose frontier (largest subtree first) is given."""
        heights = [b for b in range(63, -1, -1) if size >> b & 1]
        assert len(heights) == len(frontier), "frontier needs one hash per set bit of the size"
        self.stack, self.size = list(zip(heights, frontier)), size  # (height, hash)

    def push(self, h):
        height = 0
        while self.stack and self.stack[-1][0] == height:
            _, left = self.stack.pop()
            h, height = node(left, h), height + 1
        self.stack.append((height, h))
        self.size += 1

    def root(self):
        if not self.stack:
            return sha(b"")
        h = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            h = node(left, h)
        return h


def verify_inclusion(leaf_h, index, size, proof, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_h
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def parse_note(text):
    """C2SP signed note + tlog checkpoint: (origin, size, root, body, [(name, keyhash, sig)])."""
    cut = text.rindex("\n\n")
    body, sigs = text[: cut + 1], []
    for line in text[cut + 2 :].splitlines():
        assert line.startswith("\u2014 ")
        name, b64 = line[2:].split(" ")
        raw = base64.b64decode(b64, validate=True)
        sigs.append((name, raw[:4], raw[4:]))
    origin, size, root = body.split("\n")[:3]
    return origin, int(size), base64.b64decode(root, validate=True), body, sigs


EPOCH_ID = re.compile(r"^(.+)-e(0|[1-9][0-9]*)$")


def hm(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


class Fss:
    """A forward-secure generation at state S_h (FORMAT.md §17), deriving later epochs in order."""

    def __init__(self, length, origin, epoch, state):
        assert 60 <= length <= 31622400 and origin % length == 0, "bad epoch length or origin"
        self.length, self.origin, self.held, self.state = length, origin, epoch, state
        self.cursor = (epoch, state)

    def key(self, e):
        """K_e, or None when e is before the state held (its key was erased)."""
        if e < self.held:
            return None
        at, s = self.cursor if self.cursor[0] <= e else (self.held, self.state)
        while at < e:
            at += 1
            s = hm(s, b"blackbox fss v1 evolve" + struct.pack(">Q", at))
        self.cursor = (at, s)
        return hm(s, b"blackbox fss v1 mac" + struct.pack(">Q", e))


def load_keys(paths):
    """Plain keys {id: bytes} and forward-secure generations {gen: Fss}; for a generation in
    several files the earliest state is kept (it derives the later ones)."""
    keys, fss = {}, {}
    for path in paths:
        for line in open(path):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            f = line.split(" ")
            if len(f) == 2:
                keys[f[0]] = bytes.fromhex(f[1])
            elif len(f) == 6 and f[1] == "fss":
                g = Fss(int(f[2]), int(f[3]), int(f[4]), bytes.fromhex(f[5]))
                if f[0] not in fss or g.held < fss[f[0]].held:
                    fss[f[0]] = g
            else:
                raise SystemExit(f"{path}: not a keyring line")
    return keys, fss


def load_vkey(path):
    name, khash, b64 = open(path).read().strip().split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 1 and len(raw) == 33, "not an Ed25519 verifier key"
    assert sha(name.encode() + b"\n" + raw)[:4].hex() == khash, "key hash mismatch"
    return name, bytes.fromhex(khash), raw[1:]


V1_MEMBERS = {"agent_id", "entry_id", "event_type", "key_id", "payload", "prev_entry_hash", "seq",
              "session_id", "tenant_id", "timestamp", "v", "hmac_sha256"}
V1_OPTIONAL = {"client_seq", "personal_digest"}
V2_MEMBERS = V1_MEMBERS | {"origin", "written_at"}
V2_OPTIONAL = V1_OPTIONAL | {"clock_skew_ms"}
ORIGIN_MEMBERS = {"service": {"kind"}, "token": {"kind", "scope", "token_id", "via"},
                  "local": {"command", "kind", "user"}}


def written_at(entry_id):
    """FORMAT.md §2: written_at is the millisecond field of the UUIDv7 entry id, RFC 3339."""
    ms = int(entry_id.replace("-", "")[:12], 16)
    d = datetime.datetime.fromtimestamp(ms // 1000, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def check_members(e):
    """The members of a v1 or v2 entry (FORMAT.md §2); a message, or None when they are right."""
    v = e.get("v")
    if v not in (1, 2):
        return f"format version {v!r} is not 1 or 2"
    required, optional = (V1_MEMBERS, V1_OPTIONAL) if v == 1 else (V2_MEMBERS, V2_OPTIONAL)
    names = set(e)
    if not required <= names or not names <= required | optional:
        return f"members {sorted(names ^ required - optional)} do not fit format version {v}"
    if v == 1:
        return None
    o = e["origin"]
    if not isinstance(o, dict) or set(o) != ORIGIN_MEMBERS.get(o.get("kind"), set()):
        return f"origin {o!r} is not one of the forms of FORMAT.md §2"
    if e["written_at"] != written_at(e["entry_id"]):
        return f"written_at {e['written_at']} is not the millisecond of entry_id"
    return None


def main(argv):
    args, opts, key_files = [], {}, []
    it = iter(argv)
    for a in it:
        if a == "--key-file":
            key_files.append(next(it))
        elif a in ("--public-key", "--witness-quorum"):
            opts[a] = next(it)
        elif a == "--witness-key":
            opts.setdefault(a, []).append(next(it))
        else:
            args.append(a)
    if not args:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    keys, fss = load_keys(key_files)
    erased = {}  # generation -> entries whose epoch key is gone
    unchecked_markers = {}  # generation -> [markers of erased epochs applied, redactions they resolved]
    vkey = load_vkey(opts["--public-key"]) if "--public-key" in opts else None
    ed = None
    if vkey:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
            ed = Ed25519PublicKey.from_public_bytes(vkey[2])
        except ImportError:
            print("note: `cryptography` not installed; checkpoint signatures not checked")

    def signed(body, sigs):
        for name, kh, sig in sigs:
            if name == vkey[0] and kh == vkey[1]:
                try:
                    ed.verify(sig, body.encode())
                    return True
                except Exception:
                    pass
        return False

    # Witness policy: cosignature/v1 keys (name, key ID = SHA-256(name \n 0x04 key)[:4], key).
    witnesses = []
    for path in opts.get("--witness-key", []):
        line = next(l.strip() for l in open(path, encoding="utf-8") if l.strip() and not l.startswith("#"))
        name, kid, b64 = line.split("+")
        raw = base64.b64decode(b64, validate=True)
        if raw[0] != 4 or len(raw) != 33 or sha(name.encode() + b"\n" + raw)[:4] != bytes.fromhex(kid):
            print(f"{path}: not a witness key (type 0x04)", file=sys.stderr)
            return 2
        witnesses.append((name, bytes.fromhex(kid), raw[1:]))
    quorum = int(opts.get("--witness-quorum", len(witnesses)))
    if witnesses and not 1 <= quorum <= len(witnesses):
        print("--witness-quorum must be between 1 and the number of --witness-key", file=sys.stderr)
        return 2
    if witnesses:
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey as _K
        except ImportError:
            print("--witness-key needs the `cryptography` package (pip install cryptography)", file=sys.stderr)
            return 2

    def cosigners(body, sigs):
        """The listed witnesses whose cosignature verifies ([(name, time)]), and those whose does not."""
        ok, bad = [], []
        for name, kid, pk in witnesses:
            mine = [sig for n_, kh, sig in sigs if n_ == name and kh == kid]
            good = None
            for sig in mine:
                t = struct.unpack(">Q", sig[:8])[0] if len(sig) == 72 else None
                try:
                    _K.from_public_bytes(pk).verify(sig[8:], f"cosignature/v1\ntime {t}\n".encode() + body.encode())
                    good = t
                except Exception:
                    bad.append(name)
            if good is not None and name not in bad:
                ok.append((name, good))
        return ok, bad

    witnessed = {}  # tenant -> [size, [(witness, time)]]
    chains, problems, checkpoints, notes, sidecar, origins = {}, [], [], [], None, {}
    lines = ((f"{path} line {n}", raw) for path in args for n, raw in enumerate(open(path, "rb"), 1))
    for n, raw in lines:
        line = raw.rstrip(b"\n")
        if line.startswith(b'{"checkpoint":'):
            checkpoints.append((n, json.loads(line)["checkpoint"]))
            continue
        if line.startswith(b'{"anchor":'):
            a = json.loads(line)["anchor"]
            t, size = a["tenant_id"], a["size"]
            head = bytes.fromhex(a["head"].removeprefix("sha256:"))
            frontier = [base64.b64decode(h, validate=True) for h in a["frontier"]]
            proof = [base64.b64decode(h, validate=True) for h in a["head_proof"]]
            origin, cp_size, root, body, sigs = parse_note(a["checkpoint"])
            where = f"anchor ({n}) of {t} at {size}"
            if ed and not signed(body, sigs):
                problems.append(f"{where}: bad checkpoint signature")
            if origin.rsplit("/", 1)[-1] != t or cp_size != size:
                problems.append(f"{where}: its checkpoint is for {origin} at size {cp_size}")
            if len(frontier) != bin(size).count("1"):
                problems.append(f"{where}: frontier has {len(frontier)} hashes")
                continue
            tree = Tree(size, frontier)
            if tree.root() != root:
                problems.append(f"{where}: frontier root differs from the checkpoint root")
            if size == 0:
                if a["head"] != GENESIS or proof:
                    problems.append(f"{where}: size 0 needs the genesis head and no proof")
            elif not verify_inclusion(leaf(head), size - 1, size, proof, root):
                problems.append(f"{where}: head_proof does not prove the head against the checkpoint root")
            c = chains.get(t)
            if c is None:
                chains[t] = {"next": size + 1, "prev": a["head"], "tree": tree, "roots": {size: root}, "start": size}
                if not ed:
                    notes.append(f"{where}: not authenticated (no public key or no `cryptography`); entries 1..{size} taken on its word")
            elif size > c["next"] - 1:
                problems.append(f"{where}: entries {c['next']}..{size} are missing before it (deletion)")
                c.update(next=size + 1, prev=a["head"], tree=tree)
                c["roots"][size] = root
            elif size < c["next"] - 1:
                problems.append(f"{where}: the chain already reached entry {c['next'] - 1} (replayed or rewound)")
            elif a["head"] != c["prev"] or c["tree"].root() != tree.root():
                problems.append(f"{where}: differs from the entries before it (history rewritten)")
            continue
        if line.startswith(b'{"personal":'):
            rec = json.loads(line)["personal"]
            sidecar = json.dumps(rec["sidecar"], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            continue
        e = json.loads(line)
        t = e["tenant_id"]
        shape = check_members(e)
        if shape:
            problems.append(f"entry {e.get('seq')} ({n}): {shape}")
        elif e["v"] == 2:
            kind = e["origin"]["kind"]
            origins[kind] = origins.get(kind, 0) + 1
        c = chains.setdefault(t, {"next": 1, "prev": GENESIS, "tree": Tree(), "roots": {}, "start": 0})
        body = line[:-SUFFIX] + b"}"
        assert line[-SUFFIX:] == b',"hmac_sha256":"' + e["hmac_sha256"].encode() + b'"}', f"line {n}: HMAC is not the last member"
        mac_bad, mac_erased = False, False
        epoch_id = EPOCH_ID.match(e["key_id"])
        if epoch_id:
            gen, ep = epoch_id.group(1), int(epoch_id.group(2))
            last = c.setdefault("epochs", {}).get(gen)
            if last is not None and ep < last:
                problems.append(f"entry {e['seq']} ({n}): epoch {ep} of {gen} after epoch {last} (forward-secure epoch went back)")
            c["epochs"][gen] = max(ep, last or 0)
        if keys or fss:
            if e["key_id"] in keys:
                k = keys[e["key_id"]]
            elif epoch_id and epoch_id.group(1) in fss:
                k = fss[gen].key(ep)
                if k is None:
                    erased[gen] = erased.get(gen, 0) + 1
                    k, mac_erased = False, True
            else:
                k = None
            if k is False:
                pass  # not checked: the key of that epoch was erased
            elif k is None or not hmac.compare_digest(hmac.new(k, sha(body), hashlib.sha256).hexdigest(), e["hmac_sha256"]):
                problems.append(f"entry {e['seq']} ({n}): HMAC mismatch")
                mac_bad = True
        if e["seq"] != c["next"]:
            problems.append(f"entry {c['next']} ({n}): sequence jumps to {e['seq']}")
        if e["prev_entry_hash"] != c["prev"]:
            problems.append(f"entry {e['seq']} ({n}): does not link to the previous entry")
        if "personal_digest" in e:
            if sidecar is None:
                # Legitimate only if a later erasure marker of this chain lists it (FORMAT.md §5).
                c.setdefault("unmarked", {})[e["seq"]] = (e["entry_id"], n)
            elif "sha256:" + sha(sidecar).hex() != e["personal_digest"]:
                problems.append(f"entry {e['seq']} ({n}): personal sidecar does not match")
        sidecar = None
        if e["event_type"] == "erasure" and not mac_bad:
            done = c.setdefault("erased", set())
            p = e["payload"]
            ok = (set(p) == {"count", "part", "parts", "reason", "redacted", "requested_by", "ticket"}
                  and p["count"] == len(p["redacted"]) <= 10000 and 1 <= p["part"] <= p["parts"]
                  and all(a["seq"] < b["seq"] for a, b in zip(p["redacted"], p["redacted"][1:])))
            if not ok:
                problems.append(f"entry {e['seq']} ({n}): erasure marker cannot be read")
            else:
                c["markers"] = c.get("markers", 0) + 1
                before = len(done)
                for r in p["redacted"]:
                    s_, pending = r["seq"], c.setdefault("unmarked", {})
                    if s_ >= e["seq"]:
                        problems.append(f"entry {e['seq']} ({n}): erasure marker lists entry {s_}, which does not precede it")
                    elif s_ <= c["start"] or s_ in done:
                        pass
                    elif pending.get(s_, (None,))[0] == r["entry_id"]:
                        del pending[s_]
                        done.add(s_)
                    else:
                        problems.append(f"entry {s_} ({n}): listed by an erasure marker but its personal data was not erased")
                if mac_erased:
                    u = unchecked_markers.setdefault(gen, [0, 0])
                    u[0], u[1] = u[0] + 1, u[1] + len(done) - before
        h = sha(line)
        c["next"], c["prev"] = e["seq"] + 1, "sha256:" + h.hex()
        c["tree"].push(leaf(h))
        c["roots"][c["tree"].size] = c["tree"].root()

    for n, text in checkpoints:
        origin, size, root, body, sigs = parse_note(text)
        tenant = origin.rsplit("/", 1)[-1]
        if ed and not signed(body, sigs):
            problems.append(f"checkpoint ({n}): bad signature")
        c = chains.get(tenant, {"roots": {}, "start": 0})
        got = c["roots"].get(size, sha(b"") if size == 0 else None)
        if witnesses and got == root and (not ed or signed(body, sigs)):
            ok, bad = cosigners(body, sigs)
            for name in bad:
                problems.append(f"checkpoint ({n}): the cosignature of witness {name} does not verify")
            if len(ok) >= quorum and not bad:
                w = witnessed.setdefault(tenant, [0, []])
                if size >= w[0]:
                    witnessed[tenant] = [size, ok]
        if got is None and size < c["start"]:
            notes.append(f"checkpoint ({n}) of {tenant} at {size}: before the anchor the chain starts at, not checked")
        elif got is None:
            problems.append(f"checkpoint ({n}): commits to {size} entries of {tenant}, which are not all present (truncation)")
        elif got != root:
            problems.append(f"checkpoint ({n}): Merkle root differs from the entries")

    if witnesses:
        for t in chains:
            if t not in witnessed:
                problems.append(f"chain {t}: no checkpoint is cosigned by {quorum} of the {len(witnesses)} witnesses given (not witnessed)")
    for t, c in chains.items():
        for s_, (_, n) in sorted(c.get("unmarked", {}).items()):
            problems.append(f"entry {s_} ({n}) of {t}: personal data removed without an erasure marker")
    total = sum(c["tree"].size - c["start"] for c in chains.values())
    redacted = sum(len(c.get("erased", ())) for c in chains.values())
    markers = sum(c.get("markers", 0) for c in chains.values())
    if problems:
        print(f"TAMPERED — {problems[0]}")
        for p in problems[1:]:
            print(f"  {p}")
        return 1
    print(f"OK — {total:,} entries verified, {len(chains)} chain(s) intact, {len(checkpoints)} checkpoint(s) matched"
          + ("" if keys or fss else " (no HMAC key given)")
          + (f"; {redacted:,} entries redacted under {markers:,} erasure marker(s)" if markers else ""))
    if origins:
        print("  origin: " + ", ".join(f"{k} {v:,}" for k, v in sorted(origins.items())))
    for t, (size, who) in sorted(witnessed.items()):
        print(f"  chain {t}: witnessed up to {size:,} by " + ", ".join(f"{name} (time {ts})" for name, ts in who))
    for gen, count in erased.items():
        notes.append(f"HMACs of {count} entries in forward-secure epochs before e{fss[gen].held} of {gen}: only the auditor's initial key can check them")
    for gen, (m, r) in unchecked_markers.items():
        notes.append(f"{r:,} redaction(s) under {m:,} erasure marker(s) signed in forward-secure epochs before e{fss[gen].held} of {gen}: taken on the chain links and checkpoints around them, not on their own HMAC")
    for note in notes:
        print(f"  not checked: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
