//! Entry point and shared plumbing: CLI, UDP socket setup, CPU/wall timing, io_uring helpers, RESULT line.
//!
//! Per-packet cost of 172-byte UDP sends/receives over loopback when every
//! packet uses a different socket (one RTP socket per call).
//!
//! Usage: sendbench <variant> <K> [rounds] [batch] [mode]
//!   send variants: sendto | send | sendmmsg1 | uring_send | uring_sendmsg
//!   recv variants: ep_recv_loop | ep_recv_once | ep_recvmmsg | uring_recvmsg | uring_multishot
//!   batch: SQEs per io_uring_enter (0 = K)
//!   mode: plain | coop | defer | fixed | defer_fixed   (io_uring setup flags / registered files)
//!
//! Output: one line `RESULT variant K batch mode user_us sys_us thr_cpu_us wall_us drops`
//! where the *_us figures are per packet (timed sections only).

mod recv;
mod send;

use io_uring::{squeue, types, IoUring};
use std::mem::{size_of, zeroed};
use std::time::{Duration, Instant};

const PAYLOAD: usize = 172;
/// Byte every payload is filled with (0x80: an RTP version-2 first byte).
const PAYLOAD_BYTE: u8 = 0x80;
const WARMUP: usize = 5;
/// `sizeof(struct sockaddr_in)` as the kernel's socklen_t.
const SLEN: u32 = size_of::<libc::sockaddr_in>() as u32;

/// What one run measures: the parsed command line plus the K receiver and K sender sockets.
struct Bench {
    variant: String,
    k: usize,
    rounds: usize,
    batch: usize,
    mode: String,
    fixed: bool,
    rx: Vec<i32>,
    rxaddr: Vec<libc::sockaddr_in>,
    tx: Vec<i32>,
}

impl Bench {
    fn total_rounds(&self) -> usize {
        WARMUP + self.rounds
    }
}

fn die(what: &str) -> ! {
    eprintln!("{what}: {}", std::io::Error::last_os_error());
    std::process::exit(2)
}

fn udp_sock(rcvbuf: Option<i32>) -> i32 {
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            die("socket");
        }
        if let Some(sz) = rcvbuf {
            let v: i32 = sz;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &v as *const i32 as *const _,
                4,
            );
        }
        let mut a: libc::sockaddr_in = zeroed();
        a.sin_family = libc::AF_INET as u16;
        a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        if libc::bind(fd, &a as *const _ as *const _, SLEN) < 0 {
            die("bind");
        }
        fd
    }
}

fn local_addr(fd: i32) -> libc::sockaddr_in {
    unsafe {
        let mut a: libc::sockaddr_in = zeroed();
        let mut l = SLEN;
        if libc::getsockname(fd, &mut a as *mut _ as *mut _, &mut l) < 0 {
            die("getsockname");
        }
        a
    }
}

#[derive(Default, Clone, Copy)]
struct Cpu {
    user_us: f64,
    sys_us: f64,
    thr_ns: f64,
}

fn cpu() -> Cpu {
    unsafe {
        let mut ru: libc::rusage = zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        let mut ts: libc::timespec = zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        Cpu {
            user_us: ru.ru_utime.tv_sec as f64 * 1e6 + ru.ru_utime.tv_usec as f64,
            sys_us: ru.ru_stime.tv_sec as f64 * 1e6 + ru.ru_stime.tv_usec as f64,
            thr_ns: ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64,
        }
    }
}

#[derive(Default)]
struct Acc {
    user_us: f64,
    sys_us: f64,
    thr_ns: f64,
    wall: Duration,
}

struct Timer {
    c0: Cpu,
    w0: Instant,
}
fn start() -> Timer {
    let w0 = Instant::now();
    Timer { c0: cpu(), w0 }
}
fn stop(t: Timer, acc: &mut Acc, count: bool) {
    let c1 = cpu();
    let w = t.w0.elapsed();
    if count {
        acc.user_us += c1.user_us - t.c0.user_us;
        acc.sys_us += c1.sys_us - t.c0.sys_us;
        acc.thr_ns += c1.thr_ns - t.c0.thr_ns;
        acc.wall += w;
    }
}

