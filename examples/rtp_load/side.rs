//! The generator's two sides (callers' and agents' socket): learning targets, the phase
//! plan, building and batching packets, and the socket helpers.

use super::*;

pub(crate) struct Target {
    name: libc::sockaddr_in,
    port: u16,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    /// The tick of the target's frame 0: frame k is due at tick `first_tick + k * slots`, so
    /// the timestamps follow the clock even across ticks skipped by a late generator.
    first_tick: u64,
    /// Telephone-event packets sent (callers): the press goes out whole even if late.
    key_sent: u32,
    /// Frame of the press's first packet (its RTP timestamp), once sent.
    key_frame: Option<u32>,
    /// Whether the audio's first packet (marker bit) went out.
    talking: bool,
    /// Where in the audio this target starts (targets do not all say the same thing at once).
    audio_offset: usize,
}

#[derive(Default)]
pub(crate) struct Counters {
    targets: u64,
    dropped_idle: u64,
    sent: u64,
    send_errors: u64,
    keys: u64,
    received: u64,
    received_foreign: u64,
    recv_calls: u64,
    send_calls: u64,
}

pub(crate) struct Side {
    role: Role,
    socket: UdpSocket,
    /// Targets by slot (phase in the frame).
    slots: Vec<Vec<Target>>,
    /// Last tick each target's port was heard from.
    heard: HashMap<u16, u64>,
    /// The tick of the last receive pass that emptied the socket: a target is idle only if
    /// it stayed silent that long before it (a generator too late to read is no evidence).
    drained_tick: u64,
    counters: Counters,
    rcvbuf: i64,
}

/// Room for one SCM_TIMESTAMPNS control message (a timespec), 8-byte aligned.
const CONTROL_LEN: usize = 64;

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; CONTROL_LEN]);

/// Preallocated sendmmsg / recvmmsg arrays.
pub(crate) struct Batch {
    packets: Vec<[u8; PACKET_MAX]>,
    lens: Vec<usize>,
    names: Vec<libc::sockaddr_in>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
    /// Receive only: each datagram's kernel timestamp.
    controls: Vec<Control>,
}

impl Batch {
    pub(crate) fn new(size: usize) -> Self {
        Self {
            packets: vec![[0; PACKET_MAX]; size],
            lens: vec![0; size],
            // SAFETY: sockaddr_in, iovec and mmsghdr are plain C structs; all-zero is valid.
            names: vec![unsafe { mem::zeroed() }; size],
            iovecs: vec![unsafe { mem::zeroed() }; size],
            headers: vec![unsafe { mem::zeroed() }; size],
            controls: vec![Control([0; CONTROL_LEN]); size],
        }
    }

