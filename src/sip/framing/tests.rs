use super::*;
use crate::sip::message::{bad_request_response, call_id, parse_datagram};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn message(call: &str, body: &str, length_header: &str) -> Vec<u8> {
    format!(
        "INVITE sip:19118@hotline.example SIP/2.0\r\n\
Via: SIP/2.0/TCP 192.0.2.7:5060;branch=z9hG4bK{call}\r\n\
From: <sip:caller@example.net>;tag=1\r\n\
To: <sip:19118@hotline.example>\r\n\
Call-ID: {call}\r\n\
CSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\n\
{length_header}: {}\r\n\
\r\n\
{body}",
        body.len()
    )
    .into_bytes()
}

const SDP_A: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
const SDP_B: &str = "v=0\r\no=- 2 2 IN IP4 192.0.2.8\r\ns=-\r\nt=0 0\r\n";

fn drain(framer: &mut StreamFramer) -> Vec<Result<Frame, FramingError>> {
    framer.by_ref().collect()
}

fn messages(frames: &[Result<Frame, FramingError>]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|frame| match frame {
            Ok(Frame::Message(bytes)) => bytes.to_vec(),
            other => panic!("expected a message, got {other:?}"),
        })
        .collect()
}

#[test]
fn two_messages_split_at_every_point() {
    let first = message("first", SDP_A, "Content-Length");
    let second = message("second", SDP_B, "l");
    let stream = [first.clone(), second.clone()].concat();
    for split in 0..=stream.len() {
        let mut framer = StreamFramer::new();
        let mut frames = Vec::new();
        for chunk in [&stream[..split], &stream[split..]] {
            framer.push(chunk);
            frames.extend(drain(&mut framer));
        }
        assert_eq!(
            messages(&frames),
            vec![first.clone(), second.clone()],
            "split at {split}"
        );
        assert_eq!(framer.buffered_len(), 0);
    }
}

#[test]
fn three_way_splits_and_byte_by_byte_reads() {
    let first = message("first", SDP_A, "content-length");
    let second = message("second", "", "L");
    let stream = [first.clone(), second.clone()].concat();
    for a in (0..stream.len()).step_by(7) {
        for b in (a..stream.len()).step_by(11) {
            let mut framer = StreamFramer::new();
            let mut frames = Vec::new();
            for chunk in [&stream[..a], &stream[a..b], &stream[b..]] {
                framer.push(chunk);
                frames.extend(drain(&mut framer));
            }
            assert_eq!(
                messages(&frames),
                vec![first.clone(), second.clone()],
                "splits {a}/{b}"
            );
        }
    }
    let mut framer = StreamFramer::new();
    let mut frames = Vec::new();
    for byte in &stream {
        framer.push(std::slice::from_ref(byte));
        frames.extend(drain(&mut framer));
    }
    assert_eq!(messages(&frames), vec![first, second]);
}

#[test]
fn several_messages_in_one_read_and_frames_parse() {
    let calls = ["a", "b", "c", "d"];
    let stream: Vec<u8> = calls
        .iter()
        .flat_map(|call| message(call, SDP_B, "Content-Length"))
        .collect();
    let mut framer = StreamFramer::new();
    framer.push(&stream);
    let frames = messages(&drain(&mut framer));
    assert_eq!(frames.len(), calls.len());
    for (frame, call) in frames.iter().zip(calls) {
        let parsed = parse_datagram(frame).unwrap();
        assert_eq!(call_id(&parsed), Some(call));
        assert_eq!(parsed.body(), SDP_B.as_bytes());
    }
}

#[test]
fn keep_alive_pings_and_stray_crlfs_between_messages() {
    let first = message("first", SDP_A, "Content-Length");
    let second = message("second", SDP_B, "Content-Length");
    let stream = [
        b"\r\n\r\n".as_slice(),
        &first,
        b"\r\n",
        b"\r\n\r\n",
        b"\r\n",
        &second,
        b"\r\n\r\n",
    ]
    .concat();
    let expected = vec![
        Frame::KeepAlivePing,
        Frame::Message(Bytes::from(first)),
        Frame::KeepAlivePing,
        Frame::KeepAlivePing,
        Frame::Message(Bytes::from(second)),
        Frame::KeepAlivePing,
    ];
    for chunk_size in [1, 2, 3, 5, stream.len()] {
        let mut framer = StreamFramer::new();
        let mut frames = Vec::new();
        for chunk in stream.chunks(chunk_size) {
            framer.push(chunk);
            frames.extend(drain(&mut framer).into_iter().map(Result::unwrap));
        }
        assert_eq!(frames, expected, "chunk size {chunk_size}");
    }
}

#[test]
fn a_lone_crlf_waits_for_more_bytes_before_deciding() {
    let mut framer = StreamFramer::new();
    framer.push(b"\r\n");
    assert_eq!(framer.next(), None);
    framer.push(b"\r");
    assert_eq!(framer.next(), None);
    framer.push(b"\n");
    assert_eq!(framer.next(), Some(Ok(Frame::KeepAlivePing)));
    framer.push(b"\r\nOPT");
    assert_eq!(framer.next(), None);
    assert_eq!(framer.buffered_len(), 3, "the stray CRLF was skipped");
}

#[test]
fn bare_lf_heads_and_folded_content_length_are_framed() {
    let bare = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\nContent-Length:\n  5\n\nhello".to_vec();
    let mut framer = StreamFramer::new();
    framer.push(&bare);
    framer.push(b"OPTIONS");
    assert_eq!(framer.next(), Some(Ok(Frame::Message(Bytes::from(bare)))));
    assert_eq!(framer.next(), None);
    assert_eq!(framer.buffered_len(), 7);
}

