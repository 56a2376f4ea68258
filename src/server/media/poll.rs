//! The two Linux facilities a media shard waits on, behind safe wrappers: a level-triggered
//! epoll set with a nanosecond timeout (`epoll_pwait2`), and an eventfd to wake a shard for a
//! command.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Ready sockets taken from the kernel per wait.
const EVENTS: usize = 256;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// A level-triggered epoll set of readable descriptors, each with a caller-chosen token.
pub(super) struct Epoll {
    fd: OwnedFd,
    ready: Box<[libc::epoll_event; EVENTS]>,
}

impl Epoll {
    pub(super) fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Epoll {
            // SAFETY: `fd` was just returned by epoll_create1 and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            ready: Box::new([libc::epoll_event { events: 0, u64: 0 }; EVENTS]),
        })
    }

    pub(super) fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll descriptor and event struct; the kernel copies the event.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) })
            .map(drop)
    }

    pub(super) fn delete(&self, fd: RawFd) {
        // SAFETY: as in `add`; a descriptor not in the set merely fails, which is fine.
        unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
    }

    /// Waits up to `timeout` (None: until something is ready) and returns the ready tokens.
    pub(super) fn wait(&mut self, timeout: Option<Duration>) -> impl Iterator<Item = u64> + '_ {
        let timespec = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let timeout_ptr = timespec
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: the buffer holds EVENTS entries, the timeout is valid or null.
        let count = unsafe {
            libc::epoll_pwait2(
                self.fd.as_raw_fd(),
                self.ready.as_mut_ptr(),
                EVENTS as libc::c_int,
                timeout_ptr,
                std::ptr::null(),
            )
        };
        // EINTR (a signal) and the like: nothing ready this time.
        let count = usize::try_from(count).unwrap_or(0);
        self.ready[..count].iter().map(|event| event.u64)
    }
}

/// An eventfd: other threads `notify`, the shard's epoll sees it readable.
pub(super) struct Wake {
    fd: OwnedFd,
}

impl Wake {
    pub(super) fn new() -> io::Result<Wake> {
        // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
        Ok(Wake {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(super) fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64; a full counter (never, at 2^64) would fail.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(super) fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN when not notified is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_readable_socket_is_reported_until_drained() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for byte in 1..=2u8 {
            sender
                .send_to(&[byte; 10], receiver.local_addr().unwrap())
                .unwrap();
        }
        let mut epoll = Epoll::new().unwrap();
        epoll.add(receiver.as_raw_fd(), 7).unwrap();
        let mut buffer = [0u8; 64];
        for byte in 1..=2u8 {
            let ready: Vec<u64> = epoll.wait(Some(Duration::from_secs(5))).collect();
            assert_eq!(
                ready,
                [7],
                "level-triggered: reported while a datagram waits"
            );
            let (len, from) = receiver.recv_from(&mut buffer).unwrap();
            assert_eq!(
                (len, buffer[0], from),
                (10, byte, sender.local_addr().unwrap())
            );
        }
        assert_eq!(epoll.wait(Some(Duration::from_millis(1))).count(), 0);
        epoll.delete(receiver.as_raw_fd());
        sender
            .send_to(&[3; 10], receiver.local_addr().unwrap())
            .unwrap();
        assert_eq!(epoll.wait(Some(Duration::from_millis(20))).count(), 0);
    }

    #[test]
    fn a_wake_is_seen_by_the_epoll_until_cleared() {
        let mut epoll = Epoll::new().unwrap();
        let wake = Wake::new().unwrap();
        epoll.add(wake.raw_fd(), 1).unwrap();
        assert_eq!(epoll.wait(Some(Duration::ZERO)).count(), 0);
        wake.notify();
        wake.notify();
        assert_eq!(epoll.wait(Some(Duration::from_secs(5))).count(), 1);
        wake.clear();
        assert_eq!(epoll.wait(Some(Duration::from_millis(1))).count(), 0);
    }
}
