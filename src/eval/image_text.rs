//! Image-text retrieval: captions (through the embedding cache, like any text) and images
//! are embedded by the same model, compared by cosine, and scored with CLIP_benchmark's
//! recall@k in both directions (`image_retrieval_recall@k`: a caption finds its image;
//! `text_retrieval_recall@k`: an image finds any of its captions).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use crate::data::image_text::{load_coco, load_karpathy, ImageTextDataset};
use crate::data::DataSource;
use crate::engine::{Embedder, ImageInput, Role};
use crate::error::{Error, Result};
use crate::eval::embed::embed_all;
use crate::eval::shard::{embed_share, image_key, Shard, ShardWork};
use crate::eval::task::{Engine, Measure, Needs, Task};
use crate::eval::{DatasetRecord, EmbedStats, RunSettings, Score, TaskInput, TaskResult};
use crate::metrics::bootstrap::mean_ci;
use crate::metrics::image_text::{caption_ranks, image_ranks};
use crate::spec::{DatasetFormat, ImageTextSpec, TaskSpec};
use crate::store::EmbeddingCache;

/// Ids of the best-ranked items kept per sample.
const SAMPLE_TOP: usize = 5;

/// Captions and images retrieving each other.
pub struct ImageTextTask {
    spec: TaskSpec,
    section: ImageTextSpec,
    data: ImageTextDataset,
}

impl ImageTextTask {
    /// Image-text data is read from a local folder (hub copies keep images in Parquet).
    pub fn load(
        spec: &TaskSpec,
        section: &ImageTextSpec,
        source: &DataSource,
    ) -> Result<ImageTextTask> {
        let DataSource::Local(dir) = source else {
            return Err(Error::Usage(format!(
                "task {}: image-text datasets are read from a local folder; put `{}` under --data-root",
                spec.name, spec.dataset.local
            )));
        };
        let data = match (spec.dataset.format, &section.file) {
            (DatasetFormat::Karpathy, Some(file)) => {
                let images = dir.join(section.images.as_deref().unwrap_or("."));
                load_karpathy(&dir.join(file), &images, &spec.dataset.split)?
            }
            _ => load_coco(dir, &spec.dataset.split)?,
        };
        Ok(ImageTextTask {
            spec: spec.clone(),
            section: section.clone(),
            data,
        })
    }
}

impl Task for ImageTextTask {
    fn spec(&self) -> &TaskSpec {
        &self.spec
    }

    fn dataset_fingerprint(&self) -> String {
        self.data.fingerprint.clone()
    }

    fn measures(&self) -> Vec<Measure> {
        let main = &self.section.main_score;
        let mut all = vec![Measure::higher(main.clone())];
        for name in ["image_retrieval_recall", "text_retrieval_recall"] {
            for k in &self.section.k_values {
                let metric = format!("{name}@{k}");
                if &metric != main {
                    all.push(Measure::higher(metric).headline());
                }
            }
        }
        all
    }

    fn needs(&self) -> Needs {
        Needs::Embeddings
    }

    /// The captions (images are not texts).
    fn inputs(&self) -> Result<Vec<TaskInput>> {
        Ok(caption_inputs(&self.section, &self.data))
    }

    /// The captions split by batch as for any text task, and the images by batch the
    /// same way (batches of the whole run, each owned by its first image's key).
    fn run_shard(&self, engine: Engine<'_>, shard: &Shard, work: &mut ShardWork) -> Result<()> {
        let (embedder, cache, settings) = engine.embedder(&self.spec)?;
        let captions = caption_inputs(&self.section, &self.data);
        embed_share(
            &captions,
            embedder,
            cache,
            settings.batch_size,
            &self.spec.name,
            shard,
            work,
        )?;
        for chunk in self.data.images.chunks(settings.batch_size.max(1)) {
            let inputs = chunk
                .iter()
                .map(|i| ImageInput::read(&i.path))
                .collect::<Result<Vec<_>>>()?;
            if !shard.owns(&image_key(&inputs[0], None)) {
                continue;
            }
            let vectors = embedder.embed_images(&inputs, None)?;
            for (input, vector) in inputs.iter().zip(vectors) {
                work.vectors.push((image_key(input, None), vector));
            }
            work.embedding.add(&EmbedStats {
                inputs: inputs.len(),
                unique: inputs.len(),
                computed: inputs.len(),
                ..EmbedStats::default()
            });
        }
        Ok(())
    }

    fn run(&self, engine: Engine<'_>) -> Result<TaskResult> {
        let (embedder, cache, settings) = engine.embedder(&self.spec)?;
        run(
            &self.spec,
            &self.section,
            &self.data,
            embedder,
            cache,
            settings,
        )
    }
}

