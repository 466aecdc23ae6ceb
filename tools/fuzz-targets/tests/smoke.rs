//! Fuzz smoke run on stable, inside `cargo test --workspace`: every fuzz target over every seed
//! of its corpus (`fuzz/corpus/<target>/`), then over seeded mutations of those seeds.
//!
//! No coverage feedback and no sanitizers (that is the nightly cargo-fuzz campaign, `.ci/fuzz`):
//! this catches a change that makes a body panic on inputs near the seeds, on every CI build,
//! for the price of the workspace's own debug build.
//!
//! Each mutated input is a function of (seed, target, case index) and the committed seeds
//! alone, so one failing case replays by itself on any checkout of the same commit.
//! Environment:
//! - `IPFRS_FUZZ_SMOKE_SEED`: the seed (decimal or 0x-hex) instead of [`DEFAULT_SEED`];
//! - `IPFRS_FUZZ_SMOKE_CASES`: mutated inputs per target instead of [`DEFAULT_CASES`];
//! - `IPFRS_FUZZ_SMOKE_CASE`: run only this case index (and no seeds), to replay a failure.
//!
//! A failure names the target, the seed and the case, the mutations that made the input, and
//! the file under the target directory (`<target dir>/tmp/fuzz-smoke/<target>/`) where the input
//! was written, which `cargo +nightly fuzz run -a <target> <file>` also replays.

use std::any::Any;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ipfrs_fuzz_targets::{TARGETS, Target};

/// The seed when `IPFRS_FUZZ_SMOKE_SEED` is not set: fixed, so CI runs the same inputs every
/// time and a red build is reproducible.
const DEFAULT_SEED: u64 = 0x1f5_f022;

/// Mutated inputs per target when `IPFRS_FUZZ_SMOKE_CASES` is not set. Chosen so that the four
/// targets together add a few seconds to a debug `cargo test --workspace` on a 2-core machine:
/// the slowest, segment_recovery, costs about 0.1 ms an input unoptimised, the others less.
const DEFAULT_CASES: u64 = 20_000;

/// Mutated inputs are capped at this size: the seeds are a few KiB, and the targets' structured
/// programs gain nothing from more bytes, while a debug build pays for every one of them.
const MAX_INPUT: usize = 16 * 1024;

/// A target stops after this many failures: the first few say what is wrong, the rest only
/// repeat it and cost time.
const MAX_FAILURES: usize = 3;

/// SplitMix64: a few lines, no dependency, and the same sequence in every build and version, so
/// a seed from a CI log replays the same inputs on a developer's machine years later.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

/// The generator of one case: depends only on the seed, the target's name and the case index.
fn case_rng(seed: u64, target: &str, case: u64) -> Rng {
    // FNV-1a of the name, so two targets do not get the same mutations of their seeds.
    let name = target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut mix = Rng(seed ^ name);
    let base = mix.next();
    let mut rng = Rng(base ^ case.wrapping_mul(0xd6e8_feb8_6659_fd93));
    rng.next();
    rng
}

/// Values that length and count fields break on: zero, one, sign and width boundaries.
const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0xffff_ffff,
    u64::MAX,
];

/// One mutated input: a seed, then one to four stacked mutations (as libFuzzer stacks them).
/// Returns the input and what was done to it, for the failure report.
fn mutate(rng: &mut Rng, corpus: &[(String, Vec<u8>)]) -> (Vec<u8>, Vec<String>) {
    let (name, seed) = &corpus[rng.below(corpus.len())];
    let mut buf = seed.clone();
    let mut log = vec![format!("seed {name}")];
    for _ in 0..1 + rng.below(4) {
        let len = buf.len();
        let at = rng.below(len.max(1));
        match rng.below(8) {
            0 if len > 0 => {
                let bit = rng.below(8);
                buf[at] ^= 1 << bit;
                log.push(format!("flip bit {bit} at {at}"));
            }
            1 if len > 0 => {
                let value = match rng.below(3) {
                    0 => 0x00,
                    1 => 0xff,
                    _ => rng.byte(),
                };
                buf[at] = value;
                log.push(format!("set {at} to {value:#04x}"));
            }
            2 => {
                let count = 1 + rng.below(8);
                let fill = rng.byte();
                let bytes: Vec<u8> = (0..count)
                    .map(|_| if rng.below(2) == 0 { fill } else { rng.byte() })
                    .collect();
                let at = rng.below(len + 1);
                buf.splice(at..at, bytes);
                log.push(format!("insert {count} bytes at {at}"));
            }
            3 if len > 0 => {
                let end = (at + 1 + rng.below(16)).min(len);
                buf.drain(at..end);
                log.push(format!("delete {at}..{end}"));
            }
            4 => {
                let to = rng.below(len + 1);
                buf.truncate(to);
                log.push(format!("truncate to {to}"));
            }
            5 if len > 0 => {
                let end = (at + 1 + rng.below(64)).min(len);
                let copy = buf[at..end].to_vec();
                let to = rng.below(len + 1);
                buf.splice(to..to, copy);
                log.push(format!("copy {at}..{end} to {to}"));
            }
            6 => {
                let (other_name, other) = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                buf.truncate(cut);
                buf.extend_from_slice(&other[from..]);
                log.push(format!("splice {other_name}[{from}..] at {cut}"));
            }
            7 if len > 0 => {
                let width = [1, 2, 4, 8][rng.below(4)];
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let big = rng.below(2) == 0;
                let bytes = if big {
                    value.to_be_bytes()[8 - width..].to_vec()
                } else {
                    value.to_le_bytes()[..width].to_vec()
                };
                let end = (at + width).min(len);
                buf[at..end].copy_from_slice(&bytes[..end - at]);
                log.push(format!(
                    "set {width} bytes at {at} to {value:#x} (be: {big})"
                ));
            }
            // A mutation that needs bytes drew an empty input: the next one may grow it.
            _ => {}
        }
        buf.truncate(MAX_INPUT);
    }
    (buf, log)
}

