//! Tests for SDP parsing and offer/answer, including a seeded mutation fuzzer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;

const SIPP_DEFAULT_OFFER: &str = "v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.1.1\r\n\
s=-\r\n\
c=IN IP4 127.0.1.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const SOFTPHONE_OFFER: &str = "v=0\r\n\
o=- 3911245678 3911245678 IN IP4 10.0.0.23\r\n\
s=pjmedia\r\n\
b=AS:84\r\n\
t=0 0\r\n\
a=X-nat:0\r\n\
m=audio 4002 RTP/AVP 8 0 9 111 101\r\n\
c=IN IP4 10.0.0.23\r\n\
b=TIAS:64000\r\n\
a=rtcp:4003 IN IP4 10.0.0.23\r\n\
a=sendrecv\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 useinbandfec=1\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ssrc:123456789 cname:4a1f2b3c\r\n";

fn local_v4() -> LocalMedia {
    LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        rtp_port: 40000,
        session_id: 1000,
        session_version: 1,
    }
}

fn parse(text: &str) -> SessionDescription {
    SessionDescription::parse(text.as_bytes()).unwrap()
}

fn answer_to(text: &str) -> (Negotiated, String) {
    answer(&parse(text), &local_v4()).unwrap()
}

/// Offer with a session-level c= and the given m= section lines appended verbatim.
fn offer_with_media(media: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n{media}"
    )
}

fn media_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|line| line.starts_with("m=")).collect()
}

// ---------------------------------------------------------------- parsing

#[test]
fn parses_sipp_default_offer() {
    let offer = parse(SIPP_DEFAULT_OFFER);
    assert_eq!(
        offer.origin,
        Origin {
            username: "user1".into(),
            session_id: 53655765,
            session_version: 2353687637,
            address: "127.0.1.1".into(),
        }
    );
    assert_eq!(offer.session_name.as_deref(), Some("-"));
    assert_eq!(
        offer.connection_address,
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)))
    );
    assert_eq!(offer.media.len(), 1);
    let audio = &offer.media[0];
    assert_eq!(audio.media_type, MediaType::Audio);
    assert_eq!(audio.port, 6000);
    assert_eq!(audio.port_count, None);
    assert_eq!(audio.proto, "RTP/AVP");
    assert_eq!(audio.formats, vec!["0".to_string()]);
    assert_eq!(
        audio.rtpmaps,
        vec![RtpMap {
            payload_type: 0,
            encoding_name: "PCMU".into(),
            clock_rate: 8000,
            encoding_parameters: None,
        }]
    );
    assert_eq!(audio.connection_address, None);
    assert_eq!(offer.effective_direction(audio), Direction::SendRecv);
}

#[test]
fn parses_softphone_offer_attributes() {
    let offer = parse(SOFTPHONE_OFFER);
    assert_eq!(offer.attributes.len(), 1);
    assert_eq!(offer.attributes[0].name, "X-nat");
    assert_eq!(offer.attributes[0].value.as_deref(), Some("0"));
    let audio = &offer.media[0];
    assert_eq!(
        audio.payload_types().collect::<Vec<_>>(),
        vec![8, 0, 9, 111, 101]
    );
    assert_eq!(
        audio.connection_address,
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 23)))
    );
    assert_eq!(audio.direction, Some(Direction::SendRecv));
    assert_eq!(audio.rtpmaps.len(), 5);
    let opus = audio.rtpmap(111).unwrap();
    assert_eq!(opus.encoding_name, "opus");
    assert_eq!(opus.clock_rate, 48000);
    assert_eq!(opus.encoding_parameters.as_deref(), Some("2"));
    assert_eq!(audio.fmtp(101), Some("0-16"));
    assert_eq!(audio.fmtp(111), Some("useinbandfec=1"));
    assert_eq!(audio.fmtp(8), None);
    let other: Vec<&str> = audio
        .other_attributes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(other, vec!["rtcp", "ssrc"]);
}

#[test]
fn tolerates_lf_only_trailing_whitespace_unknown_lines_and_missing_s_and_t() {
    let text = "v=0\n\
o=alice 1 2 IN IP4 host.example.com  \n\
\n\
x=whatever this is\n\
c=IN IP4 203.0.113.5\t\n\
m=audio  7000   RTP/AVP  0 \n\
a=some-unknown-flag\n\
a=another:with:colons\n\
a=ptime:30 \n\n";
    let offer = parse(text);
    assert_eq!(offer.session_name, None);
    assert_eq!(offer.origin.address, "host.example.com");
    let audio = &offer.media[0];
    assert_eq!(audio.port, 7000);
    assert_eq!(audio.formats, vec!["0".to_string()]);
    assert_eq!(audio.ptime, Some(30));
    assert_eq!(
        audio.other_attributes[1].value.as_deref(),
        Some("with:colons")
    );

    let (negotiated, _) = answer(&offer, &local_v4()).unwrap();
    assert_eq!(negotiated.codec, Codec::Pcmu);
    assert_eq!(negotiated.ptime, Some(30));
    assert_eq!(
        negotiated.remote_rtp,
        Some("203.0.113.5:7000".parse().unwrap())
    );
}