fn caption_inputs(section: &ImageTextSpec, data: &ImageTextDataset) -> Vec<TaskInput> {
    data.captions
        .iter()
        .map(|c| TaskInput {
            text: c.text.clone(),
            role: Role::Query,
            instruction: section.instruction.clone(),
        })
        .collect()
}

fn run(
    spec: &TaskSpec,
    section: &ImageTextSpec,
    data: &ImageTextDataset,
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    settings: &RunSettings,
) -> Result<TaskResult> {
    let started = Instant::now();
    let texts: Vec<String> = caption_inputs(section, data)
        .iter()
        .map(|i| i.prepared(embedder))
        .collect();
    let (captions, mut stats) =
        embed_all(embedder, cache, &texts, settings.batch_size, &spec.name)?;
    let images = embed_images(embedder, data, settings.batch_size, &spec.name)?;
    stats.add(&EmbedStats {
        inputs: images.len(),
        unique: images.len(),
        computed: images.len(),
        ..EmbedStats::default()
    });
    let captions: Vec<Vec<f32>> = captions.into_iter().map(unit).collect();
    let images: Vec<Vec<f32>> = images.into_iter().map(unit).collect();

    let truth = data.caption_images();
    let row = |t: usize| images.iter().map(|i| dot(&captions[t], i)).collect();
    let column = |i: usize| captions.iter().map(|c| dot(c, &images[i])).collect();
    let by_caption = caption_ranks(&truth, row);
    let by_image = image_ranks(images.len(), &truth, column);

    let hits = |ranks: &[usize], k: usize| -> Vec<f64> {
        ranks.iter().map(|&r| f64::from(u8::from(r < k))).collect()
    };
    let mut scores = BTreeMap::new();
    let mut caption_scores = vec![serde_json::Map::new(); by_caption.len()];
    let mut image_scores = vec![serde_json::Map::new(); by_image.len()];
    for &k in &section.k_values {
        for (name, ranks, per_item) in [
            ("image_retrieval_recall", &by_caption, &mut caption_scores),
            ("text_retrieval_recall", &by_image, &mut image_scores),
        ] {
            let values = hits(ranks, k);
            let metric = format!("{name}@{k}");
            for (item, v) in per_item.iter_mut().zip(&values) {
                item.insert(metric.clone(), json!(v));
            }
            scores.insert(
                metric,
                Score {
                    value: values.iter().sum::<f64>() / values.len().max(1) as f64,
                    ci95: mean_ci(&values, settings.bootstrap_resamples, settings.seed),
                },
            );
        }
    }

    let top = |row: Vec<f32>, ids: &dyn Fn(usize) -> String| -> Vec<serde_json::Value> {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(SAMPLE_TOP)
            .map(|j| json!([ids(j), row[j]]))
            .collect()
    };
    let image_id = |i: usize| data.images[i].id.clone();
    let caption_id = |t: usize| data.captions[t].id.clone();
    let mut samples = Vec::new();
    for (t, caption) in data.captions.iter().enumerate() {
        samples.push(json!({
            "task": spec.name,
            "id": format!("caption/{}", caption.id),
            "text": caption.text,
            "image": image_id(caption.image),
            "rank": by_caption[t],
            "retrieved": top(row(t), &image_id),
            "scores": caption_scores[t],
        }));
    }
    for (i, image) in data.images.iter().enumerate() {
        samples.push(json!({
            "task": spec.name,
            "id": format!("image/{}", image.id),
            "path": image.path,
            "rank": by_image[i],
            "retrieved": top(column(i), &caption_id),
            "scores": image_scores[i],
        }));
    }
    Ok(TaskResult {
        task: spec.name.clone(),
        task_name: spec.display_name().to_string(),
        family: "image-text".into(),
        split: spec.dataset.split.clone(),
        main_score: section.main_score.clone(),
        scores,
        measures: Vec::new(),
        dataset: DatasetRecord {
            origin: data.origin.clone(),
            fingerprint: data.fingerprint.clone(),
            items: data.captions.len(),
            corpus_size: Some(data.images.len()),
            selection: None,
        },
        replicates: Vec::new(),
        embedding: stats,
        search_seconds: 0.0,
        seconds: started.elapsed().as_secs_f64(),
        samples,
    })
}

/// Every image's vector, `batch_size` files read and sent at a time.
fn embed_images(
    embedder: &dyn Embedder,
    data: &ImageTextDataset,
    batch_size: usize,
    label: &str,
) -> Result<Vec<Vec<f32>>> {
    let bar = indicatif::ProgressBar::new(data.images.len() as u64);
    bar.set_message(format!("{label} images"));
    let mut vectors = Vec::with_capacity(data.images.len());
    for chunk in data.images.chunks(batch_size.max(1)) {
        let inputs = chunk
            .iter()
            .map(|i| ImageInput::read(&i.path))
            .collect::<Result<Vec<_>>>()?;
        vectors.extend(embedder.embed_images(&inputs, None)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(vectors)
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