/// The knobs of one run, read from the environment once.
#[derive(Clone, Copy, Debug)]
struct Settings {
    seed: u64,
    cases: u64,
    only_case: Option<u64>,
}

fn parse_u64(var: &str) -> Option<u64> {
    let text = std::env::var(var).ok()?;
    let text = text.trim();
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(value) => Some(value),
        Err(e) => panic!("{var}={text:?} is not a number: {e}"),
    }
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            seed: parse_u64("IPFRS_FUZZ_SMOKE_SEED").unwrap_or(DEFAULT_SEED),
            cases: parse_u64("IPFRS_FUZZ_SMOKE_CASES").unwrap_or(DEFAULT_CASES),
            only_case: parse_u64("IPFRS_FUZZ_SMOKE_CASE"),
        }
    }
}

/// One input that made a body panic.
#[derive(Debug)]
struct Failure {
    /// `seed file <name>` or `case <index>`.
    case: String,
    /// The mutations that made the input from a seed (empty for a seed file).
    made_by: Vec<String>,
    message: String,
    /// Where the input was written.
    file: PathBuf,
}

/// What a target's run did.
#[derive(Debug)]
struct Outcome {
    execs: u64,
    failures: Vec<Failure>,
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// Runs `body` over the seeds, then over the mutated cases; a panic becomes a [`Failure`] with
/// its input written under `out`.
fn run(
    target: &str,
    body: Target,
    corpus: &[(String, Vec<u8>)],
    settings: Settings,
    out: &Path,
) -> Outcome {
    assert!(
        !corpus.is_empty(),
        "{target}: empty corpus, nothing to mutate"
    );
    let check = |case: String, made_by: Vec<String>, input: &[u8], file_name: String| {
        let payload = catch_unwind(AssertUnwindSafe(|| body(input))).err()?;
        let file = out.join(target).join(file_name);
        let written = fs::create_dir_all(out.join(target)).and_then(|()| fs::write(&file, input));
        if let Err(e) = written {
            eprintln!("{target}: cannot write the failing input to {file:?}: {e}");
        }
        Some(Failure {
            case,
            made_by,
            message: panic_message(payload.as_ref()),
            file,
        })
    };
    let mut outcome = Outcome {
        execs: 0,
        failures: Vec::new(),
    };
    let cases = match settings.only_case {
        Some(case) => case..case + 1,
        None => {
            for (name, input) in corpus {
                outcome.execs += 1;
                let case = format!("seed file {name}");
                outcome
                    .failures
                    .extend(check(case, Vec::new(), input, format!("seed-{name}")));
            }
            0..settings.cases
        }
    };
    for case in cases {
        if outcome.failures.len() >= MAX_FAILURES {
            break;
        }
        let mut rng = case_rng(settings.seed, target, case);
        let (input, made_by) = mutate(&mut rng, corpus);
        outcome.execs += 1;
        let file_name = format!("seed-{:#x}-case-{case}", settings.seed);
        outcome
            .failures
            .extend(check(format!("case {case}"), made_by, &input, file_name));
    }
    outcome
}

/// libFuzzer names what it adds to a corpus by its SHA-1 (40 hex digits); `fuzz/.gitignore`
/// keeps those out of git, and the smoke skips them too, so its cases are numbered the same on
/// every checkout of a commit whatever local campaigns left behind.
fn is_libfuzzer_growth(name: &str) -> bool {
    name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The committed seeds of a target, sorted by name so the case numbering never depends on the
/// order the file system lists them in.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {dir:?}: {e}"));
    let mut seeds = Vec::new();
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("corpus {dir:?}: {e}"))
            .path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with('.') || is_libfuzzer_growth(&name) || !path.is_file() {
            continue;
        }
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        seeds.push((name, bytes));
    }
    seeds.sort();
    seeds
}

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-smoke")
}

