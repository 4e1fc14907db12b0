//! The saved form of a [`PipelineModel`]: a versioned binary encoding with
//! a checksum, kept as base64 text in the `models.state` column, and the
//! reading of models saved as JSON by earlier releases.
//!
//! A binary model is a 16-byte header and a postcard payload:
//!
//! | bytes | field |
//! | ---: | --- |
//! | 0–3 | magic `PMMD` |
//! | 4–5 | payload format, little-endian ([`BINARY_FORMAT`], or [`WHOLE_POINTS_FORMAT`] of earlier releases) |
//! | 6–7 | reserved, 0 |
//! | 8–11 | payload length, little-endian |
//! | 12–15 | CRC-32 (IEEE) of the payload, little-endian |
//!
//! Floating-point state is written as raw IEEE-754 bytes (see
//! [`crate::detect::bits`]), so a restored model scores bit for bit like
//! the one saved. Anything that does not check out (base64, magic, format,
//! length, checksum, payload) is a [`ModelCodecError`] saying which; the
//! model bank then rebuilds the model from the stored history.

use base64::Engine as _;

use super::PipelineModel;
use crate::detect::rcf::{
    reading_every_value_stored, reading_parent_references, reading_whole_points,
};

/// `models.version` of a model saved as JSON (earlier releases).
pub const JSON_VERSION: i64 = 1;

/// `models.version` of a model saved in the binary format.
pub const BINARY_VERSION: i64 = 2;

/// Layout version of the binary payload inside the header; bump when the
/// model's fields change. Format 4 saves trees without parent
/// references; format 3, which saved them ([`PARENT_REFERENCES_FORMAT`]),
/// format 2, in which every value is stored ([`EVERY_VALUE_FORMAT`]), and
/// format 1, every point whole ([`WHOLE_POINTS_FORMAT`]), are still read.
pub const BINARY_FORMAT: u16 = 4;

/// The payload format of earlier releases whose trees save a parent
/// reference in every node and leaf (and leave out the input values that
/// never varied, as now); read as it is.
pub const PARENT_REFERENCES_FORMAT: u16 = 3;

/// The payload format of earlier releases whose forests store every input
/// value, each input once; read as it is.
pub const EVERY_VALUE_FORMAT: u16 = 2;

/// The payload format of earlier releases, whose point stores keep every
/// shingled point whole; read and converted on load.
pub const WHOLE_POINTS_FORMAT: u16 = 1;

const MAGIC: [u8; 4] = *b"PMMD";
const HEADER: usize = 16;

/// Why a saved model could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelCodecError {
    #[error("saved model is not valid base64 text: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("saved model is {len} bytes, shorter than its {HEADER}-byte header")]
    Truncated { len: usize },
    #[error("saved model does not start with the magic bytes PMMD (found {found:02x?})")]
    Magic { found: [u8; 4] },
    #[error(
        "saved model has payload format {found}; this release reads formats {WHOLE_POINTS_FORMAT} to {BINARY_FORMAT}"
    )]
    Format { found: u16 },
    #[error(
        "saved model payload is {found} bytes, its header says {expected} (truncated or padded)"
    )]
    Length { expected: usize, found: usize },
    #[error("saved model checksum mismatch: header says {stored:08x}, payload has {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("saved model payload does not decode: {0}")]
    Payload(#[from] postcard::Error),
    #[error("saved JSON model does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("saved model has version {0}, which this release does not know")]
    Version(i64),
}

