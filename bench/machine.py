"""The machine and the processes of a bench row: /proc readers, the CPU window, waiting for a
quiet machine, ports, starting and stopping the service, its threads' priorities, the RTP
capture and the profiler. Used by bench/run; standard library only."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the repository


BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


REPO_DIR = os.path.dirname(BENCH_DIR)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# The capture runs this much longer and its first second is left out of the analysis: dumpcap
# allocating its ring stalls the CPU it runs on for ~0.2 s (non-preemptible kernel work on this
# PREEMPT_NONE kernel), and relayed packets queue meanwhile; the service is not what is slow.
CAPTURE_SETTLE_S = 1


READY_LINE = re.compile(r"hotline listening sip=(\S+) \(udp\+tcp\)")


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def read_file(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def proc_stat_fields(path):
    """Fields of a /proc/.../stat line after the command name (index 0 = state)."""
    text = read_file(path)
    if text is None:
        return None, None
    close = text.rfind(")")
    comm = text[text.find("(") + 1 : close]
    return comm, text[close + 2 :].split()


def process_cpu_ticks(pid):
    """utime + stime of a whole process (all threads), in clock ticks."""
    _, fields = proc_stat_fields(f"/proc/{pid}/stat")
    if fields is None:
        return None
    return int(fields[11]) + int(fields[12])


def process_start_ticks(fields):
    return int(fields[19])


def thread_sched(pid):
    """Per thread name (threads of one name summed, e.g. all tokio workers): nanoseconds run
    on a CPU and nanoseconds spent runnable but waiting for one (/proc/.../schedstat)."""
    groups = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return groups
    for tid in tids:
        comm, _ = proc_stat_fields(f"/proc/{pid}/task/{tid}/stat")
        sched = read_file(f"/proc/{pid}/task/{tid}/schedstat")
        if comm is None or sched is None:
            continue
        run_ns, wait_ns = (int(value) for value in sched.split()[:2])
        # The media threads (rtp-media-0, -1, ...) are one group, like the tokio workers.
        if comm.startswith("rtp-media"):
            comm = "rtp-media"
        total = groups.setdefault(comm, [0, 0])
        total[0] += run_ns
        total[1] += wait_ns
    return groups


def all_process_ticks():
    """utime + stime, start time and name of every process on the machine, by pid."""
    result = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        comm, fields = proc_stat_fields(f"/proc/{name}/stat")
        if fields is None:
            continue
        result[int(name)] = (
            int(fields[11]) + int(fields[12]),
            process_start_ticks(fields),
            comm,
        )
    return result


def uptime_ticks():
    return float(read_file("/proc/uptime").split()[0]) * CLOCK_TICKS


def host_cpu():
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    fields = [int(value) for value in read_file("/proc/stat").splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle, sum(fields[:8])


def status_kib(pid, key):
    text = read_file(f"/proc/{pid}/status") or ""
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def load_average():
    return float(read_file("/proc/loadavg").split()[0])


def machine():
    cpuinfo = read_file("/proc/cpuinfo") or ""
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.MULTILINE)
    mem = re.search(r"^MemTotal:\s+(\d+)", read_file("/proc/meminfo") or "", re.MULTILINE)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else "unknown",
        "mem_gib": round(int(mem.group(1)) / 1048576, 1) if mem else None,
        "kernel": os.uname().release,
    }


class CpuWindow:
    """CPU used over a time window by our processes, their threads and everything else."""

    def __init__(self, hotline_pid, own_pids, generator_pid=None):
        self.hotline_pid = hotline_pid
        # The bridged mode's RTP load generator: one of ours, reported on its own.
        self.generator_pid = generator_pid
        self.own_pids = set(own_pids) | ({generator_pid} if generator_pid else set())
        self.start = time.monotonic()
        self.start_uptime = uptime_ticks()
        self.host = host_cpu()
        self.hotline = process_cpu_ticks(hotline_pid)
        self.threads = thread_sched(hotline_pid)
        self.own = {pid: process_cpu_ticks(pid) or 0 for pid in self.own_pids}
        self.everyone = all_process_ticks()
        self.load_start = load_average()

    def finish(self):
        seconds = time.monotonic() - self.start
        busy, total = host_cpu()
        hotline = process_cpu_ticks(self.hotline_pid)
        threads = thread_sched(self.hotline_pid)
        own_now = {pid: process_cpu_ticks(pid) for pid in self.own_pids}
        everyone = all_process_ticks()

        def percent(ticks):
            return round(100.0 * ticks / CLOCK_TICKS / seconds, 1)

        def delta(name, field):
            return threads[name][field] - self.threads.get(name, [0, 0])[field]

        # Threads of one name started inside the window count from zero.
        thread_share = {name: round(delta(name, 0) / 1e7 / seconds, 1) for name in threads}
        thread_wait = {name: round(delta(name, 1) / 1e6 / seconds, 2) for name in threads}

        def own_used(pid):
            return (own_now[pid] or self.own[pid]) - self.own[pid]

        # SIPp, and dumpcap while capturing: the bench's own tools.
        tools = self.own_pids - {self.hotline_pid, self.generator_pid}
        sipp_ticks = sum(own_used(pid) for pid in tools)
        generator = {}
        if self.generator_pid:
            generator["generator_cpu_pct"] = percent(own_used(self.generator_pid))
        # Processes that are not ours: their CPU over the window; ones born in the window count
        # from zero. Processes that lived and died inside the window are missed: the host's
        # busy figure below catches them.
        foreign = 0
        by_name = {}
        ours = self.own_pids | {os.getpid()}
        for pid, (ticks, started, comm) in everyone.items():
            if pid in ours:
                continue
            before = self.everyone.get(pid)
            if before is not None and before[1] == started:
                used = ticks - before[0]
            elif started >= self.start_uptime:
                used = ticks
            else:
                used = 0
            foreign += used
            # Kernel threads such as ksoftirqd may be doing our own traffic's work.
            name = re.sub(r"/\d+$", "", comm)
            by_name[name] = by_name.get(name, 0) + used
        return {
            "window_s": round(seconds, 1),
            "hotline_cpu_pct": percent(hotline - self.hotline),
            "threads_cpu_pct": dict(sorted(thread_share.items(), key=lambda kv: -kv[1])),
            # Run-queue delay: ms per second each thread group was runnable but not running.
            "threads_wait_ms_per_s": thread_wait,
            "sipp_cpu_pct": percent(sipp_ticks),
            **generator,
            "foreign_cpu_pct": percent(foreign),
            "foreign_top": {
                name: percent(ticks)
                for name, ticks in sorted(by_name.items(), key=lambda kv: -kv[1])[:4]
                if ticks
            },
            # Tick-sampled (CONFIG_TICK_CPU_ACCOUNTING): rough, a 20 ms periodic load can
            # alias with the tick. The per-process figures are exact (sum_exec_runtime).
            "host_busy_pct": round(
                100.0 * os.cpu_count() * (busy - self.host[0]) / max(1, total - self.host[1]), 1
            ),
            "load_start": self.load_start,
            "load_end": load_average(),
        }


def busy_percent_over(seconds):
    """Whole-machine CPU busy over a short sample, in % of one core."""
    busy0, total0 = host_cpu()
    time.sleep(seconds)
    busy1, total1 = host_cpu()
    return 100.0 * os.cpu_count() * (busy1 - busy0) / max(1, total1 - total0)


def wait_for_quiet(limit_pct, max_wait_s):
    """Waits until the machine is nearly idle (other helpers share it); returns the busy %."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = busy_percent_over(3.0)
        if busy <= limit_pct or time.monotonic() >= deadline:
            if busy > limit_pct:
                log(f"machine still busy ({busy:.0f}% of a core); measuring anyway")
            return round(busy, 1)
        log(f"machine busy ({busy:.0f}% of a core, load {load_average():.2f}); waiting")
        time.sleep(10)


