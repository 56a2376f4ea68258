//! Send variants (sendto, send, sendmmsg1, uring_send, uring_sendmsg): one timed burst of K datagrams per round.

use crate::{
    die, drain, ring_for, sqe_fd, start, stop, submit_batch, Acc, Bench, PAYLOAD, PAYLOAD_BYTE,
    SLEN, WARMUP,
};
use io_uring::opcode;
use std::mem::zeroed;

/// True when `variant` is one of the send variants this module runs.
pub fn is_send(variant: &str) -> bool {
    matches!(
        variant,
        "sendto" | "send" | "sendmmsg1" | "uring_send" | "uring_sendmsg"
    )
}

/// Each round: timed send of one datagram from every sender to its receiver,
/// then an untimed drain. Returns the datagrams that never arrived.
pub fn run(b: &Bench, acc: &mut Acc) -> usize {
    let (k, batch, fixed) = (b.k, b.batch, b.fixed);
    let (rx, rxaddr, tx) = (&b.rx, &b.rxaddr, &b.tx);
    let variant = b.variant.as_str();
    let payload = [PAYLOAD_BYTE; PAYLOAD];
    let mut drops = 0usize;

    // per-socket msghdrs for uring_sendmsg; iovec shared
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut _,
        iov_len: PAYLOAD,
    };
    let iovp: *mut libc::iovec = &mut iov;
    let msgs: Vec<libc::msghdr> = rxaddr
        .iter()
        .map(|addr| {
            let mut m: libc::msghdr = unsafe { zeroed() };
            m.msg_name = addr as *const _ as *mut _;
            m.msg_namelen = SLEN;
            m.msg_iov = iovp;
            m.msg_iovlen = 1;
            m
        })
        .collect();
    let mut mm: Vec<libc::mmsghdr> = msgs
        .iter()
        .map(|m| libc::mmsghdr {
            msg_hdr: *m,
            msg_len: 0,
        })
        .collect();
    let one = if variant == "sendmmsg1" {
        crate::udp_sock(None)
    } else {
        -1
    };
    let mut ring = if variant.starts_with("uring") {
        Some(ring_for((batch as u32).next_power_of_two(), b, tx))
    } else {
        None
    };
    for round in 0..b.total_rounds() {
        let t = start();
        match variant {
            "sendto" => {
                for (&fd, addr) in tx.iter().zip(rxaddr) {
                    let r = unsafe {
                        libc::sendto(
                            fd,
                            payload.as_ptr() as *const _,
                            PAYLOAD,
                            0,
                            addr as *const _ as *const _,
                            SLEN,
                        )
                    };
                    if r != PAYLOAD as isize {
                        die("sendto");
                    }
                }
            }
            "send" => {
                for &fd in tx {
                    let r = unsafe { libc::send(fd, payload.as_ptr() as *const _, PAYLOAD, 0) };
                    if r != PAYLOAD as isize {
                        die("send");
                    }
                }
            }
            "sendmmsg1" => {
                // UIO_MAXIOV = 1024 caps vlen
                let mut off = 0;
                while off < k {
                    let n = (k - off).min(1024);
                    let r = unsafe { libc::sendmmsg(one, mm[off..].as_mut_ptr(), n as u32, 0) };
                    if r <= 0 {
                        die("sendmmsg");
                    }
                    off += r as usize;
                }
            }
            "uring_send" | "uring_sendmsg" => {
                let ring = ring.as_mut().unwrap_or_else(|| die("ring"));
                let mut off = 0;
                while off < k {
                    let n = (k - off).min(batch);
                    let it = (off..off + n).map(|i| {
                        let (fx, fd) = sqe_fd(i, tx, fixed);
                        let e = if variant == "uring_send" {
                            match fx {
                                Some(f) => {
                                    opcode::Send::new(f, payload.as_ptr(), PAYLOAD as u32).build()
                                }
                                None => {
                                    opcode::Send::new(fd, payload.as_ptr(), PAYLOAD as u32).build()
                                }
                            }
                        } else {
                            match fx {
                                Some(f) => opcode::SendMsg::new(f, &msgs[i]).build(),
                                None => opcode::SendMsg::new(fd, &msgs[i]).build(),
                            }
                        };
                        e.user_data(i as u64)
                    });
                    submit_batch(ring, it, PAYLOAD as i32);
                    off += n;
                }
            }
            _ => unreachable!(),
        }
        stop(t, acc, round >= WARMUP);
        let got = drain(rx);
        drops += k - got.min(k);
    }
    drops
}