#[test]
fn missing_content_length_is_fatal_and_answerable() {
    let mut raw = message("nolen", "", "Content-Length");
    let text = String::from_utf8(raw.clone())
        .unwrap()
        .replace("Content-Length: 0\r\n", "");
    raw = text.into_bytes();
    let mut framer = StreamFramer::new();
    framer.push(&raw);
    let error = framer.next().unwrap().unwrap_err();
    let FramingError::MissingContentLength { head } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(head.as_ref(), raw.as_slice());
    assert_eq!(error.status_code(), 400);
    let answer = bad_request_response(error.head().unwrap(), "Missing Content-Length").unwrap();
    assert!(answer.starts_with(b"SIP/2.0 400 Missing Content-Length\r\n"));
    // The stream is unusable from here on.
    framer.push(&message("next", "", "Content-Length"));
    assert_eq!(framer.next(), None);
    assert_eq!(framer.buffered_len(), 0);
}

#[test]
fn content_length_must_be_digits_and_single() {
    for bad in [
        "Content-Length: -1\r\n",
        "Content-Length: 1e3\r\n",
        "Content-Length: \r\n",
        "Content-Length: 5\r\nl: 6\r\n",
        "Content-Length: 2\r\nl: 2\r\n",
    ] {
        let raw = format!("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n{bad}\r\n");
        let mut framer = StreamFramer::new();
        framer.push(raw.as_bytes());
        let error = framer.next().unwrap().unwrap_err();
        assert!(
            matches!(error, FramingError::InvalidContentLength { .. }),
            "{bad}: {error:?}"
        );
    }
    let spaced = b"OPTIONS sip:a@b SIP/2.0\r\ncontent-LENGTH   :  2  \r\n\r\nhi";
    let mut framer = StreamFramer::new();
    framer.push(spaced);
    assert_eq!(
        framer.next(),
        Some(Ok(Frame::Message(Bytes::from_static(spaced))))
    );
}

#[test]
fn oversize_heads_and_bodies_are_refused() {
    let limits = FramingLimits {
        max_head_bytes: 256,
        max_body_bytes: 100,
    };
    // An endless header line, fed byte by byte, fails as soon as it passes the limit.
    let mut framer = StreamFramer::with_limits(limits);
    framer.push(b"INVITE sip:a@b SIP/2.0\r\nX-Flood: ");
    let mut fed = framer.buffered_len();
    let error = loop {
        framer.push(b"x");
        fed += 1;
        if let Some(result) = framer.next() {
            break result.unwrap_err();
        }
        assert!(fed <= limits.max_head_bytes + 1, "never refused");
    };
    assert_eq!(error, FramingError::HeadTooLarge { limit: 256 });
    assert_eq!(error.status_code(), 513);
    assert_eq!(error.head(), None);

    // A complete but too long head is refused too.
    let long_head = format!(
        "OPTIONS sip:a@b SIP/2.0\r\nX-Long: {}\r\nl: 0\r\n\r\n",
        "y".repeat(300)
    );
    let mut framer = StreamFramer::with_limits(limits);
    framer.push(long_head.as_bytes());
    assert_eq!(
        framer.next(),
        Some(Err(FramingError::HeadTooLarge { limit: 256 }))
    );

    let mut framer = StreamFramer::with_limits(limits);
    let big_body = message("big", &"z".repeat(101), "Content-Length");
    framer.push(&big_body[..big_body.len() - 101]);
    let error = framer.next().unwrap().unwrap_err();
    assert!(
        matches!(
            error,
            FramingError::BodyTooLarge {
                declared: 101,
                limit: 100,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.status_code(), 413);

    let mut framer = StreamFramer::with_limits(limits);
    let fits = message("fits", &"z".repeat(100), "Content-Length");
    framer.push(&fits);
    assert_eq!(framer.next(), Some(Ok(Frame::Message(Bytes::from(fits)))));
}

#[test]
fn defaults_are_16_and_64_kib() {
    assert_eq!(
        FramingLimits::default(),
        FramingLimits {
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024
        }
    );
}

#[test]
fn random_streams_never_panic_and_stay_bounded() {
    let limits = FramingLimits::default();
    let mut rng = StdRng::seed_from_u64(0x5eed_f4a3);
    let valid = [
        message("x", SDP_A, "Content-Length"),
        b"\r\n\r\n".to_vec(),
        message("y", "", "l"),
    ]
    .concat();
    let alphabet = b"\r\n:lL Content-Length0123456789";
    for round in 0..300 {
        let mut framer = StreamFramer::with_limits(limits);
        for _ in 0..rng.gen_range(1..40) {
            let chunk: Vec<u8> = match rng.gen_range(0..3) {
                0 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
                1 => (0..rng.gen_range(0..200))
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect(),
                _ => {
                    let start = rng.gen_range(0..valid.len());
                    valid[start..].to_vec()
                }
            };
            framer.push(&chunk);
            for frame in framer.by_ref() {
                if let Ok(Frame::Message(bytes)) = frame {
                    let _ = parse_datagram(&bytes);
                }
            }
            let bound = limits.max_head_bytes + limits.max_body_bytes + valid.len() + 200;
            assert!(
                framer.buffered_len() <= bound,
                "round {round}: {} buffered",
                framer.buffered_len()
            );
        }
    }
}