    /// Points the headers at the packets and names (the vectors never reallocate).
    fn link(&mut self, count: usize, buf_len: Option<usize>) {
        for i in 0..count {
            self.iovecs[i] = libc::iovec {
                iov_base: self.packets[i].as_mut_ptr().cast(),
                iov_len: buf_len.unwrap_or(self.lens[i]),
            };
            let header = &mut self.headers[i].msg_hdr;
            header.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            header.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            header.msg_iov = &mut self.iovecs[i];
            header.msg_iovlen = 1;
            if buf_len.is_some() {
                header.msg_control = self.controls[i].0.as_mut_ptr().cast();
                header.msg_controllen = CONTROL_LEN;
            } else {
                header.msg_control = std::ptr::null_mut();
                header.msg_controllen = 0;
            }
            header.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
    }
}

pub(crate) struct Plan {
    /// Frames from a caller target's first frame to its key press, and from the press to its
    /// first audio.
    pub(crate) key_start: u32,
    pub(crate) talk_after: u32,
    pub(crate) caller_pt: u8,
    pub(crate) agent_pt: u8,
    pub(crate) event_pt: u8,
    pub(crate) audio: Vec<[u8; FRAME_SAMPLES as usize]>,
}

impl Plan {
    /// Writes the packet `target` sends at its frame `frame`, if any.
    fn packet(
        &self,
        role: Role,
        target: &mut Target,
        frame: u32,
        out: &mut [u8; PACKET_MAX],
    ) -> Option<usize> {
        let ts_base = target.ts_base;
        let timestamp = move |frame: u32| ts_base.wrapping_add(frame.wrapping_mul(FRAME_SAMPLES));
        let (marker, payload_type, rtp_ts, payload_len) = match role {
            Role::Caller if frame < self.key_start => return None,
            Role::Caller if target.key_sent < KEY_PACKETS => {
                // Every packet of the press carries the press's start timestamp; the duration
                // grows by one frame per update up to the end packet, which goes out 3 times.
                let index = target.key_sent;
                let key_frame = *target.key_frame.get_or_insert(frame);
                let updates = (index + 1).min(KEY_UPDATES);
                let end = index + 1 >= KEY_UPDATES;
                let duration = (updates * FRAME_SAMPLES) as u16;
                let block = &mut out[RTP_HEADER..RTP_HEADER + 4];
                block[0] = KEY_1;
                block[1] = if end { 0x80 } else { 0 } | KEY_VOLUME;
                block[2..4].copy_from_slice(&duration.to_be_bytes());
                target.key_sent += 1;
                (index == 0, self.event_pt, timestamp(key_frame), 4)
            }
            Role::Caller
                if target
                    .key_frame
                    .is_some_and(|key| frame < key + self.talk_after) =>
            {
                return None
            }
            Role::Caller | Role::Agent => {
                let frames = &self.audio;
                let chunk = &frames[(target.audio_offset + frame as usize) % frames.len()];
                out[RTP_HEADER..].copy_from_slice(chunk);
                let payload_type = match role {
                    Role::Caller => self.caller_pt,
                    Role::Agent => self.agent_pt,
                };
                let first = !target.talking;
                target.talking = true;
                (first, payload_type, timestamp(frame), chunk.len())
            }
        };
        out[0] = 0x80;
        out[1] = if marker { 0x80 } else { 0 } | (payload_type & 0x7F);
        out[2..4].copy_from_slice(&target.seq.to_be_bytes());
        out[4..8].copy_from_slice(&rtp_ts.to_be_bytes());
        out[8..12].copy_from_slice(&target.ssrc.to_be_bytes());
        target.seq = target.seq.wrapping_add(1);
        Some(RTP_HEADER + payload_len)
    }
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: clock_gettime writes one timespec; both clocks used here always exist on Linux.
    let mut ts: libc::timespec = unsafe { mem::zeroed() };
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(crate) fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// The clock of the kernel's packet timestamps (SO_TIMESTAMPNS).
pub(crate) fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// SSRC and sequence number of an RTP packet, if it is one.
fn rtp_id(packet: &[u8]) -> Option<(u32, u16)> {
    if packet.len() < RTP_HEADER || packet[0] >> 6 != 2 {
        return None;
    }
    let seq = u16::from_be_bytes([packet[2], packet[3]]);
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    Some((ssrc, seq))
}

/// The SCM_TIMESTAMPNS of a received datagram, nanoseconds of CLOCK_REALTIME.
fn kernel_timestamp(header: &libc::msghdr) -> Option<u64> {
    // SAFETY: the control buffer was filled by recvmmsg; CMSG_* walk within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    None
}

fn enable_timestamps(socket: &UdpSocket) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on our own socket with an int option value.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(crate) fn sleep_until_ns(deadline: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: an absolute sleep on CLOCK_MONOTONIC; EINTR (a signal) just ends it early.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

pub(crate) fn set_rcvbuf(socket: &UdpSocket, bytes: usize) -> i64 {
    let fd = socket.as_raw_fd();
    let value = bytes.min(i32::MAX as usize) as libc::c_int;
    let size = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: setsockopt/getsockopt on our own socket with an int option value.
    unsafe {
        let pointer = (&value as *const libc::c_int).cast();
        // SO_RCVBUFFORCE passes rmem_max where allowed (CAP_NET_ADMIN), else the capped one.
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, pointer, size) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, pointer, size);
        }
        let mut actual: libc::c_int = 0;
        let mut len = size;
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut actual as *mut libc::c_int).cast(),
            &mut len,
        );
        i64::from(actual)
    }
}

