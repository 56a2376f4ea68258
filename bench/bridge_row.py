"""One row of the bridged mode of bench/run (`--bridge`: N callers put through to N agents, the
RTP from examples/rtp_load, which meters the relay), its summary line and its table."""

import argparse
import datetime
import json
import os
import signal
import socket
import subprocess
import time

import rtp_stats  # sibling file
import bridge_stats  # sibling file

from machine import (
    BENCH_DIR,
    CAPTURE_SETTLE_S,
    CLOCK_TICKS,
    CpuWindow,
    capture,
    finish_profiler,
    foreign_pct,
    load_average,
    log,
    mib,
    port_free,
    process_cpu_ticks,
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
    udp_socket_drops,
    wait_for_quiet,
    wait_udp_bound,
    watch_until_done,
)


BRIDGE_CALLER_SCENARIO = os.path.join(BENCH_DIR, "uac_bridge.xml")


BRIDGE_AGENT_SCENARIO = os.path.join(BENCH_DIR, "uas_agent.xml")


# The RTP load generator of the bridged mode (examples/rtp_load.rs) sends this raw A-law file
# (written into the run folder from SIPp's sample).
BRIDGE_AUDIO = "bridge_audio.al"


SIPP_ALAW_SAMPLE = "/usr/share/sip-tester/g711a.pcap"


def bridge_routing(calls, agent_ports):
    """Routing for the bridged mode: key 1 in the only menu reaches one bridge group whose
    `calls` static agents live on the SIPp UAS instances (agent K on instance K mod count).
    Round-robin with no wrap-up rings one free agent per caller; an agent on a call is never
    offered another, so N concurrent calls need N agents."""
    lines = [
        "# Written by bench/run --bridge.",
        "[hotline]",
        'languages = ["en"]',
        'default_language = "en"',
        'timezone = "Europe/Vilnius"',
        'digit_timeout = "3s"',
        "max_attempts = 2",
        'fallback = "desk"',
        'start = "main"',
        "",
        "[menus.main]",
        'prompt = "digit_1"',
        'options."1" = { group = "desk" }',
        "",
        "[groups.desk]",
        'name = { en = "Service desk" }',
        'transfer = "bridge"',
        'strategy = "round-robin"',
        'ring_timeout = "5s"',
        'wrap_up = "0s"',
        'language_wait = "1s"',
        'max_wait = "60s"',
        f"max_queue = {calls + 50}",
        "agents = [",
    ]
    for number in range(1, calls + 1):
        port = agent_ports[(number - 1) % len(agent_ports)]
        lines.append(f'  {{ uri = "sip:agent{number}@127.0.0.1:{port}", languages = ["en"] }},')
    lines.append("]")
    return "\n".join(lines) + "\n"


def write_pcmu_caller(path):
    """bench/uac_bridge.xml with a PCMU offer (the generator then labels the callers' audio PT 0:
    the A-law sample's bytes, to the relay just payload, converted to A-law for the agent)."""
    text = read_file(BRIDGE_CALLER_SCENARIO)
    for old, new in (
        ("RTP/AVP 8 101", "RTP/AVP 0 101"),
        ("a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000"),
        ("RTP/AVP 8[^0-9]", "RTP/AVP 0[^0-9]"),
    ):
        if old not in text:
            raise RuntimeError(f"{BRIDGE_CALLER_SCENARIO} no longer has {old!r}")
        text = text.replace(old, new)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def write_bridge_audio(path):
    """SIPp's A-law sample (30 ms packets) as one raw A-law file for the RTP load generator,
    which sends it in 20 ms / 160-byte packets and loops it."""
    audio = b"".join(payload[12:] for _, _, payload in rtp_stats.read_pcap(SIPP_ALAW_SAMPLE))
    with open(path, "wb") as handle:
        handle.write(audio)
    return len(audio)


def bridge_sipp_common(args, run_dir, role, index):
    # Signalling only: the SDP names the generator's socket; SIPp's own -mp stays unused.
    generator_port = args.media_port if role == "callers" else args.agent_media_port
    sipp_media = args.sipp_media_port + (0 if role == "callers" else 100) + 10 * index
    return [
        "-key", "rtp_load_port", str(generator_port),
        "-mp", str(sipp_media),
        "-i", "127.0.0.1",
        "-mi", "127.0.0.1",
        "-nostdin",
        "-trace_err",
        "-error_file", os.path.join(run_dir, f"{role}{index}_errors.log"),
        "-trace_stat",
        "-stf", os.path.join(run_dir, f"{role}{index}_stats.csv"),
        "-fd", "1",
    ]  # fmt: skip


