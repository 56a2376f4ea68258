//! The media driver end to end on loopback: test sockets play the phones, legs are started and
//! bridged with plain and SRTP sessions, and what each phone receives is checked (an SRTP
//! phone's packets must decrypt with its keys to the original G.711, and must not carry it in
//! the clear). Waits poll with a deadline; nothing sleeps to synchronise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::MediaDriver;
use crate::media::g711;
use crate::media::leg::{LegId, MediaCommand, MediaEvent, MediaSession};
use crate::media::prompts::Prompt;
use crate::media::srtp::{MasterKey, SrtpProfile, SrtpReceiver, SrtpSender, MAX_TAG_LEN};
use crate::media::stream::{IdleAudio, RTP_HEADER_LEN};
use crate::sdp::{Codec, SdesKeys};

const PAYLOAD_LEN: usize = 160;
const DEADLINE: Duration = Duration::from_secs(5);
/// How long one poll waits for a packet before the sender tries again.
const POLL: Duration = Duration::from_millis(50);

/// A phone: its socket, and the keys it uses when its leg is SRTP (`local` is ours, `remote`
/// the phone's own, as in our `SdesKeys`).
struct Phone {
    socket: UdpSocket,
    srtp: Option<(SrtpSender, SrtpReceiver)>,
    ssrc: u32,
    seq: u16,
    /// The payload type of its codec.
    payload_type: u8,
}