#[test]
fn tolerates_non_utf8_in_lines_we_do_not_interpret() {
    let mut body = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=caf\xe9\r\ni=\xff\xfe\r\n".to_vec();
    body.extend_from_slice(b"c=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 8\r\na=label:\xc3\x28\r\n");
    let offer = SessionDescription::parse(&body).unwrap();
    assert_eq!(offer.session_name.as_deref(), Some("caf\u{fffd}"));
    assert_eq!(offer.media[0].payload_types().collect::<Vec<_>>(), vec![8]);
}

#[test]
fn parses_port_count_and_multiple_media_connections() {
    let offer = parse(&offer_with_media(
        "m=audio 6000/2 RTP/AVP 0\r\nc=IN IP4 224.2.1.1/127/2\r\nc=IN IP4 224.2.1.2/127\r\n",
    ));
    let audio = &offer.media[0];
    assert_eq!(audio.port_count, Some(2));
    assert_eq!(
        audio.connection_address,
        Some(IpAddr::V4(Ipv4Addr::new(224, 2, 1, 1)))
    );
}

#[test]
fn accepts_disabled_stream_without_formats_or_connection() {
    let text = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=video 0 RTP/AVP\r\n\
m=audio 5000 RTP/AVP 0\r\nc=IN IP4 10.0.0.1\r\n";
    let offer = parse(text);
    assert_eq!(offer.media[0].formats, Vec::<String>::new());
    let (_, sdp) = answer(&offer, &local_v4()).unwrap();
    assert_eq!(
        media_lines(&sdp),
        vec!["m=video 0 RTP/AVP 0", "m=audio 40000 RTP/AVP 0"]
    );
}

fn parse_error(text: &str) -> SdpError {
    SessionDescription::parse(text.as_bytes()).unwrap_err()
}

fn assert_invalid_at(text: &str, expected_line: usize, expected_what: &str) {
    match parse_error(text) {
        SdpError::Invalid { line, what, .. } => {
            assert_eq!(line, expected_line, "{text:?}");
            assert_eq!(what, expected_what, "{text:?}");
        }
        other => panic!("expected Invalid for {text:?}, got {other:?}"),
    }
}

#[test]
fn rejects_garbage_with_line_numbers() {
    assert_invalid_at("hello world\r\n", 1, "not a <type>=<value> line");
    assert_invalid_at("INVITE sip:x SIP/2.0\r\n", 1, "not a <type>=<value> line");
    assert_invalid_at(
        "o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n",
        1,
        "SDP must start with v=",
    );
    assert_invalid_at("v=1\r\n", 1, "unsupported SDP version");
    assert_invalid_at("v=0\r\nv=0\r\n", 2, "repeated v= line");
    assert_invalid_at("v=0\r\no=- 1 IN IP4 1.2.3.4\r\n", 2, "o= needs 6 fields");
    assert_invalid_at(
        "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        2,
        "invalid o= session id",
    );
    assert_invalid_at(
        "v=0\r\no=- 1 +1 IN IP4 1.2.3.4\r\n",
        2,
        "invalid o= session version",
    );
    assert_invalid_at(
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        3,
        "repeated o= line",
    );
    let header = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n";
    let cases: &[(&str, &str)] = &[
        (
            "c=IN IP4 pbx.example.com\r\n",
            "c= address is not an IP literal",
        ),
        ("c=IN IP4\r\n", "c= needs 3 fields"),
        ("c=ATM NSAP 47.0091\r\n", "unsupported c= network type"),
        ("c=IN IPX 10.0.0.1\r\n", "unsupported c= address type"),
        ("m=audio\r\n", "m= needs media, port, proto and formats"),
        ("m=audio 65536 RTP/AVP 0\r\n", "invalid m= port"),
        ("m=audio -1 RTP/AVP 0\r\n", "invalid m= port"),
        ("m=audio 6000/0 RTP/AVP 0\r\n", "invalid m= port count"),
        ("m=audio 6000 RTP//AVP 0\r\n", "invalid m= proto"),
        ("m=au\"dio 6000 RTP/AVP 0\r\n", "invalid m= media type"),
        ("m=audio 6000 RTP/AVP 0 <8>\r\n", "invalid m= format"),
        ("m=audio 6000 RTP/AVP\r\n", "m= line has no formats"),
        ("a=\r\n", "invalid attribute name"),
        ("a=bad name:1\r\n", "invalid attribute name"),
        (
            "c=IN IP4 10.0.0.1\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0\r\n",
            "rtpmap needs a payload type and an encoding",
        ),
    ];
    for (lines, what) in cases {
        let text = format!("{header}{lines}");
        let last_line = text.lines().count();
        assert_invalid_at(&text, last_line, what);
    }
}

