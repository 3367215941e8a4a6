"""STARTTLS and implicit TLS with Python's imaplib and ssl.

usage: imaplib_tls.py PLAIN_PORT TLS_PORT CA_FILE
The server refuses plaintext logins; prints "ALL OK".
"""
import imaplib
import ssl
import sys

plain_port, tls_port, ca = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)

m = imaplib.IMAP4("127.0.0.1", plain_port)
assert "STARTTLS" in m.capabilities and "LOGINDISABLED" in m.capabilities, m.capabilities
try:
    m.login("alice", "secret")
    raise AssertionError("plaintext login accepted")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
typ, data = m.starttls(ssl_context=ctx)
assert typ == "OK", (typ, data)
assert "STARTTLS" not in m.capabilities and "AUTH=PLAIN" in m.capabilities, m.capabilities
typ, data = m.login("alice", "secret")
assert typ == "OK", (typ, data)
typ, data = m.select("INBOX")
assert typ == "OK", (typ, data)
m.logout()

s = imaplib.IMAP4_SSL("127.0.0.1", tls_port, ssl_context=ctx)
assert "STARTTLS" not in s.capabilities and "AUTH=PLAIN" in s.capabilities, s.capabilities
typ, data = s.login("alice", "secret")
assert typ == "OK", (typ, data)
typ, data = s.list()
assert typ == "OK" and len(data) == 6, (typ, data)
s.logout()
print("ALL OK")
