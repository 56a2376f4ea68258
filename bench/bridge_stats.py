#!/usr/bin/env python3
"""Relay delay and relay loss of bridged calls, from a loopback capture of the service's RTP.

Each bridged call has two service ports: the caller leg (the caller's RTP arrives there, and the
agent's audio leaves from there towards the caller) and the agent leg (the other way round). The
service forwards a packet keeping its SSRC, sequence number and timestamp (it rewrites only the
payload type and, when the two legs' G.711 laws differ, the payload), so a forwarded packet is
found again by (SSRC, sequence, timestamp) on the paired leg. The pairing of the two legs is
learnt from the capture itself: the leg pair that forwards a leg's packets most often.

    bench/bridge_stats.py capture.pcap --callers 7000 --agents 7100 [--text]

`--callers` / `--agents`: the UDP ports the callers' / agents' RTP leaves from (and the service's
relayed RTP goes to), i.e. the SIPp `-mp` of each caller / agent instance (comma-separated).
For each direction it reports: packets that arrived, forwarded, lost in relay (arrived but not
forwarded, leaving out the last `--grace-ms` of the capture or the longest delay seen, whichever
is more), the forwarding delay (kernel
timestamp of the forwarded packet minus that of the arriving one: both are taken inside the
sender's `sendto` on loopback) as p50 / p99 / p99.9 / max, and payloads changed in relay.
Prints one JSON object (or a short text report with --text). Standard library only.
"""

import argparse
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the repository
import rtp_stats  # noqa: E402  (sibling file)

CALLER_TO_AGENT = 0
AGENT_TO_CALLER = 1
DIRECTIONS = {CALLER_TO_AGENT: "caller_to_agent", AGENT_TO_CALLER: "agent_to_caller"}
# A forwarded packet further behind its original than this is not taken as its copy (an
# overloaded service queues seconds of packets in its sockets' receive buffers).
MATCH_WINDOW_S = 5.0


def packet_key(payload):
    """(SSRC, sequence, timestamp) as one integer."""
    seq = (payload[2] << 8) | payload[3]
    rtp_ts, ssrc = struct.unpack_from("!II", payload, 4)
    return (ssrc << 48) | (seq << 32) | rtp_ts