#[test]
fn rejects_malformed_attributes_we_act_on() {
    let media =
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0 101\r\n";
    let cases: &[(&str, &str)] = &[
        ("a=rtpmap:128 PCMU/8000", "invalid rtpmap payload type"),
        ("a=rtpmap:x PCMU/8000", "invalid rtpmap payload type"),
        (
            "a=rtpmap:0 PCMU",
            "rtpmap encoding needs <name>/<clock rate>",
        ),
        ("a=rtpmap:0 PCMU/fast", "invalid rtpmap clock rate"),
        ("a=rtpmap:0 PCMU/0", "invalid rtpmap clock rate"),
        ("a=rtpmap:0 /8000", "invalid rtpmap encoding name"),
        ("a=rtpmap", "attribute needs a value"),
        ("a=fmtp:", "invalid fmtp format"),
        ("a=ptime:abc", "invalid ptime"),
        ("a=ptime:0", "invalid ptime"),
        ("a=ptime", "attribute needs a value"),
    ];
    for (attribute, what) in cases {
        assert_invalid_at(&format!("{media}{attribute}\r\n"), 5, what);
    }
}

#[test]
fn rejects_conflicting_directions_but_allows_repeats() {
    let media = offer_with_media("m=audio 5000 RTP/AVP 0\r\na=sendonly\r\n");
    assert_invalid_at(
        &format!("{media}a=recvonly\r\n"),
        8,
        "conflicting direction attributes",
    );
    assert_eq!(
        parse(&format!("{media}a=sendonly\r\n")).media[0].direction,
        Some(Direction::SendOnly)
    );
}

#[test]
fn rejects_control_characters_inside_lines() {
    let text = offer_with_media("m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\rm=video 1 RTP/AVP 31\r\n");
    assert_invalid_at(&text, 8, "control character inside line");
    let text = offer_with_media("m=audio 5000 RTP/AVP 0\r\na=label:x\0y\r\n");
    assert_invalid_at(&text, 7, "control character inside line");
}

#[test]
fn reports_missing_lines_and_connection() {
    assert_eq!(parse_error(""), SdpError::Empty);
    assert_eq!(parse_error("\r\n\n  \r\n"), SdpError::Empty);
    assert_eq!(
        parse_error("v=0\r\ns=-\r\n"),
        SdpError::MissingLine { kind: 'o' }
    );
    let no_connection = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n\
m=video 0 RTP/AVP 31\r\n\
m=audio 5000 RTP/AVP 0\r\n\
m=audio 5002 RTP/AVP 0\r\nc=IN IP4 10.0.0.1\r\n";
    let error = parse_error(no_connection);
    assert_eq!(error, SdpError::MissingConnection { line: 5 });
    assert_eq!(error.line(), Some(5));
    assert!(error.to_string().contains("line 5"), "{error}");
}

#[test]
fn bounds_hostile_input() {
    let huge = vec![b'a'; MAX_BODY_BYTES + 1];
    assert_eq!(
        SessionDescription::parse(&huge).unwrap_err(),
        SdpError::TooLarge {
            len: MAX_BODY_BYTES + 1,
            max: MAX_BODY_BYTES
        }
    );

    let mut many_lines = offer_with_media("m=audio 5000 RTP/AVP 0\r\n");
    for _ in 0..MAX_LINES {
        many_lines.push_str("a=x\n");
    }
    assert_eq!(
        parse_error(&many_lines),
        SdpError::TooManyLines { max: MAX_LINES }
    );

    let mut many_media = offer_with_media("");
    for _ in 0..=MAX_MEDIA_SECTIONS {
        many_media.push_str("m=video 0 RTP/AVP 31\r\n");
    }
    assert_eq!(
        parse_error(&many_media),
        SdpError::TooManyMediaSections {
            line: 6 + MAX_MEDIA_SECTIONS,
            max: MAX_MEDIA_SECTIONS
        }
    );

    let formats: Vec<String> = (0..=MAX_FORMATS_PER_MEDIA)
        .map(|i| (i % 128).to_string())
        .collect();
    let many_formats = offer_with_media(&format!("m=audio 5000 RTP/AVP {}\r\n", formats.join(" ")));
    assert_invalid_at(&many_formats, 6, "too many formats on m= line");
}

#[test]
fn quotes_long_offending_text_truncated() {
    let long_port = "9".repeat(500);
    let error = parse_error(&offer_with_media(&format!(
        "m=audio {long_port} RTP/AVP 0\r\n"
    )));
    let SdpError::Invalid { found, .. } = &error else {
        panic!("unexpected {error:?}");
    };
    assert_eq!(found.chars().count(), 65);
    assert!(found.ends_with('…'));
}

// ---------------------------------------------------------------- answering

#[test]
fn answers_sipp_default_offer() {
    let (negotiated, sdp) = answer_to(SIPP_DEFAULT_OFFER);
    assert_eq!(
        negotiated,
        Negotiated {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: None,
            remote_rtp: Some("127.0.1.1:6000".parse().unwrap()),
            remote_direction: Direction::SendRecv,
            ptime: None,
            srtp: None,
        }
    );
    assert_eq!(
        sdp,
        "v=0\r\n\
o=hotline 1000 1 IN IP4 192.0.2.10\r\n\
s=hotline\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
    );
}

#[test]
fn answers_softphone_offer_with_its_first_g711_and_telephone_event() {
    let (negotiated, sdp) = answer_to(SOFTPHONE_OFFER);
    assert_eq!(negotiated.codec, Codec::Pcma);
    assert_eq!(negotiated.payload_type, 8);
    assert_eq!(negotiated.telephone_event, Some(101));
    assert_eq!(
        negotiated.remote_rtp,
        Some("10.0.0.23:4002".parse().unwrap())
    );
    assert_eq!(negotiated.local_direction(), Direction::SendRecv);
    assert_eq!(
        sdp,
        "v=0\r\n\
o=hotline 1000 1 IN IP4 192.0.2.10\r\n\
s=hotline\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
    );
}

