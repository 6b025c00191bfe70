//! Storm control's record in an aggregate event: which panics it stands
//! for, so every event id the SDK handed out still resolves, and a bounded
//! sample of what differed between them (trace, request, message).
//!
//! A folded panic's id is derived, not stored: the SDK gives each storm a
//! UUID prefix (the first 28 characters, version and variant included) and
//! each folded panic a sequence number, written as the last 8 hex digits.
//! An aggregate covers the numbers `seq_start..seq_end`, so a server keeps
//! one range per aggregate instead of one row per panic.

use serde::{Deserialize, Serialize};

use crate::event::Trace;

/// Most samples one aggregate keeps (the first and last 20 folded panics).
pub const MAX_STORM_SAMPLES: usize = 40;
/// Most distinct messages one aggregate keeps (one per message template).
pub const MAX_STORM_MESSAGES: usize = 20;
/// Length of a storm's id prefix: `xxxxxxxx-xxxx-4xxx-yxxx-xxxx`.
pub const STORM_ID_PREFIX_LEN: usize = 28;

/// `"storm"` of an aggregate event (one with a `"count"`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StormRecord {
    /// The last panic of this fingerprint sent on its own before the storm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_event_id: Option<String>,
    /// The storm's UUID prefix (see the module docs).
    pub id_prefix: String,
    /// First sequence number this aggregate covers.
    pub seq_start: u32,
    /// One past the last.
    pub seq_end: u32,
    /// The first and last folded panics, in order, at most [`MAX_STORM_SAMPLES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<StormSample>,
    /// One message per distinct message template among the folded panics,
    /// at most [`MAX_STORM_MESSAGES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
}

/// What differed in one folded panic.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StormSample {
    pub event_id: String,
    /// RFC 3339.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The id of folded panic `seq` of the storm with this prefix.
pub fn folded_event_id(id_prefix: &str, seq: u32) -> String {
    format!("{id_prefix}{seq:08x}")
}

/// The storm prefix and sequence number of an event id, for looking up the
/// aggregate that holds it. Any UUID splits; only a storm's resolves.
pub fn split_folded_id(event_id: &str) -> Option<(&str, u32)> {
    let id = event_id.trim();
    if id.len() != 36 || !id.is_char_boundary(STORM_ID_PREFIX_LEN) {
        return None;
    }
    let (prefix, seq) = id.split_at(STORM_ID_PREFIX_LEN);
    let seq = u32::from_str_radix(seq, 16).ok()?;
    Some((prefix, seq))
}

/// A storm prefix made of 96 bits (version and variant set): the first 28
/// characters of a UUID v4.
pub fn storm_id_prefix(high: u64, low: u32) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_be_bytes());
    bytes[8..12].copy_from_slice(&low.to_be_bytes());
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    id.hyphenated().to_string()[..STORM_ID_PREFIX_LEN].to_string()
}

impl StormRecord {
    /// Checks what a server relies on: a prefix that is a UUID's head and
    /// a non-empty range. Oversized sample lists are cut, not refused.
    pub fn validate(&mut self) -> Result<(), String> {
        let probe = folded_event_id(&self.id_prefix, 0);
        if self.id_prefix.len() != STORM_ID_PREFIX_LEN || uuid::Uuid::parse_str(&probe).is_err() {
            return Err("expected the first 28 characters of a UUID".into());
        }
        self.id_prefix = self.id_prefix.to_ascii_lowercase();
        if self.seq_end <= self.seq_start {
            return Err(format!(
                "seq_end ({}) must be greater than seq_start ({})",
                self.seq_end, self.seq_start
            ));
        }
        self.samples.truncate(MAX_STORM_SAMPLES);
        self.messages.truncate(MAX_STORM_MESSAGES);
        for m in &mut self.messages {
            let kept = crate::truncate_str(m, crate::decode::MAX_MESSAGE_BYTES).len();
            m.truncate(kept);
        }
        for s in &mut self.samples {
            if let Some(m) = &mut s.message {
                let kept = crate::truncate_str(m, crate::decode::MAX_MESSAGE_BYTES).len();
                m.truncate(kept);
            }
        }
        Ok(())
    }

    /// True when this aggregate stands for the folded panic with this id.
    pub fn holds(&self, event_id: &str) -> bool {
        split_folded_id(event_id).is_some_and(|(prefix, seq)| {
            prefix.eq_ignore_ascii_case(&self.id_prefix)
                && (self.seq_start..self.seq_end).contains(&seq)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_ids_are_uuids_that_split_back() {
        let prefix = storm_id_prefix(0x0123_4567_89ab_cdef, 0xdead_beef);
        assert_eq!(prefix.len(), STORM_ID_PREFIX_LEN);
        let id = folded_event_id(&prefix, 0x2a);
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(split_folded_id(&id), Some((prefix.as_str(), 0x2a)));
        let record = StormRecord {
            id_prefix: prefix.clone(),
            seq_start: 10,
            seq_end: 50,
            ..StormRecord::default()
        };
        assert!(record.holds(&folded_event_id(&prefix, 10)));
        assert!(record.holds(&folded_event_id(&prefix, 49)));
        assert!(!record.holds(&folded_event_id(&prefix, 50)));
        assert!(!record.holds("not an id"));
    }

    #[test]
    fn validation_names_what_is_wrong_and_cuts_samples() {
        let mut bad = StormRecord {
            id_prefix: "zz".into(),
            seq_start: 0,
            seq_end: 1,
            ..StormRecord::default()
        };
        assert!(bad.validate().is_err());
        let mut empty = StormRecord {
            id_prefix: storm_id_prefix(1, 2),
            seq_start: 5,
            seq_end: 5,
            ..StormRecord::default()
        };
        assert!(empty.validate().unwrap_err().contains("seq_end"));
        let mut big = StormRecord {
            id_prefix: storm_id_prefix(1, 2).to_uppercase(),
            seq_start: 0,
            seq_end: 100,
            samples: vec![StormSample::default(); 100],
            messages: vec!["m".into(); 100],
            ..StormRecord::default()
        };
        big.validate().unwrap();
        assert_eq!(big.samples.len(), MAX_STORM_SAMPLES);
        assert_eq!(big.messages.len(), MAX_STORM_MESSAGES);
        assert_eq!(big.id_prefix, big.id_prefix.to_lowercase());
    }
}
