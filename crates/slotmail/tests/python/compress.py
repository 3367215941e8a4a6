"""COMPRESS=DEFLATE (RFC 4978) on a raw socket with zlib (raw deflate,
wbits=-15, a sync flush after every command): commands, literals, large
FETCHes and IDLE wake-ups all work compressed.

argv: imap_port. User: alice/pw-alice.
"""

import os
import time
import zlib

from imapt import Conn, Report, Resp, args, connect, message

PORT = args()[0]
R = Report("compress.py")

with R.section("COMPRESS in the wrong state"):
    c = Conn(PORT)
    r = c.cmd("COMPRESS DEFLATE")
    R.status("COMPRESS before login is BAD (wrong state)", r, "BAD")
    c.login("alice", "pw-alice")
    r = c.cmd("COMPRESS NOT-A-MECHANISM")
    R.check("COMPRESS with an unknown mechanism is refused (NO or BAD)", r.status in ("NO", "BAD"), r)
    R.status("the connection still works uncompressed", c.cmd("NOOP"), "OK")
    c.logout()

with R.section("a compressed session"):
    c = connect(PORT, "alice", "pw-alice")
    r = c.compress()
    R.status("COMPRESS DEFLATE", r, "OK")
    R.check("the tagged OK came uncompressed", r.tagged.startswith(b"t"), r)
    r = c.cmd("NOOP")
    R.status("NOOP over deflate", r, "OK")
    r = c.cmd("CAPABILITY")
    R.status("CAPABILITY over deflate", r, "OK")
    r = c.cmd("COMPRESS DEFLATE")
    R.status("a second COMPRESS (RFC 4978 3)", r, "NO", "COMPRESSIONACTIVE")
    c.must("CREATE Z")
    text = message("compressible", b"".join(b"line %06d of a very compressible body\r\n" % i for i in range(8000)))
    random_body = os.urandom(300000).hex().encode()
    rnd = message("incompressible", b"\r\n".join(random_body[i:i + 76] for i in range(0, len(random_body), 76)) + b"\r\n")
    r, _, u1 = c.append("Z", text)
    R.status("APPEND of %d bytes over deflate" % len(text), r, "OK", "APPENDUID")
    r, _, u2 = c.append("Z", rnd, plus=True)
    R.status("APPEND with LITERAL+ of %d bytes over deflate" % len(rnd), r, "OK", "APPENDUID")
    c.must("SELECT Z")
    r = c.cmd("UID FETCH %d:%d (BODY.PEEK[])" % (u1, u2))
    got = {int(d["UID"]): d["BODY[]"] for _, d in r.fetches()}
    R.check("compressible message byte-identical", got.get(u1) == text, len(got.get(u1, b"")))
    R.check("incompressible message byte-identical", got.get(u2) == rnd, len(got.get(u2, b"")))
    # IDLE over deflate: the wake-up must be flushed.
    tag = c.next_tag()
    c.send(tag + " IDLE\r\n")
    cont = c.read_response()
    R.check("IDLE continuation over deflate", cont.startswith(b"+"), cont)
    w = connect(PORT, "alice", "pw-alice")
    t0 = time.monotonic()
    w.append("Z", message("wake"))
    resp = c.try_read_response(3)
    R.check("the IDLE wake-up arrives flushed", resp is not None and resp.rstrip().endswith(b"EXISTS"), resp)
    R.info["compressed_idle_latency_ms"] = round((time.monotonic() - t0) * 1000, 2)
    w.logout()
    c.send("DONE\r\n")
    r = c.finish(Resp(tag))
    R.status("DONE over deflate", r, "OK")
    r = c.cmd("LOGOUT")
    R.check("LOGOUT over deflate: * BYE and OK", r.status == "OK" and r.of("BYE"), r)
    c.close()

with R.section("pipelined commands right after COMPRESS"):
    c = connect(PORT, "alice", "pw-alice")
    # The client may send compressed data right after the tagged OK; here
    # the compressed NOOP goes out as soon as the OK is read.
    tag = c.next_tag()
    c.send(tag + " COMPRESS DEFLATE\r\n")
    ok = c.read_response()
    R.check("COMPRESS OK", ok.startswith(tag.encode() + b" OK"), ok)
    c.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    c.inflate = zlib.decompressobj(-15)
    c.send("a NOOP\r\nb NOOP\r\nc SELECT INBOX\r\n")
    seen = []
    for t in ("a", "b", "c"):
        r = c.finish(Resp(t))
        seen.append(r.status)
    R.eq("three pipelined compressed commands", seen, ["OK", "OK", "OK"])
    c.logout()

R.finish()
