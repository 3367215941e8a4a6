"""LOGINDISABLED and STARTTLS on a slot that refuses plaintext credentials
(allow_plaintext_auth = false, a [tls] section), and its implicit-TLS port.

argv: imap_port lmtp_port tls_port. Users: alice/pw-alice.
"""

import imaplib

from imapt import Conn, Report, Resp, args, quote, sasl_plain, tls_context

PORT, _LMTP, TLS_PORT = args()[:3]
R = Report("starttls.py")


def caps(c):
    r = c.cmd("CAPABILITY")
    lines = r.of("CAPABILITY")
    assert r.status == "OK" and len(lines) == 1, r
    return [w.upper() for w in lines[0].decode().split()[2:]]


with R.section("plaintext port before STARTTLS"):
    c = Conn(PORT)
    pre = caps(c)
    R.info["capabilities_plaintext"] = pre
    R.check("LOGINDISABLED advertised without TLS (RFC 9051 6.2.3)", "LOGINDISABLED" in pre, pre)
    R.check("STARTTLS advertised", "STARTTLS" in pre, pre)
    R.check("AUTH=PLAIN not advertised before TLS (it would be refused)", "AUTH=PLAIN" not in pre, pre)
    greeting = c.greeting.decode().upper()
    R.check("greeting capabilities include LOGINDISABLED", "LOGINDISABLED" in greeting, greeting)
    r = c.cmd("LOGIN alice pw-alice")
    R.status("LOGIN refused without TLS", r, "NO", "PRIVACYREQUIRED")
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("", "alice", "pw-alice"))
    R.status("AUTHENTICATE PLAIN refused without TLS", r, "NO", "PRIVACYREQUIRED")
    r = c.cmd("SELECT INBOX")
    R.status("not logged in after the refusals", r, "BAD")

    # STARTTLS, with a plaintext command pipelined after it: the server must
    # not execute bytes that arrived before the handshake (RFC 9051 6.2.1,
    # the STARTTLS command-injection attack).
    tag = c.next_tag()
    c.send(tag + " STARTTLS\r\ninjected CAPABILITY\r\n")
    r = c.finish(Resp(tag))
    R.status("STARTTLS", r, "OK")
    R.check("no response to the injected command before TLS", b"injected" not in c.buf, c.buf)
    c.buf = b""
    c.sock = tls_context().wrap_socket(c.sock, server_hostname="slot.test")
    r = c.cmd("NOOP")
    R.status("NOOP over TLS", r, "OK")
    R.check("the pipelined plaintext command was discarded", not any(b"injected" in u for u in r.untagged) and b"injected" not in (r.tagged or b""), r)
    post = caps(c)
    R.info["capabilities_tls"] = post
    R.check("no LOGINDISABLED after STARTTLS", "LOGINDISABLED" not in post, post)
    R.check("no STARTTLS after STARTTLS", "STARTTLS" not in post, post)
    R.check("AUTH=PLAIN after STARTTLS", "AUTH=PLAIN" in post, post)
    r = c.cmd("STARTTLS")
    R.status("a second STARTTLS is BAD", r, "BAD")
    r = c.cmd("LOGIN ", quote("alice"), " ", quote("pw-alice"))
    R.status("LOGIN over TLS", r, "OK")
    r = c.cmd("SELECT INBOX")
    R.status("SELECT over TLS", r, "OK")
    c.logout()

with R.section("STARTTLS after login is refused"):
    c = Conn(PORT)
    r = c.starttls()
    R.status("STARTTLS", r, "OK")
    r = c.cmd("AUTHENTICATE PLAIN " + sasl_plain("", "alice", "pw-alice"))
    R.status("AUTHENTICATE PLAIN over TLS", r, "OK")
    r = c.cmd("STARTTLS")
    R.status("STARTTLS when authenticated is BAD", r, "BAD")
    c.logout()

with R.section("imaplib starttls"):
    m = imaplib.IMAP4("127.0.0.1", PORT, timeout=10)
    typ, _ = m.starttls(ssl_context=tls_context())
    R.eq("imaplib starttls", typ, "OK")
    typ, _ = m.login("alice", "pw-alice")
    R.eq("imaplib login after starttls", typ, "OK")
    m.logout()

with R.section("implicit TLS port"):
    c = Conn(TLS_PORT, tls=True)
    R.check("greeting over implicit TLS", c.greeting.startswith(b"* OK"), c.greeting)
    post = caps(c)
    R.check("no LOGINDISABLED on the TLS port", "LOGINDISABLED" not in post, post)
    R.check("no STARTTLS on the TLS port", "STARTTLS" not in post, post)
    r = c.cmd("LOGIN alice pw-alice")
    R.status("LOGIN on the TLS port", r, "OK")
    r = c.cmd("SELECT INBOX")
    R.status("SELECT on the TLS port", r, "OK")
    c.logout()
    m = imaplib.IMAP4_SSL("127.0.0.1", TLS_PORT, ssl_context=tls_context(), timeout=10)
    typ, _ = m.login("alice", "pw-alice")
    R.eq("imaplib IMAP4_SSL login", typ, "OK")
    m.logout()

R.finish()
