//! The model bank: per-pipeline models, loaded lazily from the store and
//! kept in an LRU cache bounded both in models and in bytes (each model's
//! [`PipelineModel::memory_bytes`], refreshed after it is handed out), so
//! any number of pipelines fit in bounded memory. A model is saved every `SAVE_EVERY` updates, when it leaves the
//! cache, and on shutdown; on load it catches up on the runs stored after
//! the last one it learned, so nothing is lost between saves.
//!
//! Models are saved in the checksummed binary format of
//! [`super::pipeline::codec`]. A model saved as JSON by an earlier release
//! is read and rewritten in binary on load; a saved model that does not
//! check out (truncated, corrupt, unknown format) is logged and rebuilt
//! from the stored runs, never a failure of scoring.
//!
//! The cache's hits, misses and loads, and the models it holds, are counted
//! in the metrics (`pipemedic_model_cache_*`, `pipemedic_model_loads_total`,
//! `pipemedic_models_cached`).

use std::num::NonZeroUsize;

use lru::LruCache;

use std::sync::Arc;

use super::pipeline::{codec, PipelineModel};
use crate::config::DetectorConfig;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoredModel};

/// Updates between saves of a cached model. Saving rewrites the whole
/// model, so it is kept rare; nothing is lost in between, because a model
/// catches up on the runs stored after its last save when it is loaded.
pub const SAVE_EVERY: u32 = 256;

/// Runs replayed at most when a model catches up on load.
const CATCH_UP_LIMIT: i64 = 10_000;

pub struct Entry {
    pub model: PipelineModel,
    pub unsaved: u32,
    /// The model's memory when the bank last measured it.
    bytes: usize,
}

impl Entry {
    fn new(model: PipelineModel) -> Self {
        Self {
            bytes: model.memory_bytes(),
            model,
            unsaved: 0,
        }
    }
}

pub struct ModelBank {
    store: Store,
    cache: LruCache<String, Entry>,
    config: Arc<DetectorConfig>,
    metrics: Arc<Metrics>,
    /// Bytes the cached models may take together.
    budget_bytes: usize,
    /// Bytes the cached models take, as last measured.
    held_bytes: usize,
    /// The pipeline whose model was last handed out (it may have grown).
    handed_out: Option<String>,
}

