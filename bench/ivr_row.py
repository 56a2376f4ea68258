"""One row of the IVR mode of bench/run (N SIPp or TLS calls hearing the welcome prompt), its
summary line and its table."""

import datetime
import json
import os
import socket
import subprocess
import sys
import time

import rtp_stats  # sibling file

from machine import (
    BENCH_DIR,
    CAPTURE_SETTLE_S,
    CpuWindow,
    capture,
    finish_profiler,
    foreign_pct,
    load_average,
    log,
    mib,
    port_free,
    read_file,
    record_service_end,
    record_service_log,
    rtp_legs,
    sipp_totals,
    start_hotline,
    start_logged,
    start_profiler,
    status_kib,
    stop,
    stop_stragglers,
    summed_sipp_totals,
    wait_for_quiet,
    watch_until_done,
)


SCENARIO = os.path.join(BENCH_DIR, "uac_hold.xml")


# At most this many calls' streams are captured (whole SIPp instances).
CAPTURED_CALLS = 4000


def sipp_command(args, index, calls, rate, run_dir):
    return [
        "sipp",
        f"127.0.0.1:{args.sip_port}",
        "-sf", SCENARIO,
        "-s", "19118",
        "-i", "127.0.0.1",
        "-mi", "127.0.0.1",
        "-p", str(args.sipp_port + index),
        "-mp", str(args.media_port + 10 * index),
        "-cp", str(args.control_port + index),
        "-t", "u1",
        "-m", str(calls),
        "-l", str(calls),
        "-r", str(rate),
        "-d", str(args.hold * 1000),
        "-recv_timeout", "32s",
        "-timeout", f"{int(args.hold + calls / rate + 90)}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file", os.path.join(run_dir, f"sipp{index}_errors.log"),
        "-trace_stat",
        "-stf", os.path.join(run_dir, f"sipp{index}_stats.csv"),
        "-fd", "1",
    ]  # fmt: skip


def tls_mode(args):
    """`tls-srtp`, `tls-plain`, or None for the SIPp (UDP) rows."""
    return "tls-srtp" if args.srtp else "tls-plain" if args.tls_plain else None


def tls_certificate(args):
    """The service's certificate for the TLS rows: self-signed P-256 for 127.0.0.1, made once
    per bench run in --out with the openssl CLI (only the bench uses OpenSSL; the service reads
    the PEM files with rustls). Returns (cert, key) paths."""
    cert, key = os.path.join(args.out, "tls-cert.pem"), os.path.join(args.out, "tls-key.pem")
    if not (os.path.exists(cert) and os.path.exists(key)):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-days", "2", "-keyout", key, "-out", cert],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )  # fmt: skip
    return cert, key


def tls_service_setup(args, run_dir):
    """Environment and config file of the service for a TLS row: `sip.tls_listen` with the
    bench's certificate, and one trunk `bench` whose `inbound` block is 127.0.0.1, so every
    bench call is the trunk's and gets its `media_encryption` (`required` with --srtp, `off`
    with --tls-plain; a call from no trunk is always plain). The trunk's host is a port nobody
    listens on: it never registers, and its OPTIONS keep-alive (at start, then hourly) fails,
    which only marks it down; its inbound calls are accepted all the same."""
    cert, key = tls_certificate(args)
    config = os.path.join(run_dir, "hotline.toml")
    encryption = "required" if args.srtp else "off"
    with open(config, "w") as handle:
        handle.write(
            f"# Written by bench/run --{'srtp' if args.srtp else 'tls-plain'}.\n"
            "[trunks.bench]\n"
            f'host = "127.0.0.1:{args.trunk_port}"\n'
            'transport = "tls"\n'
            'inbound = ["127.0.0.1/32"]\n'
            'numbers = ["19118"]\n'
            f'media_encryption = "{encryption}"\n'
            'options_interval = "1h"\n'
        )
    env = {
        "HOTLINE__SIP__TLS_LISTEN": f"127.0.0.1:{args.tls_port}",
        "HOTLINE__SIP__TLS_CERT": cert,
        "HOTLINE__SIP__TLS_KEY": key,
    }
    return env, config