/// Untimed drain: read everything from every receiver; returns datagrams read.
fn drain(rx: &[i32]) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    for &fd in rx {
        loop {
            let r = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
            if r < 0 {
                break;
            }
            n += 1;
        }
    }
    n
}

fn make_ring(entries: u32, mode: &str) -> IoUring {
    let mut b = IoUring::builder();
    b.setup_cqsize(entries * 2);
    if mode.starts_with("coop") {
        b.setup_coop_taskrun().setup_taskrun_flag();
    }
    if mode.starts_with("defer") {
        b.setup_single_issuer().setup_defer_taskrun();
    }
    b.build(entries).unwrap_or_else(|_| die("io_uring setup"))
}

/// Ring of `entries` SQEs for `mode`, with `fds` registered as fixed files in the `*fixed` modes.
fn ring_for(entries: u32, b: &Bench, fds: &[i32]) -> IoUring {
    let r = make_ring(entries, &b.mode);
    if b.fixed {
        r.submitter()
            .register_files(fds)
            .unwrap_or_else(|_| die("register_files"));
    }
    r
}

fn sqe_fd(i: usize, fds: &[i32], fixed: bool) -> (Option<types::Fixed>, types::Fd) {
    if fixed {
        (Some(types::Fixed(i as u32)), types::Fd(fds[i]))
    } else {
        (None, types::Fd(fds[i]))
    }
}

/// Push `n` SQEs produced by `mk`, then one io_uring_enter waiting for all of them.
fn submit_batch(ring: &mut IoUring, sqes: impl Iterator<Item = squeue::Entry>, expect_res: i32) {
    let mut n = 0;
    {
        let mut sq = ring.submission();
        for e in sqes {
            unsafe { sq.push(&e).unwrap_or_else(|_| die("sq full")) };
            n += 1;
        }
    }
    ring.submit_and_wait(n)
        .unwrap_or_else(|_| die("submit_and_wait"));
    let mut got = 0;
    while got < n {
        for c in ring.completion() {
            if c.result() != expect_res {
                eprintln!("cqe res {} (ud {})", c.result(), c.user_data());
            }
            got += 1;
        }
        if got < n {
            ring.submit_and_wait(n - got)
                .unwrap_or_else(|_| die("wait"));
        }
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let variant = a.get(1).map(String::as_str).unwrap_or("sendto").to_string();
    let k: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let rounds: usize = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(60);
    let mut batch: usize = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
    if batch == 0 || batch > k {
        batch = k;
    }
    let mode = a.get(5).cloned().unwrap_or_else(|| "plain".into());
    let fixed = mode.ends_with("fixed");

    // Receivers: default SO_RCVBUF (212992) is ample for 1 datagram/round because
    // every round is fully drained before the next one.
    let rx: Vec<i32> = (0..k).map(|_| udp_sock(None)).collect();
    let rxaddr: Vec<libc::sockaddr_in> = rx.iter().map(|&fd| local_addr(fd)).collect();
    let tx: Vec<i32> = (0..k).map(|_| udp_sock(None)).collect();
    let connected = matches!(variant.as_str(), "send" | "uring_send")
        || variant.starts_with("ep_")
        || variant.starts_with("uring_recv")
        || variant == "uring_multishot";
    if connected {
        for (&fd, addr) in tx.iter().zip(&rxaddr) {
            let r = unsafe { libc::connect(fd, addr as *const _ as *const _, SLEN) };
            if r < 0 {
                die("connect");
            }
        }
    }
    let b = Bench {
        variant,
        k,
        rounds,
        batch,
        mode,
        fixed,
        rx,
        rxaddr,
        tx,
    };
    let mut acc = Acc::default();

    let drops = if send::is_send(&b.variant) {
        send::run(&b, &mut acc)
    } else {
        recv::run(&b, &mut acc)
    };
    let Bench {
        variant,
        k,
        batch,
        mode,
        ..
    } = b;
    let pk = (rounds * k) as f64;
    println!(
        "RESULT {variant} {k} {batch} {mode} {:.3} {:.3} {:.3} {:.3} {drops}",
        acc.user_us / pk,
        acc.sys_us / pk,
        acc.thr_ns / 1e3 / pk,
        acc.wall.as_secs_f64() * 1e6 / pk
    );
}
