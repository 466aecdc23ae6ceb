//! The `--json` output of every `ipfrs-store version` command, pinned byte for byte against
//! one fixed history, so a change in how the results are serialised (field names, order, CIDs
//! as text, timestamps in milliseconds) shows up here first.
//!
//! Only what the clock decides is replaced before comparing: commit CIDs (a commit holds its
//! time) by the commit's role (`<c1>`, `<merge>`), `timestamp_ms` and `time` values by
//! `<ms>` and `<time>`, and the temporary directory by `<dir>`. Everything else, state and
//! chunk CIDs included, is compared as printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};

use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Valid CIDs named as provenance (the empty raw block and a well-known directory).
const DATASET: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
const GRADIENT: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

/// Runs `ipfrs-store --json --repo <repo> args` and returns its stdout.
fn json(repo: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ipfrs-store"))
        .env_remove("IPFRS_STORE_REPO")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", "/nonexistent-home-for-tests")
        .env("USER", "tester")
        .arg("--json")
        .arg("--repo")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Writes a safetensors file of f32 tensors: (name, shape, first value); element `i` is
/// `first + i / 4`, exact in f32.
fn model(path: &Path, tensors: &[(&str, &[usize], f32)]) {
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, shape, first)| {
            (0..shape.iter().product::<usize>())
                .flat_map(|i| (first + i as f32 * 0.25).to_le_bytes())
                .collect()
        })
        .collect();
    let views = tensors.iter().zip(&data).map(|((name, shape, _), bytes)| {
        (
            *name,
            TensorView::new(Dtype::F32, shape.to_vec(), bytes).unwrap(),
        )
    });
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// The recorded outputs, each under a `== command ==` line.
#[derive(Default)]
struct Transcript {
    text: String,
}

impl Transcript {
    fn run(&mut self, repo: &Path, args: &[&str]) -> serde_json::Value {
        let out = json(repo, args);
        self.text
            .push_str(&format!("== {} ==\n{out}", args.join(" ")));
        serde_json::from_str(&out).unwrap()
    }
}

/// Replaces what the clock decides (see the module documentation).
fn normalise(text: &str, dir: &str, commits: &[(&str, String)]) -> String {
    let mut text = text.replace(dir, "<dir>");
    for (role, cid) in commits {
        text = text.replace(cid.as_str(), &format!("<{role}>"));
    }
    text.lines()
        .map(|line| {
            for (key, placeholder) in [("\"timestamp_ms\": ", "<ms>"), ("\"time\": ", "\"<time>\"")]
            {
                if let Some(at) = line.find(key) {
                    let comma = if line.ends_with(',') { "," } else { "" };
                    return format!("{}{key}{placeholder}{comma}\n", &line[..at]);
                }
            }
            format!("{line}\n")
        })
        .collect()
}

