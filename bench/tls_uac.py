#!/usr/bin/env python3
"""SIP-over-TLS load caller for `bench/run --srtp` and `bench/run --tls-plain`.

SIPp here has no TLS, and the service only exchanges SDES-SRTP keys over TLS, so this places
the bench's calls itself: it keeps a few TLS connections to the service's `sip.tls_listen`
and over them places N calls to 19118 at a given rate. Each call offers PCMU and
telephone-event, as `RTP/SAVP` with one `a=crypto` AES_CM_128_HMAC_SHA1_80 line (--srtp) or
as plain `RTP/AVP`; waits for the 200, checks the answer (the same profile, PCMU, and with
--srtp an `a=crypto` line of the offered suite), sends ACK, holds for --hold seconds, sends BYE
and waits for its 200. A BYE from the service during the hold, a non-200 final response, a
wrong answer or a missing response (32 s, Timer B/F) fail the call.

Like SIPp in `bench/run`, the caller sends no RTP and never reads the service's: every call
offers the same media port, where one UDP socket is bound and never read (so the service's
packets are delivered, not answered with ICMP). The service's RTP is judged from a loopback
capture (bench/rtp_stats.py reads the RTP header, which SRTP leaves in the clear).

Messages are framed by Content-Length on the TLS stream; responses are matched to calls by
Call-ID. Requests from the service are answered 200 (BYE, OPTIONS) or 501.

    bench/tls_uac.py --target 127.0.0.1:5172 --cafile cert.pem --calls 1000 --rate 300 \\
        --hold 30 --srtp --stats uac.json

Prints `connected N` once its connections are up, progress lines to stderr, and the totals as
one JSON object on stdout (and in --stats). Exit status 0 only when every call succeeded.
Standard library only.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import ssl
import sys
import time

TRANSACTION_TIMEOUT_S = 32.0  # 64 * T1, RFC 3261 Timer B/F
COMPACT = {
    "i": "call-id",
    "m": "contact",
    "f": "from",
    "t": "to",
    "v": "via",
    "l": "content-length",
    "c": "content-type",
}
# Copied from a request into our response to it (RFC 3261 8.2.6.2).
REPLY_HEADERS = [("via", "Via"), ("from", "From"), ("to", "To"), ("call-id", "Call-ID"),
                 ("cseq", "CSeq")]  # fmt: skip


def log(message):
    print(f"[tls_uac {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def random_hex(count):
    return os.urandom(count).hex()


def parse_message(head, body):
    """(start line, {lower-case name: [values]}, body) of one SIP message."""
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if not line or ":" not in line:
            continue
        name, value = line.split(":", 1)
        name = name.strip().lower()
        name = COMPACT.get(name, name)
        headers.setdefault(name, []).append(value.strip())
    return lines[0], headers, body.decode("utf-8", "replace")


def first(headers, name):
    values = headers.get(name)
    return values[0] if values else ""


def uri_of(value):
    """The URI of a name-addr (`"x" <sip:...>;tag=`) or addr-spec header value."""
    match = re.search(r"<([^>]*)>", value)
    if match:
        return match.group(1)
    return value.split(";", 1)[0].strip()


class Call:
    def __init__(self, number, connection, args):
        self.number = number
        self.connection = connection
        self.args = args
        self.call_id = f"{random_hex(8)}-{number}@bench.invalid"
        self.from_tag = random_hex(6)
        self.responses = asyncio.Queue()
        self.bye_from_service = asyncio.Event()

    def common(self, method, cseq, branch, to_header):
        conn = self.connection
        return (
            f"Via: SIP/2.0/TLS {conn.local_host}:{conn.local_port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f'From: "bench" <sip:bench@{conn.local_host}:{conn.local_port};transport=tls>'
            f";tag={self.from_tag}\r\n"
            f"To: {to_header}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:bench@{conn.local_host}:{conn.local_port};transport=tls>\r\n"
            f"User-Agent: hotline-bench tls_uac\r\n"
        )

    def offer(self):
        args = self.args
        host = self.connection.local_host
        profile = "RTP/SAVP" if args.srtp else "RTP/AVP"
        lines = [
            "v=0",
            f"o=bench {self.number + 1000} 1 IN IP4 {host}",
            "s=-",
            f"c=IN IP4 {args.media_ip}",
            "t=0 0",
            f"m=audio {args.media_port} {profile} 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=ptime:20",
            "a=sendrecv",
        ]
        if args.srtp:
            # 16-byte master key + 14-byte master salt (RFC 4568 §6.1).
            key = base64.b64encode(os.urandom(30)).decode()
            lines.append(f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}")
        return "\r\n".join(lines) + "\r\n"

    def answer_problem(self, sdp):
        """Why the 200's SDP is not what the bench needs, or None."""
        profile = "RTP/SAVP" if self.args.srtp else "RTP/AVP"
        if not re.search(rf"^m=audio [1-9][0-9]* {re.escape(profile)} 0(?:\s|$)", sdp, re.M):
            return "answer_not_" + profile.replace("/", "_").lower() + "_pcmu"
        crypto = re.search(r"^a=crypto:\d+ (\S+) inline:", sdp, re.M)
        if self.args.srtp and (crypto is None or crypto.group(1) != "AES_CM_128_HMAC_SHA1_80"):
            return "answer_without_offered_crypto"
        if not self.args.srtp and crypto is not None:
            return "plain_answer_with_crypto"
        return None

    async def response(self, method, cseq):
        """The final response to our `cseq method` (1xx skipped), or None after Timer B/F."""
        deadline = time.monotonic() + TRANSACTION_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                status, headers, body = await asyncio.wait_for(self.responses.get(), left)
            except asyncio.TimeoutError:
                return None
            parts = first(headers, "cseq").split()
            if len(parts) != 2 or parts[1] != method or parts[0] != str(cseq):
                continue
            if status >= 200:
                return status, headers, body

    async def run(self, stats):
        args, conn = self.args, self.connection
        target = f"sip:19118@{args.host}:{args.port};transport=tls"
        request_to = f"<sip:19118@{args.host}:{args.port}>"
        branch = "z9hG4bK" + random_hex(8)
        body = self.offer()
        started = time.monotonic()
        conn.send(
            f"INVITE {target} SIP/2.0\r\n"
            + self.common("INVITE", 1, branch, request_to)
            + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        )
        answer = await self.response("INVITE", 1)
        if answer is None:
            return "invite_timeout"
        status, headers, sdp = answer
        to_header = first(headers, "to")
        if status != 200:
            # ACK for a non-2xx final response: same branch and Request-URI (RFC 3261 17.1.1.3).
            conn.send(
                f"ACK {target} SIP/2.0\r\n"
                + self.common("ACK", 1, branch, to_header)
                + "Content-Length: 0\r\n\r\n"
            )
            return f"invite_{status}"
        stats.setup_ms.append(1000.0 * (time.monotonic() - started))
        remote = uri_of(first(headers, "contact")) or target
        # Route set from Record-Route, reversed for the caller (RFC 3261 12.1.2).
        record_route = [
            part.strip()
            for value in headers.get("record-route", [])
            for part in value.split(",")
            if part.strip()
        ]
        routes = "".join(f"Route: {route}\r\n" for route in reversed(record_route))
        conn.send(
            f"ACK {remote} SIP/2.0\r\n"
            + self.common("ACK", 1, "z9hG4bK" + random_hex(8), to_header)
            + routes
            + "Content-Length: 0\r\n\r\n"
        )
        problem = self.answer_problem(sdp)
        if problem is None:
            stats.answered += 1
            try:
                await asyncio.wait_for(self.bye_from_service.wait(), args.hold)
                return "bye_from_service"
            except asyncio.TimeoutError:
                pass
        conn.send(
            f"BYE {remote} SIP/2.0\r\n"
            + self.common("BYE", 2, "z9hG4bK" + random_hex(8), to_header)
            + routes
            + "Content-Length: 0\r\n\r\n"
        )
        done = await self.response("BYE", 2)
        if problem is not None:
            return problem
        if done is None:
            return "bye_timeout"
        if done[0] != 200:
            return f"bye_{done[0]}"
        return None


