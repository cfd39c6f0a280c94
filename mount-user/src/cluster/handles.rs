//! Gateway mode across nodes: a handle one node learns from upstream is written to
//! `P/handles/PATH`; the others adopt it from their watch (without asking upstream) and
//! postpone their own refresh of it, so a change upstream reaches every node.
use serde::{Deserialize, Serialize};

use mount_proto::exports::FileHandle;
use mount_proto::mount::client::MntAnswer;
use mount_proto::mount::learned::Learned;
use mount_proto::mount::FHSIZE3;

/// Learned answers waiting for the cluster task at most (a full queue skips a write; the
/// next refresh writes again).
pub const QUEUE: usize = 1024;

/// One MNT answer in JSON: a handle (hex) or a status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerJson {
    /// Status 0 and this handle, hex.
    Handle(String),
    /// A non-zero status.
    Status(u32),
}

/// The value of `P/handles/PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleValue {
    /// The node that asked upstream.
    pub by: String,
    /// The MNT v3 answer.
    pub v3: AnswerJson,
    /// The MNT v1 answer, when upstream serves v1.
    pub v1: Option<AnswerJson>,
}

fn to_json(a: &MntAnswer) -> AnswerJson {
    match a {
        MntAnswer::Handle(h) => AnswerJson::Handle(hex::encode(h.as_bytes())),
        MntAnswer::Status(s) => AnswerJson::Status(*s),
    }
}

fn from_json(a: &AnswerJson) -> Option<MntAnswer> {
    match a {
        AnswerJson::Status(s) => Some(MntAnswer::Status(*s)),
        AnswerJson::Handle(text) => {
            let raw = hex::decode(text).ok()?;
            if raw.is_empty() || raw.len() > FHSIZE3 {
                return None;
            }
            let mut bytes = [0u8; FHSIZE3];
            bytes[..raw.len()].copy_from_slice(&raw);
            Some(MntAnswer::Handle(FileHandle {
                len: u8::try_from(raw.len()).ok()?,
                bytes,
            }))
        }
    }
}

impl HandleValue {
    /// The value `node` writes for `learned`.
    pub fn new(node: &str, learned: &Learned) -> Self {
        Self {
            by: node.to_owned(),
            v3: to_json(&learned.v3),
            v1: learned.v1.as_ref().map(to_json),
        }
    }

    /// The JSON value.
    pub fn to_value(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a value; None when it is not one (logged by the caller with its key).
    pub fn parse(value: &[u8]) -> Option<Self> {
        serde_json::from_slice(value).ok()
    }

    /// The answers, or None when a handle is malformed.
    pub fn learned(&self) -> Option<Learned> {
        let v1 = match &self.v1 {
            Some(a) => Some(from_json(a)?),
            None => None,
        };
        Some(Learned {
            v3: from_json(&self.v3)?,
            v1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_handles_are_refused() {
        let mut bytes = [0u8; FHSIZE3];
        bytes[..4].copy_from_slice(&[1, 2, 3, 4]);
        let learned = Learned {
            v3: MntAnswer::Handle(FileHandle { len: 4, bytes }),
            v1: Some(MntAnswer::Status(13)),
        };
        let v = HandleValue::new("a", &learned);
        let back = HandleValue::parse(&v.to_value()).unwrap();
        assert_eq!(back.by, "a");
        assert_eq!(back.learned(), Some(learned));
        assert_eq!(back.v3, AnswerJson::Handle("01020304".into()));
        for bad in ["", "zz", &"00".repeat(FHSIZE3 + 1)] {
            let v = HandleValue {
                by: "a".into(),
                v3: AnswerJson::Handle(bad.to_string()),
                v1: None,
            };
            assert_eq!(v.learned(), None, "{bad:?}");
        }
        assert!(HandleValue::parse(b"nope").is_none());
    }
}
