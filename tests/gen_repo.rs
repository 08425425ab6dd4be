//! The scale benchmark's generator (scripts/gen_repo.rs, the `gen-repo` example) writes a
//! repository the real binary accepts: `check` finds nothing wrong, a file restores with the
//! bytes the generator meant, and `forget --keep-last 1 --prune` removes the extra snapshot
//! and frees exactly its data.

mod common;

// The generator is an example with its own main; the test drives its library half.
#[allow(dead_code)]
#[path = "../scripts/gen_repo.rs"]
mod gen_repo;

use common::*;

const BLOBS: u64 = 20_000;

#[test]
fn a_generated_repository_checks_restores_and_prunes() {
    let f = Fixture::empty();
    let report = gen_repo::generate(
        &gen_repo::GenOptions {
            repo: f.repo.clone(),
            blobs: BLOBS,
            password: PASSWORD.as_bytes().to_vec(),
            threads: 2,
            fast_kdf: true,
        },
        false,
    )
    .expect("generate");
    assert_eq!(report.snapshots.len(), 5);
    // 200 files of up to 100 chunks over 5 snapshots, a directory each, and 3 trees above each.
    assert_eq!(report.trees, 5 + 5 * 3);

    let check = f.cmd().args(["--json", "check"]).run();
    check.ok();
    let s = check.summary();
    assert_eq!(s["ok"], true, "{}", check.output());
    assert_eq!(s["snapshots"], 5);
    assert!(
        s["errors"].as_array().expect("errors").is_empty(),
        "{}",
        check.output()
    );

    // The first file of q0 holds blobs 0..100 in order.
    let q0 = &report.snapshots[0];
    let target = f.path("restored");
    f.cmd()
        .args(["restore"])
        .arg(format!("{q0}:/cairn-gen/q0/d000000/f000000"))
        .arg("--target")
        .arg(&target)
        .run()
        .ok();
    let mut expected = Vec::new();
    let mut blob = Vec::new();
    for i in 0..gen_repo::CHUNKS_PER_FILE {
        gen_repo::blob_content(i, &mut blob);
        expected.extend_from_slice(&blob);
    }
    let got = std::fs::read(target.join("f000000")).expect("restored file");
    assert!(got == expected, "restored file differs from blobs 0..100");

    let before = f.repo_bytes();
    let run = f
        .cmd()
        .args(["--json", "forget", "--keep-last", "1", "--prune"])
        .run();
    run.ok();
    let lines = run.json_lines();
    let removed = lines[0]["removed"].as_array().expect("removed");
    assert_eq!(
        removed.len(),
        1,
        "only the extra snapshot goes: {}",
        run.output()
    );
    assert_eq!(removed[0], report.snapshots[4].as_str());
    let prune = lines.last().expect("prune summary");
    assert_eq!(prune["message_type"], "summary");
    assert_eq!(
        prune["blobs_unused"].as_u64(),
        // The extra snapshot's 1 % of the data blobs, and its 4 trees.
        Some(BLOBS / 100 + 4),
        "{}",
        run.output()
    );
    assert!(f.repo_bytes() < before, "prune freed nothing");
    let check = f.cmd().args(["--json", "check"]).run();
    check.ok();
    assert_eq!(check.summary()["snapshots"], 4);
}