class Connection:
    def __init__(self, index, reader, writer, calls):
        self.index = index
        self.reader = reader
        self.writer = writer
        self.calls = calls
        self.local_host, self.local_port = writer.get_extra_info("sockname")[:2]
        self.closed = False
        self.requests_from_service = {}

    def send(self, text):
        if not self.closed:
            self.writer.write(text.encode())

    async def read_loop(self, limit):
        try:
            while True:
                head = await self.reader.readuntil(b"\r\n\r\n")
                head = head.lstrip(b"\r\n")  # keep-alive CRLFs (RFC 5626 §3.5.1)
                if not head.strip():
                    continue
                length = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head)
                size = int(length.group(1)) if length else 0
                if size > limit:
                    raise ValueError(f"message body of {size} bytes")
                body = await self.reader.readexactly(size) if size else b""
                self.dispatch(*parse_message(head, body))
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, ValueError) as error:
            if not self.closed:
                log(f"connection {self.index} ended: {error!r}")
        finally:
            self.closed = True

    def dispatch(self, start, headers, body):
        call = self.calls.get(first(headers, "call-id"))
        if start.startswith("SIP/2.0 "):
            if call is not None:
                call.responses.put_nowait((int(start.split()[1]), headers, body))
            return
        method = start.split(" ", 1)[0]
        self.requests_from_service[method] = self.requests_from_service.get(method, 0) + 1
        if method == "ACK":
            return
        known = method in ("BYE", "OPTIONS")
        status = "200 OK" if known else "501 Not Implemented"
        reply = f"SIP/2.0 {status}\r\n"
        for name, canonical in REPLY_HEADERS:
            for value in headers.get(name, []):
                reply += f"{canonical}: {value}\r\n"
        self.send(reply + "Content-Length: 0\r\n\r\n")
        if method == "BYE" and call is not None:
            call.bye_from_service.set()