#[test]
fn honours_offer_codec_order() {
    let pcmu_first = offer_with_media("m=audio 5000 RTP/AVP 18 0 8\r\n");
    assert_eq!(answer_to(&pcmu_first).0.codec, Codec::Pcmu);
    let pcma_first = offer_with_media("m=audio 5000 RTP/AVP 18 8 0\r\n");
    let (negotiated, sdp) = answer_to(&pcma_first);
    assert_eq!(
        (negotiated.codec, negotiated.payload_type),
        (Codec::Pcma, 8)
    );
    assert!(sdp.contains("m=audio 40000 RTP/AVP 8\r\n"), "{sdp}");
    assert!(!sdp.contains("PCMU"), "{sdp}");
}

#[test]
fn g729_only_offer_is_incompatible_media_format() {
    let offer = offer_with_media(
        "m=audio 5000 RTP/AVP 18 101\r\na=rtpmap:18 G729/8000\r\na=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n",
    );
    let error = answer(&parse(&offer), &local_v4()).unwrap_err();
    assert_eq!(
        error,
        NegotiationError::NoCommonCodec {
            offered_formats: "18 G729/8000, 101 telephone-event/8000".into()
        }
    );
    assert_eq!(error.warning_code(), 305);
    assert_eq!(
        error.warning_header(),
        "305 hotline \"Incompatible media format\""
    );
}

