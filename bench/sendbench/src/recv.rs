//! Receive variants (ep_recv_loop, ep_recv_once, ep_recvmmsg, uring_recvmsg, uring_multishot):
//! untimed fill of one datagram per socket, then a timed drain of all K sockets per round.

use crate::{
    die, drain, ring_for, start, stop, submit_batch, Acc, Bench, PAYLOAD, PAYLOAD_BYTE, SLEN,
    WARMUP,
};
use io_uring::{cqueue, opcode, squeue, types};
use std::mem::zeroed;
use std::sync::atomic::{AtomicU16, Ordering};

/// Buffer group id of the provided-buffer ring used by `uring_multishot`.
const BGID: u16 = 7;

/// Each round: connected send of one datagram per sender (untimed), then the timed receive.
/// Returns datagrams not received in the timed section plus any left over afterwards.
pub fn run(b: &Bench, acc: &mut Acc) -> usize {
    let (k, batch, fixed) = (b.k, b.batch, b.fixed);
    let (rx, tx) = (&b.rx, &b.tx);
    let variant = b.variant.as_str();
    let payload = [PAYLOAD_BYTE; PAYLOAD];
    let mut drops = 0usize;

    let fill = |tx: &[i32]| {
        for &fd in tx {
            if unsafe { libc::send(fd, payload.as_ptr() as *const _, PAYLOAD, 0) }
                != PAYLOAD as isize
            {
                die("fill send");
            }
        }
    };
    let mut buf = vec![0u8; 2048 * 4];
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if variant.starts_with("ep_") {
        for (i, &fd) in rx.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                die("epoll_ctl");
            }
        }
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; k];
    // recvmmsg vectors (vlen = 4)
    let mut iovs: Vec<libc::iovec> = (0..4)
        .map(|j| libc::iovec {
            iov_base: unsafe { buf.as_mut_ptr().add(j * 2048) } as *mut _,
            iov_len: 2048,
        })
        .collect();
    let mut srcs: Vec<libc::sockaddr_in> = vec![unsafe { zeroed() }; 4];
    let mut mh: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(srcs.iter_mut())
        .map(|(iov, src)| libc::mmsghdr {
            msg_hdr: msghdr(iov, src),
            msg_len: 0,
        })
        .collect();
    // io_uring recvmsg: one buffer + msghdr per socket
    let mut rbufs = vec![0u8; k * 256];
    let mut riov: Vec<libc::iovec> = (0..k)
        .map(|i| libc::iovec {
            iov_base: unsafe { rbufs.as_mut_ptr().add(i * 256) } as *mut _,
            iov_len: 256,
        })
        .collect();
    let mut rsrc: Vec<libc::sockaddr_in> = vec![unsafe { zeroed() }; k];
    let mut rmsg: Vec<libc::msghdr> = riov
        .iter_mut()
        .zip(rsrc.iter_mut())
        .map(|(iov, src)| msghdr(iov, src))
        .collect();
    let mut ring = if variant.starts_with("uring") {
        let ents = if variant == "uring_multishot" {
            (k as u32).next_power_of_two()
        } else {
            (batch as u32).next_power_of_two()
        };
        Some(ring_for(ents, b, rx))
    } else {
        None
    };
    let recv_multi = |i: usize| -> squeue::Entry {
        let e = if fixed {
            opcode::RecvMulti::new(types::Fixed(i as u32), BGID).build()
        } else {
            opcode::RecvMulti::new(types::Fd(rx[i]), BGID).build()
        };
        e.user_data(i as u64)
    };
    // buffer ring for multishot
    let nbuf: usize = (2 * k).next_power_of_two();
    let bufsz = 256usize;
    let mut pool = vec![0u8; nbuf * bufsz];
    let mut br_ptr: *mut types::BufRingEntry = std::ptr::null_mut();
    let mut br_tail: u16 = 0;
    if variant == "uring_multishot" {
        let ring = ring.as_mut().unwrap_or_else(|| die("ring"));
        let bytes = nbuf * 16;
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            die("mmap");
        }
        br_ptr = p as *mut _;
        for b in 0..nbuf {
            unsafe {
                let e = &mut *br_ptr.add(b);
                e.set_addr(pool.as_mut_ptr().add(b * bufsz) as u64);
                e.set_len(bufsz as u32);
                e.set_bid(b as u16);
            }
        }
        br_tail = nbuf as u16; // wraps to 0 when nbuf == 65536 (not used here)
        unsafe {
            let tail = types::BufRingEntry::tail(br_ptr) as *const AtomicU16;
            (*tail).store(br_tail, Ordering::Release);
            ring.submitter()
                .register_buf_ring_with_flags(p as u64, nbuf as u16, BGID, 0)
                .unwrap_or_else(|_| die("register_buf_ring"));
        }
        let mut sq = ring.submission();
        for i in 0..k {
            unsafe { sq.push(&recv_multi(i)).unwrap_or_else(|_| die("sq push")) };
        }
        drop(sq);
        ring.submit().unwrap_or_else(|_| die("submit arm"));
    }
    let mut rearms = 0usize;
    for round in 0..b.total_rounds() {
        fill(tx);
        let t = start();
        let mut got = 0usize;
        match variant {
            "ep_recv_loop" | "ep_recv_once" | "ep_recvmmsg" => {
                let mut spins = 0;
                while got < k {
                    let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), k as i32, 0) };
                    if n < 0 {
                        die("epoll_wait");
                    }
                    spins += 1;
                    if spins > 1000 {
                        break;
                    }
                    for ev in &events[..n as usize] {
                        let fd = rx[ev.u64 as usize];
                        match variant {
                            "ep_recv_loop" => loop {
                                let r = recv_from(fd, &mut buf);
                                if r < 0 {
                                    break;
                                }
                                got += 1;
                            },
                            "ep_recv_once" => {
                                let r = recv_from(fd, &mut buf);
                                if r > 0 {
                                    got += 1;
                                }
                            }
                            _ => {
                                for m in mh.iter_mut() {
                                    m.msg_hdr.msg_namelen = SLEN;
                                }
                                let r = unsafe {
                                    libc::recvmmsg(
                                        fd,
                                        mh.as_mut_ptr(),
                                        4,
                                        libc::MSG_DONTWAIT,
                                        std::ptr::null_mut(),
                                    )
                                };
                                if r > 0 {
                                    got += r as usize;
                                }
                            }
                        }
                    }
                }
            }
            "uring_recvmsg" => {
                let ring = ring.as_mut().unwrap_or_else(|| die("ring"));
                let mut off = 0;
                while off < k {
                    let n = (k - off).min(batch);
                    for m in &mut rmsg[off..off + n] {
                        m.msg_namelen = SLEN;
                    }
                    let it = (off..off + n).map(|i| {
                        let e = if fixed {
                            opcode::RecvMsg::new(types::Fixed(i as u32), &mut rmsg[i] as *mut _)
                                .build()
                        } else {
                            opcode::RecvMsg::new(types::Fd(rx[i]), &mut rmsg[i] as *mut _).build()
                        };
                        e.user_data(i as u64)
                    });
                    // can't borrow rmsg mutably inside closure twice; pointers are fine
                    let v: Vec<squeue::Entry> = it.collect();
                    submit_batch(ring, v.into_iter(), PAYLOAD as i32);
                    off += n;
                    got += n;
                }
            }
            "uring_multishot" => {
                let ring = ring.as_mut().unwrap_or_else(|| die("ring"));
                let mask = (nbuf - 1) as u16;
                let mut spins = 0;
                while got < k {
                    ring.submit_and_wait(1).unwrap_or_else(|_| die("wait"));
                    spins += 1;
                    let mut rearm = Vec::new();
                    for c in ring.completion() {
                        let ud = c.user_data() as usize;
                        if c.result() == PAYLOAD as i32 {
                            got += 1;
                        } else {
                            eprintln!("multishot res {}", c.result());
                        }
                        if let Some(bid) = cqueue::buffer_select(c.flags()) {
                            unsafe {
                                let e = &mut *br_ptr.add((br_tail & mask) as usize);
                                e.set_addr(pool.as_mut_ptr().add(bid as usize * bufsz) as u64);
                                e.set_len(bufsz as u32);
                                e.set_bid(bid);
                            }
                            br_tail = br_tail.wrapping_add(1);
                        }
                        if !cqueue::more(c.flags()) {
                            rearm.push(ud);
                        }
                    }
                    unsafe {
                        let tail = types::BufRingEntry::tail(br_ptr) as *const AtomicU16;
                        (*tail).store(br_tail, Ordering::Release);
                    }
                    if !rearm.is_empty() {
                        rearms += rearm.len();
                        let mut sq = ring.submission();
                        for i in rearm {
                            unsafe { sq.push(&recv_multi(i)).unwrap_or_else(|_| die("sq push")) };
                        }
                    }
                    if spins > 100000 {
                        break;
                    }
                }
            }
            _ => {
                eprintln!("unknown variant {variant}");
                std::process::exit(2);
            }
        }
        stop(t, acc, round >= WARMUP);
        drops += k - got.min(k);
        let left = if variant == "uring_multishot" {
            0
        } else {
            drain(rx)
        };
        drops += left; // anything left over = accounting error
    }
    if rearms > 0 {
        eprintln!("multishot rearms: {rearms}");
    }
    drops
}

/// One `recvfrom` into `buf` with the source address asked for, as the service does.
fn recv_from(fd: i32, buf: &mut [u8]) -> isize {
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    let mut sl = SLEN;
    unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr() as *mut _,
            buf.len().min(2048),
            0,
            &mut sa as *mut _ as *mut _,
            &mut sl,
        )
    }
}

/// A message header for one datagram into `iov`, its source written to `src`.
fn msghdr(iov: &mut libc::iovec, src: &mut libc::sockaddr_in) -> libc::msghdr {
    let mut m: libc::msghdr = unsafe { zeroed() };
    m.msg_iov = iov;
    m.msg_iovlen = 1;
    m.msg_name = src as *mut _ as *mut _;
    m.msg_namelen = SLEN;
    m
}