class Stats:
    def __init__(self):
        self.created = 0
        self.successful = 0
        self.answered = 0
        self.failures = {}
        self.setup_ms = []


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))], 1)


async def main_async(args):
    context = ssl.create_default_context(cafile=args.cafile)
    if args.no_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    calls = {}
    connections = []
    for index in range(args.connections):
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                args.host, args.port, ssl=context, server_hostname=args.host, limit=1 << 20
            ),
            10,
        )
        connections.append(Connection(index, reader, writer, calls))
    readers = [asyncio.ensure_future(conn.read_loop(args.max_body)) for conn in connections]
    print(f"connected {len(connections)}", flush=True)

    stats = Stats()

    async def one(number):
        call = Call(number, connections[number % len(connections)], args)
        calls[call.call_id] = call
        stats.created += 1
        try:
            reason = await call.run(stats)
        except Exception as error:  # a bench must count, not crash
            reason = f"error_{type(error).__name__}"
        if reason is None:
            stats.successful += 1
        else:
            stats.failures[reason] = stats.failures.get(reason, 0) + 1
        del calls[call.call_id]

    t0 = time.monotonic()
    tasks = []
    last_report = t0
    for number in range(args.calls):
        due = t0 + number / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(number)))
        if number % 50 == 49:
            await asyncio.gather(*(conn.writer.drain() for conn in connections if not conn.closed))
        if time.monotonic() - last_report > 2:
            last_report = time.monotonic()
            log(f"{number + 1} calls placed, {stats.answered} answered")
    log(f"all {args.calls} calls placed in {time.monotonic() - t0:.1f}s")
    left = args.timeout - (time.monotonic() - t0)
    finished, unfinished = await asyncio.wait(tasks, timeout=max(1.0, left))
    for task in unfinished:
        task.cancel()
    failed = sum(stats.failures.values()) + len(unfinished)
    if unfinished:
        stats.failures["unfinished_at_timeout"] = len(unfinished)
    for conn in connections:
        conn.closed = True
        conn.writer.close()
    for reader in readers:
        reader.cancel()
    requests = {}
    for conn in connections:
        for method, count in conn.requests_from_service.items():
            requests[method] = requests.get(method, 0) + count
    return {
        "created": stats.created,
        "successful": stats.successful,
        "failed": failed,
        "answered": stats.answered,
        "failures": stats.failures,
        "requests_from_service": requests,
        "setup_ms_p50": percentile(stats.setup_ms, 0.5),
        "setup_ms_p99": percentile(stats.setup_ms, 0.99),
        "setup_ms_max": percentile(stats.setup_ms, 1.0),
        "connections": len(connections),
        "srtp": args.srtp,
        "duration_s": round(time.monotonic() - t0, 1),
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--target", required=True, help="the service's sip.tls_listen, host:port")
    parser.add_argument("--cafile", help="certificate the service's must chain to (PEM)")
    parser.add_argument("--no-verify", action="store_true", help="do not check the certificate")
    parser.add_argument("--calls", type=int, required=True)
    parser.add_argument("--rate", type=float, default=300.0, help="new calls per second")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds from ACK to BYE")
    parser.add_argument("--connections", type=int, default=8,
                        help="TLS connections the calls are spread over (the service allows "
                        "tcp.max_per_address, 64 by default, from one address)")  # fmt: skip
    parser.add_argument("--srtp", action="store_true",
                        help="offer RTP/SAVP with an AES_CM_128_HMAC_SHA1_80 key, else "
                        "RTP/AVP")  # fmt: skip
    parser.add_argument("--media-ip", default="127.0.0.1")
    parser.add_argument("--media-port", type=int, default=7000,
                        help="media port every call offers; bound here and never read")  # fmt: skip
    parser.add_argument("--max-body", type=int, default=65536)
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="seconds after the first call by which everything ends; 0: hold + "
                        "calls / rate + 90")  # fmt: skip
    parser.add_argument("--stats", help="also write the totals (JSON) here")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    args.host, args.port = host or "127.0.0.1", int(port)
    if args.timeout <= 0:
        args.timeout = args.hold + args.calls / args.rate + 90
    # The callers' media socket: the service's packets arrive and are dropped once it is full.
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind((args.media_ip, args.media_port))
    try:
        totals = asyncio.run(main_async(args))
    except (OSError, asyncio.TimeoutError, ssl.SSLError) as error:
        log(f"cannot connect to {args.target}: {error!r}")
        totals = {"created": 0, "successful": 0, "failed": args.calls, "answered": 0,
                  "failures": {"connect": args.calls}, "error": repr(error)}  # fmt: skip
    finally:
        media.close()
    text = json.dumps(totals)
    print(text, flush=True)
    if args.stats:
        with open(args.stats, "w") as handle:
            handle.write(text + "\n")
    ok = totals["failed"] == 0 and totals["successful"] == args.calls
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
