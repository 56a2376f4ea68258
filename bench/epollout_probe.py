#!/usr/bin/env python3
"""Probe: what does a sender pay when another thread's epoll watches its sockets for EPOLLOUT?

hotline's pacer sends on a dup() of each call's RTP socket while tokio's reactor has the same
socket registered (tokio registers UDP sockets for readable *and* writable, edge-triggered).
On loopback every sent datagram is freed at once, the socket becomes writable again, and the
kernel wakes the reactor: one wake-up per packet. This probe reproduces that without hotline:
a sender sends one datagram per socket every 20 ms (like the pacer) to a sink that never reads,
while a child process waits in epoll_wait on the same sockets, registered with

    none       no epoll at all
    in         EPOLLIN | EPOLLET           (what a receive-only registration would cost)
    in+out     EPOLLIN | EPOLLOUT | EPOLLET (what tokio::net::UdpSocket does)

and reports the sender's CPU per packet and the watcher's CPU and wake-ups.

    bench/epollout_probe.py [--sockets 2000] [--seconds 5] [--base-port 40000]

Standard library only; traffic on 127.0.0.1 only. Absolute numbers include Python's own
per-call cost (~1 us); the differences between the modes are the point.
"""

import argparse
import os
import resource
import select
import socket
import sys
import time


def watcher(read_end, fds, mask):
    """Child: wait on the sockets until the parent closes the pipe; report CPU and events."""
    poller = select.epoll(sizehint=len(fds) + 1)
    poller.register(read_end, select.EPOLLIN)
    for fd in fds:
        poller.register(fd, mask)
    wakeups = events = 0
    start = time.process_time()
    while True:
        ready = poller.poll(-1, 1024)
        wakeups += 1
        events += len(ready)
        if any(fd == read_end for fd, _ in ready):
            break
    cpu = time.process_time() - start
    os.write(1, f"{wakeups} {events} {cpu}\n".encode())
    os._exit(0)


def run(mode, sockets, seconds, base_port):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink_addr = sink.getsockname()
    senders = []
    for index in range(sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", base_port + 2 * index))
        sock.setblocking(False)
        senders.append(sock)
    child = None
    report_read = None
    if mode != "none":
        mask = select.EPOLLIN | select.EPOLLET
        if mode == "in+out":
            mask |= select.EPOLLOUT
        stop_read, stop_write = os.pipe()
        report_read, report_write = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(stop_write)
            os.dup2(report_write, 1)
            watcher(stop_read, [sock.fileno() for sock in senders], mask)
        os.close(stop_read)
        os.close(report_write)
        time.sleep(0.5)
    packet = bytes(172)
    ticks = int(seconds * 50)
    start_cpu = time.thread_time()
    next_tick = time.monotonic()
    for _ in range(ticks):
        for sock in senders:
            try:
                sock.sendto(packet, sink_addr)
            except BlockingIOError:
                pass
        next_tick += 0.020
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    sender_cpu = time.thread_time() - start_cpu
    watcher_report = None
    if child is not None:
        os.close(stop_write)
        os.waitpid(child, 0)
        wakeups, events, cpu = os.read(report_read, 200).split()
        watcher_report = (int(wakeups), int(events), float(cpu))
    for sock in senders:
        sock.close()
    sink.close()
    packets = ticks * sockets
    return packets, sender_cpu, watcher_report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--base-port", type=int, default=40000)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 3 * args.sockets + 100)), hard))
    print(f"{args.sockets} sockets, one 172-byte datagram each per 20 ms, {args.seconds}s")
    print("mode     sender us/packet  sender CPU%  watcher CPU%  watcher wake-ups/s  events/s")
    for mode in ("none", "in", "in+out"):
        packets, sender_cpu, report = run(mode, args.sockets, args.seconds, args.base_port)
        line = f"{mode:8} {1e6 * sender_cpu / packets:16.2f} {100 * sender_cpu / args.seconds:11.1f}"
        if report:
            wakeups, events, cpu = report
            line += (
                f" {100 * cpu / args.seconds:13.1f} {wakeups / args.seconds:19.0f}"
                f" {events / args.seconds:9.0f}"
            )
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