/// The binary form of `model`: header and postcard payload.
pub fn encode(model: &PipelineModel) -> Result<Vec<u8>, ModelCodecError> {
    let payload = postcard::to_allocvec(model)?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&BINARY_FORMAT.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The model in `bytes` (the output of [`encode`]), after checking the
/// header, the length and the checksum.
pub fn decode(bytes: &[u8]) -> Result<PipelineModel, ModelCodecError> {
    if bytes.len() < HEADER {
        return Err(ModelCodecError::Truncated { len: bytes.len() });
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let found = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if found != MAGIC {
        return Err(ModelCodecError::Magic { found });
    }
    let format = u16::from_le_bytes([bytes[4], bytes[5]]);
    if !(WHOLE_POINTS_FORMAT..=BINARY_FORMAT).contains(&format) {
        return Err(ModelCodecError::Format { found: format });
    }
    let expected = word(8) as usize;
    let payload = &bytes[HEADER..];
    if payload.len() != expected {
        return Err(ModelCodecError::Length {
            expected,
            found: payload.len(),
        });
    }
    let stored = word(12);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(ModelCodecError::Checksum { stored, computed });
    }
    let read = || postcard::from_bytes(payload);
    Ok(match format {
        WHOLE_POINTS_FORMAT => {
            reading_parent_references(|| reading_every_value_stored(|| reading_whole_points(read)))?
        }
        EVERY_VALUE_FORMAT => reading_parent_references(|| reading_every_value_stored(read))?,
        PARENT_REFERENCES_FORMAT => reading_parent_references(read)?,
        _ => read()?,
    })
}

/// What goes in the `models` row: its version and the state text.
pub fn to_stored(model: &PipelineModel) -> Result<(i64, String), ModelCodecError> {
    let bytes = encode(model)?;
    Ok((
        BINARY_VERSION,
        base64::engine::general_purpose::STANDARD.encode(bytes),
    ))
}

/// The model in a `models` row of `version` holding `state`: binary, or
/// JSON from an earlier release (either point store layout).
pub fn from_stored(version: i64, state: &str) -> Result<PipelineModel, ModelCodecError> {
    match version {
        BINARY_VERSION => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(state.trim())?;
            decode(&bytes)
        }
        JSON_VERSION => Ok(serde_json::from_str(state)?),
        other => Err(ModelCodecError::Version(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineRules;
    use crate::domain::{ResourceMetrics, Run, RunStatus, TestCounts, Verdict};
    use crate::scoring::pipeline::EARLIER_PIPELINE_TIME_DECAY;

    fn run(i: u32) -> Run {
        let start: chrono::DateTime<chrono::Utc> = "2026-09-01T00:00:00Z".parse().unwrap();
        let start = start + chrono::Duration::hours(i64::from(i) * 5);
        let jitter = ((i * 7919) % 31) as f64 - 15.0;
        let slow = if i % 41 == 40 { 4.0 } else { 1.0 };
        let mut run = Run::new("codec", i.to_string(), RunStatus::Succeeded);
        run.started_at = Some(start);
        run.finished_at =
            Some(start + chrono::Duration::milliseconds(((300.0 + jitter) * slow * 1000.0) as i64));
        run.tests = Some(TestCounts {
            total: 500,
            failed: u64::from(i % 7 == 0),
            skipped: 0,
        });
        run.resources = Some(ResourceMetrics {
            cpu_peak_pct: Some(50.0 + jitter),
            mem_peak_mb: Some(1500.0 + 3.0 * jitter),
        });
        run
    }

    fn trained(runs: u32) -> PipelineModel {
        let mut model = PipelineModel::new("codec", 1.0);
        for i in 0..runs {
            model.observe(&run(i), &PipelineRules::default());
        }
        model
    }

    /// Both models give the same verdicts on the same next runs.
    fn same_verdicts(a: PipelineModel, b: PipelineModel, from: u32) {
        compare_verdicts(a, b, from, |va, vb| va == vb);
    }

    /// Both models give the same verdicts on the same next runs but for
    /// the order of the forest's floating-point sums: one stores every
    /// metric, the other leaves out those that never varied. The same
    /// runs are abnormal for the same metrics, and scores agree within a
    /// millionth.
    fn verdicts_within_rounding(a: PipelineModel, b: PipelineModel, from: u32) {
        compare_verdicts(a, b, from, |va, vb| vb.agrees_within(va, 1e-6));
    }

    fn compare_verdicts(
        mut a: PipelineModel,
        mut b: PipelineModel,
        from: u32,
        alike: impl Fn(&Verdict, &Verdict) -> bool,
    ) {
        let rules = PipelineRules::default();
        let mut abnormal = 0;
        for i in from..from + 120 {
            let (va, vb) = (a.observe(&run(i), &rules), b.observe(&run(i), &rules));
            abnormal += usize::from(va.is_anomalous());
            assert!(alike(&va, &vb), "run {i}: {va:?} vs {vb:?}");
        }
        assert!(abnormal > 0, "the slow runs are judged abnormal by both");
    }

    #[test]
    fn binary_round_trip_gives_the_same_verdicts() {
        let model = trained(300);
        let (version, state) = to_stored(&model).unwrap();
        assert_eq!(version, BINARY_VERSION);
        let restored = from_stored(version, &state).unwrap();
        assert_eq!(encode(&restored).unwrap(), encode(&model).unwrap());
        same_verdicts(model, restored, 300);
    }

    /// The small forest of the fixtures with the given time decay (the
    /// fixtures were saved with [`EARLIER_PIPELINE_TIME_DECAY`]), trained
    /// on the first `runs` runs, storing every value as the releases that
    /// saved them did.
    fn fixture_model(runs: u32, time_decay: f64) -> PipelineModel {
        let mut cfg = crate::scoring::pipeline::pipeline_detector_config(1.0, 7);
        cfg.trees = 5;
        cfg.sample_size = 16;
        cfg.time_decay = time_decay;
        let mut fresh = PipelineModel::with_detector(cfg);
        fresh.store_every_value();
        for i in 0..runs {
            fresh.observe(&run(i), &PipelineRules::default());
        }
        fresh
    }

    /// A saved fixture (`models.state` text) of payload `format`: its bytes,
    /// the model it loads as, and that model saved again, in the current
    /// format, which reads back to the same bytes.
    fn load_fixture(state: &str, format: u16) -> (Vec<u8>, PipelineModel, Vec<u8>) {
        let old = base64::engine::general_purpose::STANDARD
            .decode(state.trim())
            .unwrap();
        assert_eq!(u16::from_le_bytes([old[4], old[5]]), format);
        let loaded = from_stored(BINARY_VERSION, state).unwrap();
        let saved = encode(&loaded).unwrap();
        assert_eq!(u16::from_le_bytes([saved[4], saved[5]]), BINARY_FORMAT);
        assert_eq!(encode(&decode(&saved).unwrap()).unwrap(), saved);
        (old, loaded, saved)
    }

    /// A model saved in payload format 1 (every shingled point whole) by
    /// the release before points shared inputs, with a small forest so
    /// that the fixture stays small, loads (leaving out the metrics that
    /// never varied), judges the next runs as a model trained now that
    /// stores every metric does, within rounding, and saves in the current
    /// format, which reads back to the same bytes.
    #[test]
    fn a_model_saved_with_whole_points_loads_and_saves_in_the_current_format() {
        let (old, loaded, saved) =
            load_fixture(include_str!("testdata/model_v2.b64"), WHOLE_POINTS_FORMAT);
        let fresh = fixture_model(60, EARLIER_PIPELINE_TIME_DECAY);
        assert!(
            saved.len() < old.len(),
            "shared inputs save smaller: {} vs {} bytes",
            saved.len(),
            old.len()
        );
        let converted = loaded.detector().forest().points_held();
        assert_eq!(converted, fresh.detector().forest().points_held());
        assert_eq!(loaded.detector().forest().stored_values(), 4);
        same_verdicts(decode(&saved).unwrap(), loaded.clone(), 60);
        verdicts_within_rounding(loaded, fresh, 60);
    }

    /// A model saved in payload format 2 (every value stored) by the
    /// release before constant values were left out loads, leaving out the
    /// metrics its runs never reported, as a model trained now does;
    /// judges the next runs as the model that stores every value, within
    /// rounding; and saves in the current format, which reads back to the
    /// same bytes and the same verdicts.
    #[test]
    fn a_model_saved_with_every_value_loads_and_saves_in_the_current_format() {
        let (old, loaded, saved) = load_fixture(
            include_str!("testdata/model_every_value.b64"),
            EVERY_VALUE_FORMAT,
        );
        let fresh = fixture_model(60, EARLIER_PIPELINE_TIME_DECAY);
        // The fixture's runs report four metrics of six.
        assert_eq!(fresh.detector().forest().stored_values(), 6);
        assert_eq!(loaded.detector().forest().stored_values(), 4);
        let mut lean = PipelineModel::with_detector(loaded.detector().config().clone());
        for i in 0..60 {
            lean.observe(&run(i), &PipelineRules::default());
        }
        assert_eq!(lean.detector().forest().stored_values(), 4);
        assert!(loaded.memory_bytes() < fresh.memory_bytes());
        same_verdicts(decode(&saved).unwrap(), loaded.clone(), 60);
        verdicts_within_rounding(loaded, fresh, 60);
        // Read as the current format, the same payload is refused: the
        // formats differ where the constants are saved.
        let mut relabelled = old.clone();
        relabelled[4..6].copy_from_slice(&BINARY_FORMAT.to_le_bytes());
        assert!(matches!(
            decode(&relabelled),
            Err(ModelCodecError::Payload(_))
        ));
    }

    /// A model saved in payload format 3 (every tree node and leaf with a
    /// parent reference) by the release before trees stopped keeping them
    /// loads as the same model a release trains now from the same runs,
    /// judges the next runs bit for bit alike, and saves smaller in the
    /// current format, which reads back to the same bytes.
    #[test]
    fn a_model_saved_with_parent_references_loads_and_saves_in_the_current_format() {
        let (old, loaded, saved) = load_fixture(
            include_str!("testdata/model_parent_references.b64"),
            PARENT_REFERENCES_FORMAT,
        );
        let mut cfg = crate::scoring::pipeline::pipeline_detector_config(1.0, 7);
        cfg.trees = 5;
        cfg.sample_size = 16;
        let mut fresh = PipelineModel::with_detector(cfg);
        for i in 0..60 {
            fresh.observe(&run(i), &PipelineRules::default());
        }
        assert_eq!(saved, encode(&fresh).unwrap(), "the same model");
        assert!(
            saved.len() < old.len(),
            "trees save smaller without parents: {} vs {} bytes",
            saved.len(),
            old.len()
        );
        same_verdicts(loaded, fresh, 60);
        let mut relabelled = old.clone();
        relabelled[4..6].copy_from_slice(&BINARY_FORMAT.to_le_bytes());
        assert!(
            decode(&relabelled).is_err(),
            "read without parents, it does not decode"
        );
    }

    /// A saved model keeps the time decay it was built with, through a
    /// load and a save, and judges by it; a new model gets the current one.
    #[test]
    fn a_saved_model_keeps_the_time_decay_it_was_built_with() {
        use crate::scoring::pipeline::PIPELINE_TIME_DECAY;
        let earlier = EARLIER_PIPELINE_TIME_DECAY;
        assert_ne!(PIPELINE_TIME_DECAY, earlier);
        let loaded = from_stored(BINARY_VERSION, include_str!("testdata/model_v2.b64")).unwrap();
        let resaved = decode(&encode(&loaded).unwrap()).unwrap();
        for m in [&loaded, &resaved] {
            assert_eq!(m.detector().config().time_decay, earlier);
            assert_eq!(m.detector().forest().config().time_decay, earlier);
        }
        assert_eq!(
            PipelineModel::new("any", 1.0)
                .detector()
                .config()
                .time_decay,
            PIPELINE_TIME_DECAY
        );
        // Trained alike but with the current decay, the fixture's forest
        // scores otherwise: the saved decay is the one in force.
        let mut current = fixture_model(60, PIPELINE_TIME_DECAY);
        let (mut old, rules) = (resaved, PipelineRules::default());
        let differ = (60..180)
            .filter(|&i| {
                old.observe(&run(i), &rules).score != current.observe(&run(i), &rules).score
            })
            .count();
        assert!(differ > 0, "the two decays sample alike");
    }

    /// The same model saved as JSON (version 1) with every point whole
    /// loads and judges like a model trained now that stores every metric,
    /// within rounding.
    #[test]
    fn a_json_model_with_whole_points_loads() {
        let json = include_str!("testdata/model_v1.json");
        assert!(json.contains("\"store\":{\"dim\":24,\"data\""));
        let loaded = from_stored(JSON_VERSION, json).unwrap();
        assert_eq!(loaded.detector().forest().stored_values(), 4);
        verdicts_within_rounding(loaded, fixture_model(60, EARLIER_PIPELINE_TIME_DECAY), 60);
    }

    #[test]
    fn a_json_model_is_read_and_converts_to_binary() {
        let model = trained(200);
        let json = serde_json::to_string(&model).unwrap();
        let from_json = from_stored(JSON_VERSION, &json).unwrap();
        let (version, state) = to_stored(&from_json).unwrap();
        assert!(
            state.len() * 3 < json.len(),
            "binary (base64) {} bytes vs JSON {} bytes",
            state.len(),
            json.len()
        );
        let converted = from_stored(version, &state).unwrap();
        same_verdicts(model, converted, 200);
    }

    #[test]
    fn corrupt_and_truncated_models_are_refused_with_the_reason() {
        let bytes = encode(&trained(100)).unwrap();
        let mut flipped = bytes.clone();
        let at = HEADER + (bytes.len() - HEADER) / 2;
        flipped[at] ^= 0x10;
        assert!(matches!(
            decode(&flipped),
            Err(ModelCodecError::Checksum { .. })
        ));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 7]),
            Err(ModelCodecError::Length { .. })
        ));
        assert!(matches!(
            decode(&bytes[..9]),
            Err(ModelCodecError::Truncated { len: 9 })
        ));
        let mut other = bytes.clone();
        other[4] = 9;
        assert!(matches!(
            decode(&other),
            Err(ModelCodecError::Format { found: 9 })
        ));
        assert!(matches!(
            from_stored(BINARY_VERSION, "not base64!"),
            Err(ModelCodecError::Base64(_))
        ));
        assert!(matches!(
            from_stored(JSON_VERSION, "{\"detector\":"),
            Err(ModelCodecError::Json(_))
        ));
        assert!(matches!(
            from_stored(7, ""),
            Err(ModelCodecError::Version(7))
        ));
        let msg = decode(&flipped).unwrap_err().to_string();
        assert!(msg.contains("checksum mismatch"), "{msg}");
    }
}