#[test]
fn every_version_command_prints_the_pinned_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let repo = dir.join("repo");
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let mut t = Transcript::default();

    t.run(&repo, &["version", "init"]);
    // k never changes; in the second model w changes, r is relaid, b goes and c comes.
    model(
        &dir.join("m1.safetensors"),
        &[
            ("b", &[4], 0.0),
            ("k", &[2], 5.0),
            ("r", &[4, 4], 1.0),
            ("w", &[4, 4], 0.0),
        ],
    );
    let second = |first: f32| {
        [
            ("c", &[3][..], first),
            ("k", &[2][..], 5.0),
            ("r", &[2, 8][..], 1.0),
            ("w", &[4, 4][..], first),
        ]
    };
    model(&dir.join("m2.safetensors"), &second(1.0));
    model(&dir.join("m3.safetensors"), &second(2.0));

    let commit = |t: &mut Transcript, file: &str, extra: &[&str]| {
        let file = path(file);
        let mut args = vec!["version", "commit", &file];
        args.extend_from_slice(extra);
        t.run(&repo, &args)["commit"].as_str().unwrap().to_string()
    };
    let c1 = commit(
        &mut t,
        "m1.safetensors",
        &[
            "-m",
            "base",
            "--dataset",
            DATASET,
            "--gradient",
            GRADIENT,
            "--param",
            "lr=3e-4",
            "--meta",
            "run=7",
        ],
    );
    t.run(
        &repo,
        &["version", "branch", "create", "exp", "--at", "main"],
    );
    t.run(
        &repo,
        &["version", "branch", "create", "ff", "--at", "main"],
    );
    t.run(&repo, &["version", "tag", "create", "v1", "--at", &c1]);
    let c2 = commit(&mut t, "m2.safetensors", &["-m", "ours"]);
    let c3 = commit(&mut t, "m3.safetensors", &["-b", "exp", "-m", "theirs"]);
    t.run(&repo, &["version", "diff", &c1, &c2]);
    t.run(&repo, &["version", "merge", "main", "--branch", "ff"]);
    t.run(&repo, &["version", "merge", "main", "--branch", "ff"]);
    let merged = t.run(
        &repo,
        &[
            "version",
            "merge",
            "exp",
            "--weighted",
            "0.5",
            "-m",
            "average",
        ],
    );
    let merge = merged["commit"]["commit"].as_str().unwrap().to_string();
    t.run(&repo, &["version", "log", "main"]);
    t.run(&repo, &["version", "blame", "main"]);
    t.run(&repo, &["version", "branch", "list"]);
    t.run(&repo, &["version", "tag", "list"]);
    t.run(&repo, &["version", "branch", "delete", "ff"]);

    // The first model again on an orphan branch: only its commit object is new, and once the
    // branch is gone and HEAD back on main, it is all gc sweeps.
    let scratch = commit(
        &mut t,
        "m1.safetensors",
        &["-b", "scratch", "--orphan", "-m", "scratch"],
    );
    t.run(&repo, &["version", "branch", "delete", "scratch"]);
    t.run(
        &repo,
        &[
            "version",
            "checkout",
            "main",
            "-o",
            &path("out.safetensors"),
        ],
    );
    t.run(&repo, &["version", "gc", "--dry-run"]);
    t.run(&repo, &["version", "gc"]);

    let car = path("main.car");
    t.run(&repo, &["version", "export", "main", "-o", &car]);
    let other = dir.join("other");
    t.run(&other, &["version", "init"]);
    t.run(&other, &["version", "import", &car, "--branch", "main"]);

    let commits = [
        ("c1", c1),
        ("c2", c2),
        ("c3", c3),
        ("merge", merge),
        ("scratch", scratch),
    ];
    let got = normalise(&t.text, dir.to_str().unwrap(), &commits);
    if got != EXPECTED {
        eprintln!("got:\n{got}");
    }
    assert!(got == EXPECTED, "the JSON output changed (printed above)");
}

