//! The simulation over many seeds: every run must keep the invariants and
//! settle. `VNAS_SIM_SEEDS=N` runs N seeds (default 10,000), from
//! `VNAS_SIM_FIRST` (default 0).

use vnas_cluster::sim;

/// Seeds that once found a bug: they run first, always.
// 5: a node that fenced itself served again before any renewal proved its
// session alive, while others took its vservers over (two served one).
// 1: a node that fenced itself while a move to another node was pending
// kept the ownership, and the target waited for ever.
// 0, 3, 832: histories that were no chain (a lost confirmation, a hand-off
// passed on by a node that never served, a confirmation retried).
const REGRESSIONS: &[u64] = &[5, 1, 0, 3, 832];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn ten_thousand_seeds_keep_the_invariants() {
    let first = env("VNAS_SIM_FIRST", 0);
    let count = env("VNAS_SIM_SEEDS", 10_000);
    let seeds: Vec<u64> = REGRESSIONS.iter().copied().chain(first..first + count).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = std::time::Instant::now();
    let results: Vec<(u64, u64, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let seeds = &seeds;
                scope.spawn(move || {
                    let (mut transfers, mut faults, mut writes) = (0, 0, 0);
                    for seed in seeds.iter().skip(t).step_by(threads) {
                        match sim::run(*seed) {
                            Ok(outcome) => {
                                transfers += outcome.transfers;
                                faults += outcome.faults;
                                writes += outcome.writes;
                            }
                            Err(violation) => panic!("{violation}"),
                        }
                    }
                    (transfers, faults, writes)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let (transfers, faults, writes) =
        results.iter().fold((0, 0, 0), |acc, r| (acc.0 + r.0, acc.1 + r.1, acc.2 + r.2));
    eprintln!(
        "{} seeds in {:?}: {transfers} transfers, {faults} faults, {writes} checked writes",
        seeds.len(),
        started.elapsed()
    );
    assert!(transfers > seeds.len() as u64, "the runs moved vservers around");
    assert!(faults > seeds.len() as u64, "the runs injected faults");
}

#[test]
fn a_seed_replays_the_same_run() {
    let a = sim::run(7).unwrap();
    let b = sim::run(7).unwrap();
    assert_eq!((a.steps, a.transfers, a.faults, a.writes), (b.steps, b.transfers, b.faults, b.writes));
}