def tls_uac_command(args, calls, run_dir):
    command = [
        sys.executable, os.path.join(BENCH_DIR, "tls_uac.py"),
        "--target", f"127.0.0.1:{args.tls_port}",
        "--cafile", os.path.join(args.out, "tls-cert.pem"),
        "--calls", str(calls),
        "--rate", str(args.rate),
        "--hold", str(args.hold),
        "--connections", str(args.tls_connections),
        "--media-port", str(args.media_port),
        "--timeout", str(int(args.hold + calls / args.rate + 90)),
        "--stats", os.path.join(run_dir, "tls_uac.json"),
    ]  # fmt: skip
    return command + (["--srtp"] if args.srtp else [])


def tls_uac_totals(path):
    """tls_uac.py's totals, with the keys of sipp_totals (a TLS caller has no retransmissions)."""
    text = read_file(path)
    if not text:
        return None
    totals = json.loads(text)
    totals.setdefault("retransmissions", 0)
    totals["unexpected"] = totals.get("failures", {}).get("bye_from_service", 0)
    return totals


def run_row(args, calls):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(args.out, f"{stamp}-n{calls}")
    os.makedirs(run_dir, exist_ok=True)
    mode = tls_mode(args)
    # Long enough for the ramp, the capture and a CPU window with every call up.
    args.hold = args.fixed_hold or max(30, int(calls / args.rate) + 20)
    instances = 1 if mode else args.sipp_instances or (2 if calls > 1000 else 1)
    instances = max(1, min(instances, calls))
    ports = [(args.sip_port, socket.SOCK_DGRAM, "SIP"), (args.sip_port, socket.SOCK_STREAM, "SIP")]
    if mode:
        ports += [
            (args.tls_port, socket.SOCK_STREAM, "SIP over TLS"),
            (args.trunk_port, socket.SOCK_STREAM, "the bench trunk's (unused)"),
            (args.media_port, socket.SOCK_DGRAM, "callers' media"),
        ]
    else:
        ports += [(args.sipp_port + i, socket.SOCK_DGRAM, "SIPp") for i in range(instances)]
        ports += [
            (args.media_port + 10 * i, socket.SOCK_DGRAM, "SIPp media") for i in range(instances)
        ]
    for port, kind, what in ports:
        if not port_free(port, kind):
            raise RuntimeError(f"{what} port {port} is in use; choose others (see --help)")
    tls_env, config = tls_service_setup(args, run_dir) if mode else (None, None)

    quiet_busy = wait_for_quiet(args.quiet_pct, args.quiet_wait)
    load_before = load_average()
    log(f"N={calls}: starting hotline ({run_dir})")
    hotline = start_hotline(args, run_dir, tls_env, config)
    sipps = []
    result = {"calls": calls, "run_dir": run_dir, "sipp_instances": instances}
    if mode:
        result["mode"] = mode
    pcap = None
    try:
        time.sleep(0.5)
        base_rss = status_kib(hotline.pid, "VmRSS")
        split = [calls // instances + (1 if i < calls % instances else 0) for i in range(instances)]
        rate_each = max(1, round(args.rate / instances))
        t0 = time.monotonic()
        if mode:
            command = tls_uac_command(args, calls, run_dir)
            result["uac_command"] = " ".join(command)
            sipps.append(start_logged(command, run_dir, "tls_uac.out"))
            log(f"N={calls}: TLS caller ({mode}) at {args.rate}/s over {args.tls_connections} "
                f"connections, hold {args.hold}s")  # fmt: skip
        for index, share in enumerate([] if mode else split):
            command = sipp_command(args, index, share, rate_each, run_dir)
            if index == 0:
                result["sipp_command"] = " ".join(command)
            sipps.append(start_logged(command, run_dir, f"sipp{index}.out"))
        if not mode:
            log(f"N={calls}: {instances} SIPp at {rate_each}/s each, hold {args.hold}s")

        # Steady state: every call holds one RTP socket (one descriptor).
        ramp_limit = t0 + calls / args.rate + 15
        concurrent = 0
        while time.monotonic() < ramp_limit:
            concurrent = rtp_legs(args)
            if concurrent >= calls or hotline.poll() is not None:
                break
            if all(sipp.poll() is not None for sipp in sipps):
                break
            time.sleep(0.1)
        result["ramp_s"] = round(time.monotonic() - t0, 2)
        result["concurrent_at_capture"] = concurrent
        log(f"N={calls}: {concurrent} calls up after {result['ramp_s']}s")
        time.sleep(1.0)

        # Above 4000 calls only some SIPp instances' streams are captured: the SCHED_IDLE
        # dumpcap keeps up with ~200,000 packets a second beside the service, not 400,000.
        sampled = max(1, min(instances, CAPTURED_CALLS // max(split)))
        result["captured_calls"] = sum(split[:sampled])
        pcap, dumpcap = capture(args, run_dir, sampled, hotline.pid, [sipp.pid for sipp in sipps])
        result["capture"] = dumpcap
        result["concurrent_after_capture"] = rtp_legs(args)

        window_end = t0 + args.hold - 1.0
        if window_end - time.monotonic() < 3:
            log("warning: less than 3 s of steady window left for the CPU measurement")
        window = CpuWindow(hotline.pid, [hotline.pid] + [sipp.pid for sipp in sipps])
        profiler = start_profiler(args, hotline.pid, run_dir)
        time.sleep(max(1.0, window_end - time.monotonic()))
        result["cpu"] = window.finish()
        if profiler is not None:
            finish_profiler(profiler, run_dir)
            result["profile"] = os.path.join(run_dir, "perf-report.txt")
        result["concurrent_at_window_end"] = rtp_legs(args)
        result["rss_steady_kib"] = status_kib(hotline.pid, "VmRSS")

        sipp_deadline = t0 + args.hold + calls / args.rate + 100
        watch_until_done(sipps, sipp_deadline, hotline, result, t0)
        result["sipp_exit"] = stop_stragglers(sipps)
        record_service_end(result, hotline, base_rss, calls)
    except BaseException:
        if pcap and not args.keep and os.path.exists(pcap):
            os.remove(pcap)
        raise
    finally:
        for sipp in sipps:
            stop(sipp)
        stop(hotline)

    if mode:
        totals = [tls_uac_totals(os.path.join(run_dir, "tls_uac.json"))]
        result["uac"] = totals[0]
    else:
        totals = [
            sipp_totals(os.path.join(run_dir, f"sipp{i}_stats.csv")) for i in range(instances)
        ]
    result["sipp"] = summed_sipp_totals(totals)
    try:
        result["rtp"] = rtp_stats.analyse(pcap, settle_s=CAPTURE_SETTLE_S)
    finally:
        if not args.keep:
            os.remove(pcap)
    record_service_log(result, run_dir)
    result["load_before"] = load_before
    result["quiet_busy_pct_before"] = quiet_busy
    result["when"] = stamp
    result["media_normal_priority"] = args.media_normal_priority
    return result


def summary_line(row):
    rtp, cpu, sipp = row["rtp"], row["cpu"], row["sipp"]
    threads = cpu["threads_cpu_pct"]
    pacer = threads.get("rtp-media", 0.0)
    tokio = sum(value for name, value in threads.items() if name.startswith("tokio"))
    main = threads.get("hotline", 0.0)
    mode = f"{row['mode']} " if row.get("mode") else ""
    # Every call is sent 50 packets per second: CPU seconds per packet sent in the window.
    per_packet = 1e4 / (50 * row["calls"])
    return (
        f"{mode}N={row['calls']} ok={sipp['successful']} failed={sipp['failed']} "
        f"retrans={sipp['retransmissions']} up={row['concurrent_at_capture']} "
        f"cpu={cpu['hotline_cpu_pct']}% (pacer {pacer}%, tokio {tokio:.1f}%, sip {main}%) "
        f"cpu/pkt={cpu['hotline_cpu_pct'] * per_packet:.2f}us (pacer {pacer * per_packet:.2f}us) "
        f"pps={rtp['packets_per_s']} "
        f"rss_peak={mib(row.get('rss_peak_kib'))}MiB rss/call={row.get('rss_per_call_kib')}KiB "
        f"dev p50/p99/max={rtp['dev_p50_ms']}/{rtp['dev_p99_ms']}/{rtp['dev_max_ms']}ms "
        f"streams={rtp['streams']} pkts={rtp['packets']} ts_err={rtp['ts_step_errors']} "
        f"seq_gaps={rtp['seq_gaps']} cap_drop={row['capture']['dropped']} "
        f"behind_warn={row['pacer_behind_warnings']} sipp={cpu['sipp_cpu_pct']}% "
        f"pacer_wait={cpu['threads_wait_ms_per_s'].get('rtp-media')}ms/s "
        f"foreign={cpu['foreign_cpu_pct']}%/{foreign_pct(row)}% "
        f"load={cpu['load_start']:.2f}"
        + ("" if row.get("hotline_alive_at_end") else f" HOTLINE-EXITED({row.get('hotline_exit')})")
    )


def table(rows):
    lines = [
        "| calls | SIPp ok / failed | hotline CPU (pacer / tokio / SIP loop) | peak RSS | RSS/call "
        "| dev p50 / p99 / max | > 2 ms | ts≠+160 / seq gaps | cap. drops "
        "| other CPU (capture / window) | load |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        rtp, cpu, sipp = row["rtp"], row["cpu"], row["sipp"]
        threads = cpu["threads_cpu_pct"]
        tokio = sum(value for name, value in threads.items() if name.startswith("tokio"))
        lines.append(
            f"| {row['calls']} | {sipp['successful']} / {sipp['failed']} "
            f"| {cpu['hotline_cpu_pct']}% ({threads.get('rtp-media', 0.0)} / {tokio:.1f} / "
            f"{threads.get('hotline', 0.0)}) "
            f"| {mib(row.get('rss_peak_kib'))} MiB | {row.get('rss_per_call_kib')} KiB "
            f"| {rtp['dev_p50_ms']} / {rtp['dev_p99_ms']} / {rtp['dev_max_ms']} ms "
            f"| {100.0 * rtp['intervals_over_2ms'] / max(1, rtp['intervals']):.3f}% "
            f"| {rtp['ts_step_errors']} / {rtp['seq_gaps']} | {row['capture']['dropped']} "
            f"| {row['capture'].get('cpu_during', {}).get('foreign_cpu_pct', '?')}% / "
            f"{cpu['foreign_cpu_pct']}% "
            f"| {cpu['load_start']:.2f} |"
        )
    lines += [
        "",
        "| calls | pacer CPU per packet | pass p50 / p99 (wall) | stalls in passes | "
        "pacer run-queue wait | tokio workers CPU / run-queue wait | SIPp CPU |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        cpu, pacer = row["cpu"], row["rtp"].get("pacer", {})
        threads, waits = cpu["threads_cpu_pct"], cpu.get("threads_wait_ms_per_s", {})
        tokio = sum(value for name, value in threads.items() if name.startswith("tokio"))
        tokio_wait = sum(value for name, value in waits.items() if name.startswith("tokio"))
        per_packet = 1e4 * threads.get("rtp-media", 0.0) / (50 * row["calls"])
        lines.append(
            f"| {row['calls']} | {per_packet:.2f} µs "
            f"| {pacer.get('duration_p50_ms')} / {pacer.get('duration_p99_ms')} ms "
            f"| {pacer.get('stalls_per_s')}/s, {pacer.get('stall_ms_per_s')} ms/s "
            f"| {waits.get('rtp-media')} ms/s | {tokio:.1f}% / {tokio_wait:.0f} ms/s "
            f"| {cpu['sipp_cpu_pct']}% |"
        )
    return "\n".join(lines)
