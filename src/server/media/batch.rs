//! A media shard's batched sends: the packets of one pacing phase, or the packets one receive
//! round relays, are written into buffers of their own and handed to the kernel as io_uring
//! `SEND`s on the legs' connected senders, many per system call (each syscall entry costs
//! ~1 µs on this kind of machine; bench/README.md, "Syscalls"). Every send is non-blocking
//! (`MSG_DONTWAIT`): a full socket buffer fails that one packet at once, as `send` would, and a
//! batch is complete when the submit returns, so a buffer is never reused while the kernel may
//! still read it.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};
use tracing::{debug, warn};

/// Packets per submission; a phase with more is sent in several.
const BATCH: usize = 256;

pub(super) struct SendBatch<const LEN: usize> {
    ring: IoUring,
    buffers: Box<[[u8; LEN]]>,
    queued: usize,
    /// The ring itself failed (not one send): the shard sends with `send` from then on.
    failed: bool,
}

impl<const LEN: usize> SendBatch<LEN> {
    /// Fails where io_uring is not available (an old kernel, or a sandbox that forbids it):
    /// the shard then sends each packet with `send`.
    pub(super) fn new() -> io::Result<SendBatch<LEN>> {
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .build(BATCH as u32)
            .or_else(|_| IoUring::new(BATCH as u32))?;
        Ok(SendBatch {
            ring,
            buffers: vec![[0; LEN]; BATCH].into_boxed_slice(),
            queued: 0,
            failed: false,
        })
    }

    /// The buffer the next packet is written into.
    pub(super) fn next_buffer(&mut self) -> &mut [u8; LEN] {
        &mut self.buffers[self.queued]
    }

    /// Queues the first `len` bytes of the buffer from `next_buffer` for `fd` (a connected
    /// socket); `tag` names the leg in a failure's log line. Sends the batch when it is full.
    pub(super) fn queue(&mut self, fd: RawFd, len: usize, tag: u64) {
        let buffer = &self.buffers[self.queued][..len.min(LEN)];
        let send = opcode::Send::new(types::Fd(fd), buffer.as_ptr(), buffer.len() as u32)
            .flags(libc::MSG_DONTWAIT)
            .build()
            .user_data(tag);
        // SAFETY: the buffer lives in `self.buffers`, which is neither freed nor written until
        // `flush` has reaped this entry's completion; the queue has room (flushed when full).
        let pushed = unsafe { self.ring.submission().push(&send) };
        if pushed.is_err() {
            // Cannot happen (flushed at BATCH, the ring's size); this packet is dropped.
            self.flush();
            return;
        }
        self.queued += 1;
        if self.queued == BATCH {
            self.flush();
        }
    }

    pub(super) fn failed(&self) -> bool {
        self.failed
    }

    /// Submits what is queued and waits for every completion (immediate: no send blocks).
    pub(super) fn flush(&mut self) {
        let mut pending = self.queued;
        while pending > 0 {
            match self.ring.submit_and_wait(pending) {
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Queued entries may still be read later: the buffers are never written
                    // again (the shard keeps this batch but stops using it).
                    warn!(%error, "io_uring submit failed: RTP is sent without it from now on");
                    self.failed = true;
                    break;
                }
            }
            for completion in self.ring.completion() {
                pending = pending.saturating_sub(1);
                if completion.result() < 0 {
                    let error = io::Error::from_raw_os_error(-completion.result());
                    debug!(leg = completion.user_data(), %error, "RTP send failed");
                }
            }
        }
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_larger_than_the_ring_reaches_every_socket_in_order() {
        let Ok(mut batch) = SendBatch::<8>::new() else {
            panic!("io_uring is unavailable on this machine");
        };
        // One receiver per sender: 266 datagrams would overflow one socket's buffer.
        let pairs: Vec<(UdpSocket, UdpSocket)> = (0..3)
            .map(|_| {
                let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
                let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
                sender.connect(receiver.local_addr().unwrap()).unwrap();
                (sender, receiver)
            })
            .collect();
        let count = BATCH + 10;
        for index in 0..count {
            let buffer = batch.next_buffer();
            buffer[..4].copy_from_slice(&(index as u32).to_be_bytes());
            batch.queue(pairs[index % 3].0.as_raw_fd(), 4, index as u64);
        }
        batch.flush();
        assert!(!batch.failed());
        for (which, (_, receiver)) in pairs.iter().enumerate() {
            receiver.set_nonblocking(true).unwrap();
            let mut buffer = [0u8; 16];
            let mut seen = Vec::new();
            while let Ok((len, _)) = receiver.recv_from(&mut buffer) {
                assert_eq!(len, 4);
                seen.push(u32::from_be_bytes(buffer[..4].try_into().unwrap()) as usize);
            }
            let sent: Vec<usize> = (0..count).filter(|index| index % 3 == which).collect();
            assert_eq!(seen, sent, "receiver {which}");
        }
    }
}