#[test]
fn video_only_offer_is_media_type_not_available() {
    let offer = offer_with_media("m=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
    let error = answer(&parse(&offer), &local_v4()).unwrap_err();
    assert_eq!(error, NegotiationError::MediaTypeNotAvailable);
    assert_eq!(
        error.warning_header(),
        "304 hotline \"Media type not available\""
    );
}

#[test]
fn disabled_audio_only_is_media_type_not_available() {
    let offer = offer_with_media("m=audio 0 RTP/AVP 0\r\nm=video 5002 RTP/AVP 31\r\n");
    assert_eq!(
        answer(&parse(&offer), &local_v4()).unwrap_err(),
        NegotiationError::MediaTypeNotAvailable
    );
}

#[test]
fn secure_audio_only_is_incompatible_transport() {
    let offer = offer_with_media(
        "m=audio 5000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\r\n\
m=audio 5002 UDP/TLS/RTP/SAVPF 0\r\n",
    );
    let error = answer(&parse(&offer), &local_v4()).unwrap_err();
    assert_eq!(
        error,
        NegotiationError::IncompatibleTransport {
            proto: "RTP/SAVP".into()
        }
    );
    assert_eq!(
        error.warning_header(),
        "302 hotline \"Incompatible transport protocol\""
    );
}

#[test]
fn codec_mismatch_beats_transport_mismatch_in_error() {
    let offer = offer_with_media("m=audio 5000 RTP/SAVP 0\r\nm=audio 5002 RTP/AVP 18\r\n");
    let error = answer(&parse(&offer), &local_v4()).unwrap_err();
    assert_eq!(error.warning_code(), 305);
}

#[test]
fn accepts_dynamic_payload_types_for_g711() {
    let offer = offer_with_media(
        "m=audio 5000 RTP/AVP 97 96 0\r\na=rtpmap:97 PCMU/16000\r\na=rtpmap:96 pcma/8000/1\r\n",
    );
    let (negotiated, sdp) = answer_to(&offer);
    assert_eq!(
        (negotiated.codec, negotiated.payload_type),
        (Codec::Pcma, 96)
    );
    assert!(
        sdp.contains("m=audio 40000 RTP/AVP 96\r\na=rtpmap:96 PCMA/8000\r\n"),
        "{sdp}"
    );
}

#[test]
fn explicit_rtpmap_overrides_static_payload_type_meaning() {
    let offer = offer_with_media("m=audio 5000 RTP/AVP 0 8\r\na=rtpmap:0 G729/8000\r\n");
    let (negotiated, _) = answer_to(&offer);
    assert_eq!(
        (negotiated.codec, negotiated.payload_type),
        (Codec::Pcma, 8)
    );
}

#[test]
fn stereo_g711_is_not_accepted() {
    let offer = offer_with_media("m=audio 5000 RTP/AVP 96\r\na=rtpmap:96 PCMU/8000/2\r\n");
    assert_eq!(
        answer(&parse(&offer), &local_v4())
            .unwrap_err()
            .warning_code(),
        305
    );
}

#[test]
fn telephone_event_on_any_payload_type_case_insensitive() {
    let offer = offer_with_media(
        "m=audio 5000 RTP/AVP 0 97 96\r\n\
a=rtpmap:97 telephone-event/48000\r\n\
a=rtpmap:96 TELEPHONE-EVENT/8000\r\n\
a=fmtp:96 0-15,66,70\r\n",
    );
    let (negotiated, sdp) = answer_to(&offer);
    assert_eq!(negotiated.telephone_event, Some(96));
    assert!(
        sdp.contains(
            "m=audio 40000 RTP/AVP 0 96\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15,66,70\r\n"
        ),
        "{sdp}"
    );
}

#[test]
fn telephone_event_rtpmap_for_unlisted_payload_type_is_ignored() {
    let offer = offer_with_media("m=audio 5000 RTP/AVP 0\r\na=rtpmap:101 telephone-event/8000\r\n");
    let (negotiated, sdp) = answer_to(&offer);
    assert_eq!(negotiated.telephone_event, None);
    assert!(sdp.contains("m=audio 40000 RTP/AVP 0\r\n"), "{sdp}");
}

#[test]
fn malformed_or_missing_telephone_event_fmtp_is_not_echoed() {
    let with_fmtp = |fmtp: &str| {
        offer_with_media(&format!(
            "m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{fmtp}"
        ))
    };
    for fmtp in [
        "",
        "a=fmtp:101 0-15;x=1\r\n",
        "a=fmtp:101\r\n",
        "a=fmtp:101 0-\r\n",
    ] {
        let (negotiated, sdp) = answer_to(&with_fmtp(fmtp));
        assert_eq!(negotiated.telephone_event, Some(101));
        assert!(
            sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"),
            "{sdp}"
        );
        assert!(!sdp.contains("a=fmtp"), "{fmtp:?} gave {sdp}");
    }
}

#[test]
fn directions_are_mirrored() {
    let cases = [
        ("a=sendrecv\r\n", Direction::SendRecv, "a=sendrecv"),
        ("", Direction::SendRecv, "a=sendrecv"),
        ("a=sendonly\r\n", Direction::SendOnly, "a=recvonly"),
        ("a=recvonly\r\n", Direction::RecvOnly, "a=sendonly"),
        ("a=inactive\r\n", Direction::Inactive, "a=inactive"),
    ];
    for (attribute, remote, answered) in cases {
        let offer = offer_with_media(&format!("m=audio 5000 RTP/AVP 0\r\n{attribute}"));
        let (negotiated, sdp) = answer_to(&offer);
        assert_eq!(negotiated.remote_direction, remote, "{attribute:?}");
        assert_eq!(
            negotiated.remote_rtp,
            Some("198.51.100.7:5000".parse().unwrap())
        );
        assert!(
            sdp.ends_with(&format!("{answered}\r\n")),
            "{attribute:?}: {sdp}"
        );
        assert_eq!(
            sdp.matches("a=sendrecv").count()
                + sdp.matches("a=sendonly").count()
                + sdp.matches("a=recvonly").count()
                + sdp.matches("a=inactive").count(),
            1
        );
    }
}

#[test]
fn hold_reoffer_with_sendonly_keeps_address() {
    let reoffer = SIPP_DEFAULT_OFFER.replace("2353687637", "2353687638") + "a=sendonly\r\n";
    let offer = parse(&reoffer);
    assert_eq!(offer.origin.session_version, 2353687638);
    let (negotiated, sdp) = answer(&offer, &local_v4()).unwrap();
    assert_eq!(negotiated.remote_direction, Direction::SendOnly);
    assert_eq!(negotiated.local_direction(), Direction::RecvOnly);
    assert_eq!(
        negotiated.remote_rtp,
        Some("127.0.1.1:6000".parse().unwrap())
    );
    assert!(sdp.ends_with("a=recvonly\r\n"), "{sdp}");
}

#[test]
fn hold_with_zero_connection_address() {
    let held = SIPP_DEFAULT_OFFER.replace("c=IN IP4 127.0.1.1", "c=IN IP4 0.0.0.0");
    let (negotiated, sdp) = answer_to(&held);
    assert_eq!(negotiated.remote_rtp, None);
    assert_eq!(negotiated.remote_direction, Direction::SendOnly);
    assert!(sdp.ends_with("a=recvonly\r\n"), "{sdp}");
    // Our own address is real regardless of the peer's hold.
    assert!(sdp.contains("c=IN IP4 192.0.2.10\r\n"), "{sdp}");

    let held_inactive = format!("{held}a=inactive\r\n");
    let (negotiated, sdp) = answer_to(&held_inactive);
    assert_eq!(
        (negotiated.remote_rtp, negotiated.remote_direction),
        (None, Direction::Inactive)
    );
    assert!(sdp.ends_with("a=inactive\r\n"), "{sdp}");

    let held_recvonly = format!("{held}a=recvonly\r\n");
    assert_eq!(
        answer_to(&held_recvonly).0.remote_direction,
        Direction::Inactive
    );

    let held_v6 = offer_with_media("m=audio 5000 RTP/AVP 0\r\nc=IN IP6 ::\r\n");
    let (negotiated, _) = answer_to(&held_v6);
    assert_eq!(
        (negotiated.remote_rtp, negotiated.remote_direction),
        (None, Direction::SendOnly)
    );
}

#[test]
fn ipv6_offer_and_ipv6_local_address() {
    let offer = "v=0\r\no=- 5 5 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 8\r\n";
    let local = LocalMedia {
        addr: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10)),
        ..local_v4()
    };
    let (negotiated, sdp) = answer(&parse(offer), &local).unwrap();
    assert_eq!(
        negotiated.remote_rtp,
        Some(SocketAddr::new("2001:db8::1".parse().unwrap(), 6000))
    );
    assert!(
        sdp.contains("o=hotline 1000 1 IN IP6 2001:db8::10\r\n"),
        "{sdp}"
    );
    assert!(sdp.contains("c=IN IP6 2001:db8::10\r\n"), "{sdp}");
}