def start_generator(args, run_dir, seconds):
    """The RTP load generator (examples/rtp_load.rs): the callers' and the agents' media from two
    sockets, until SIGTERM or `seconds`; its counters go to rtp_load.json at the end."""
    command = [
        args.rtp_load,
        "--callers", f"127.0.0.1:{args.media_port}",
        "--agents", f"127.0.0.1:{args.agent_media_port}",
        "--duration", str(int(seconds)),
        "--audio", os.path.join(run_dir, BRIDGE_AUDIO),
        "--peer-ports", f"{args.rtp_min}-{args.rtp_max}",
        "--caller-pt", "0" if args.bridge_codec == "pcmu" else "8",
        "--nice", str(args.rtp_load_nice),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=run_dir, stdin=subprocess.DEVNULL,
        stdout=open(os.path.join(run_dir, "rtp_load.json"), "w"),
        stderr=open(os.path.join(run_dir, "rtp_load.stderr"), "w"),
    )  # fmt: skip
    for port in (args.media_port, args.agent_media_port):
        if not wait_udp_bound(port, 10):
            stop(process)
            raise RuntimeError(f"the RTP load generator never bound port {port}")
    return process, " ".join(command)


def run_bridge_row(args, calls):
    """One row of the bridged mode: `calls` callers that each choose the bridge group and talk
    to their own agent, both directions carrying 20 ms A-law packets from the RTP load
    generator (SIPp does the signalling only)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = os.path.join(args.out, f"{stamp}-bridge-n{calls}")
    os.makedirs(run_dir, exist_ok=True)
    instances = args.sipp_instances or (2 if calls > 1000 else 1)
    instances = max(1, min(instances, calls))
    agent_sip = [args.agent_port + i for i in range(instances)]
    # SIPp binds its -mp (and +2) even with no RTP in the scenario: ports nobody else uses.
    sipp_media = [
        args.sipp_media_port + offset + 10 * i + extra
        for offset in (0, 100) for i in range(instances) for extra in (0, 2)
    ]  # fmt: skip
    for port, kind, what in (
        [(args.sip_port, socket.SOCK_DGRAM, "SIP"), (args.sip_port, socket.SOCK_STREAM, "SIP")]
        + [(args.sipp_port + i, socket.SOCK_DGRAM, "SIPp") for i in range(instances)]
        + [(args.media_port, socket.SOCK_DGRAM, "RTP load generator (callers)")]
        + [(args.agent_media_port, socket.SOCK_DGRAM, "RTP load generator (agents)")]
        + [(port, socket.SOCK_DGRAM, "SIPp media (unused)") for port in sipp_media]
        + [(port, socket.SOCK_DGRAM, "SIPp agents") for port in agent_sip]
    ):
        if not port_free(port, kind):
            raise RuntimeError(f"{what} port {port} is in use; choose others (see --help)")

    caller_scenario = BRIDGE_CALLER_SCENARIO
    if args.bridge_codec == "pcmu":
        caller_scenario = write_pcmu_caller(os.path.join(run_dir, "uac_bridge_pcmu.xml"))
    routing_path = os.path.join(run_dir, "routing.toml")
    with open(routing_path, "w") as handle:
        handle.write(bridge_routing(calls, agent_sip))
    write_bridge_audio(os.path.join(run_dir, BRIDGE_AUDIO))
    ramp_s = calls / args.rate
    # Each call: ramp, then key 1, the transfer prompt and the agent's answer (bridge_setup),
    # then one settling second, the capture, the CPU window, and a margin before the BYEs.
    hold = int(ramp_s + args.bridge_setup + 1 + args.bridge_capture + args.bridge_window + 6) + 1
    service_args = argparse.Namespace(**vars(args))
    service_args.routing = routing_path
    service_args.hold = hold
    # `media bridged` (one line per call) and the per-leg `RTP received` lines at the end.
    service_args.rust_log = f"{args.rust_log},hotline::server::media=info"

    quiet_busy = wait_for_quiet(args.quiet_pct, args.quiet_wait)
    load_before = load_average()
    log(f"N={calls} bridged: starting hotline ({run_dir})")
    hotline = start_hotline(service_args, run_dir)
    callers, agents, generator = [], [], None
    result = {
        "mode": "bridge",
        "calls": calls,
        "run_dir": run_dir,
        "sipp_instances": instances,
        "hold_s": hold,
        "codec": "PCMA both legs (no transcoding)" if args.bridge_codec == "pcma"
        else "caller PCMU, agent PCMA (law converted in relay)",
    }
    pcap = None
    try:
        # Bounded by itself too: a margin beyond the last possible BYE.
        generator, result["generator_command"] = start_generator(args, run_dir, hold + ramp_s + 120)
        split = [calls // instances + (1 if i < calls % instances else 0) for i in range(instances)]
        # Agent K lives on instance (K - 1) mod instances: as many agents there as calls here.
        for index, share in enumerate(split):
            command = [
                "sipp",
                "-sf", BRIDGE_AGENT_SCENARIO,
                "-p", str(agent_sip[index]),
                "-cp", str(args.control_port + 4 + index),
                "-t", "u1",
                "-m", str(share),
                "-timeout", f"{int(hold + ramp_s + 90)}s",
            ] + bridge_sipp_common(args, run_dir, "agents", index)  # fmt: skip
            if index == 0:
                result["sipp_agents_command"] = " ".join(command)
            agents.append(start_logged(command, run_dir, f"agents{index}.out"))
            if not wait_udp_bound(agent_sip[index], 10):
                raise RuntimeError(f"the agents' SIPp never bound port {agent_sip[index]}")
        time.sleep(0.5)
        base_rss = status_kib(hotline.pid, "VmRSS")
        rate_each = max(1, round(args.rate / instances))
        t0 = time.monotonic()
        for index, share in enumerate(split):
            command = [
                "sipp", f"127.0.0.1:{args.sip_port}",
                "-sf", caller_scenario,
                "-s", "19118",
                "-p", str(args.sipp_port + index),
                "-cp", str(args.control_port + index),
                "-t", "u1",
                "-m", str(share),
                "-l", str(share),
                "-r", str(rate_each),
                "-d", str(hold * 1000),
                "-recv_timeout", "32s",
                "-timeout", f"{int(hold + ramp_s + 90)}s",
                "-timeout_error",
            ] + bridge_sipp_common(args, run_dir, "callers", index)  # fmt: skip
            if index == 0:
                result["sipp_callers_command"] = " ".join(command)
            callers.append(start_logged(command, run_dir, f"callers{index}.out"))
        sipps = callers + agents
        log(f"N={calls} bridged: {instances}+{instances} SIPp, {rate_each}/s each, hold {hold}s")

        # Steady state: every call holds two RTP sockets (caller and agent leg).
        ramp_limit = t0 + ramp_s + args.bridge_setup + 15
        concurrent = 0
        while time.monotonic() < ramp_limit:
            concurrent = rtp_legs(args) // 2
            if concurrent >= calls or hotline.poll() is not None:
                break
            if all(sipp.poll() is not None for sipp in callers):
                break
            time.sleep(0.1)
        result["ramp_s"] = round(time.monotonic() - t0, 2)
        result["concurrent_at_capture"] = concurrent
        log(f"N={calls} bridged: {concurrent} calls with both legs after {result['ramp_s']}s")
        # The agent leg's socket opens when it rings: a second for the answer and bridge.
        time.sleep(1.0)

        drops_before = udp_socket_drops(args.rtp_min, args.rtp_max)
        if args.bridge_capture > 0:
            # A cross-check of the generator's relay meter (and of the payloads); the capture
            # costs the machine what a 2000-call row does not have to spare.
            rtp_ports = f"udp and portrange {args.rtp_min}-{args.rtp_max}"
            pcap, dumpcap = capture(
                args, run_dir, instances, hotline.pid, [sipp.pid for sipp in sipps],
                capture_filter=rtp_ports, snaplen=80, seconds=args.bridge_capture,
                buffer_mib=args.bridge_capture_buffer_mib, generator_pid=generator.pid,
            )  # fmt: skip
            result["capture"] = dumpcap
        result["concurrent_after_capture"] = rtp_legs(args) // 2

        window_end = min(time.monotonic() + args.bridge_window, t0 + hold - 1.0)
        if window_end - time.monotonic() < 3:
            log("warning: less than 3 s of steady window left for the CPU measurement")
        window = CpuWindow(hotline.pid, [hotline.pid] + [sipp.pid for sipp in sipps], generator.pid)
        if args.rtp_load_fifo > 0:
            # The generator plays the far ends (other machines in a deployment): for the window
            # it runs SCHED_FIFO beside the media threads (10, the same priority: neither
            # preempts the other), so it sends on its clock however busy the service is; at
            # normal priority it lost a tenth of its ticks to them at 2000 calls. Not during
            # the ramp and the hang-ups: the service's SIP loop (normal scheduling) needs the
            # CPU that real far ends would not take from it (SIPp retransmitted BYEs).
            subprocess.run(
                ["chrt", "-a", "-f", "-p", str(args.rtp_load_fifo), str(generator.pid)], check=True
            )
            result["generator_fifo"] = args.rtp_load_fifo
        # The generator meters the relay over the CPU window (SIGUSR1 .. SIGUSR2).
        generator.send_signal(signal.SIGUSR1)
        profiler = start_profiler(args, hotline.pid, run_dir)
        time.sleep(max(1.0, window_end - time.monotonic()))
        generator.send_signal(signal.SIGUSR2)
        if args.rtp_load_fifo > 0:
            # Back to normal for the hang-ups: the BYEs are the SIP loop's again.
            subprocess.run(["chrt", "-a", "-o", "-p", "0", str(generator.pid)], check=True)
        result["cpu"] = window.finish()
        if profiler is not None:
            finish_profiler(profiler, run_dir)
            result["profile"] = os.path.join(run_dir, "perf-report.txt")
        result["concurrent_at_window_end"] = rtp_legs(args) // 2
        result["rss_steady_kib"] = status_kib(hotline.pid, "VmRSS")
        drops_after = udp_socket_drops(args.rtp_min, args.rtp_max)
        # Over capture and CPU window: datagrams the service's sockets had no room for.
        result["socket_drops"] = {
            "sockets": drops_after["sockets"],
            "drops": drops_after["drops"] - drops_before["drops"],
            "seconds": round(args.bridge_capture + (result["cpu"]["window_s"] or 0), 1),
            "rx_queue_bytes_end": drops_after["rx_queue_bytes"],
        }

        sipp_deadline = t0 + hold + ramp_s + 100
        watch_until_done(callers, sipp_deadline, hotline, result, t0)
        # The agents' SIPp ends after its last BYE (-m); give it the BYEs' time.
        watch_until_done(agents, time.monotonic() + 15, hotline, result, t0)
        result["sipp_exit"] = stop_stragglers(sipps)
        result["generator_cpu_total_s"] = round(
            (process_cpu_ticks(generator.pid) or 0) / CLOCK_TICKS, 2
        )
        record_service_end(result, hotline, base_rss, calls)
    except BaseException:
        if pcap and not args.keep and os.path.exists(pcap):
            os.remove(pcap)
        raise
    finally:
        for sipp in callers + agents:
            stop(sipp)
        # SIGTERM: the generator prints its counters and exits.
        stop(generator)
        stop(hotline)

    result["generator_exit"] = generator.returncode if generator else None
    text = read_file(os.path.join(run_dir, "rtp_load.json")) or ""
    try:
        result["generator"] = json.loads(text.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result["generator"] = None
        log(f"the RTP load generator left no counters (see {run_dir}/rtp_load.stderr)")

    for role in ("callers", "agents"):
        totals = [sipp_totals(os.path.join(run_dir, f"{role}{i}_stats.csv")) for i in range(instances)]
        result[f"sipp_{role}"] = summed_sipp_totals(totals)
    result["sipp"] = result["sipp_callers"]
    result["relay"] = (result["generator"] or {}).get("relay") or {}
    if pcap:
        try:
            result["relay_capture"] = bridge_stats.analyse(
                pcap, [args.media_port], [args.agent_media_port], settle_s=CAPTURE_SETTLE_S
            )
        finally:
            if not args.keep:
                os.remove(pcap)
    result["media_bridged"] = record_service_log(result, run_dir).count("media bridged")
    result["load_before"] = load_before
    result["quiet_busy_pct_before"] = quiet_busy
    result["when"] = stamp
    result["media_normal_priority"] = args.media_normal_priority
    result["workers_nice"] = args.workers_nice
    return result


def bridge_thread_split(cpu):
    threads = cpu["threads_cpu_pct"]
    tokio = sum(value for name, value in threads.items() if name.startswith("tokio"))
    return tokio, threads.get("rtp-media", 0.0), threads.get("hotline", 0.0)


def bridge_summary_line(row):
    relay, cpu = row["relay"], row["cpu"]
    callers, agents = row["sipp_callers"], row["sipp_agents"]
    both = relay.get("both", {})
    tokio, pacer, main = bridge_thread_split(cpu)
    gen = row.get("generator") or {}
    lost = "/".join(
        str(relay.get(name, {}).get("lost_in_relay")) for name in bridge_stats.DIRECTIONS.values()
    )
    return (
        f"BRIDGE N={row['calls']} callers ok={callers['successful']} failed={callers['failed']} "
        f"agents ok={agents['successful']} failed={agents['failed']} "
        f"retrans={callers['retransmissions']}+{agents['retransmissions']} "
        f"bridged={row['media_bridged']} up={row['concurrent_at_capture']} "
        f"pairs={relay.get('bridges')} "
        f"cpu={cpu['hotline_cpu_pct']}% (tokio {tokio:.1f}%, pacer {pacer}%, sip {main}%) "
        f"rss_peak={mib(row.get('rss_peak_kib'))}MiB rss/call={row.get('rss_per_call_kib')}KiB "
        f"delay p50/p99/p99.9/max={both.get('delay_p50_ms')}/{both.get('delay_p99_ms')}/"
        f"{both.get('delay_p999_ms')}/{both.get('delay_max_ms')}ms "
        f"forwarded={both.get('forwarded')} "
        f"relayed={relayed_per_second(row):.0f}/s of {100 * row['calls']} lost(c>a/a>c)={lost} "
        f"sock_drops={row['socket_drops']['drops']} "
        f"cap_drop={row.get('capture', {}).get('dropped', '-')} "
        f"gen={cpu.get('generator_cpu_pct', '-')}% "
        f"gen_late_mean/skipped={gen.get('late_mean_us')}us/{gen.get('ticks_skipped')} "
        f"sipp={cpu['sipp_cpu_pct']}% "
        f"foreign={cpu['foreign_cpu_pct']}%/{foreign_pct(row)}% load={cpu['load_start']:.2f}"
        + ("" if row.get("hotline_alive_at_end") else f" HOTLINE-EXITED({row.get('hotline_exit')})")
    )


def bridge_table(rows):
    lines = [
        "| bridged calls | SIPp callers ok / failed | agents ok / failed | hotline CPU (tokio / "
        "pacer / SIP loop) | CPU per relayed packet | peak RSS | RSS/call | relay delay p50 / p99 "
        "/ p99.9 / max | > 1 ms / > 5 ms | lost in relay (c→a / a→c) of forwarded | socket drops "
        "| cap. drops | RTP generator / SIPp CPU | other CPU (capture / window) | load |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |",
    ]
    for row in rows:
        relay, cpu = row["relay"], row["cpu"]
        callers, agents = row["sipp_callers"], row["sipp_agents"]
        both = relay.get("both", {})
        tokio, pacer, main = bridge_thread_split(cpu)
        per_packet = 1e4 * cpu["hotline_cpu_pct"] / relayed_per_second(row)
        lost = " / ".join(
            str(relay.get(name, {}).get("lost_in_relay")) for name in bridge_stats.DIRECTIONS.values()
        )
        lines.append(
            f"| {row['calls']} | {callers['successful']} / {callers['failed']} "
            f"| {agents['successful']} / {agents['failed']} "
            f"| {cpu['hotline_cpu_pct']}% ({tokio:.1f} / {pacer} / {main}) | {per_packet:.2f} µs "
            f"| {mib(row.get('rss_peak_kib'))} MiB | {row.get('rss_per_call_kib')} KiB "
            f"| {both.get('delay_p50_ms')} / {both.get('delay_p99_ms')} / "
            f"{both.get('delay_p999_ms')} / {both.get('delay_max_ms')} ms "
            f"| {both.get('delay_over_1ms')} / {both.get('delay_over_5ms')} "
            f"| {lost} of {both.get('forwarded')} | {row['socket_drops']['drops']} "
            f"| {row.get('capture', {}).get('dropped', '–')} "
            # Rows from before the generator: SIPp streamed the audio itself (no generator).
            f"| {cpu.get('generator_cpu_pct', '—')}% / {cpu['sipp_cpu_pct']}% "
            f"| {row.get('capture', {}).get('cpu_during', {}).get('foreign_cpu_pct', '–')}% / "
            f"{cpu['foreign_cpu_pct']}% | {cpu['load_start']:.2f} |"
        )
    return "\n".join(lines)


def relayed_per_second(row):
    """Packets the service relayed per second: the generator's meter over its window, or for
    rows measured by capture alone, 50 a second each way per call."""
    relay = row.get("relay") or {}
    forwarded, window_s = relay.get("both", {}).get("forwarded"), relay.get("window_s")
    if relay.get("source") == "generator" and forwarded and window_s:
        return forwarded / window_s
    return 100 * row["calls"]