impl ModelBank {
    pub fn new(
        store: Store,
        capacity: usize,
        config: Arc<DetectorConfig>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            cache: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
            config,
            metrics,
            budget_bytes: usize::MAX,
            held_bytes: 0,
            handed_out: None,
        }
    }

    /// The same bank, keeping its models within `bytes` together (the
    /// model in use is kept even when it alone is larger).
    pub fn with_byte_budget(mut self, bytes: usize) -> Self {
        self.budget_bytes = bytes.max(1);
        self
    }

    /// Bytes the cached models take, as last measured.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Measures again the model last handed out (it learned since).
    fn remeasure(&mut self) {
        if let Some(name) = self.handed_out.take() {
            if let Some(e) = self.cache.peek_mut(&name) {
                let now = e.model.memory_bytes();
                self.held_bytes = self.held_bytes - e.bytes + now;
                e.bytes = now;
            }
        }
    }

    /// Evicts least recently used models (saving those with unsaved
    /// updates) until the rest fit the byte budget; the most recently used
    /// model always stays.
    async fn fit_budget(&mut self) -> Result<(), StoreError> {
        let before = self.cache.len();
        while self.held_bytes > self.budget_bytes && self.cache.len() > 1 {
            let Some((name, evicted)) = self.cache.pop_lru() else {
                break;
            };
            self.held_bytes -= evicted.bytes;
            tracing::debug!(
                pipeline = %name,
                bytes = evicted.bytes,
                held_bytes = self.held_bytes,
                "Model left the cache to keep it within its byte budget."
            );
            if evicted.unsaved > 0 {
                save(&self.store, &name, &evicted.model).await?;
            }
        }
        self.cached_changed(before);
        Ok(())
    }

    /// Reports a change in the number of cached models.
    fn cached_changed(&self, before: usize) {
        let delta = self.cache.len() as i64 - before as i64;
        if delta != 0 {
            self.metrics.models_cached_changed(delta);
        }
    }

    /// The rules that judge `pipeline`'s runs.
    pub fn rules_for(&self, pipeline: &str) -> crate::config::PipelineRules {
        self.config.rules_for(pipeline)
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The model of `pipeline`, loading (and catching up) or creating it.
    /// Runs with row id `>= before_pk` are not replayed (the caller is about
    /// to feed them).
    pub async fn get(&mut self, pipeline: &str, before_pk: i64) -> Result<&mut Entry, StoreError> {
        self.remeasure();
        if self.cache.contains(pipeline) {
            self.metrics.model_cache_hit();
            self.cache.promote(pipeline);
        } else {
            self.metrics.model_cache_miss();
            let model = self.load(pipeline, before_pk).await?;
            self.insert(pipeline, Entry::new(model)).await?;
        }
        self.fit_budget().await?;
        self.handed_out = Some(pipeline.to_string());
        self.cache
            .get_mut(pipeline)
            .ok_or_else(|| StoreError::Corrupt {
                what: "model cache".into(),
                detail: "entry vanished".into(),
            })
    }

    async fn load(&self, pipeline: &str, before_pk: i64) -> Result<PipelineModel, StoreError> {
        let (mut model, from) = match self.store.load_model(pipeline).await? {
            Some(stored) => match codec::from_stored(stored.version, &stored.state) {
                Ok(model) if stored.version == codec::JSON_VERSION => {
                    // Rewritten at once, so the JSON is parsed only once; if
                    // that fails the model is still used, and saved later.
                    match save(&self.store, pipeline, &model).await {
                        Ok(()) => tracing::info!(
                            pipeline,
                            json_bytes = stored.state.len(),
                            "Saved JSON model converted to the binary format."
                        ),
                        Err(e) => tracing::warn!(
                            pipeline,
                            error = %e,
                            "Saved JSON model read, but rewriting it as binary failed."
                        ),
                    }
                    (model, "converted")
                }
                Ok(model) => (model, "stored"),
                Err(e) => {
                    tracing::warn!(
                        pipeline,
                        version = stored.version,
                        error = %e,
                        "Saved model unreadable; rebuilding from history."
                    );
                    (
                        PipelineModel::new(pipeline, self.config.sensitivity),
                        "rebuilt",
                    )
                }
            },
            None => (PipelineModel::new(pipeline, self.config.sensitivity), "new"),
        };
        let missed = self
            .store
            .final_runs_after(pipeline, model.last_run_pk, CATCH_UP_LIMIT)
            .await?;
        let mut replayed = 0;
        let rules = self.config.rules_for(pipeline);
        for stored in missed.iter().filter(|r| r.pk < before_pk) {
            model.observe(&stored.run, &rules);
            model.last_run_pk = model.last_run_pk.max(stored.pk);
            replayed += 1;
        }
        if replayed > 0 {
            tracing::info!(pipeline, replayed, "Model caught up on stored runs.");
        }
        self.metrics.model_loaded(from);
        Ok(model)
    }

    /// Caches `entry` as `pipeline`'s model, saving a model it pushes out
    /// of a full cache if that has unsaved updates.
    async fn insert(&mut self, pipeline: &str, entry: Entry) -> Result<(), StoreError> {
        let before = self.cache.len();
        self.held_bytes += entry.bytes;
        let evicted = self.cache.push(pipeline.to_string(), entry);
        self.cached_changed(before);
        if let Some((evicted_name, evicted)) = evicted {
            self.held_bytes -= evicted.bytes;
            if evicted_name != pipeline && evicted.unsaved > 0 {
                save(&self.store, &evicted_name, &evicted.model).await?;
            }
        }
        Ok(())
    }

    /// Saves every model with unsaved updates.
    pub async fn flush(&mut self) -> Result<usize, StoreError> {
        let dirty: Vec<String> = self
            .cache
            .iter()
            .filter(|(_, entry)| entry.unsaved > 0)
            .map(|(name, _)| name.clone())
            .collect();
        self.save_together(&dirty).await?;
        Ok(dirty.len())
    }

    /// Saves one cached model now.
    pub async fn save_now(&mut self, pipeline: &str) -> Result<(), StoreError> {
        self.save_together(&[pipeline]).await
    }

    /// Saves these cached models (those not cached are skipped) in one
    /// transaction per [`SAVES_PER_TRANSACTION`]: one durable commit for
    /// many models, not one each, so a flush holds up scoring briefly.
    pub async fn save_together<S: AsRef<str>>(
        &mut self,
        pipelines: &[S],
    ) -> Result<(), StoreError> {
        for chunk in pipelines.chunks(SAVES_PER_TRANSACTION) {
            let mut encoded = Vec::with_capacity(chunk.len());
            for pipeline in chunk {
                let pipeline = pipeline.as_ref();
                if let Some(entry) = self.cache.peek(pipeline) {
                    encoded.push((pipeline.to_string(), encode(pipeline, &entry.model)?));
                }
            }
            if encoded.is_empty() {
                continue;
            }
            self.store.save_models(encoded, chrono::Utc::now()).await?;
            // Those not cached were not saved and have no count to clear.
            for pipeline in chunk {
                if let Some(entry) = self.cache.peek_mut(pipeline.as_ref()) {
                    entry.unsaved = 0;
                }
            }
        }
        Ok(())
    }

    /// Drops a pipeline's cached model without saving it: another replica
    /// may have scored its runs since (see `scoring::ownership`), so the
    /// next run loads the stored model and catches up.
    pub fn forget(&mut self, pipeline: &str) -> bool {
        self.remeasure();
        let before = self.cache.len();
        let held = match self.cache.pop(pipeline) {
            Some(e) => {
                self.held_bytes -= e.bytes;
                true
            }
            None => false,
        };
        self.cached_changed(before);
        held
    }

    /// Replaces a pipeline's model (after a rebuild).
    pub async fn replace(
        &mut self,
        pipeline: &str,
        model: PipelineModel,
    ) -> Result<(), StoreError> {
        save(&self.store, pipeline, &model).await?;
        self.remeasure();
        if let Some(old) = self.cache.pop(pipeline) {
            self.held_bytes -= old.bytes;
            self.metrics.models_cached_changed(-1);
        }
        self.insert(pipeline, Entry::new(model)).await?;
        self.fit_budget().await
    }
}

