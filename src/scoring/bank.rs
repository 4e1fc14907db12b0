//! The model bank: per-pipeline models, loaded lazily from the store and
//! kept in an LRU-bounded cache, so any number of pipelines fit in bounded
//! memory. A model is saved every `SAVE_EVERY` updates, when it leaves the
//! cache, and on shutdown; on load it catches up on the runs stored after
//! the last one it learned, so nothing is lost between saves.
//!
//! The cache's hits, misses and loads, and the models it holds, are counted
//! in the metrics (`pipemedic_model_cache_*`, `pipemedic_model_loads_total`,
//! `pipemedic_models_cached`).

use std::num::NonZeroUsize;

use lru::LruCache;

use std::sync::Arc;

use super::pipeline::{PipelineModel, MODEL_VERSION};
use crate::config::DetectorConfig;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, StoredModel};

/// Updates between saves of a cached model. A full model is a few MB of
/// JSON, so saving is kept rare; nothing is lost in between, because a model
/// catches up on the runs stored after its last save when it is loaded.
pub const SAVE_EVERY: u32 = 256;

/// Runs replayed at most when a model catches up on load.
const CATCH_UP_LIMIT: i64 = 10_000;

pub struct Entry {
    pub model: PipelineModel,
    pub unsaved: u32,
}

pub struct ModelBank {
    store: Store,
    cache: LruCache<String, Entry>,
    config: Arc<DetectorConfig>,
    metrics: Arc<Metrics>,
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
        }
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
        if self.cache.contains(pipeline) {
            self.metrics.model_cache_hit();
        } else {
            self.metrics.model_cache_miss();
            let model = self.load(pipeline, before_pk).await?;
            let before = self.cache.len();
            let evicted = self
                .cache
                .push(pipeline.to_string(), Entry { model, unsaved: 0 });
            self.cached_changed(before);
            if let Some((evicted_name, evicted)) = evicted {
                if evicted_name != pipeline && evicted.unsaved > 0 {
                    save(&self.store, &evicted_name, &evicted.model).await?;
                }
            }
        }
        self.cache
            .get_mut(pipeline)
            .ok_or_else(|| StoreError::Corrupt {
                what: "model cache".into(),
                detail: "entry vanished".into(),
            })
    }

    async fn load(&self, pipeline: &str, before_pk: i64) -> Result<PipelineModel, StoreError> {
        let (mut model, from) = match self.store.load_model(pipeline).await? {
            Some(stored) if stored.version == MODEL_VERSION => {
                match serde_json::from_str::<PipelineModel>(&stored.state) {
                    Ok(m) => (m, "stored"),
                    Err(e) => {
                        tracing::warn!(pipeline, error = %e, "Saved model unreadable; rebuilding from history.");
                        (
                            PipelineModel::new(pipeline, self.config.sensitivity),
                            "rebuilt",
                        )
                    }
                }
            }
            Some(stored) => {
                tracing::info!(
                    pipeline,
                    version = stored.version,
                    "Saved model has an old format; rebuilding from history."
                );
                (
                    PipelineModel::new(pipeline, self.config.sensitivity),
                    "rebuilt",
                )
            }
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

    /// Saves every model with unsaved updates.
    pub async fn flush(&mut self) -> Result<usize, StoreError> {
        let mut saved = 0;
        for (name, entry) in self.cache.iter_mut() {
            if entry.unsaved > 0 {
                save(&self.store, name, &entry.model).await?;
                entry.unsaved = 0;
                saved += 1;
            }
        }
        Ok(saved)
    }

    /// Saves one cached model now.
    pub async fn save_now(&mut self, pipeline: &str) -> Result<(), StoreError> {
        if let Some(entry) = self.cache.get_mut(pipeline) {
            save(&self.store, pipeline, &entry.model).await?;
            entry.unsaved = 0;
        }
        Ok(())
    }

    /// Drops a pipeline's cached model without saving it: another replica
    /// may have scored its runs since (see `scoring::ownership`), so the
    /// next run loads the stored model and catches up.
    pub fn forget(&mut self, pipeline: &str) -> bool {
        let before = self.cache.len();
        let held = self.cache.pop(pipeline).is_some();
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
        let before = self.cache.len();
        self.cache
            .put(pipeline.to_string(), Entry { model, unsaved: 0 });
        self.cached_changed(before);
        Ok(())
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

/// Serialises and stores a model.
pub async fn save(store: &Store, pipeline: &str, model: &PipelineModel) -> Result<(), StoreError> {
    let state = serde_json::to_string(model).map_err(|e| StoreError::Corrupt {
        what: "model".into(),
        detail: e.to_string(),
    })?;
    let mut tx = store.begin_write().await?;
    tx.save_model(
        pipeline,
        &StoredModel {
            version: MODEL_VERSION,
            state,
            last_run_pk: model.last_run_pk,
        },
        chrono::Utc::now(),
    )
    .await?;
    tx.commit().await
}
