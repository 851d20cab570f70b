//! The delivery contract under seeded random faults.
//!
//! A TAXII collection is fetched page by page through fault-injecting fakes of every port:
//! a source that answers 5xx, times out or truncates its body; a page queue that refuses a
//! part, delivers it and then reports failure, or delivers it twice; a state store whose
//! conditional write fails before writing or times out after writing; a job queue that
//! redelivers failed jobs, duplicates jobs and hands them out in random order. The source
//! grows between rounds. For every seed the same invariants must hold:
//!
//! - every object of the source reaches the page queue at least once;
//! - no page is skipped: each commit moves a feed from page n to n + 1, once;
//! - the cursor never moves backwards;
//! - of fetchers racing on one page, exactly one commits.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};

use super::dispatcher;
use super::fetcher::{self, FetcherDeps, SourceFactory};
use crate::config::{FeedConfig, HttpOptions, KindConfig};
use crate::cursor::{Cursor, FeedState, RunState};
use crate::feed::Feed;
use crate::http::HttpError;
use crate::kinds::FetchError;
use crate::local::ConfigFeeds;
use crate::ports::{
    Body, Commit, FetchJob, JobQueue, PagePart, PageQueue, PortError, Source, SourceRequest,
    SourceResponse, StateStore,
};

/// Seeds tried; each runs a whole feed's life in memory in a few milliseconds.
const SEEDS: u64 = 300;

/// A small deterministic generator (SplitMix64), so a failing seed can be replayed.
struct Rng(Mutex<u64>);