impl Drop for ModelBank {
    /// The models leave memory with the bank.
    fn drop(&mut self) {
        let held = self.cache.len() as i64;
        if held > 0 {
            self.metrics.models_cached_changed(-held);
        }
    }
}

/// Encodes (binary, checksummed; see [`codec`]) and stores a model.
pub async fn save(store: &Store, pipeline: &str, model: &PipelineModel) -> Result<(), StoreError> {
    let stored = encode(pipeline, model)?;
    store
        .save_models(vec![(pipeline.to_string(), stored)], chrono::Utc::now())
        .await
}

/// Models saved in one transaction at most (a few MB of writes).
const SAVES_PER_TRANSACTION: usize = 64;

/// A model in its saved form.
fn encode(pipeline: &str, model: &PipelineModel) -> Result<StoredModel, StoreError> {
    let (version, state) = codec::to_stored(model).map_err(|e| StoreError::Corrupt {
        what: format!("model of {pipeline}"),
        detail: e.to_string(),
    })?;
    Ok(StoredModel {
        version,
        state,
        last_run_pk: model.last_run_pk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ResourceMetrics, Run, RunSource, RunStatus, TestCounts};

    const PIPELINE: &str = "checkout";

    fn run(i: u32) -> Run {
        let start: chrono::DateTime<chrono::Utc> = "2026-09-01T00:00:00Z".parse().unwrap();
        let start = start + chrono::Duration::hours(i64::from(i) * 4);
        let jitter = ((i * 7919) % 29) as f64 - 14.0;
        let mut run = Run::new(PIPELINE, format!("r{i}"), RunStatus::Succeeded);
        run.started_at = Some(start);
        run.finished_at =
            Some(start + chrono::Duration::milliseconds(((400.0 + jitter) * 1000.0) as i64));
        run.tests = Some(TestCounts {
            total: 600,
            failed: u64::from(i % 5 == 0),
            skipped: 0,
        });
        run.resources = Some(ResourceMetrics {
            cpu_peak_pct: Some(40.0 + jitter),
            mem_peak_mb: Some(900.0 + 2.0 * jitter),
        });
        run
    }

    /// A SQLite store in `dir` holding runs 0..`n` of the pipeline.
    async fn store_with_runs(dir: &std::path::Path, n: u32) -> Store {
        let url = format!("sqlite:{}", dir.join("bank.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        let mut tx = store.begin_write().await.unwrap();
        for i in 0..n {
            tx.upsert_run(&run(i), RunSource::Generic, chrono::Utc::now())
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        store
    }

    fn bank(store: &Store, metrics: &Arc<Metrics>) -> ModelBank {
        ModelBank::new(
            store.clone(),
            4,
            Arc::new(DetectorConfig::default()),
            metrics.clone(),
        )
    }

    async fn write_row(store: &Store, version: i64, state: String, last_run_pk: i64) {
        let mut tx = store.begin_write().await.unwrap();
        let row = StoredModel {
            version,
            state,
            last_run_pk,
        };
        tx.save_model(PIPELINE, &row, chrono::Utc::now())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// The pipeline's model as a fresh bank loads it.
    async fn loaded_model(store: &Store, metrics: &Arc<Metrics>) -> PipelineModel {
        bank(store, metrics)
            .get(PIPELINE, i64::MAX)
            .await
            .unwrap()
            .model
            .clone()
    }

    /// The verdicts both models give on the next runs are the same.
    fn same_verdicts(mut a: PipelineModel, mut b: PipelineModel) {
        let rules = crate::config::PipelineRules::default();
        for i in 80..110 {
            let r = run(i);
            assert_eq!(a.observe(&r, &rules), b.observe(&r, &rules), "run {i}");
        }
    }

    #[tokio::test]
    async fn a_corrupt_saved_model_is_rebuilt_from_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_runs(dir.path(), 80).await;
        let metrics = Arc::new(Metrics::new());
        let reference = loaded_model(&store, &metrics).await;
        let (version, state) = codec::to_stored(&reference).unwrap();
        // Cut short, as a write interrupted half way would leave it.
        let truncated = state[..state.len() / 2].to_string();
        write_row(&store, version, truncated, reference.last_run_pk).await;

        let metrics = Arc::new(Metrics::new());
        let rebuilt = loaded_model(&store, &metrics).await;
        assert_eq!(
            metrics.counter("pipemedic_model_loads_total", &[("from", "rebuilt")]),
            1
        );
        assert_eq!(rebuilt.runs_seen(), 80, "every stored run was replayed");
        same_verdicts(reference, rebuilt);
    }

    #[tokio::test]
    async fn a_flush_saves_every_changed_model_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_runs(dir.path(), 0).await;
        let metrics = Arc::new(Metrics::new());
        let rules = crate::config::PipelineRules::default();
        let mut bank = bank(&store, &metrics);
        for (name, runs) in [("a", 30u32), ("b", 50), ("c", 0)] {
            let entry = bank.get(name, i64::MAX).await.unwrap();
            for i in 0..runs {
                entry.model.observe(&run(i), &rules);
            }
            entry.unsaved += runs;
        }
        assert_eq!(bank.flush().await.unwrap(), 2);
        for (name, runs) in [("a", 30u32), ("b", 50)] {
            let row = store.load_model(name).await.unwrap().expect("saved");
            let model = codec::from_stored(row.version, &row.state).unwrap();
            assert_eq!(model.runs_seen(), u64::from(runs), "{name}");
        }
        assert!(store.load_model("c").await.unwrap().is_none(), "unchanged");
        assert_eq!(bank.flush().await.unwrap(), 0, "nothing left to save");
    }

    #[tokio::test]
    async fn eviction_keeps_the_cached_models_within_the_byte_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_runs(dir.path(), 0).await;
        let metrics = Arc::new(Metrics::new());
        let rules = crate::config::PipelineRules::default();
        // One model's size after 80 runs sets the budget: room for two.
        let mut grown = PipelineModel::new("sizing", 1.0);
        for i in 0..80 {
            grown.observe(&run(i), &rules);
        }
        let budget = grown.memory_bytes() * 5 / 2;
        let mut bank = bank(&store, &metrics).with_byte_budget(budget);
        let names = ["a", "b", "c", "d"];
        for name in names {
            let entry = bank.get(name, i64::MAX).await.unwrap();
            for i in 0..80 {
                entry.model.observe(&run(i), &rules);
            }
            entry.unsaved += 80;
        }
        // The last model's growth is measured on the next access.
        bank.get("d", i64::MAX).await.unwrap();
        assert!(
            bank.held_bytes() <= budget,
            "{} bytes held, budget {budget}",
            bank.held_bytes()
        );
        assert_eq!(bank.cached(), 2, "the count bound (4) is not what evicted");
        let held: usize = bank.cache.iter().map(|(_, e)| e.model.memory_bytes()).sum();
        assert_eq!(held, bank.held_bytes(), "the bank's count is exact");
        assert!(bank.cache.contains("c") && bank.cache.contains("d"));
        // The evicted models were saved with what they learned.
        for name in ["a", "b"] {
            let row = store.load_model(name).await.unwrap().expect("saved");
            let model = codec::from_stored(row.version, &row.state).unwrap();
            assert_eq!(model.runs_seen(), 80, "{name}");
        }
        assert_eq!(
            metrics.counter("pipemedic_models_cached", &[]),
            2,
            "the gauge follows evictions"
        );
    }

    #[tokio::test]
    async fn a_json_model_is_converted_to_binary_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_runs(dir.path(), 80).await;
        let metrics = Arc::new(Metrics::new());
        let reference = loaded_model(&store, &metrics).await;
        let json = serde_json::to_string(&reference).unwrap();
        write_row(
            &store,
            codec::JSON_VERSION,
            json.clone(),
            reference.last_run_pk,
        )
        .await;

        let metrics = Arc::new(Metrics::new());
        let loaded = loaded_model(&store, &metrics).await;
        assert_eq!(
            metrics.counter("pipemedic_model_loads_total", &[("from", "converted")]),
            1
        );
        let row = store.load_model(PIPELINE).await.unwrap().unwrap();
        assert_eq!(row.version, codec::BINARY_VERSION, "rewritten as binary");
        assert!(
            row.state.len() * 3 < json.len(),
            "{} bytes",
            row.state.len()
        );
        let reread = codec::from_stored(row.version, &row.state).unwrap();
        same_verdicts(reference.clone(), loaded);
        same_verdicts(reference, reread);
    }
}
