//! Runs the cluster simulation: one seed with its trace, or a range.
//!
//!   cargo run --release -p vnas-cluster --example sim -- --seed 42 --trace
//!   cargo run --release -p vnas-cluster --example sim -- --seeds 0..1000000

use vnas_cluster::sim;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let trace = args.iter().any(|a| a == "--trace");
    let (first, last) = match (value("--seed"), value("--seeds")) {
        (Some(seed), _) => {
            let seed: u64 = seed.parse().expect("--seed N");
            (seed, seed + 1)
        }
        (None, Some(range)) => {
            let (a, b) = range.split_once("..").expect("--seeds A..B");
            (a.parse().expect("A"), b.parse().expect("B"))
        }
        _ => {
            eprintln!("usage: sim --seed N [--trace] | --seeds A..B");
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    for seed in first..last {
        match sim::run_traced(seed) {
            Ok((outcome, events)) => {
                if trace {
                    for line in events {
                        println!("{line}");
                    }
                }
                if last - first == 1 {
                    println!("seed {seed}: ok, {outcome:?}");
                }
            }
            Err(violation) => {
                if trace {
                    for line in &violation.trace {
                        println!("{line}");
                    }
                }
                eprintln!("{violation}");
                std::process::exit(1);
            }
        }
        if (seed - first + 1) % 10_000 == 0 {
            eprintln!("{} seeds ok ({:?})", seed - first + 1, started.elapsed());
        }
    }
    eprintln!("{} seeds ok in {:?}", last - first, started.elapsed());
}