#[test]
fn video_first_then_audio_keeps_m_line_order() {
    let offer = offer_with_media(
        "m=video 5002 RTP/AVP 96 31\r\na=rtpmap:96 H264/90000\r\n\
m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
m=audio 5004 RTP/AVP 8\r\n\
m=audio 5006 RTP/SAVP 0\r\n\
m=application 5008 UDP/DTLS/SCTP webrtc-datachannel\r\n\
m=image 5010 udptl t38\r\n",
    );
    let parsed = parse(&offer);
    let (negotiated, sdp) = answer(&parsed, &local_v4()).unwrap();
    assert_eq!(
        negotiated.remote_rtp,
        Some("198.51.100.7:5000".parse().unwrap())
    );
    assert_eq!(
        media_lines(&sdp),
        vec![
            "m=video 0 RTP/AVP 96",
            "m=audio 40000 RTP/AVP 0 101",
            "m=audio 0 RTP/AVP 8",
            "m=audio 0 RTP/SAVP 0",
            "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
            "m=image 0 udptl t38",
        ]
    );
    // The attributes follow the accepted m-line, not a rejected one.
    let accepted = sdp.split("m=").nth(2).unwrap();
    assert!(
        accepted.contains("a=rtpmap:101 telephone-event/8000"),
        "{sdp}"
    );
    assert_eq!(parse(&sdp).media.len(), parsed.media.len());
}

#[test]
fn skips_audio_without_g711_and_takes_a_later_one() {
    let offer = offer_with_media(
        "m=audio 5000 RTP/AVP 9\r\nm=audio 0 RTP/AVP 0\r\nm=audio 5004 RTP/AVP 8\r\n",
    );
    let (negotiated, sdp) = answer_to(&offer);
    assert_eq!(
        negotiated.remote_rtp,
        Some("198.51.100.7:5004".parse().unwrap())
    );
    assert_eq!(
        media_lines(&sdp),
        vec![
            "m=audio 0 RTP/AVP 9",
            "m=audio 0 RTP/AVP 0",
            "m=audio 40000 RTP/AVP 8"
        ]
    );
}

#[test]
fn media_level_connection_overrides_session_level() {
    let offer = offer_with_media(
        "m=video 5002 RTP/AVP 31\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP4 203.0.113.9\r\n",
    );
    let parsed = parse(&offer);
    assert_eq!(
        parsed.effective_connection(&parsed.media[0]),
        Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)))
    );
    let (negotiated, _) = answer(&parsed, &local_v4()).unwrap();
    assert_eq!(
        negotiated.remote_rtp,
        Some("203.0.113.9:5000".parse().unwrap())
    );

    let session_only = offer_with_media("m=audio 5000 RTP/AVP 0\r\n");
    assert_eq!(
        answer_to(&session_only).0.remote_rtp,
        Some("198.51.100.7:5000".parse().unwrap())
    );

    let media_only = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP4 10.9.9.9\r\n";
    assert_eq!(
        answer_to(media_only).0.remote_rtp,
        Some("10.9.9.9:5000".parse().unwrap())
    );
}

#[test]
fn session_level_direction_applies_unless_media_overrides() {
    let session_sendonly =
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=sendonly\r\n";
    let inherited = format!("{session_sendonly}m=audio 5000 RTP/AVP 0\r\n");
    assert_eq!(
        answer_to(&inherited).0.remote_direction,
        Direction::SendOnly
    );
    let overridden = format!("{session_sendonly}m=audio 5000 RTP/AVP 0\r\na=inactive\r\n");
    assert_eq!(
        answer_to(&overridden).0.remote_direction,
        Direction::Inactive
    );
}

#[test]
fn records_peer_ptime_but_answers_20() {
    let offer = offer_with_media("m=audio 5000 RTP/AVP 0\r\na=ptime:30\r\na=maxptime:60\r\n");
    let (negotiated, sdp) = answer_to(&offer);
    assert_eq!(negotiated.ptime, Some(30));
    assert!(
        sdp.contains("a=ptime:20\r\n") && !sdp.contains("ptime:30"),
        "{sdp}"
    );
}

#[test]
fn answer_uses_local_session_identity() {
    let local = LocalMedia {
        session_id: 18_446_744_073_709_551_615,
        session_version: 7,
        rtp_port: 10_002,
        ..local_v4()
    };
    let (_, sdp) = answer(&parse(SIPP_DEFAULT_OFFER), &local).unwrap();
    let reparsed = parse(&sdp);
    assert_eq!(reparsed.origin.username, "hotline");
    assert_eq!(reparsed.origin.session_id, u64::MAX);
    assert_eq!(reparsed.origin.session_version, 7);
    assert_eq!(reparsed.session_name.as_deref(), Some("hotline"));
    assert_eq!(reparsed.media[0].port, 10_002);
    assert!(sdp.lines().all(|line| !line.is_empty()));
    assert_eq!(sdp.matches("\r\n").count(), sdp.matches('\n').count());
}