/// The whole smoke run of one target; fails with every failure's replay instructions.
fn smoke(target: &str) {
    let Some((_, body)) = TARGETS.iter().find(|(name, _)| *name == target) else {
        panic!("no target {target}");
    };
    let settings = Settings::from_env();
    let seeds = corpus(target);
    let started = Instant::now();
    let outcome = run(target, *body, &seeds, settings, &out_dir());
    let inputs = match settings.only_case {
        Some(case) => format!("case {case} only"),
        None => format!("{} seeds, then mutations", seeds.len()),
    };
    eprintln!(
        "{target}: {} execs ({inputs}, seed {:#x}) in {:.1} s",
        outcome.execs,
        settings.seed,
        started.elapsed().as_secs_f64()
    );
    if outcome.failures.is_empty() {
        return;
    }
    let mut report = format!(
        "fuzz smoke: target {target} panicked (seed {:#x}, IPFRS_FUZZ_SMOKE_SEED={:#x})\n",
        settings.seed, settings.seed
    );
    for failure in &outcome.failures {
        report.push_str(&format!(
            "- {}: {}\n  made by: {}\n  input written to {}\n",
            failure.case,
            failure.message,
            failure.made_by.join(", "),
            failure.file.display()
        ));
        if let Some(case) = failure.case.strip_prefix("case ") {
            report.push_str(&format!(
                "  replay: IPFRS_FUZZ_SMOKE_SEED={:#x} IPFRS_FUZZ_SMOKE_CASE={case} \
                 cargo test -p ipfrs-fuzz-targets --test smoke -- {target}\n",
                settings.seed
            ));
        }
        report.push_str(&format!(
            "  or: cargo +nightly fuzz run -a {target} {}\n",
            failure.file.display()
        ));
    }
    panic!("{report}");
}

#[test]
fn segment_recovery() {
    smoke("segment_recovery");
}

#[test]
fn car_read() {
    smoke("car_read");
}

#[test]
fn versioning_objects() {
    smoke("versioning_objects");
}

#[test]
fn cid_parse() {
    smoke("cid_parse");
}

#[test]
fn every_target_has_a_smoke_test_and_a_corpus() {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "segment_recovery",
            "car_read",
            "versioning_objects",
            "cid_parse"
        ],
        "a new target needs its #[test] in smoke.rs"
    );
    for name in names {
        assert!(!corpus(name).is_empty(), "{name} has no seeds");
    }
    assert!(is_libfuzzer_growth(
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    ));
    assert!(!is_libfuzzer_growth("raw-word-torn"));
    assert!(!is_libfuzzer_growth(&"z".repeat(40)));
}

/// A body that panics on any input not starting with the seed's first byte: the mutations
/// reach it (a flip, a set or a truncation at 0), and the harness must report it replayably.
fn picky(data: &[u8]) {
    assert_eq!(data.first(), Some(&b'h'), "picky: lost the h");
}

#[test]
fn a_panicking_body_is_reported_with_a_replayable_case_and_its_input() {
    let corpus = vec![("hello".to_owned(), b"hello, world".to_vec())];
    let settings = Settings {
        seed: 7,
        cases: 500,
        only_case: None,
    };
    let out = out_dir().join("self-test");
    let outcome = run("picky", picky, &corpus, settings, &out);
    assert_eq!(outcome.failures.len(), MAX_FAILURES, "{outcome:?}");
    assert!(
        outcome.execs < 1 + settings.cases,
        "stops after {MAX_FAILURES} failures"
    );
    for failure in &outcome.failures {
        assert!(failure.message.contains("picky: lost the h"), "{failure:?}");
        let input = fs::read(&failure.file).unwrap_or_else(|e| panic!("{failure:?}: {e}"));
        assert_ne!(input.first(), Some(&b'h'));
        assert!(catch_unwind(|| picky(&input)).is_err());
        // The case alone, with the same seed, rebuilds the same input.
        let Some(case) = failure.case.strip_prefix("case ") else {
            panic!("the seed itself failed: {failure:?}");
        };
        let case: u64 = case.parse().unwrap_or_else(|e| panic!("{case}: {e}"));
        let mut rng = case_rng(settings.seed, "picky", case);
        assert_eq!(mutate(&mut rng, &corpus).0, input);
        let only = Settings {
            only_case: Some(case),
            ..settings
        };
        let replay = run("picky", picky, &corpus, only, &out.join("replay"));
        assert_eq!(replay.execs, 1);
        assert_eq!(replay.failures.len(), 1);
    }
    let _ = fs::remove_dir_all(&out);
}

#[test]
fn mutations_depend_on_the_seed_and_change_the_input() {
    let corpus = vec![
        ("a".to_owned(), (0..=255).collect::<Vec<u8>>()),
        ("b".to_owned(), b"second seed".to_vec()),
    ];
    let inputs = |seed: u64| -> Vec<Vec<u8>> {
        (0..200)
            .map(|case| mutate(&mut case_rng(seed, "t", case), &corpus).0)
            .collect()
    };
    let first = inputs(1);
    assert_eq!(first, inputs(1), "same seed, same inputs");
    assert_ne!(first, inputs(2), "another seed, other inputs");
    let unchanged = first
        .iter()
        .filter(|input| corpus.iter().any(|(_, seed)| seed == *input))
        .count();
    // A stack of mutations can cancel out (two flips of one bit), but rarely.
    assert!(
        unchanged < 20,
        "{unchanged} of 200 inputs are a seed unchanged"
    );
    assert!(first.iter().all(|input| input.len() <= MAX_INPUT));
}
