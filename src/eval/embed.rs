//! Drives an embedder over many texts: de-duplicates, sorts by length (less padding),
//! batches, and reads / fills the embedding cache one batch at a time.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::Embedder;
use crate::error::{Error, Result};
use crate::store::cache::{key_of, EmbeddingCache, Key};

/// How much was computed and how much came from the cache.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EmbedStats {
    pub inputs: usize,
    pub unique: usize,
    pub from_cache: usize,
    pub computed: usize,
    pub batches_computed: usize,
    pub seconds: f64,
}

impl EmbedStats {
    pub fn add(&mut self, other: &EmbedStats) {
        self.inputs += other.inputs;
        self.unique += other.unique;
        self.from_cache += other.from_cache;
        self.computed += other.computed;
        self.batches_computed += other.batches_computed;
        self.seconds += other.seconds;
    }
}

/// Embeds `texts` (already prepared for the model) and returns one vector per text.
///
/// Batches are formed over all unique texts in a fixed order (longest first), whether or
/// not some are cached, so a resumed run computes exactly the batches an uninterrupted
/// run would have computed and gets bit-identical vectors.
pub fn embed_all(
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    texts: &[String],
    batch_size: usize,
    label: &str,
) -> Result<(Vec<Vec<f32>>, EmbedStats)> {
    let (vectors, stats) = embed_batches(embedder, cache, texts, batch_size, label, &|_| true)?;
    let vectors = vectors
        .into_iter()
        .map(|v| {
            v.ok_or_else(|| {
                Error::External("embedding cache lost a vector it had just stored".into())
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((vectors, stats))
}

/// [`embed_all`] for the batches whose first text's key `owns` accepts (a shard's share):
/// the batches are those of the whole list, so every vector is bit-identical to the one
/// an unsharded run computes. Texts in batches not owned get `None`.
pub fn embed_batches(
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    texts: &[String],
    batch_size: usize,
    label: &str,
    owns: &dyn Fn(&Key) -> bool,
) -> Result<(Vec<Option<Vec<f32>>>, EmbedStats)> {
    let mut vectors = vec![None; texts.len()];
    let stats = embed_streamed(
        embedder,
        cache,
        texts,
        batch_size,
        label,
        owns,
        &mut |i, v| {
            vectors[i] = Some(v);
            Ok(())
        },
    )?;
    Ok((vectors, stats))
}

/// [`embed_batches`] handing each owned text's vector to `sink` (its position, the
/// vector) in text order instead of collecting them: with the cache on disk, a corpus
/// goes to a store without all its vectors in memory at once.
pub fn embed_streamed(
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    texts: &[String],
    batch_size: usize,
    label: &str,
    owns: &dyn Fn(&Key) -> bool,
    sink: &mut dyn FnMut(usize, Vec<f32>) -> Result<()>,
) -> Result<EmbedStats> {
    let started = Instant::now();
    let batch_size = batch_size.max(1);
    let mut unique: Vec<(&str, Key)> = Vec::new();
    let mut seen: HashMap<Key, usize> = HashMap::new();
    for text in texts {
        let key = key_of(text);
        seen.entry(key).or_insert_with(|| {
            unique.push((text.as_str(), key));
            unique.len() - 1
        });
    }
    // Longest first (in tokens where the engine can count them); stable for ties, so
    // the batches are the same in every run.
    let lengths = embedder.input_lengths(&unique.iter().map(|(t, _)| *t).collect::<Vec<_>>());
    let mut order: Vec<usize> = (0..unique.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let unique: Vec<(&str, Key)> = order.into_iter().map(|i| unique[i]).collect();
    let batches: Vec<&[(&str, Key)]> = unique
        .chunks(batch_size)
        .filter(|batch| owns(&batch[0].1))
        .collect();
    let owned: usize = batches.iter().map(|b| b.len()).sum();

    let progress = progress_bar(owned as u64, label);
    let mut stats = EmbedStats {
        inputs: texts.len(),
        unique: owned,
        ..Default::default()
    };
    let mut todo = Vec::new();
    for batch in &batches {
        if batch.iter().all(|(_, key)| cache.contains(key)) {
            stats.from_cache += batch.len();
            progress.inc(batch.len() as u64);
        } else {
            todo.push(*batch);
        }
    }
    let outcome = compute_batches(embedder, cache, &todo, &progress, &mut stats);
    progress.finish_and_clear();
    outcome?;

    let mine: HashSet<Key> = batches
        .iter()
        .flat_map(|b| b.iter().map(|(_, k)| *k))
        .collect();
    for (i, text) in texts.iter().enumerate() {
        let key = key_of(text);
        if !mine.contains(&key) {
            continue;
        }
        let vector = cache.get(&key).ok_or_else(|| {
            Error::External("embedding cache lost a vector it had just stored".into())
        })?;
        sink(i, vector)?;
    }
    stats.seconds = started.elapsed().as_secs_f64();
    Ok(stats)
}

/// Embeds the batches on `embedder.parallel_batches()` threads and stores each in the
/// cache as it arrives. On an error no new batch starts, batches already running finish
/// and are stored, and the first error is returned.
fn compute_batches(
    embedder: &dyn Embedder,
    cache: &mut EmbeddingCache,
    todo: &[&[(&str, Key)]],
    progress: &indicatif::ProgressBar,
    stats: &mut EmbedStats,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let workers = embedder.parallel_batches().clamp(1, todo.len().max(1));
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::channel();
        for _ in 0..workers {
            let sender = sender.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= todo.len() || stop.load(Ordering::Relaxed) {
                    break;
                }
                let inputs: Vec<String> = todo[i].iter().map(|(t, _)| t.to_string()).collect();
                if sender.send((i, embedder.embed(&inputs))).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        let mut first_error = None;
        for (i, result) in receiver {
            let stored = result.and_then(|vectors| {
                if vectors.len() != todo[i].len() {
                    return Err(Error::External(format!(
                        "{}: returned {} vectors for {} inputs",
                        embedder.info().model,
                        vectors.len(),
                        todo[i].len()
                    )));
                }
                cache.insert_batch(todo[i].iter().map(|(_, k)| *k).zip(vectors).collect())
            });
            match stored {
                Ok(()) => {
                    stats.computed += todo[i].len();
                    stats.batches_computed += 1;
                    progress.inc(todo[i].len() as u64);
                }
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

fn progress_bar(len: u64, label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>24} [{bar:30}] {pos}/{len} texts  {per_sec}  eta {eta}",
    )
    .expect("static template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label.to_string());
    bar
}