// ---------------------------------------------------------------- our offers

#[test]
fn offer_text_is_exact() {
    assert_eq!(
        offer(&local_v4(), &[Codec::Pcmu, Codec::Pcma]),
        "v=0\r\n\
o=hotline 1000 1 IN IP4 192.0.2.10\r\n\
s=hotline\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
    );
}

#[test]
fn offer_codec_list_is_deduplicated_and_defaults_when_empty() {
    let local = local_v4();
    assert!(offer(&local, &[]).contains("m=audio 40000 RTP/AVP 0 8 101\r\n"));
    let pcma_only = offer(&local, &[Codec::Pcma, Codec::Pcma]);
    assert!(
        pcma_only.contains("m=audio 40000 RTP/AVP 8 101\r\n"),
        "{pcma_only}"
    );
    assert!(!pcma_only.contains("PCMU"), "{pcma_only}");
}

#[test]
fn our_offer_parses_back_with_parse_answer() {
    let codecs = [Codec::Pcma, Codec::Pcmu];
    let text = offer(&local_v4(), &codecs);
    let parsed = parse(&text);
    let negotiated = parse_answer(&codecs, &parsed).unwrap();
    assert_eq!(
        negotiated,
        Negotiated {
            codec: Codec::Pcma,
            payload_type: 8,
            telephone_event: Some(101),
            remote_rtp: Some("192.0.2.10:40000".parse().unwrap()),
            remote_direction: Direction::SendRecv,
            ptime: Some(20),
            srtp: None,
        }
    );
}

#[test]
fn offer_answer_round_trip_between_two_hotlines() {
    let caller = local_v4();
    let callee = LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)),
        rtp_port: 50000,
        session_id: 77,
        session_version: 3,
    };
    let our_offer = offer(&caller, &[Codec::Pcmu, Codec::Pcma]);
    let (callee_view, answer_text) = answer(&parse(&our_offer), &callee).unwrap();
    let caller_view = parse_answer(&[Codec::Pcmu, Codec::Pcma], &parse(&answer_text)).unwrap();
    assert_eq!(callee_view.codec, caller_view.codec);
    assert_eq!(callee_view.payload_type, caller_view.payload_type);
    assert_eq!(caller_view.telephone_event, Some(101));
    assert_eq!(
        callee_view.remote_rtp,
        Some("192.0.2.10:40000".parse().unwrap())
    );
    assert_eq!(
        caller_view.remote_rtp,
        Some("192.0.2.20:50000".parse().unwrap())
    );
}

#[test]
fn parse_answer_takes_first_offered_codec_in_answer_order() {
    let answer_text = offer_with_media("m=audio 6000 RTP/AVP 9 0 8\r\na=sendonly\r\n");
    let negotiated = parse_answer(&[Codec::Pcma], &parse(&answer_text)).unwrap();
    assert_eq!(
        (negotiated.codec, negotiated.payload_type),
        (Codec::Pcma, 8)
    );
    assert_eq!(negotiated.remote_direction, Direction::SendOnly);
    assert_eq!(negotiated.local_direction(), Direction::RecvOnly);
    assert_eq!(negotiated.telephone_event, None);
}

#[test]
fn parse_answer_errors() {
    let rejected = offer_with_media("m=audio 0 RTP/AVP 0\r\n");
    assert_eq!(
        parse_answer(&[Codec::Pcmu], &parse(&rejected)).unwrap_err(),
        NegotiationError::MediaTypeNotAvailable
    );
    let no_media = offer_with_media("");
    assert_eq!(
        parse_answer(&[Codec::Pcmu], &parse(&no_media)).unwrap_err(),
        NegotiationError::MediaTypeNotAvailable
    );
    let video = offer_with_media("m=video 6000 RTP/AVP 31\r\n");
    assert_eq!(
        parse_answer(&[Codec::Pcmu], &parse(&video)).unwrap_err(),
        NegotiationError::MediaTypeNotAvailable
    );
    let not_offered = offer_with_media("m=audio 6000 RTP/AVP 8\r\n");
    assert_eq!(
        parse_answer(&[Codec::Pcmu], &parse(&not_offered)).unwrap_err(),
        NegotiationError::NoCommonCodec {
            offered_formats: "8".into()
        }
    );
    let secure = offer_with_media("m=audio 6000 RTP/SAVP 0\r\n");
    assert_eq!(
        parse_answer(&[Codec::Pcmu], &parse(&secure))
            .unwrap_err()
            .warning_code(),
        302
    );
}

// ---------------------------------------------------------------- fuzzing

/// xorshift64*: deterministic, dependency-free randomness for the mutation fuzzer.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

