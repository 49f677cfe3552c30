//! Micro-benchmarks of Sublist matching: literal subjects, `*` and `>`
//! wildcards, queue groups, and the match cache hitting and missing.
//!
//! Run: `cargo bench -p rnats-core --bench sublist`.

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rnats_core::subject::Sublist;

/// Subjects in the background population: `a.<i>.<j>.c`, i < 100, j < 100.
const FAN: usize = 100;

/// A Sublist of 10,000 literal subscriptions `a.<i>.<j>.c`, plus `extra`.
fn populated(extra: &[(&str, Option<&str>)]) -> Sublist<u32> {
    let mut sublist = Sublist::new();
    let mut value = 0u32;
    for i in 0..FAN {
        for j in 0..FAN {
            sublist
                .insert(format!("a.{i}.{j}.c").as_bytes(), None, value)
                .expect("insert");
            value += 1;
        }
    }
    for (subject, queue) in extra {
        sublist
            .insert(subject.as_bytes(), queue.map(str::as_bytes), value)
            .expect("insert");
        value += 1;
    }
    sublist
}

/// The same subject every time: answered from the cache after the first.
fn bench_hit(c: &mut Criterion, name: &str, sublist: &mut Sublist<u32>, subject: &[u8]) {
    let mut group = c.benchmark_group("sublist/cache_hit");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            let result = sublist.matches(black_box(subject));
            black_box(result.plain.len() + result.queues.len())
        })
    });
    group.finish();
}

/// 10,000 distinct subjects in turn: the 1,024-entry cache misses every time.
fn bench_miss(c: &mut Criterion, name: &str, sublist: &mut Sublist<u32>, subjects: &[Vec<u8>]) {
    let mut group = c.benchmark_group("sublist/cache_miss");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        let mut next = 0;
        b.iter(|| {
            let subject = &subjects[next];
            next = (next + 1) % subjects.len();
            let result = sublist.matches(black_box(subject));
            black_box(result.plain.len() + result.queues.len())
        })
    });
    group.finish();
}

fn distinct_subjects() -> Vec<Vec<u8>> {
    // A stride coprime to FAN*FAN visits every subject before repeating.
    (0..FAN * FAN)
        .map(|k| (k * 7919) % (FAN * FAN))
        .map(|k| format!("a.{}.{}.c", k / FAN, k % FAN).into_bytes())
        .collect()
}

fn matching(c: &mut Criterion) {
    let subjects = distinct_subjects();

    let mut literal = populated(&[]);
    bench_hit(c, "literal", &mut literal, b"a.42.17.c");
    bench_miss(c, "literal", &mut literal, &subjects);

    let star: Vec<(String, Option<&str>)> =
        (0..FAN).map(|i| (format!("a.{i}.*.c"), None)).collect();
    let star_refs: Vec<(&str, Option<&str>)> = star.iter().map(|(s, q)| (s.as_str(), *q)).collect();
    let mut with_star = populated(&star_refs);
    bench_hit(c, "literal+star", &mut with_star, b"a.42.17.c");
    bench_miss(c, "literal+star", &mut with_star, &subjects);

    let mut with_full = populated(&[("a.>", None), (">", None)]);
    bench_hit(c, "literal+full_wildcard", &mut with_full, b"a.42.17.c");
    bench_miss(c, "literal+full_wildcard", &mut with_full, &subjects);

    let queue_members: Vec<(String, Option<&str>)> = (0..4)
        .map(|_| ("a.*.*.c".to_string(), Some("workers")))
        .collect();
    // Queue members must differ in value; populated() hands out fresh values.
    let queue_refs: Vec<(&str, Option<&str>)> = queue_members
        .iter()
        .map(|(s, q)| (s.as_str(), *q))
        .collect();
    let mut with_queue = populated(&queue_refs);
    bench_hit(c, "literal+queue_group_of_4", &mut with_queue, b"a.42.17.c");
    bench_miss(c, "literal+queue_group_of_4", &mut with_queue, &subjects);

    let mut nothing = populated(&[]);
    bench_hit(c, "no_match", &mut nothing, b"b.42.17.c");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = matching
}
criterion_main!(benches);
