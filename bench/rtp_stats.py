#!/usr/bin/env python3
"""Send-timing statistics of the service's RTP streams from a loopback capture.

Reads a classic pcap file (dumpcap -P; microsecond or nanosecond timestamps, Ethernet or
Linux-cooked link type) and, per RTP stream (one source port each), looks at consecutive
packets: the send interval's deviation |interval - 20 ms|, RTP timestamp steps other than
+160, and sequence gaps. Prints one JSON object (or a short text report with --text).

    bench/rtp_stats.py capture.pcap [--frame-ms 20] [--step 160] [--text]

Standard library only, one pass, fast enough for ~500k packets.
"""

import argparse
import json
import struct
import sys

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276


def read_pcap(path):
    """Yields (time_seconds, udp_src_port, udp_payload) for each IPv4/UDP frame."""
    for when, src_port, _dst_port, payload in read_udp(path):
        yield when, src_port, payload


def read_udp(path):
    """Yields (time_seconds, udp_src_port, udp_dst_port, udp_payload) for each IPv4/UDP frame."""
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 24:
        raise ValueError(f"{path}: too short for a pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file (pcapng? capture with dumpcap -P)")
    nanoseconds = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    fraction = 1e-9 if nanoseconds else 1e-6
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype == LINKTYPE_ETHERNET:
        link_len, ethertype_at = 14, 12
    elif linktype == LINKTYPE_LINUX_SLL:
        link_len, ethertype_at = 16, 14
    elif linktype == LINKTYPE_LINUX_SLL2:
        link_len, ethertype_at = 20, 0
    else:
        raise ValueError(f"{path}: unsupported link type {linktype}")
    record = struct.Struct(endian + "IIII")
    offset = 24
    end = len(data)
    while offset + 16 <= end:
        seconds, fractional, captured, _original = record.unpack_from(data, offset)
        offset += 16
        frame = data[offset : offset + captured]
        offset += captured
        if len(frame) < link_len + 20 or frame[ethertype_at : ethertype_at + 2] != b"\x08\x00":
            continue
        ip = link_len
        header_len = (frame[ip] & 0x0F) * 4
        if frame[ip + 9] != 17:
            continue
        udp = ip + header_len
        if len(frame) < udp + 8:
            continue
        src_port = (frame[udp] << 8) | frame[udp + 1]
        dst_port = (frame[udp + 2] << 8) | frame[udp + 3]
        yield seconds + fractional * fraction, src_port, dst_port, frame[udp + 8 :]


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def pacing_passes(packets, frame_s):
    """How the single pacing thread spent each 20 ms tick, seen from the wire.

    `packets` is [(time, src_port)] in capture order. The pacer sends every stream once per tick
    in a fixed order, so the stream that sends first after the idle part of a tick ("lead")
    marks the start of each pass (while the service keeps up: a pacer that never sleeps has no
    such gap and these figures mean little). Returns the lateness of pass starts against the lead's own
    20 ms grid (timer wake-up jitter), pass durations, and stalls: gaps inside a pass, where
    the thread was off the CPU or the kernel was busy elsewhere."""
    if len(packets) < 3:
        return {}
    # The idle part of a tick (the pacer asleep until the next deadline) is normally the
    # longest gap among the first three ticks' worth of packets.
    first_second = {port for when, port in packets if when - packets[0][0] < 1.0}
    window = packets[: 3 * len(first_second) + 1]
    widest, lead = 0.0, None
    for (before, _), (when, port) in zip(window, window[1:]):
        if when - before > widest:
            widest, lead = when - before, port
    if lead is None:
        return {}
    starts = [index for index, (_, port) in enumerate(packets) if port == lead]
    if len(starts) < 3:
        return {}
    lead_times = [packets[index][0] for index in starts]
    grid_step = (lead_times[-1] - lead_times[0]) / (len(lead_times) - 1)
    offsets = [when - (lead_times[0] + k * grid_step) for k, when in enumerate(lead_times)]
    floor = min(offsets)
    lateness = sorted(offset - floor for offset in offsets)
    durations = []
    stalls = []
    for first, following in zip(starts, starts[1:]):
        last = following - 1
        durations.append(packets[last][0] - packets[first][0])
        for index in range(first, last):
            gap = packets[index + 1][0] - packets[index][0]
            if gap > 0.0003:
                stalls.append(gap)
    durations.sort()
    stalls.sort()
    span = lead_times[-1] - lead_times[0]
    ms = 1000.0
    return {
        "passes": len(durations),
        "sends_per_pass": round((starts[-1] - starts[0]) / max(1, len(starts) - 1), 1),
        "start_late_p50_ms": round(percentile(lateness, 0.5) * ms, 3),
        "start_late_p99_ms": round(percentile(lateness, 0.99) * ms, 3),
        "start_late_max_ms": round(lateness[-1] * ms, 3),
        "duration_p50_ms": round(percentile(durations, 0.5) * ms, 3),
        "duration_p99_ms": round(percentile(durations, 0.99) * ms, 3),
        "duration_max_ms": round(durations[-1] * ms, 3),
        "us_per_send_p50": round(percentile(durations, 0.5) * 1e6 / max(1, len(packets) / len(starts)), 2),
        # Gaps over 0.3 ms between two sends of one pass.
        "stalls_per_s": round(len(stalls) / span, 1) if span else None,
        "stall_ms_per_s": round(sum(stalls) * ms / span, 2) if span else None,
        "stall_p50_ms": round(percentile(stalls, 0.5) * ms, 3) if stalls else 0.0,
        "stall_max_ms": round(stalls[-1] * ms, 3) if stalls else 0.0,
    }