const FUZZ_TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b" ",
    b"/",
    b":",
    b"=",
    b"-",
    b"0",
    b"8",
    b"101",
    b"127",
    b"128",
    b"65535",
    b"65536",
    b"18446744073709551616",
    b"0.0.0.0",
    b"::",
    b"IN IP6 ::1",
    b"m=audio 1 RTP/AVP 0\r\n",
    b"m=video 2 RTP/SAVP 96\r\n",
    b"c=IN IP4 1.2.3.4\r\n",
    b"a=rtpmap:",
    b"a=fmtp:101 ",
    b"a=sendonly\r\n",
    b"a=recvonly\r\n",
    b"a=inactive\r\n",
    b"a=ptime:",
    b"telephone-event/8000",
    b"PCMA/8000",
    b"pcmu/8000/1",
    b"v=0\r\n",
    b"o=- 1 1 IN IP4 1.1.1.1\r\n",
    "\u{00e9}".as_bytes(),
    b"\xff",
    b"\xc3",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    let position = rng.below(input.len() + 1);
    match rng.below(7) {
        0 => {
            if let Some(byte) = input.get_mut(position) {
                *byte = rng.next() as u8;
            }
        }
        1 => input.insert(position, rng.next() as u8),
        2 => {
            let end = (position + rng.below(16)).min(input.len());
            input.drain(position..end);
        }
        3 => {
            let token = FUZZ_TOKENS[rng.below(FUZZ_TOKENS.len())];
            input.splice(position..position, token.iter().copied());
        }
        4 => {
            let end = (position + rng.below(64)).min(input.len());
            let copy: Vec<u8> = input[position..end].to_vec();
            let at = rng.below(input.len() + 1);
            input.splice(at..at, copy);
        }
        5 => input.truncate(position),
        _ => {
            if let Some(byte) = input.get_mut(position) {
                if byte.is_ascii_digit() {
                    *byte = b'0' + rng.below(10) as u8;
                }
            }
        }
    }
}

/// Everything that parses must answer or fail cleanly, and our answer must parse back into
/// the same negotiation with the same m-line count. Returns whether an answer was produced.
fn check_invariants(input: &[u8]) -> bool {
    let Ok(offer) = SessionDescription::parse(input) else {
        return false;
    };
    match answer(&offer, &local_v4()) {
        Ok((negotiated, text)) => {
            let reparsed = SessionDescription::parse(text.as_bytes())
                .unwrap_or_else(|e| panic!("answer does not parse: {e}\n{text}"));
            assert_eq!(reparsed.media.len(), offer.media.len(), "{text}");
            let ours = parse_answer(&[Codec::Pcmu, Codec::Pcma], &reparsed);
            // parse_answer reads the first m-line; only compare when that is our stream.
            if reparsed.media.first().is_some_and(|m| m.port != 0) {
                let ours = ours.unwrap_or_else(|e| panic!("{e}\n{text}"));
                assert_eq!(ours.codec, negotiated.codec);
                assert_eq!(ours.payload_type, negotiated.payload_type);
                assert_eq!(ours.telephone_event, negotiated.telephone_event);
                assert_eq!(ours.remote_direction, negotiated.local_direction());
            }
            true
        }
        Err(error) => {
            assert!(!error.warning_header().is_empty());
            false
        }
    }
}

#[test]
fn mutation_fuzzer_never_panics() {
    let seeds: [&[u8]; 4] = [
        SOFTPHONE_OFFER.as_bytes(),
        SIPP_DEFAULT_OFFER.as_bytes(),
        b"v=0\no=- 1 1 IN IP6 ::1\nc=IN IP6 2001:db8::1\nm=video 5 RTP/AVP 96\nm=audio 6 RTP/AVP 96 0\na=rtpmap:96 PCMU/8000\na=sendonly\n",
        b"v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5000 RTP/AVP 18 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=inactive\r\n",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut answered = 0;
    for iteration in 0..10_000 {
        let mut input = seeds[iteration % seeds.len()].to_vec();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut input);
        }
        if check_invariants(&input) {
            answered += 1;
        }
    }
    // The fuzzer must exercise the negotiation path too, not only the parse error paths.
    assert!(answered > 1_000, "only {answered} mutants were answered");
}

// ---------------------------------------------------------------- small helpers

#[test]
fn direction_helpers() {
    use Direction::*;
    for direction in [SendRecv, SendOnly, RecvOnly, Inactive] {
        assert_eq!(direction.reversed().reversed(), direction);
        assert_eq!(
            Direction::from_attribute_name(direction.attribute_name()),
            Some(direction)
        );
        assert_eq!(direction.sends(), direction.reversed().receives());
    }
    assert!(SendRecv.sends() && SendRecv.receives());
    assert!(SendOnly.sends() && !SendOnly.receives());
    assert!(!RecvOnly.sends() && RecvOnly.receives());
    assert!(!Inactive.sends() && !Inactive.receives());
    assert_eq!(Direction::from_attribute_name("SENDRECV"), None);
}

#[test]
fn codec_helpers() {
    for codec in [Codec::Pcmu, Codec::Pcma] {
        assert_eq!(
            Codec::from_static_payload_type(codec.static_payload_type()),
            Some(codec)
        );
        assert_eq!(codec.clock_rate(), 8000);
        let rtpmap = RtpMap {
            payload_type: 96,
            encoding_name: codec.encoding_name().to_lowercase(),
            clock_rate: 8000,
            encoding_parameters: None,
        };
        assert_eq!(Codec::from_rtpmap(&rtpmap), Some(codec));
    }
    assert_eq!(Codec::from_static_payload_type(18), None);
}
