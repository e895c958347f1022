//! Operational records: what secpipe writes about its own work (`io.secpipe.ops.*`).
use serde::{Deserialize, Serialize};

use crate::codec::AvroRecord;

/// A record a stage could not process. Field docs live in `schemas/avro/ops/DeadLetter.v1.avsc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub stage: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(with = "serde_bytes")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub error: String,
    pub failed_at: i64,
}

impl AvroRecord for DeadLetter {
    const FULL_NAME: &'static str = "io.secpipe.ops.DeadLetter";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;

    #[test]
    fn dead_letter_keeps_the_original_bytes() {
        let codec = Codec::<DeadLetter>::new().unwrap();
        for key in [None, Some(b"repo".to_vec())] {
            let dl = DeadLetter {
                stage: "sink.clickhouse".into(),
                topic: "secpipe.scan-results".into(),
                partition: 2,
                offset: 41,
                key,
                payload: vec![0xC3, 0x01, 0xFF, 0x00],
                error: "unknown schema fingerprint".into(),
                failed_at: 5,
            };
            assert_eq!(codec.decode(&codec.encode(&dl).unwrap()).unwrap(), dl);
        }
    }
}