def analyse(path, frame_ms=20.0, step=160, settle_s=0.0):
    """`settle_s`: the capture's first seconds are left out (dumpcap's start disturbs them)."""
    frame_s = frame_ms / 1000.0
    order = []
    # Per source port: [last_time, last_seq, last_rtp_ts, packets, first_time, ssrc]
    streams = {}
    deviations = []
    per_stream_worst = {}
    short_packets = 0
    seq_gaps = 0
    lost_packets = 0
    ts_step_errors = 0
    ssrc_changes = 0
    first_time = last_time = None
    start = None
    for when, port, payload in read_pcap(path):
        start = when + settle_s if start is None else start
        if when < start:
            continue
        if first_time is None:
            first_time = when
        last_time = when
        if len(payload) < 12 or payload[0] >> 6 != 2:
            short_packets += 1
            continue
        order.append((when, port))
        seq = (payload[2] << 8) | payload[3]
        rtp_ts = struct.unpack_from("!I", payload, 4)[0]
        ssrc = struct.unpack_from("!I", payload, 8)[0]
        state = streams.get(port)
        if state is None or state[5] != ssrc:
            if state is not None:
                ssrc_changes += 1
            streams[port] = [when, seq, rtp_ts, 1, when, ssrc]
            continue
        seq_step = (seq - state[1]) & 0xFFFF
        if seq_step == 1:
            deviation = abs((when - state[0]) - frame_s)
            deviations.append(deviation)
            if deviation > per_stream_worst.get(port, 0.0):
                per_stream_worst[port] = deviation
            if (rtp_ts - state[2]) & 0xFFFFFFFF != step:
                ts_step_errors += 1
        else:
            seq_gaps += 1
            if 1 < seq_step < 0x8000:
                lost_packets += seq_step - 1
            # The timestamp must still advance by one step per packet slot.
            if seq_step < 0x8000 and (rtp_ts - state[2]) & 0xFFFFFFFF != step * seq_step:
                ts_step_errors += 1
        state[0], state[1], state[2] = when, seq, rtp_ts
        state[3] += 1
    deviations.sort()
    ms = 1000.0
    packets = sum(state[3] for state in streams.values())
    span = (last_time - first_time) if first_time is not None else 0.0
    # Average send interval per stream: catches slow drift that per-interval figures hide.
    mean_intervals = [
        (state[0] - state[4]) / (state[3] - 1) for state in streams.values() if state[3] > 1
    ]
    worst = sorted(per_stream_worst.values())
    over_2ms = sum(1 for value in deviations if value > 0.002)
    return {
        "capture_s": round(span, 3),
        "streams": len(streams),
        "packets": packets,
        "packets_per_s": round(packets / span, 1) if span > 0 else None,
        "intervals": len(deviations),
        "dev_p50_ms": round(percentile(deviations, 0.50) * ms, 3) if deviations else None,
        "dev_p99_ms": round(percentile(deviations, 0.99) * ms, 3) if deviations else None,
        "dev_p999_ms": round(percentile(deviations, 0.999) * ms, 3) if deviations else None,
        "dev_max_ms": round(deviations[-1] * ms, 3) if deviations else None,
        "intervals_over_2ms": over_2ms,
        "streams_worst_p50_ms": round(percentile(worst, 0.5) * ms, 3) if worst else None,
        "mean_interval_min_ms": round(min(mean_intervals) * ms, 4) if mean_intervals else None,
        "mean_interval_max_ms": round(max(mean_intervals) * ms, 4) if mean_intervals else None,
        "seq_gaps": seq_gaps,
        "lost_packets": lost_packets,
        "ts_step_errors": ts_step_errors,
        "ssrc_changes": ssrc_changes,
        "non_rtp_packets": short_packets,
        "pacer": pacing_passes(order, frame_s),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pcap")
    parser.add_argument("--frame-ms", type=float, default=20.0)
    parser.add_argument("--step", type=int, default=160, help="RTP timestamp units per packet")
    parser.add_argument("--text", action="store_true", help="human-readable output")
    args = parser.parse_args()
    try:
        result = analyse(args.pcap, args.frame_ms, args.step)
    except (OSError, ValueError) as error:
        print(f"rtp_stats: {error}", file=sys.stderr)
        return 1
    print_result(result, args.text, 24)
    return 0


def print_result(result, as_text, key_width):
    """JSON on one line, or `key value` lines (nested keys as `outer.inner`) for people."""
    if not as_text:
        print(json.dumps(result))
        return
    for key, value in result.items():
        if isinstance(value, dict):
            for inner, detail in value.items():
                print(f"{key + '.' + inner:{key_width}} {detail}")
        else:
            print(f"{key:{key_width}} {value}")


if __name__ == "__main__":
    sys.exit(main())