/// A classic BPF filter keeping the datagrams whose RTP sequence number is a multiple of
/// `sample` (a power of two above 1): one in `sample` of every stream, and the same ones the
/// relay meter tracks. A UDP socket's filter sees the datagram from its UDP header on.
pub(crate) fn attach_sampling_filter(socket: &UdpSocket, sample: u32) -> io::Result<()> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let mut program = [
        // A = the RTP sequence number (UDP header 8 bytes, then RTP bytes 2-3)
        op(libc::BPF_LD | libc::BPF_H | libc::BPF_ABS, 0, 0, 8 + 2),
        // if A & (sample - 1): drop, else keep
        op(
            libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            1,
            0,
            sample - 1,
        ),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: the kernel copies the program during the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl Side {
    pub(crate) fn new(role: Role, addr: SocketAddrV4, args: &Args) -> anyhow::Result<Self> {
        if !addr.ip().is_loopback() {
            bail!("{addr}: the generator binds loopback addresses only");
        }
        let socket = UdpSocket::bind(addr).with_context(|| format!("binding {addr}"))?;
        socket.set_nonblocking(true)?;
        if args.sample > 1 {
            attach_sampling_filter(&socket, args.sample).context("attaching the socket filter")?;
        }
        let rcvbuf = set_rcvbuf(&socket, args.rcvbuf);
        enable_timestamps(&socket).context("SO_TIMESTAMPNS")?;
        let slots = args.slots;
        Ok(Self {
            role,
            socket,
            slots: (0..slots).map(|_| Vec::new()).collect(),
            heard: HashMap::new(),
            drained_tick: 0,
            counters: Counters::default(),
            rcvbuf,
        })
    }

    /// Drains the socket; new source ports in `peers` become targets in the least loaded slot,
    /// starting at that slot's next visit after `tick`.
    pub(crate) fn receive(
        &mut self,
        batch: &mut Batch,
        meter: &mut Meter,
        tick: u64,
        peers: (u16, u16),
        max_calls: usize,
    ) {
        let size = batch.headers.len();
        for _ in 0..max_calls {
            batch.link(size, Some(RECV_BUF));
            // SAFETY: the headers point into `batch`, which outlives the call.
            let got = unsafe {
                libc::recvmmsg(
                    self.socket.as_raw_fd(),
                    batch.headers.as_mut_ptr(),
                    size as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            self.counters.recv_calls += 1;
            if got <= 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                    self.drained_tick = tick;
                }
                return;
            }
            let got = got as usize;
            for i in 0..got {
                let name = batch.names[i];
                let port = u16::from_be(name.sin_port);
                let loopback = u32::from_be(name.sin_addr.s_addr) >> 24 == 127;
                if !loopback || port < peers.0 || port > peers.1 {
                    self.counters.received_foreign += 1;
                    continue;
                }
                self.counters.received += 1;
                if self.heard.insert(port, tick).is_none() {
                    self.add_target(name, port, tick);
                }
                let header = &batch.headers[i];
                let len = (header.msg_len as usize).min(RECV_BUF);
                let timestamp = kernel_timestamp(&header.msg_hdr);
                if let (Some((ssrc, seq)), Some(at_ns)) =
                    (rtp_id(&batch.packets[i][..len]), timestamp)
                {
                    meter.on_copy(ssrc, seq, at_ns);
                }
            }
            if got < size {
                self.drained_tick = tick;
                return;
            }
        }
    }

    /// A new target in the least loaded slot, from that slot's first visit at or after `tick`.
    fn add_target(&mut self, name: libc::sockaddr_in, port: u16, tick: u64) {
        let mut rng = rand::thread_rng();
        let slots = self.slots.len() as u64;
        let slot = (0..self.slots.len())
            .min_by_key(|&slot| self.slots[slot].len())
            .unwrap_or(0);
        let first_tick = tick + (slot as u64 + slots - tick % slots) % slots;
        self.slots[slot].push(Target {
            name,
            port,
            ssrc: rng.gen(),
            seq: rng.gen(),
            ts_base: rng.gen(),
            first_tick,
            key_sent: 0,
            key_frame: None,
            talking: false,
            audio_offset: rng.gen_range(0..1 << 16),
        });
        self.counters.targets += 1;
    }

    /// Sends the packets of one slot's targets, `batch` at a time; drops idle targets.
    pub(crate) fn send_slot(
        &mut self,
        slot: usize,
        tick: u64,
        idle_ticks: u64,
        plan: &Plan,
        batch: &mut Batch,
        meter: &mut Meter,
    ) {
        let heard = &mut self.heard;
        let drained = self.drained_tick;
        let before = self.slots[slot].len();
        self.slots[slot].retain(|target| {
            let alive = heard
                .get(&target.port)
                .is_some_and(|&last| drained.saturating_sub(last) <= idle_ticks);
            if !alive {
                heard.remove(&target.port);
            }
            alive
        });
        self.counters.dropped_idle += (before - self.slots[slot].len()) as u64;
        let size = batch.headers.len();
        let mut count = 0;
        let fd = self.socket.as_raw_fd();
        let role = self.role;
        let slots = self.slots.len() as u64;
        for index in 0..self.slots[slot].len() {
            let target = &mut self.slots[slot][index];
            if tick < target.first_tick {
                continue;
            }
            let frame = ((tick - target.first_tick) / slots) as u32;
            let keys_before = target.key_sent;
            let Some(len) = plan.packet(role, target, frame, &mut batch.packets[count]) else {
                continue;
            };
            if keys_before == 0 && target.key_sent == 1 {
                self.counters.keys += 1;
            }
            batch.lens[count] = len;
            batch.names[count] = target.name;
            count += 1;
            if count == size {
                self.flush(fd, batch, meter, count);
                count = 0;
            }
        }
        if count > 0 {
            self.flush(fd, batch, meter, count);
        }
    }

    fn flush(&mut self, fd: libc::c_int, batch: &mut Batch, meter: &mut Meter, count: usize) {
        batch.link(count, None);
        let direction = match self.role {
            Role::Caller => Direction::CallerToAgent,
            Role::Agent => Direction::AgentToCaller,
        };
        let mut done = 0;
        while done < count {
            let before_ns = realtime_ns();
            // SAFETY: the headers point into `batch`, which outlives the call.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    batch.headers[done..].as_mut_ptr(),
                    (count - done) as libc::c_uint,
                    0,
                )
            };
            self.counters.send_calls += 1;
            if sent > 0 {
                // Each packet's kernel timestamp was taken inside this call: spread the
                // call's time evenly over its packets.
                let (sent, span_ns) = (sent as usize, realtime_ns() - before_ns);
                for i in 0..sent {
                    let packet = &batch.packets[done + i][..batch.lens[done + i]];
                    if let Some((ssrc, seq)) = rtp_id(packet) {
                        let at_ns = before_ns + span_ns * (i as u64 + 1) / sent as u64;
                        meter.on_sent(direction, ssrc, seq, at_ns);
                    }
                }
                done += sent;
                self.counters.sent += sent as u64;
            } else {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // The first message of the rest failed (a full socket buffer, an ICMP error
                // left on the socket): skip it, keep the others.
                self.counters.send_errors += 1;
                done += 1;
            }
        }
    }

    fn active(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }

    pub(crate) fn report(&self) -> serde_json::Value {
        let c = &self.counters;
        serde_json::json!({
            "targets": c.targets,
            "active_at_end": self.active(),
            "dropped_idle": c.dropped_idle,
            "sent": c.sent,
            "send_errors": c.send_errors,
            "send_calls": c.send_calls,
            "keys": c.keys,
            "received": c.received,
            "received_foreign": c.received_foreign,
            "recv_calls": c.recv_calls,
            "rcvbuf": self.rcvbuf,
        })
    }
}