/// Faults injected over all schedules, to report how hard the contract was pushed.
static INJECTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Rng {
    fn next(&self) -> u64 {
        let mut s = self.0.lock().unwrap();
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `percent` / 100, unless faults are switched off.
    fn chance(&self, percent: u64, faults: &Mutex<bool>) -> bool {
        let hit = *faults.lock().unwrap() && self.next() % 100 < percent;
        if hit {
            INJECTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        hit
    }
}

/// One commit that moved a feed's page: epoch, page before, page after, `added_after`.
type Committed = (u64, u64, u64, Option<String>);

struct World {
    rng: Rng,
    faults: Mutex<bool>,
    /// The collection: (id, date added), dates strictly increasing.
    objects: Mutex<Vec<(String, String)>>,
    delivered: Mutex<BTreeSet<String>>,
    states: Mutex<BTreeMap<String, FeedState>>,
    lease: Mutex<Option<DateTime<Utc>>>,
    /// Every successful commit that moved a page.
    commits: Mutex<Vec<Committed>>,
    jobs: Mutex<VecDeque<FetchJob>>,
}

impl World {
    fn new(seed: u64) -> World {
        World {
            rng: Rng(Mutex::new(seed)),
            faults: Mutex::new(true),
            objects: Mutex::new(Vec::new()),
            delivered: Mutex::default(),
            states: Mutex::default(),
            lease: Mutex::new(None),
            commits: Mutex::default(),
            jobs: Mutex::default(),
        }
    }

    fn grow(&self, n: usize) {
        let mut objects = self.objects.lock().unwrap();
        for _ in 0..n {
            let i = objects.len();
            let added =
                Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::seconds(i as i64);
            objects.push((
                format!("indicator--00000000-0000-4000-8000-{i:012}"),
                added.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            ));
        }
    }

    /// The TAXII 2.1 objects endpoint: `added_after` filters, `next` is an offset.
    fn answer(&self, url: &str) -> Result<SourceResponse, HttpError> {
        if self.rng.chance(8, &self.faults) {
            return Err(HttpError::Status {
                url: url.into(),
                status: 503,
                attempts: 4,
            });
        }
        if self.rng.chance(4, &self.faults) {
            return Err(HttpError::Transport {
                url: url.into(),
                reason: "operation timed out".into(),
            });
        }
        let query: BTreeMap<String, String> = url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let objects = self.objects.lock().unwrap();
        let matching: Vec<&(String, String)> = objects
            .iter()
            .filter(|(_, added)| query.get("added_after").is_none_or(|after| added > after))
            .collect();
        let start: usize = query.get("next").map(|n| n.parse().unwrap()).unwrap_or(0);
        let limit: usize = query["limit"].parse().unwrap();
        let page = &matching[start.min(matching.len())..(start + limit).min(matching.len())];
        let mut headers = vec![(
            "content-type".to_string(),
            "application/taxii+json;version=2.1".to_string(),
        )];
        let body = if page.is_empty() {
            "{}".to_string()
        } else {
            headers.push(("x-taxii-date-added-first".into(), page[0].1.clone()));
            headers.push((
                "x-taxii-date-added-last".into(),
                page[page.len() - 1].1.clone(),
            ));
            let more = start + limit < matching.len();
            let objects: Vec<serde_json::Value> = page
                .iter()
                .map(|(id, added)| {
                    serde_json::json!({
                        "type": "indicator", "spec_version": "2.1", "id": id,
                        "created": added, "modified": added, "valid_from": added,
                        "pattern": "[ipv4-addr:value = '192.0.2.1']", "pattern_type": "stix",
                    })
                })
                .collect();
            let mut doc = serde_json::json!({ "more": more, "objects": objects });
            if more {
                doc["next"] = serde_json::json!((start + limit).to_string());
            }
            doc.to_string()
        };
        let mut body = body.into_bytes();
        if self.rng.chance(4, &self.faults) {
            body.truncate(body.len() / 2);
        }
        Ok(SourceResponse {
            status: 200,
            headers,
            body: Body::Memory(body),
            final_url: url.into(),
        })
    }
}

#[async_trait]
impl Source for &'static World {
    async fn get(&self, request: SourceRequest) -> Result<SourceResponse, HttpError> {
        self.answer(&request.url)
    }
}

struct Sources(&'static World);

#[async_trait]
impl SourceFactory for Sources {
    async fn open(&self, _feed: &Feed) -> Result<Box<dyn Source>, FetchError> {
        Ok(Box::new(self.0))
    }
}

struct Pages(&'static World);

#[async_trait]
impl PageQueue for Pages {
    async fn send(&self, part: PagePart) -> Result<(), PortError> {
        let w = self.0;
        if w.rng.chance(4, &w.faults) {
            return Err("page queue refused the part".into());
        }
        let mut delivered = w.delivered.lock().unwrap();
        delivered.extend(
            part.objects
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_string()),
        );
        if w.rng.chance(4, &w.faults) {
            return Err("page queue timed out after accepting the part".into());
        }
        Ok(())
    }
}

struct Jobs(&'static World);

#[async_trait]
impl JobQueue for Jobs {
    async fn send(&self, job: FetchJob) -> Result<(), PortError> {
        let w = self.0;
        let mut jobs = w.jobs.lock().unwrap();
        if w.rng.chance(5, &w.faults) {
            jobs.push_back(job.clone());
        }
        jobs.push_back(job);
        Ok(())
    }
}

struct States(&'static World);

#[async_trait]
impl StateStore for States {
    async fn load(&self, feed: &str) -> Result<Option<FeedState>, PortError> {
        Ok(self.0.states.lock().unwrap().get(feed).cloned())
    }

    async fn commit(
        &self,
        feed: &str,
        expected: u64,
        state: &FeedState,
    ) -> Result<Commit, PortError> {
        let w = self.0;
        if w.rng.chance(4, &w.faults) {
            return Err("conditional write failed: throttled".into());
        }
        let mut states = w.states.lock().unwrap();
        let current = states.get(feed).cloned().unwrap_or_default();
        if current.version != expected || current.epoch != state.epoch {
            return Ok(Commit::Conflict);
        }
        let mut next = state.clone();
        next.version = expected + 1;
        next.run_state = current.run_state;
        next.status.dropped_stale = current.status.dropped_stale;
        if next.pages != current.pages {
            let added_after = match &next.cursor {
                Cursor::Taxii(c) => c.added_after.clone(),
                _ => None,
            };
            w.commits
                .lock()
                .unwrap()
                .push((next.epoch, current.pages, next.pages, added_after));
        }
        states.insert(feed.into(), next);
        if w.rng.chance(4, &w.faults) {
            return Err("conditional write timed out (it did happen)".into());
        }
        Ok(Commit::Committed)
    }

    async fn try_lease(
        &self,
        _feed: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let mut lease = self.0.lease.lock().unwrap();
        if lease.is_some_and(|held| held > now) {
            return Ok(false);
        }
        *lease = Some(until);
        Ok(true)
    }

    async fn release_lease(&self, _feed: &str) -> Result<(), PortError> {
        *self.0.lease.lock().unwrap() = None;
        Ok(())
    }

    async fn count_dropped(&self, feed: &str, n: u64) -> Result<(), PortError> {
        self.0
            .states
            .lock()
            .unwrap()
            .entry(feed.into())
            .or_default()
            .status
            .dropped_stale += n;
        Ok(())
    }

    async fn reset(&self, _feed: &str) -> Result<FeedState, PortError> {
        Err("not used here".into())
    }

    async fn set_run_state(&self, _feed: &str, _r: RunState) -> Result<(), PortError> {
        Err("not used here".into())
    }
}

fn feed() -> FeedConfig {
    FeedConfig {
        name: "tx".into(),
        url: "https://taxii.example.test/api/".into(),
        interval_secs: 60,
        import_from: None,
        author: None,
        markings: Vec::new(),
        user: None,
        http: HttpOptions::default(),
        pause_after_failures: 0,
        kind: KindConfig::Taxii {
            collection: "c".into(),
            version: "2.1".into(),
            page_size: 4,
            match_types: Vec::new(),
        },
    }
}

/// Runs one seed's schedule and checks the invariants; returns the number of commits.
async fn schedule(seed: u64) -> usize {
    let world: &'static World = Box::leak(Box::new(World::new(seed)));
    let config = crate::config::Config {
        path: "feeds.toml".into(),
        settings: Default::default(),
        feeds: vec![feed()],
    };
    let feeds = ConfigFeeds::new(&config);
    let (states, jobs) = (States(world), Jobs(world));
    let deps = FetcherDeps {
        feeds: &feeds,
        states: &states,
        jobs: &jobs,
        pages: std::sync::Arc::new(Pages(world)),
        max_part_bytes: 1_500,
    };
    let sources = Sources(world);
    let mut now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();

    for round in 0..8 {
        world.grow((world.rng.next() % 12) as usize);
        if round == 7 {
            // A last round without faults drains whatever the faults left behind.
            *world.faults.lock().unwrap() = false;
        }
        dispatcher::dispatch(&feeds, &states, &jobs, now, true)
            .await
            .unwrap();
        let mut steps = 0;
        loop {
            let job = {
                let mut q = world.jobs.lock().unwrap();
                if q.is_empty() {
                    break;
                }
                // Jobs come out in any order, as a redelivering queue hands them out.
                let i = (world.rng.next() % q.len() as u64) as usize;
                q.remove(i).unwrap()
            };
            now += Duration::seconds(30);
            if fetcher::handle(&job, &deps, &sources, now).await.is_err() {
                // Not deleted, so the queue redelivers it.
                world.jobs.lock().unwrap().push_back(job);
            }
            steps += 1;
            assert!(steps < 5_000, "seed {seed}: the job loop does not settle");
        }
        // Leases of fetchers that died expire before the next round.
        now += Duration::minutes(30);
        if round == 7 {
            // Drain completely: a walk whose page failed resumes in the next dispatch.
            let mut rounds = 0;
            while world
                .states
                .lock()
                .unwrap()
                .get("tx")
                .is_some_and(|s| s.more)
                || rounds == 0
            {
                dispatcher::dispatch(&feeds, &states, &jobs, now, true)
                    .await
                    .unwrap();
                loop {
                    let next = world.jobs.lock().unwrap().pop_front();
                    let Some(job) = next else { break };
                    fetcher::handle(&job, &deps, &sources, now).await.unwrap();
                }
                now += Duration::minutes(30);
                rounds += 1;
                assert!(rounds < 50, "seed {seed}: the final drain does not end");
            }
        }
    }

    // Every object reached the page queue at least once.
    let source: BTreeSet<String> = world
        .objects
        .lock()
        .unwrap()
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    let delivered = world.delivered.lock().unwrap();
    let missing: Vec<&String> = source.difference(&delivered).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: {} object(s) never delivered: {missing:?}",
        missing.len()
    );

    // Pages move one at a time, each page is committed once, the cursor never goes back.
    let commits = world.commits.lock().unwrap();
    let mut last_after: Option<String> = None;
    for (i, (epoch, before, after, added_after)) in commits.iter().enumerate() {
        assert_eq!(*epoch, 0);
        assert_eq!(
            *before as usize, i,
            "seed {seed}: commit {i} started from page {before}"
        );
        assert_eq!(*after, before + 1, "seed {seed}: a page was skipped");
        if let (Some(prev), Some(now)) = (&last_after, added_after) {
            assert!(
                now >= prev,
                "seed {seed}: added_after went back from {prev} to {now}"
            );
        }
        if added_after.is_some() {
            last_after = added_after.clone();
        }
    }
    commits.len()
}

#[tokio::test]
async fn delivery_contract_holds_under_random_fault_schedules() {
    let mut total = 0;
    for seed in 0..SEEDS {
        total += schedule(seed).await;
    }
    let injected = INJECTED.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{SEEDS} fault schedules, {total} pages committed, {injected} faults injected");
    assert!(injected > SEEDS * 5, "only {injected} faults were injected");
    // The schedules did real work: hundreds of pages went through.
    assert!(
        total as u64 > SEEDS * 5,
        "only {total} commits over {SEEDS} seeds"
    );
}
