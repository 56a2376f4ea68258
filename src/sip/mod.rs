//! SIP signalling: message parsing around rsip, stream framing, transactions, dialogs, and the
//! user-agent core that turns them into calls. Everything here is sans-I/O.

pub mod cidr;
pub mod dialog;
pub mod flood;

pub mod framing;
pub mod message;
pub mod registrar;
pub mod registration;
pub mod transaction;
pub mod transport;
pub mod ua;
