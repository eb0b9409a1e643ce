#!/usr/bin/env python3
"""An SMTP server for the notifier tests, on Debian's python3-aiosmtpd.

    smtp_peer.py --port PORT --out DIR [--reply "550 5.7.1 rejected"] [--auth USER:PASS]

Listens on 127.0.0.1:PORT (0: the OS picks) and prints "READY <port>" once
it accepts connections. Every message accepted is written to
DIR/NNNN.json (a temp file renamed into place, so a reader never sees half
a file; numbering continues after files already in DIR, so a restarted
peer appends), with the envelope, the raw message, and what Python's own
email package decodes from it: the subject (RFC 2047 decoded), the plain
text and HTML parts, and the header names in order.

With --reply, DATA is answered with that reply instead and nothing is
stored (to test rejections). With --auth, AUTH PLAIN/LOGIN with exactly
those credentials is required before MAIL (allowed without TLS: loopback
tests only), and the login used is stored with each message.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def login(session):
    data = getattr(session, "auth_data", None)
    if isinstance(data, LoginPassword):
        return data.login.decode("utf-8", "replace")
    return None


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd then answers 535 itself on failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return check


class Handler:
    def __init__(self, out, reply):
        self.out = out
        self.reply = reply
        self.n = len([f for f in os.listdir(out) if f.endswith(".json")])

    async def handle_DATA(self, server, session, envelope):
        if self.reply:
            return self.reply
        raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        plain = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "to": str(msg["to"]),
            "message_id": str(msg["message-id"]),
            "headers": list(msg.keys()),
            "text": plain.get_content() if plain is not None else None,
            "html": html.get_content() if html is not None else None,
            "raw": raw.decode("utf-8", "replace"),
            "auth_login": login(session),
            # Attachments as Python's email package decodes them: file
            # name, content type and the decoded text.
            "attachments": [
                {
                    "filename": part.get_filename(),
                    "content_type": part.get_content_type(),
                    "content": part.get_payload(decode=True).decode("utf-8", "replace"),
                }
                for part in msg.iter_attachments()
            ],
        }
        self.n += 1
        path = os.path.join(self.out, "%04d.json" % self.n)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return "250 2.0.0 OK stored"


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reply", default=None)
    ap.add_argument("--auth", default=None)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    handler = Handler(args.out, args.reply)
    opts = {}
    if args.auth:
        user, password = args.auth.split(":", 1)
        opts = dict(
            authenticator=authenticator(user, password),
            auth_required=True,
            auth_require_tls=False,
        )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-peer.test", decode_data=False, **opts),
        host="127.0.0.1",
        port=args.port,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]
    print("READY %d" % port, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