impl Phone {
    async fn new(codec: Codec, keys: Option<&SdesKeys>, ssrc: u32) -> Phone {
        Phone {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            // The phone sends with what we receive with, and the other way round.
            srtp: keys.map(|keys| {
                (
                    SrtpSender::new(keys.profile, &keys.remote),
                    SrtpReceiver::new(keys.profile, &keys.local),
                )
            }),
            ssrc,
            seq: 1000,
            payload_type: codec.static_payload_type(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// The next RTP packet with `payload`, protected when the phone does SRTP.
    fn packet(&mut self, payload: &[u8; PAYLOAD_LEN]) -> Vec<u8> {
        let mut packet = vec![0u8; RTP_HEADER_LEN + PAYLOAD_LEN + MAX_TAG_LEN];
        packet[0] = 0x80;
        packet[1] = self.payload_type;
        packet[2..4].copy_from_slice(&self.seq.to_be_bytes());
        packet[4..8].copy_from_slice(&(u32::from(self.seq) * 160).to_be_bytes());
        packet[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        packet[RTP_HEADER_LEN..RTP_HEADER_LEN + PAYLOAD_LEN].copy_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        let len = match self.srtp.as_mut() {
            Some((sender, _)) => sender
                .protect(&mut packet, RTP_HEADER_LEN + PAYLOAD_LEN)
                .unwrap(),
            None => RTP_HEADER_LEN + PAYLOAD_LEN,
        };
        packet.truncate(len);
        packet
    }

    /// The next datagram within `wait`, as received (still SRTP if it was).
    async fn receive(&self, wait: Duration) -> Option<Vec<u8>> {
        let mut buffer = [0u8; 2048];
        let (len, _) = tokio::time::timeout(wait, self.socket.recv_from(&mut buffer))
            .await
            .ok()?
            .ok()?;
        Some(buffer[..len].to_vec())
    }

    /// A received datagram turned back into RTP with the phone's keys; `None` if it does not
    /// authenticate.
    fn open(&mut self, mut datagram: Vec<u8>) -> Option<Vec<u8>> {
        if let Some((_, receiver)) = self.srtp.as_mut() {
            let len = receiver.unprotect(&mut datagram).ok()?;
            datagram.truncate(len);
        }
        Some(datagram)
    }

    /// New keys, as after a re-INVITE.
    fn rekey(&mut self, keys: &SdesKeys) {
        self.srtp = Some((
            SrtpSender::new(keys.profile, &keys.remote),
            SrtpReceiver::new(keys.profile, &keys.local),
        ));
    }
}

fn keys(ours: u8, theirs: u8) -> SdesKeys {
    SdesKeys {
        tag: 1,
        profile: SrtpProfile::Aes128CmHmacSha1_80,
        local: MasterKey::from_bytes(&[ours; 30]),
        remote: MasterKey::from_bytes(&[theirs; 30]),
    }
}

fn session(remote: SocketAddr, codec: Codec, srtp: Option<SdesKeys>) -> MediaSession {
    MediaSession {
        remote: Some(remote),
        codec,
        payload_type: codec.static_payload_type(),
        telephone_event: None,
        inactivity_timeout: None,
        srtp,
    }
}

/// Ports free a moment ago, all different (held together while picked).
fn free_ports<const N: usize>() -> [u16; N] {
    let sockets: [std::net::UdpSocket; N] =
        std::array::from_fn(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    std::array::from_fn(|i| sockets[i].local_addr().unwrap().port())
}

struct Bridge {
    driver: MediaDriver,
    caller: (LegId, u16),
    agent: (LegId, u16),
}

/// Two legs (the caller's with `caller`, the agent's with `agent`), bridged.
fn bridge(caller: MediaSession, agent: MediaSession) -> Bridge {
    let (events, _unused) = mpsc::channel(64);
    let mut driver = MediaDriver::new("127.0.0.1".parse().unwrap(), events, IdleAudio::Nothing, 2)
        .expect("pacer thread");
    let [caller_port, agent_port] = free_ports();
    let (caller_leg, agent_leg) = ((LegId(1), caller_port), (LegId(2), agent_port));
    for ((leg, local_port), session) in [(caller_leg, caller), (agent_leg, agent)] {
        driver.handle(MediaCommand::Start {
            leg,
            local_port,
            session,
        });
    }
    driver.handle(MediaCommand::Bridge {
        caller: caller_leg.0,
        agent: agent_leg.0,
    });
    Bridge {
        driver,
        caller: caller_leg,
        agent: agent_leg,
    }
}

/// `from` sends `sent` (fresh packets) to its leg's `port` until `to` receives a packet whose
/// payload, opened with `to`'s keys, is `expected` (the bridge is set up asynchronously, and
/// copies sent meanwhile may still arrive); that datagram as received, and opened.
async fn relayed(
    from: &mut Phone,
    port: u16,
    to: &mut Phone,
    sent: &[u8; PAYLOAD_LEN],
    expected: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < deadline {
        let packet = from.packet(sent);
        from.socket
            .send_to(&packet, ("127.0.0.1", port))
            .await
            .unwrap();
        while let Some(datagram) = to.receive(POLL).await {
            // Copies sent before a re-key may still arrive, and do not open.
            if let Some(rtp) = to.open(datagram.clone()) {
                if payload(&rtp) == expected {
                    return (datagram, rtp);
                }
            }
        }
    }
    panic!("nothing relayed within {DEADLINE:?}");
}

fn pattern(seed: u8) -> [u8; PAYLOAD_LEN] {
    std::array::from_fn(|i| seed.wrapping_add(i as u8).wrapping_mul(7))
}

fn payload(rtp: &[u8]) -> &[u8] {
    &rtp[RTP_HEADER_LEN..]
}

#[tokio::test]
async fn a_plain_caller_and_an_srtp_agent_hear_each_other() {
    let agent_keys = keys(0x11, 0x22);
    let mut caller = Phone::new(Codec::Pcmu, None, 0xca11).await;
    let mut agent = Phone::new(Codec::Pcmu, Some(&agent_keys), 0xa6e7).await;
    let mut b = bridge(
        session(caller.addr(), Codec::Pcmu, None),
        session(agent.addr(), Codec::Pcmu, Some(agent_keys)),
    );

    // Caller → agent: encrypted on the wire, the original G.711 once decrypted.
    let spoken = pattern(1);
    let (datagram, rtp) = relayed(&mut caller, b.caller.1, &mut agent, &spoken, &spoken).await;
    assert_eq!(datagram.len(), RTP_HEADER_LEN + PAYLOAD_LEN + 10);
    assert_ne!(
        payload(&datagram)[..PAYLOAD_LEN],
        spoken[..],
        "sent in the clear"
    );
    assert_ne!(
        rtp[8..12],
        0xca11u32.to_be_bytes(),
        "a stream of the relay's own"
    );

    // Agent → caller: decrypted, plain RTP with the original payload.
    let answered = pattern(2);
    let (datagram, _) = relayed(&mut agent, b.agent.1, &mut caller, &answered, &answered).await;
    assert_eq!(datagram.len(), RTP_HEADER_LEN + PAYLOAD_LEN);
    assert_eq!(datagram[1], 0, "PCMU");

    // A forged packet (tag altered) and a replayed one are dropped and counted; packets after
    // them go through.
    let mut forged = agent.packet(&pattern(3));
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let genuine = agent.packet(&pattern(4));
    for packet in [&forged, &genuine, &genuine] {
        agent
            .socket
            .send_to(packet, ("127.0.0.1", b.agent.1))
            .await
            .unwrap();
    }
    let after = pattern(5);
    relayed(&mut agent, b.agent.1, &mut caller, &after, &after).await;
    let rejected = &b.driver.sessions[&b.agent.0].shared.received.srtp_rejected;
    assert_eq!(rejected.load(std::sync::atomic::Ordering::Relaxed), 2);

    // A re-INVITE re-keys the agent's leg while bridged: the relay follows both ways.
    let rekeyed = keys(0x13, 0x24);
    b.driver.handle(MediaCommand::Update {
        leg: b.agent.0,
        session: session(agent.addr(), Codec::Pcmu, Some(rekeyed.clone())),
    });
    agent.rekey(&rekeyed);
    let spoken = pattern(6);
    relayed(&mut caller, b.caller.1, &mut agent, &spoken, &spoken).await;
    let answered = pattern(7);
    relayed(&mut agent, b.agent.1, &mut caller, &answered, &answered).await;

    let stopped = b
        .driver
        .handle(MediaCommand::Stop { leg: b.agent.0 })
        .expect("the leg's statistics");
    // The forged and the replayed packet (re-keying may add packets of the old keys in flight).
    assert!(stopped.srtp_rejected >= 2, "{stopped:?}");
}

#[tokio::test]
async fn srtp_legs_with_different_keys_are_re_encrypted_and_g711_converted() {
    let (caller_keys, agent_keys) = (keys(0x31, 0x32), keys(0x41, 0x42));
    let mut caller = Phone::new(Codec::Pcmu, Some(&caller_keys), 0x1111).await;
    let mut agent = Phone::new(Codec::Pcma, Some(&agent_keys), 0x2222).await;
    let b = bridge(
        session(caller.addr(), Codec::Pcmu, Some(caller_keys)),
        session(agent.addr(), Codec::Pcma, Some(agent_keys)),
    );
    let spoken = pattern(7);
    let as_alaw: Vec<u8> = spoken.iter().map(|&b| g711::ulaw_to_alaw(b)).collect();
    let (datagram, rtp) = relayed(&mut caller, b.caller.1, &mut agent, &spoken, &as_alaw).await;
    assert_eq!(rtp[1] & 0x7f, 8, "PCMA's payload type");
    assert_ne!(
        payload(&datagram)[..PAYLOAD_LEN],
        as_alaw[..],
        "sent in the clear"
    );

    let answered = pattern(8);
    let as_ulaw: Vec<u8> = answered.iter().map(|&b| g711::alaw_to_ulaw(b)).collect();
    let (datagram, _) = relayed(&mut agent, b.agent.1, &mut caller, &answered, &as_ulaw).await;
    assert_ne!(
        payload(&datagram)[..PAYLOAD_LEN],
        as_ulaw[..],
        "sent in the clear"
    );
}

#[tokio::test]
async fn the_pacer_protects_prompts_for_an_srtp_leg() {
    let agent_keys = keys(0x51, 0x52);
    let mut agent = Phone::new(Codec::Pcmu, Some(&agent_keys), 0x3333).await;
    let (events, _unused) = mpsc::channel(64);
    let mut driver = MediaDriver::new("127.0.0.1".parse().unwrap(), events, IdleAudio::Nothing, 2)
        .expect("pacer thread");
    let leg = LegId(7);
    driver.handle(MediaCommand::Start {
        leg,
        local_port: free_ports::<1>()[0],
        session: session(agent.addr(), Codec::Pcmu, Some(agent_keys.clone())),
    });
    // A 1 kHz tone, 100 ms.
    let tone: Vec<f32> = (0..800)
        .map(|i| 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / 8000.0).sin())
        .collect();
    let prompt = Arc::new(Prompt::from_samples("tone", "en", &tone));
    driver.handle(MediaCommand::Play {
        leg,
        prompts: vec![prompt.clone()],
        generation: 1,
    });
    for index in 0..prompt.frames() {
        let datagram = agent.receive(DEADLINE).await.expect("a paced packet");
        assert_eq!(datagram.len(), RTP_HEADER_LEN + PAYLOAD_LEN + 10);
        let frame = prompt.frame(index, Codec::Pcmu).expect("frame");
        assert_ne!(payload(&datagram)[..PAYLOAD_LEN], frame[..]);
        let rtp = agent.open(datagram).expect("authenticates");
        assert_eq!(payload(&rtp), frame, "frame {index}");
    }
    // Re-keyed by a re-INVITE: the next prompt decrypts with the new keys only.
    let rekeyed = keys(0x61, 0x62);
    driver.handle(MediaCommand::Update {
        leg,
        session: session(agent.addr(), Codec::Pcmu, Some(rekeyed.clone())),
    });
    driver.handle(MediaCommand::Play {
        leg,
        prompts: vec![prompt.clone()],
        generation: 2,
    });
    let mut receiver = SrtpReceiver::new(rekeyed.profile, &rekeyed.local);
    let mut datagram = agent.receive(DEADLINE).await.expect("a paced packet");
    let len = receiver.unprotect(&mut datagram).expect("new keys");
    assert_eq!(
        &datagram[RTP_HEADER_LEN..len],
        prompt.frame(0, Codec::Pcmu).unwrap()
    );
}

#[tokio::test]
async fn a_caller_behind_nat_is_latched_where_its_rtp_comes_from() {
    // Its SDP names one address; its RTP comes from another (a NAT's outside address).
    let sdp = Phone::new(Codec::Pcmu, None, 1).await;
    let mut nat = Phone::new(Codec::Pcmu, None, 0x4444).await;
    let mut stranger = Phone::new(Codec::Pcmu, None, 0x5555).await;
    let (events, _unused) = mpsc::channel(64);
    let mut driver = MediaDriver::new("127.0.0.1".parse().unwrap(), events, IdleAudio::Nothing, 2)
        .expect("media threads");
    let leg = LegId(9);
    let port = free_ports::<1>()[0];
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    driver.handle(MediaCommand::Start {
        leg,
        local_port: port,
        session: session(sdp.addr(), Codec::Pcmu, None),
    });
    let tone: Vec<f32> = (0..80_000)
        .map(|i| if i % 16 < 8 { 0.3 } else { -0.3 })
        .collect();
    driver.handle(MediaCommand::Play {
        leg,
        prompts: vec![Arc::new(Prompt::from_samples("long", "en", &tone))],
        generation: 1,
    });
    sdp.receive(DEADLINE)
        .await
        .expect("paced to the SDP address at first");
    let received = || driver.sessions[&leg].shared.received.snapshot().packets;

    for seed in 0..3 {
        let packet = nat.packet(&pattern(seed));
        nat.socket.send_to(&packet, local).await.unwrap();
    }
    nat.receive(DEADLINE)
        .await
        .expect("paced to where its RTP comes from");
    wait_for(|| received() == 3).await;
    // A stranger is neither heard nor latched; the caller's next packet still counts.
    for seed in 0..3 {
        let packet = stranger.packet(&pattern(seed));
        stranger.socket.send_to(&packet, local).await.unwrap();
    }
    let packet = nat.packet(&pattern(9));
    nat.socket.send_to(&packet, local).await.unwrap();
    wait_for(|| received() == 4).await;
    nat.receive(DEADLINE)
        .await
        .expect("still paced to the caller");
    assert!(
        stranger.receive(POLL).await.is_none(),
        "nothing goes to the stranger"
    );
}

/// Polls `done` until it holds (fails the test after `DEADLINE`).
async fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_port_is_not_bound_again_while_a_stopped_leg_still_holds_it() {
    let phone = Phone::new(Codec::Pcmu, None, 1).await;
    let (events, mut failures) = mpsc::channel(64);
    let mut driver = MediaDriver::new("127.0.0.1".parse().unwrap(), events, IdleAudio::Nothing, 1)
        .expect("media threads");
    let port = free_ports::<1>()[0];
    let start = |leg| MediaCommand::Start {
        leg: LegId(leg),
        local_port: port,
        session: session(phone.addr(), Codec::Pcmu, None),
    };
    driver.handle(start(1));
    // As a shard holds a stopped leg's sockets until it takes the leg out.
    let held = driver.sessions[&LegId(1)].shared.clone();
    driver.handle(MediaCommand::Stop { leg: LegId(1) });
    driver.handle(start(2));
    let failure = tokio::time::timeout(DEADLINE, failures.recv()).await;
    match failure {
        Ok(Some(super::DriverInput::Media(MediaEvent::Failed { leg, reason }))) => {
            assert_eq!(leg, LegId(2));
            assert!(reason.contains(&format!("{port}")), "{reason}");
        }
        _ => panic!("the second leg must fail to bind"),
    }
    assert!(!driver.sessions.contains_key(&LegId(2)));
    let released = Arc::downgrade(&held);
    drop(held);
    wait_for(|| released.strong_count() == 0).await;
    driver.handle(start(3));
    assert!(driver.sessions.contains_key(&LegId(3)), "free again");
    assert!(failures.try_recv().is_err(), "no other failure");
}