def analyse(path, caller_ports, agent_ports, grace_ms=200.0, settle_s=0.0):
    """`settle_s`: arrivals in the capture's first seconds are matched but not judged (dumpcap's
    start disturbs them)."""
    caller_ports, agent_ports = set(caller_ports), set(agent_ports)
    # Per direction: arrivals [(time, service port, key, payload head)], and forwarded copies
    # by key: [(service port, time, payload head, payload type)].
    arrivals = {direction: [] for direction in DIRECTIONS}
    forwarded = {direction: {} for direction in DIRECTIONS}
    first = last = None
    other = 0
    for when, src, dst, payload in rtp_stats.read_udp(path):
        if first is None:
            first = when
        last = when
        if len(payload) < 12 or payload[0] >> 6 != 2:
            other += 1
            continue
        if src in caller_ports:
            arrivals[CALLER_TO_AGENT].append((when, dst, packet_key(payload), payload[12:]))
        elif src in agent_ports:
            arrivals[AGENT_TO_CALLER].append((when, dst, packet_key(payload), payload[12:]))
        elif dst in agent_ports or dst in caller_ports:
            direction = CALLER_TO_AGENT if dst in agent_ports else AGENT_TO_CALLER
            copy = (src, when, payload[12:], payload[1] & 0x7F)
            forwarded[direction].setdefault(packet_key(payload), []).append(copy)
        else:
            other += 1
    if first is None:
        return {"packets": 0}

    # Leg pairing: caller leg -> agent leg, by votes from both directions.
    votes = {}
    for direction, items in arrivals.items():
        copies = forwarded[direction]
        for when, port, key, _head in items:
            for out_port, out_when, _, _ in copies.get(key, ()):
                if 0.0 <= out_when - when < MATCH_WINDOW_S:
                    pair = (port, out_port) if direction == CALLER_TO_AGENT else (out_port, port)
                    votes[pair] = votes.get(pair, 0) + 1
    agent_leg_of = {}
    for (caller_leg, agent_leg), _count in sorted(votes.items(), key=lambda kv: -kv[1]):
        if caller_leg not in agent_leg_of and agent_leg not in agent_leg_of.values():
            agent_leg_of[caller_leg] = agent_leg
    caller_leg_of = {agent_leg: caller_leg for caller_leg, agent_leg in agent_leg_of.items()}

    ms = 1000.0
    result = {
        "capture_s": round(last - first, 3),
        "bridges": len(agent_leg_of),
        "non_rtp_or_foreign": other,
    }
    all_delays = []
    # Pass 1: every arrival's copy, if the capture has it.
    matched = {}
    for direction in DIRECTIONS:
        partner = agent_leg_of if direction == CALLER_TO_AGENT else caller_leg_of
        copies = forwarded[direction]
        found = []
        for when, port, key, _head in arrivals[direction]:
            out_port = partner.get(port)
            best = None
            for index, (copy_port, copy_when, copy_head, copy_pt) in enumerate(copies.get(key, ())):
                if copy_port == out_port and 0.0 <= copy_when - when < MATCH_WINDOW_S:
                    if best is None or copy_when < best[1]:
                        best = (index, copy_when, copy_head, copy_pt)
            found.append(best)
        matched[direction] = found
    # An arrival is judged lost only if its copy would have fallen inside the capture even at
    # the longest delay seen: later ones may simply be forwarded after the capture ended.
    longest = max(
        (best[1] - item[0] for direction in DIRECTIONS
         for item, best in zip(arrivals[direction], matched[direction]) if best is not None),
        default=0.0,
    )  # fmt: skip
    grace_end = last - max(grace_ms / ms, longest)
    result["judged_until_s"] = round(grace_end - first, 3)
    for direction, name in DIRECTIONS.items():
        partner = agent_leg_of if direction == CALLER_TO_AGENT else caller_leg_of
        copies = forwarded[direction]
        # A leg pair relays from its first forwarded copy on: arrivals before it came before the
        # bridge (a call still being connected when the capture started) and are not judged.
        bridged_from = {}
        for items in copies.values():
            for copy_port, copy_when, _, _ in items:
                if copy_when < bridged_from.get(copy_port, float("inf")):
                    bridged_from[copy_port] = copy_when
        delays = []
        lost = unpaired = late_unjudged = payload_changed = before_bridge = settling = 0
        payload_types = {}
        used = set()
        for (when, port, key, head), best in zip(arrivals[direction], matched[direction]):
            if when < first + settle_s:
                settling += 1
                if best is not None:
                    used.add((key, best[0]))
                continue
            out_port = partner.get(port)
            if out_port is None:
                unpaired += 1
                continue
            if best is None:
                if when < bridged_from.get(out_port, float("inf")):
                    before_bridge += 1
                elif when < grace_end:
                    lost += 1
                else:
                    late_unjudged += 1
                continue
            used.add((key, best[0]))
            delays.append(best[1] - when)
            payload_types[best[3]] = payload_types.get(best[3], 0) + 1
            if best[2] != head:
                payload_changed += 1
        # Copies from a paired leg with no arrival in the capture: their original came before
        # the capture started (the first few ms), or the capture dropped it.
        unmatched_copies = sum(
            1
            for key, items in copies.items()
            for index, (copy_port, copy_when, _, _) in enumerate(items)
            if copy_port in partner.values()
            and (key, index) not in used
            and copy_when > first + max(grace_ms / ms, longest)
        )
        delays.sort()
        all_delays.extend(delays)
        judged = len(delays) + lost
        result[name] = {
            "arrived": len(arrivals[direction]),
            "forwarded": len(delays),
            "lost_in_relay": lost,
            "lost_pct": round(100.0 * lost / judged, 4) if judged else None,
            "unpaired_arrivals": unpaired,
            "arrived_before_bridge": before_bridge,
            "arrived_in_grace": late_unjudged,
            "arrived_while_settling": settling,
            "unmatched_copies": unmatched_copies,
            "payload_changed": payload_changed,
            "payload_types_out": payload_types,
            **delay_figures(delays),
        }
    all_delays.sort()
    result["both"] = delay_figures(all_delays)
    result["both"]["lost_in_relay"] = sum(result[name]["lost_in_relay"] for name in DIRECTIONS.values())
    result["both"]["forwarded"] = len(all_delays)
    return result


def delay_figures(delays):
    """Percentiles of sorted forwarding delays, in ms."""
    if not delays:
        return {"delay_p50_ms": None, "delay_p99_ms": None, "delay_p999_ms": None, "delay_max_ms": None}
    ms = 1000.0
    return {
        "delay_p50_ms": round(rtp_stats.percentile(delays, 0.50) * ms, 3),
        "delay_p99_ms": round(rtp_stats.percentile(delays, 0.99) * ms, 3),
        "delay_p999_ms": round(rtp_stats.percentile(delays, 0.999) * ms, 3),
        "delay_max_ms": round(delays[-1] * ms, 3),
        "delay_over_1ms": sum(1 for value in delays if value > 0.001),
        "delay_over_5ms": sum(1 for value in delays if value > 0.005),
    }


def ports(text):
    return [int(item) for item in text.split(",") if item.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pcap")
    parser.add_argument("--callers", type=ports, required=True, help="callers' media ports")
    parser.add_argument("--agents", type=ports, required=True, help="agents' media ports")
    parser.add_argument("--grace-ms", type=float, default=200.0,
                        help="arrivals this close to the capture's end (or the longest delay "
                        "seen, if more) are not judged")  # fmt: skip
    parser.add_argument("--text", action="store_true", help="human-readable output")
    args = parser.parse_args()
    try:
        result = analyse(args.pcap, args.callers, args.agents, args.grace_ms)
    except (OSError, ValueError) as error:
        print(f"bridge_stats: {error}", file=sys.stderr)
        return 1
    rtp_stats.print_result(result, args.text, 32)
    return 0


if __name__ == "__main__":
    sys.exit(main())