def port_free(port, kind):
    sock = socket.socket(socket.AF_INET, kind)
    if kind == socket.SOCK_STREAM:
        # As a listener binds (tokio sets it too): connections in TIME-WAIT from the previous
        # row do not keep the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def stop(process, grace_s=10):
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def start_hotline(args, run_dir, extra_env=None, config=None):
    env = {key: value for key, value in os.environ.items() if not key.startswith("HOTLINE__")}
    env.update(
        {
            "HOTLINE__SIP__LISTEN": f"127.0.0.1:{args.sip_port}",
            "HOTLINE__RTP__PORT_MIN": str(args.rtp_min),
            "HOTLINE__RTP__PORT_MAX": str(args.rtp_max),
            # SIPp sends no RTP: without this the service would hang up silent callers.
            "HOTLINE__SIP__RTP_TIMEOUT": f"{args.hold + 120}s",
            "HOTLINE__SIP__MAX_CALL_DURATION": f"{args.hold + 600}s",
            "HOTLINE__PROMPTS": os.path.join(REPO_DIR, "prompts"),
            # builtin:echo plays `welcome`, then comfort silence until a key: a steady media
            # load with no menu timeouts or transfers during the hold.
            "HOTLINE__ROUTING": args.routing,
            "HOTLINE__PID_FILE": os.path.join(run_dir, "hotline.pid"),
            "HOTLINE__HTTP__LISTEN": "127.0.0.1:0",
            "HOTLINE__DATABASE__URL": f"sqlite://{os.path.join(run_dir, 'hotline.db')}",
            "RUST_LOG": args.rust_log,
        }
    )
    env.update(extra_env or {})
    stderr = open(os.path.join(run_dir, "hotline.stderr"), "w")
    process = subprocess.Popen(
        [args.binary] + (["--config", config] if config else []) + ["serve"],
        cwd=run_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    ready = threading.Event()
    lines = []

    def drain():
        # Keeps reading after readiness so the pipe never fills.
        for line in process.stdout:
            lines.append(line.rstrip())
            if READY_LINE.search(line):
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    ready_in_time = ready.wait(args.ready_timeout)
    if ready_in_time and args.media_normal_priority:
        set_media_normal_priority(process.pid)
    if ready_in_time and args.workers_nice:
        set_workers_nice(process.pid, args.workers_nice)
    if not ready_in_time:
        stop(process)
        tail = (read_file(os.path.join(run_dir, "hotline.stderr")) or "").strip()[-600:]
        raise RuntimeError(
            f"hotline not ready within {args.ready_timeout}s; stdout {lines[-5:]}; "
            f"stderr ({run_dir}/hotline.stderr): {tail}"
        )
    return process


def start_logged(command, run_dir, log_name):
    """Starts a bench tool in the run folder, its stdout and stderr into `log_name` there."""
    output = open(os.path.join(run_dir, log_name), "w")
    return subprocess.Popen(
        command, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
    )


def threads_named(pid, prefix):
    """The thread ids of `pid` whose name starts with `prefix`."""
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        comm, _ = proc_stat_fields(f"/proc/{pid}/task/{tid}/stat")
        if comm and comm.startswith(prefix):
            tids.append(tid)
    return tids


def set_media_normal_priority(pid):
    """Experiment (--media-normal-priority): put the service's media threads, which make
    themselves SCHED_FIFO where they may, back to SCHED_OTHER, to see what real-time priority
    is worth."""
    media = threads_named(pid, "rtp-media")
    if not media:
        raise RuntimeError("no rtp-media threads")
    for tid in media:
        subprocess.run(["chrt", "-o", "-p", "0", tid], check=True, timeout=10)


def set_workers_nice(pid, nice):
    """Experiment (--workers-nice): renice the service's tokio worker threads (which run the
    per-call receive tasks and so the bridged calls' relay), as a deployment could."""
    workers = threads_named(pid, "tokio-rt")
    if not workers:
        raise RuntimeError("no tokio worker threads to renice")
    subprocess.run(["renice", "-n", str(nice), "-p"] + workers, check=True, timeout=10,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def sipp_totals(path):
    """Final cumulative counters from a SIPp -trace_stat CSV."""
    text = read_file(path)
    if not text:
        return None
    rows = [line.split(";") for line in text.splitlines() if line.strip()]
    if len(rows) < 2:
        return None
    header, last = rows[0], rows[-1]
    values = dict(zip(header, last))

    def number(key):
        try:
            return int(values.get(key, "0"))
        except ValueError:
            return 0

    return {
        "successful": number("SuccessfulCall(C)"),
        "failed": number("FailedCall(C)"),
        "created": number("TotalCallCreated"),
        "retransmissions": number("Retransmissions(C)"),
        "unexpected": number("FailedUnexpectedMessage(C)"),
    }


def watch_until_done(processes, deadline, hotline, result, t0):
    """Waits for `processes` to end by `deadline` (monotonic), noting in `result` when the
    service died meanwhile (a zombie has no VmHWM)."""
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        if hotline.poll() is not None and "hotline_died_at_s" not in result:
            result["hotline_died_at_s"] = round(time.monotonic() - t0, 1)
            log(f"hotline exited ({hotline.returncode}) {result['hotline_died_at_s']}s after the first call")
        time.sleep(0.2)


def stop_stragglers(sipps):
    """Stops the SIPp runs still going; their exit codes."""
    for sipp in sipps:
        if sipp.poll() is None:
            log("SIPp did not finish in time; stopping it")
            stop(sipp)
    return [sipp.returncode for sipp in sipps]


def record_service_end(result, hotline, base_rss, calls):
    """The service's CPU, memory (peak, steady and per call) and state once the calls ended."""
    result["hotline_cpu_total_s"] = round((process_cpu_ticks(hotline.pid) or 0) / CLOCK_TICKS, 2)
    result["rss_base_kib"] = base_rss
    result["rss_peak_kib"] = status_kib(hotline.pid, "VmHWM")
    if result["rss_peak_kib"] and base_rss:
        result["rss_per_call_kib"] = round((result["rss_peak_kib"] - base_rss) / calls, 1)
        result["rss_steady_per_call_kib"] = round(
            ((result["rss_steady_kib"] or base_rss) - base_rss) / calls, 1
        )
    result["hotline_alive_at_end"] = hotline.poll() is None
    result["hotline_exit"] = hotline.returncode


def record_service_log(result, run_dir):
    """Warnings in the service's log; its text, for mode-specific counts."""
    stderr = read_file(os.path.join(run_dir, "hotline.stderr")) or ""
    result["hotline_warnings"] = sum(1 for line in stderr.splitlines() if " WARN " in line)
    result["pacer_behind_warnings"] = stderr.count("fell behind")
    return stderr


def summed_sipp_totals(totals):
    """SIPp's (or the TLS caller's) totals of several runs, summed."""
    keys = ("successful", "failed", "created", "retransmissions", "unexpected")
    return {key: sum((total or {}).get(key) or 0 for total in totals) for key in keys}


def capture(args, run_dir, instances, hotline_pid, other_pids, capture_filter=None, snaplen=64,
            seconds=None, buffer_mib=None, generator_pid=None):
    """Captures the service's RTP on lo; returns the pcap path, dumpcap's counters and the CPU
    picture while capturing (the capture itself costs CPU, so the CPU row is measured later).
    By default the service's sends to the callers; the bridged mode passes its own filter."""
    seconds = seconds or args.capture
    # tmpfs: writing ~40 MB to disk would add writeback work during the measurement.
    capture_dir = args.capture_dir or (
        "/dev/shm" if os.path.isdir("/dev/shm") and not args.keep else run_dir
    )
    path = os.path.join(capture_dir, f"hotline-bench-{os.getpid()}-{os.path.basename(run_dir)}.pcap")
    if capture_filter is None:
        media_ports = " or ".join(f"dst port {args.media_port + 10 * i}" for i in range(instances))
        capture_filter = f"udp and src portrange {args.rtp_min}-{args.rtp_max} and ({media_ports})"
    # SCHED_IDLE: libpcap wakes dumpcap each time a ring block fills (~70/s at 2000 calls),
    # from the pacer's own send path, so the scheduler puts it on the pacer's CPU; at normal
    # priority it preempts the pacer for ~0.7 ms each time and the capture disturbs what it
    # measures. The kernel still timestamps every packet on time; only the copying waits.
    command = [
        "chrt", "--idle", "0",
        "dumpcap", "-i", "lo", "-P",
        "-s", str(snaplen),  # Ethernet + IPv4 + UDP + RTP header = 54 bytes
        "-B", str(buffer_mib or args.capture_buffer_mib),
        "-f", capture_filter,
        "-a", f"duration:{seconds + CAPTURE_SETTLE_S}",
        "-w", path,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=run_dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    window = CpuWindow(hotline_pid, [hotline_pid, process.pid] + other_pids, generator_pid)
    try:
        _, report = process.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        stop(process)
        raise RuntimeError("dumpcap did not stop by itself")
    during = window.finish()
    with open(os.path.join(run_dir, "dumpcap.stderr"), "w") as handle:
        handle.write(report)
    if process.returncode != 0:
        raise RuntimeError(f"dumpcap failed ({process.returncode}): {report.strip()[-400:]}")
    match = re.search(r"received/dropped on interface '[^']*': (\d+)/(\d+)", report)
    detail = re.search(r"\(pcap:(\d+)/dumpcap:(\d+)/flushed:(\d+)/ps_ifdrop:(\d+)\)", report)
    # dumpcap's "dropped" already sums pcap, dumpcap and flushed; the interface's own drops
    # (ps_ifdrop) come on top.
    dropped = int(match.group(2)) if match else None
    if detail:
        dropped = (dropped or 0) + int(detail.group(4))
    return path, {
        "received": int(match.group(1)) if match else None,
        "dropped": dropped,
        "filter": capture_filter,
        "cpu_during": during,
    }


def start_profiler(args, pid, run_dir):
    """perf record of the service during the steady window (--profile SECONDS)."""
    if not args.profile:
        return None
    command = [
        "perf", "record", "-F", "999", "-g", "-p", str(pid),
        "-o", os.path.join(run_dir, "perf.data"), "--", "sleep", str(args.profile),
    ]  # fmt: skip
    return start_logged(command, run_dir, "perf-record.log")


def finish_profiler(profiler, run_dir):
    try:
        profiler.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stop(profiler)
        return
    data = os.path.join(run_dir, "perf.data")
    reports = [
        ("perf-report.txt", ["--no-children", "--sort", "comm,dso,sym", "-g", "none"]),
        ("perf-report-children.txt", ["--children", "--sort", "comm,sym", "-g", "none"]),
    ]
    for name, options in reports:
        with open(os.path.join(run_dir, name), "w") as handle:
            subprocess.run(
                ["perf", "report", "-i", data, "--stdio", "--percent-limit", "0.5"] + options,
                stdout=handle, stderr=subprocess.DEVNULL, timeout=300, cwd=run_dir,
            )  # fmt: skip


def udp_socket_drops(port_min, port_max):
    """Over the UDP sockets bound to 127.0.0.1 ports in [port_min, port_max] (the service's RTP
    sockets): how many there are, the datagrams the kernel dropped because a socket's receive
    buffer was full (/proc/net/udp `drops`), the bytes waiting in their receive queues, and
    how many ports they hold (a leg's listener and sender share one)."""
    sockets = drops = queued = 0
    ports = set()
    for line in (read_file("/proc/net/udp") or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 13:
            continue
        address, port = fields[1].split(":")
        if address != "0100007F" or not port_min <= int(port, 16) <= port_max:
            continue
        sockets += 1
        ports.add(port)
        queued += int(fields[4].split(":")[1], 16)
        drops += int(fields[12])
    return {"sockets": sockets, "ports": len(ports), "drops": drops, "rx_queue_bytes": queued}


def rtp_legs(args):
    """The service's RTP ports (one per leg), however many sockets or descriptors each has."""
    return udp_socket_drops(args.rtp_min, args.rtp_max)["ports"]


def wait_udp_bound(port, timeout_s):
    """Whether a UDP socket on 127.0.0.1:port shows up in /proc/net/udp within the time."""
    needle = f"0100007F:{port:04X} "
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in (read_file("/proc/net/udp") or ""):
            return True
        time.sleep(0.05)
    return False


def foreign_pct(row):
    """CPU other processes used during the capture or the CPU window, whichever is more."""
    during = row.get("capture", {}).get("cpu_during", {}).get("foreign_cpu_pct", 0.0)
    return max(row["cpu"]["foreign_cpu_pct"], during)


def mib(kib):
    return f"{kib / 1024:.1f}" if kib else "?"