/// The outputs of the history above, as printed before the versioning types serialised
/// themselves.
const EXPECTED: &str = r##"== version init ==
{
  "repo": "<dir>/repo",
  "created_store": true,
  "ledger": "<dir>/repo/ledger",
  "branches": 0
}
== version commit <dir>/m1.safetensors -m base --dataset bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku --gradient bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi --param lr=3e-4 --meta run=7 ==
{
  "commit": "<c1>",
  "branch": "main",
  "parents": [],
  "full": 4,
  "deltas": 0,
  "unchanged": 0,
  "new_blocks": 10,
  "new_bytes": 1437
}
== version branch create exp --at main ==
{
  "action": "created",
  "kind": "branch",
  "name": "exp",
  "commit": "<c1>"
}
== version branch create ff --at main ==
{
  "action": "created",
  "kind": "branch",
  "name": "ff",
  "commit": "<c1>"
}
== version tag create v1 --at <c1> ==
{
  "action": "created",
  "kind": "tag",
  "name": "v1",
  "commit": "<c1>"
}
== version commit <dir>/m2.safetensors -m ours ==
{
  "commit": "<c2>",
  "branch": "main",
  "parents": [
    "<c1>"
  ],
  "full": 2,
  "deltas": 1,
  "unchanged": 1,
  "new_blocks": 5,
  "new_bytes": 829
}
== version commit <dir>/m3.safetensors -b exp -m theirs ==
{
  "commit": "<c3>",
  "branch": "exp",
  "parents": [
    "<c1>"
  ],
  "full": 2,
  "deltas": 1,
  "unchanged": 1,
  "new_blocks": 6,
  "new_bytes": 895
}
== version diff <c1> <c2> ==
{
  "from": "<c1>",
  "to": "<c2>",
  "tensors": [
    {
      "name": "b",
      "change": "removed"
    },
    {
      "name": "c",
      "change": "added",
      "dtype": "F32",
      "shape": [
        3
      ]
    },
    {
      "name": "r",
      "change": "relaid",
      "from_dtype": "F32",
      "from_shape": [
        4,
        4
      ],
      "to_dtype": "F32",
      "to_shape": [
        2,
        8
      ]
    },
    {
      "name": "w",
      "change": "changed",
      "chunks": [
        0
      ],
      "total_chunks": 1,
      "l2": 4.0,
      "max_abs": 1.0
    }
  ]
}
== version merge main --branch ff ==
{
  "outcome": "fast-forward",
  "from": "<c1>",
  "to": "<c2>"
}
== version merge main --branch ff ==
{
  "outcome": "up-to-date",
  "commit": "<c2>"
}
== version merge exp --weighted 0.5 -m average ==
{
  "outcome": "merged",
  "commit": {
    "commit": "<merge>",
    "branch": "main",
    "parents": [
      "<c2>",
      "<c3>"
    ],
    "full": 0,
    "deltas": 2,
    "unchanged": 2,
    "new_blocks": 6,
    "new_bytes": 1101
  }
}
== version log main ==
{
  "commits": [
    {
      "cid": "<merge>",
      "state": "bafyreibmez4lvkxkp77fmiwe4quj6dearexmhpxo7c3xgcgwupxx3e3xte",
      "parents": [
        "<c2>",
        "<c3>"
      ],
      "author": "tester",
      "message": "average",
      "timestamp_ms": <ms>,
      "time": "<time>",
      "provenance": {
        "datasets": [],
        "hyperparameters": {},
        "gradients": [],
        "metadata": {}
      }
    },
    {
      "cid": "<c3>",
      "state": "bafyreia2x5smb7qse355hzqdoo7f7rsjgmjspq7lztgj64mvo54ika7oly",
      "parents": [
        "<c1>"
      ],
      "author": "tester",
      "message": "theirs",
      "timestamp_ms": <ms>,
      "time": "<time>",
      "provenance": {
        "datasets": [],
        "hyperparameters": {},
        "gradients": [],
        "metadata": {}
      }
    },
    {
      "cid": "<c2>",
      "state": "bafyreidsj7yasmyf63q5re23wj4jaf7yi25mraenxg4poelow6h2etmcca",
      "parents": [
        "<c1>"
      ],
      "author": "tester",
      "message": "ours",
      "timestamp_ms": <ms>,
      "time": "<time>",
      "provenance": {
        "datasets": [],
        "hyperparameters": {},
        "gradients": [],
        "metadata": {}
      }
    },
    {
      "cid": "<c1>",
      "state": "bafyreichbelkagcxhaiu5gi657eojwcyiqdcfe35yykawu5btrt6xxj44m",
      "parents": [],
      "author": "tester",
      "message": "base",
      "timestamp_ms": <ms>,
      "time": "<time>",
      "provenance": {
        "datasets": [
          "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        ],
        "hyperparameters": {
          "lr": "3e-4"
        },
        "gradients": [
          "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
        ],
        "metadata": {
          "run": "7"
        }
      }
    }
  ]
}
== version blame main ==
{
  "tensors": [
    {
      "tensor": "c",
      "commit": {
        "cid": "<merge>",
        "state": "bafyreibmez4lvkxkp77fmiwe4quj6dearexmhpxo7c3xgcgwupxx3e3xte",
        "parents": [
          "<c2>",
          "<c3>"
        ],
        "author": "tester",
        "message": "average",
        "timestamp_ms": <ms>,
        "time": "<time>",
        "provenance": {
          "datasets": [],
          "hyperparameters": {},
          "gradients": [],
          "metadata": {}
        }
      }
    },
    {
      "tensor": "k",
      "commit": {
        "cid": "<c1>",
        "state": "bafyreichbelkagcxhaiu5gi657eojwcyiqdcfe35yykawu5btrt6xxj44m",
        "parents": [],
        "author": "tester",
        "message": "base",
        "timestamp_ms": <ms>,
        "time": "<time>",
        "provenance": {
          "datasets": [
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
          ],
          "hyperparameters": {
            "lr": "3e-4"
          },
          "gradients": [
            "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
          ],
          "metadata": {
            "run": "7"
          }
        }
      }
    },
    {
      "tensor": "r",
      "commit": {
        "cid": "<c2>",
        "state": "bafyreidsj7yasmyf63q5re23wj4jaf7yi25mraenxg4poelow6h2etmcca",
        "parents": [
          "<c1>"
        ],
        "author": "tester",
        "message": "ours",
        "timestamp_ms": <ms>,
        "time": "<time>",
        "provenance": {
          "datasets": [],
          "hyperparameters": {},
          "gradients": [],
          "metadata": {}
        }
      }
    },
    {
      "tensor": "w",
      "commit": {
        "cid": "<merge>",
        "state": "bafyreibmez4lvkxkp77fmiwe4quj6dearexmhpxo7c3xgcgwupxx3e3xte",
        "parents": [
          "<c2>",
          "<c3>"
        ],
        "author": "tester",
        "message": "average",
        "timestamp_ms": <ms>,
        "time": "<time>",
        "provenance": {
          "datasets": [],
          "hyperparameters": {},
          "gradients": [],
          "metadata": {}
        }
      }
    }
  ]
}
== version branch list ==
{
  "refs": [
    {
      "name": "exp",
      "commit": "<c3>",
      "at_head": false
    },
    {
      "name": "ff",
      "commit": "<c2>",
      "at_head": false
    },
    {
      "name": "main",
      "commit": "<merge>",
      "at_head": true
    }
  ],
  "head": "<merge>"
}
== version tag list ==
{
  "refs": [
    {
      "name": "v1",
      "commit": "<c1>",
      "at_head": false
    }
  ],
  "head": "<merge>"
}
== version branch delete ff ==
{
  "action": "deleted",
  "kind": "branch",
  "name": "ff",
  "commit": "<c2>"
}
== version commit <dir>/m1.safetensors -b scratch --orphan -m scratch ==
{
  "commit": "<scratch>",
  "branch": "scratch",
  "parents": [],
  "full": 4,
  "deltas": 0,
  "unchanged": 0,
  "new_blocks": 1,
  "new_bytes": 177
}
== version branch delete scratch ==
{
  "action": "deleted",
  "kind": "branch",
  "name": "scratch",
  "commit": "<scratch>"
}
== version checkout main -o <dir>/out.safetensors ==
{
  "commit": "<merge>",
  "tensors": 4,
  "bytes": 148,
  "output": "<dir>/out.safetensors"
}
== version gc --dry-run ==
{
  "refs": 4,
  "reachable": 29,
  "candidates": 28,
  "held": 0,
  "swept": [
    "<scratch>"
  ],
  "freed_bytes": 0,
  "dry_run": true
}
== version gc ==
{
  "refs": 4,
  "reachable": 29,
  "candidates": 28,
  "held": 0,
  "swept": [
    "<scratch>"
  ],
  "freed_bytes": 177,
  "dry_run": false
}
== version export main -o <dir>/main.car ==
{
  "root": "<merge>",
  "blocks": 27,
  "bytes": 5339,
  "file": "<dir>/main.car",
  "branch": null
}
== version init ==
{
  "repo": "<dir>/other",
  "created_store": true,
  "ledger": "<dir>/other/ledger",
  "branches": 0
}
== version import <dir>/main.car --branch main ==
{
  "root": "<merge>",
  "blocks": 27,
  "bytes": 4262,
  "file": "<dir>/main.car",
  "branch": "main"
}
"##;
