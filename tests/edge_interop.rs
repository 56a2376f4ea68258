//! The public edge against a spoofer: an INVITE whose source address is forged (nobody there
//! ever ACKs) and whose SDP names a victim must not turn the service into an RTP amplifier.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::Service;

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

#[test]
fn a_spoofed_invite_sends_no_rtp_to_the_address_its_sdp_names() {
    // Timer H / 64·T1 after 6.4 s instead of 32 s, so the unconfirmed call ends soon.
    let service = Service::start(&[
        ("HOTLINE__ROUTING", "builtin:echo"),
        ("HOTLINE__SIP__T1", "100ms"),
    ]);
    let victim = UdpSocket::bind("127.0.0.9:0").expect("victim socket");
    victim
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let victim_port = victim.local_addr().unwrap().port();
    // The forged source: a socket that never answers (it only lets the 2xx land somewhere).
    let spoofed = UdpSocket::bind("127.0.0.3:0").expect("spoofed source");
    let body = SDP.replace("{port}", &victim_port.to_string());
    let invite = format!(
        "INVITE sip:19118@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-spoof-1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:attacker@127.0.0.3>;tag=spoof\r\nTo: <sip:19118@{sip}>\r\n\
         Call-ID: spoof-1\r\nCSeq: 1 INVITE\r\nContact: <sip:attacker@{from}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        sip = service.sip_addr(),
        from = spoofed.local_addr().unwrap(),
    );
    spoofed
        .send_to(invite.as_bytes(), service.sip_addr())
        .unwrap();

    // Count what reaches the victim until the service gives up on the ACK (64·T1).
    let mut received = 0;
    let mut buffer = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(30);
    let gave_up = loop {
        if let Ok((len, _)) = victim.recv_from(&mut buffer) {
            received += usize::from(len > 0);
            continue;
        }
        let ended = service
            .log_lines()
            .iter()
            .any(|line| line.contains("call ended") && line.contains("spoof-1"));
        if ended || Instant::now() > deadline {
            break ended;
        }
    };
    assert!(
        gave_up,
        "the unconfirmed call ended:\n{}",
        service.stderr_tail()
    );
    assert!(
        received <= 10,
        "{received} RTP packets went to the victim the spoofed SDP named"
    );
    let hang_up = service
        .wait_for_log_line(|l| l.contains("hanging up"), Duration::from_secs(5))
        .expect("the service hung up the unconfirmed call");
    assert!(hang_up.contains("reason=\"ack_timeout\""), "{hang_up}");
}

/// Connects from `source` (a loopback address) to `to` over TCP.
async fn connect_from(
    source: &str,
    to: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("loopback address"))?;
    socket.connect(to).await
}

/// Waits until the service closes `stream` (read gives 0 or an error), at most `limit`.
async fn closed_within(mut stream: tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// 2,000 idle TCP connections from two addresses: beyond the per-address and total limits they
/// are closed at once, the rest when no message comes within `tcp.message_timeout`; calls go
/// on over UDP meanwhile, and a new TCP connection is served once the idle ones are gone.
#[test]
fn idle_tcp_connections_are_capped_and_closed_while_calls_go_on() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let service = Service::start(&[
        ("HOTLINE__TCP__MAX_CONNECTIONS", "800"),
        ("HOTLINE__TCP__MAX_PER_ADDRESS", "500"),
        ("HOTLINE__TCP__MESSAGE_TIMEOUT", "8s"),
    ]);
    let sip = service.sip_addr();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (quickly, eventually) = runtime.block_on(async {
        let mut streams = Vec::new();
        for source in ["127.0.0.3", "127.0.0.4"] {
            for _ in 0..1000 {
                streams.push(connect_from(source, sip).await.expect("TCP connect"));
            }
        }
        // Refused ones are closed at once; the accepted ones wait for their first message.
        let checks: Vec<_> = streams
            .into_iter()
            .map(|stream| tokio::spawn(closed_within(stream, Duration::from_millis(1500))))
            .collect();
        let mut quickly = 0;
        let mut kept = Vec::new();
        for (index, check) in checks.into_iter().enumerate() {
            if check.await.unwrap() {
                quickly += 1;
            } else {
                kept.push(index);
            }
        }
        (quickly, kept.len())
    });
    assert_eq!(
        quickly, 1200,
        "2,000 minus 500 from 127.0.0.3 and 300 more from 127.0.0.4"
    );
    assert_eq!(eventually, 800, "the total limit was held open");

    // A call over UDP while the 800 wait for their deadline.
    let run = common::Sipp::new("uac_basic.xml").calls(3).run(&service);
    assert_eq!(run.stats.successful, 3, "{}", run.diagnostics());

    // The kept connections are closed by the message deadline: a new one is served again.
    let answered = runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
        loop {
            let mut stream = connect_from("127.0.0.3", sip).await.expect("TCP connect");
            let options = format!(
                "OPTIONS sip:19118@{sip} SIP/2.0\r\nVia: SIP/2.0/TCP {};branch=z9hG4bK-tcp-opt\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.3>;tag=p\r\nTo: <sip:19118@{sip}>\r\n\
                 Call-ID: tcp-options\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
                stream.local_addr().unwrap()
            );
            stream.write_all(options.as_bytes()).await.unwrap();
            let mut answer = vec![0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut answer)).await;
            if let Ok(Ok(len)) = read {
                if len > 0 {
                    break Some(String::from_utf8_lossy(&answer[..len]).into_owned());
                }
            }
            if tokio::time::Instant::now() > deadline {
                break None;
            }
        }
    });
    let answered = answered.expect("a TCP request is served once the idle connections are closed");
    assert!(answered.starts_with("SIP/2.0 200"), "{answered}");
}

/// `sip.trusted` from the environment (`HOTLINE__SIP__TRUSTED`): an INVITE straight from an
/// address outside it (127.0.0.7, a stranger) gets 403 and no call; 127.0.0.1 calls as usual.
#[test]
fn an_invite_from_an_untrusted_address_gets_403() {
    let service = Service::start(&[
        ("HOTLINE__ROUTING", "builtin:echo"),
        ("HOTLINE__SIP__TRUSTED", "127.0.0.1/32,10.20.0.0/16"),
    ]);
    let stranger = UdpSocket::bind("127.0.0.7:0").expect("stranger socket");
    stranger
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let sip = service.sip_addr();
    let from = stranger.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:19118@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-stranger-1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:stranger@127.0.0.7>;tag=s\r\nTo: <sip:19118@{sip}>\r\n\
         Call-ID: stranger-1\r\nCSeq: 1 INVITE\r\nContact: <sip:stranger@{from}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    stranger.send_to(invite.as_bytes(), sip).unwrap();
    let mut buffer = [0u8; 4096];
    let (len, _) = stranger
        .recv_from(&mut buffer)
        .expect("an answer to the stranger");
    let answer = String::from_utf8_lossy(&buffer[..len]);
    assert!(answer.starts_with("SIP/2.0 403"), "{answer}");

    let run = common::Sipp::new("uac_basic.xml").calls(2).run(&service);
    assert_eq!(run.stats.successful, 2, "{}", run.diagnostics());
    assert!(
        !service
            .log_lines()
            .iter()
            .any(|l| l.contains("stranger-1") && l.contains("incoming call")),
        "the stranger's INVITE never became a call"
    );
}
