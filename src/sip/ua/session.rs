//! One INVITE session of the user agent, whichever side placed it: its dialog, its offer/answer
//! state, the 2xx we resend until the ACK, and the transfer it may have under way.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sdp::{
    self, Codec, LocalMedia, Negotiated, NegotiationError, SessionDescription, SrtpOffer,
    SrtpPolicy,
};
use crate::sip::dialog::{Dialog, DialogKey};
use crate::sip::transaction::{TimerConfig, TxKey};
use crate::sip::transport::Peer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// We answered the INVITE (a caller).
    Uas,
    /// We sent the INVITE (an agent's phone).
    Uac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionState {
    /// UAS: INVITE received, not yet accepted (no RTP port yet).
    Offered,
    /// UAS: accepted and maybe ringing, final answer not sent. UAC: INVITE sent.
    Early,
    /// We sent a 2xx (to the INVITE or a re-INVITE) and resend it until the ACK.
    AwaitingAck,
    Confirmed,
    /// UAC: we cancelled the INVITE and wait for its final response.
    Cancelling,
    /// We sent BYE and wait for its response.
    Terminating,
}

/// What a transaction of ours is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TxPurpose {
    Invite,
    Bye,
    Refer,
}

/// A 2xx to (re-)INVITE resent until the ACK (§13.3.1.4): after T1, doubling up to T2, given up
/// after 64·T1.
#[derive(Debug)]
pub(super) struct Pending2xx {
    pub(super) bytes: Bytes,
    pub(super) cseq: u32,
    pub(super) interval: Duration,
    pub(super) give_up_at: Instant,
    /// Offer-less INVITE: our offer went in the 2xx and the answer comes in the ACK.
    pub(super) awaiting_answer: bool,
}

impl Pending2xx {
    pub(super) fn new(
        bytes: Bytes,
        cseq: u32,
        awaiting_answer: bool,
        now: Instant,
        timers: &TimerConfig,
    ) -> Self {
        Pending2xx {
            bytes,
            cseq,
            interval: timers.t1,
            give_up_at: now + timers.t1 * 64,
            awaiting_answer,
        }
    }

    /// After a resend: when the next one is due (the interval doubles up to T2).
    pub(super) fn next_resend(&mut self, now: Instant, t2: Duration) -> Instant {
        self.interval = (self.interval * 2).min(t2);
        (now + self.interval).min(self.give_up_at)
    }
}

/// Our side of the offer/answer exchange (RFC 3264).
#[derive(Debug)]
pub(super) struct SdpState {
    pub(super) rtp_port: u16,
    /// o= session id stays; the version grows with each new description we send.
    pub(super) session_id: u64,
    pub(super) version: u64,
    pub(super) negotiated: Option<Negotiated>,
    /// The description to send in our next 2xx (answer, or our offer for an offer-less INVITE).
    pub(super) pending_body: Option<String>,
    /// The leg's SRTP policy and whether its signalling is secure, fixed when the session began.
    pub(super) policy: SrtpPolicy,
    /// What our latest offer said about SRTP (our keys), to check the answer against.
    pub(super) srtp_offer: SrtpOffer,
}

impl SdpState {
    pub(super) fn new(rtp_port: u16, session_id: u64, policy: SrtpPolicy) -> SdpState {
        SdpState {
            rtp_port,
            session_id,
            version: 1,
            negotiated: None,
            pending_body: None,
            policy,
            srtp_offer: SrtpOffer::plain(),
        }
    }

    /// Our offer with `local` and `codecs` (fresh SRTP keys from `keys` where the policy
    /// allows), remembered for the answer.
    pub(super) fn make_offer(
        &mut self,
        local: &LocalMedia,
        codecs: &[Codec],
        keys: &mut (impl rand::RngCore + ?Sized),
    ) -> Result<String, NegotiationError> {
        self.srtp_offer = self.policy.offer(keys)?;
        Ok(sdp::offer_with(local, codecs, &self.srtp_offer))
    }

    /// Our answer to the peer's `offer` under the session's policy; an unchanged SRTP line
    /// keeps the keys in use.
    pub(super) fn answer(
        &self,
        offer: &SessionDescription,
        local: &LocalMedia,
        keys: &mut (impl rand::RngCore + ?Sized),
    ) -> Result<(Negotiated, String), NegotiationError> {
        let current = self.negotiated.as_ref().and_then(|n| n.srtp.as_ref());
        sdp::reanswer_with(offer, local, self.policy, current, keys)
    }

    /// Reads the peer's answer to our latest offer.
    pub(super) fn read_answer(
        &self,
        answer: &SessionDescription,
    ) -> Result<Negotiated, NegotiationError> {
        sdp::parse_answer_with(&self.offer_codecs(), &self.srtp_offer, answer)
    }

    pub(super) fn local(&self, public_ip: std::net::IpAddr) -> LocalMedia {
        LocalMedia {
            addr: public_ip,
            rtp_port: self.rtp_port,
            session_id: self.session_id,
            session_version: self.version,
        }
    }

    /// The codecs we offer: what is in use, else both G.711 laws.
    pub(super) fn offer_codecs(&self) -> Vec<Codec> {
        match &self.negotiated {
            Some(negotiated) => vec![negotiated.codec],
            None => vec![Codec::Pcmu, Codec::Pcma],
        }
    }
}

#[derive(Debug)]
pub(super) struct Session {
    pub(super) role: Role,
    pub(super) span: tracing::Span,
    pub(super) state: SessionState,
    pub(super) call_id: String,
    /// Our tag: To tag as UAS, From tag as UAC.
    pub(super) local_tag: String,
    /// The INVITE received (UAS) or sent (UAC), while responses to it (UAS) or the dialog
    /// (UAC) are still built from it; dropped when the call is answered, so an hour-long call
    /// does not carry its INVITE.
    pub(super) invite: Option<Box<rsip::Request>>,
    pub(super) invite_tx: Option<TxKey>,
    /// Where the session's requests go: where the INVITE came from (callers sit
    /// behind NAT, trunks reuse their TCP connection), or the address we called.
    pub(super) peer: Peer,
    /// UAS: from the INVITE; UAC: from the 2xx.
    pub(super) dialog: Option<Dialog>,
    pub(super) sdp: Option<SdpState>,
    pub(super) pending_2xx: Option<Pending2xx>,
    /// UAC: the ACK we sent for the 2xx, resent when the 2xx is retransmitted.
    pub(super) ack: Option<Bytes>,
    /// The far end has shown it is where it says (the ACK for our first 2xx, or its own 2xx):
    /// only then does media go to the address its SDP names, so a spoofed INVITE cannot aim
    /// our RTP at a victim.
    pub(super) confirmed: bool,
    /// The REFER under way, if any.
    pub(super) transfer: Option<Transfer>,
    /// UAC: what answers a 401/407 to our INVITE (a carrier's trunk), once.
    pub(super) credentials: Option<DigestCredentials>,
    /// A REFER from the far end waiting for the switchboard's yes or no.
    pub(super) pending_refer: Option<Box<(TxKey, rsip::Request)>>,
}

/// A user name and password a carrier challenges our INVITEs for.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for DigestCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DigestCredentials({}, ***)", self.username)
    }
}

/// A REFER we sent (RFC 3515): where to, and whether the far end accepted it (202) so that
/// only its final NOTIFY is awaited.
#[derive(Debug)]
pub(super) struct Transfer {
    pub(super) target: String,
    pub(super) accepted: bool,
}

impl Session {
    pub(super) fn dialog_key(&self) -> DialogKey {
        DialogKey {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
        }
    }
}
